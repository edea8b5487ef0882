"""Record the seed corpus: real RTMP sessions, cut into inputs for every fuzz target.

Starts an rtmpd in this process, puts a recording TCP relay in front of it and publishes
through the relay twice: with FFmpeg's RTMP client (PyAV, in a child process) and with rtmpd's
own client (digest handshake, metadata, an AMF3 command, small chunks, timestamps past 24 and
32 bits). The client-to-server bytes of each session become seeds; their messages, codec
records and media timelines become seeds for the other targets. Run from the repository root:

    .venv/bin/python -m fuzz.record_seeds      # rewrites fuzz/corpus/*/seed-*
"""

from __future__ import annotations

import asyncio
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

from fuzz.targets import HANDSHAKE_BYTES
from rtmpd.app import Rtmpd
from rtmpd.config import from_dict
from rtmpd.rtmp import amf0
from rtmpd.rtmp.chunk import ChunkReader
from rtmpd.rtmp.client import ClientSession, Status
from rtmpd.rtmp.messages import MessageType, encode_command
from tests.support.amf3_encode import encode_amf3
from tests.support.media import TAG_AUDIO, TAG_VIDEO, FlvTag, make_flv, read_flv_tags

HERE = Path(__file__).resolve().parent

CORPUS = HERE / "corpus"
MEDIA = {"seconds": 1.2, "fps": 10, "width": 96, "height": 64, "gop": 5, "bitrate": 100_000}

PUBLISH_CHILD = """
import sys, json
sys.path.insert(0, sys.argv[3])
import av
from tests.support.media import encode_into
encode_into(av.open(sys.argv[1], "w", format="flv"), **json.loads(sys.argv[2]))
"""


class Relay:
    """Forwards one TCP connection at a time to `target`, keeping what the client sent."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.sessions: list[bytearray] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        record = bytearray()
        self.sessions.append(record)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, keep: bool) -> None:
            try:
                while data := await src.read(65536):
                    if keep:
                        record.extend(data)
                    dst.write(data)
                    await dst.drain()
            except ConnectionError:
                pass
            finally:
                dst.close()

        await asyncio.gather(pump(reader, up_writer, True), pump(up_reader, writer, False))

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


async def ffmpeg_session(port: int, key: str) -> None:
    import json

    url = f"rtmp://127.0.0.1:{port}/app/{key}"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", PUBLISH_CHILD, url, json.dumps(MEDIA), str(HERE.parent),
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    await asyncio.wait_for(proc.wait(), 60)


async def client_session(port: int, key: str, tags: list[FlvTag]) -> None:
    """rtmpd's client: digest handshake, small chunks, AMF3, extended and wrapping times."""
    session = ClientSession(digest=True, chunk_size=200)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    session.connect("app", f"rtmp://127.0.0.1:{port}/app")
    session.create_stream()
    session.publish(key)
    writer.write(session.data_to_send())
    status = None
    while status is None:
        data = await asyncio.wait_for(reader.read(65536), 10)
        if not data:
            raise ConnectionError("closed before publish was answered")
        session.receive_data(data)
        while (event := session.next_event()) is not None:
            if isinstance(event, Status):
                status = event
        writer.write(session.data_to_send())
    amf3_call = b"\x00" + encode_command("FCPublish", 0.0, None, key)
    session.send_message(3, MessageType.COMMAND_AMF3, 0, 0, amf3_call)
    session.send_metadata({"width": 96.0, "height": 64.0, "encoder": "seed"})
    offset = 0xFFFFFFFF - 400  # crosses 2**24 long before and 2**32 during the run
    for tag in tags:
        send = session.send_video if tag.kind == TAG_VIDEO else session.send_audio
        send(tag.timestamp + offset, tag.body)
    session.set_chunk_size(7)
    for tag in tags[:6]:
        send = session.send_video if tag.kind == TAG_VIDEO else session.send_audio
        send(tag.timestamp + offset + 2000, tag.body)
    session.delete_stream()
    writer.write(session.data_to_send())
    await writer.drain()
    await asyncio.sleep(0.3)
    writer.close()


def messages(stream: bytes) -> list[tuple[int, bytes]]:
    reader = ChunkReader()
    reader.feed(stream[HANDSHAKE_BYTES:])
    out = []
    while (msg := reader.next_message()) is not None:
        out.append((msg.msg_type, bytes(msg.payload)))
    return out


def segmenter_program(
    tags: list[FlvTag], *, change_at: int | None = None, jump_at: int | None = None
) -> bytes:
    """The media timeline as segmenter steps (see targets.segmenter)."""
    out = bytearray()
    last = 0
    for i, tag in enumerate(tags):
        if tag.kind not in (TAG_AUDIO, TAG_VIDEO):
            continue
        video = tag.kind == TAG_VIDEO
        step = tag.timestamp - last
        last = tag.timestamp
        if i == jump_at:
            step -= 5000
        if tag.is_sequence_header or i == change_at:
            kind = (2 if video else 3) | (8 if i == change_at else 0)
            out += struct.pack(">BhB", kind, 0, 0)
            if tag.is_sequence_header:
                continue
        kind = (0 if video else 1) | (4 if tag.is_keyframe else 0)
        out += struct.pack(
            ">BhB", kind, max(-32768, min(32767, step)), min(255, len(tag.body) // 97)
        )
    return bytes(out)


def write(target: str, name: str, data: bytes) -> None:
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"seed-{name}").write_bytes(data)


async def record() -> tuple[bytes, bytes, list[FlvTag]]:
    flv = make_flv(**MEDIA)
    tags = [t for t in read_flv_tags(flv) if t.kind in (TAG_AUDIO, TAG_VIDEO)]
    with tempfile.TemporaryDirectory() as tmp:
        config = from_dict(
            {"rtmp": {"listen": "127.0.0.1:0"}, "http": {"listen": "127.0.0.1:0"}}, Path(tmp)
        )
        server = Rtmpd(config)
        await server.start()
        relay = Relay(server.rtmp.port)
        await relay.start()
        try:
            key = await server.auth.store.add_user("seed")
            await ffmpeg_session(relay.port, key)
            await asyncio.sleep(0.3)
            await client_session(relay.port, key, tags)
            await asyncio.sleep(0.3)
        finally:
            await relay.close()
            await server.stop()
    ffmpeg, client = (bytes(s) for s in relay.sessions[:2])
    return ffmpeg, client, tags


def main() -> None:
    ffmpeg, client, tags = asyncio.run(record())
    for path in CORPUS.glob("*/seed-*"):
        path.unlink()
    for name, stream in (("ffmpeg", ffmpeg), ("client", client)):
        write("session", name, b"\x00" + stream[HANDSHAKE_BYTES:])
        write("session", f"{name}-bytewise", b"\x04" + stream[HANDSHAKE_BYTES:][:4000])
        write("session", f"{name}-rejected", b"\x01" + stream[HANDSHAKE_BYTES:][:4000])
        write("handshake", name, b"\x00" + stream[: HANDSHAKE_BYTES + 300])
        write("handshake", f"{name}-sevens", b"\x08" + stream[: HANDSHAKE_BYTES + 300])
        for i, (kind, payload) in enumerate(messages(stream)):
            if kind in (MessageType.COMMAND_AMF0, MessageType.DATA_AMF0):
                write("amf0", f"{name}-{i}", payload)
            elif kind == MessageType.COMMAND_AMF3:
                write("amf3", f"{name}-{i}", payload[1:])
    write("session", "late-accept-sevens", b"\x0a" + client[HANDSHAKE_BYTES:][:6000])
    write("amf3", "values", encode_amf3({"a": [1, 2.5, "x", None, True], "b": b"\x00\x01"}))
    write("amf3", "typed", encode_amf3(amf0.TypedObject("Klass", {"k": amf0.Date(1e12, 0)})))
    write("amf0", "values", amf0.encode_all(amf0.EcmaArray({"a": 1.0}), [None, "s" * 70], {}))
    video = [t for t in tags if t.kind == TAG_VIDEO]
    audio = [t for t in tags if t.kind == TAG_AUDIO]
    write("flv", "avc-config", video[0].body)
    write("flv", "avc-keyframe", video[1].body[:4096])
    write("flv", "avc-inter", video[2].body[:2048])
    write("flv", "aac-config", audio[0].body)
    write("flv", "aac-frame", audio[1].body)
    write("flv", "avcc-record", video[0].body[5:])
    write("flv", "asc-record", audio[0].body[2:])
    write("segmenter", "steady", segmenter_program(tags))
    write("segmenter", "config-change", segmenter_program(tags, change_at=len(tags) // 2))
    write("segmenter", "jump-back", segmenter_program(tags, jump_at=len(tags) // 2))
    enhanced_seeds()
    for folder in sorted(CORPUS.iterdir()):
        files = list(folder.glob("seed-*"))
        print(f"{folder.name}: {len(files)} seeds, {sum(f.stat().st_size for f in files)} bytes")


def enhanced_seeds() -> None:
    """Enhanced RTMP bodies for the exheader target: FFmpeg's (HEVC, AV1, VP9 with Opus, FLAC,
    AC-3: every sequence start and a frame of each), and hand-built ModEx and multitrack ones;
    and rtmpd's client publishing FFmpeg's HEVC + Opus (enhanced connect) for the session
    target."""
    from tests.support import exmedia

    for pair in (("libx265", "libopus"), ("libsvtav1", "flac"), ("libvpx-vp9", "ac3")):
        seen: set[tuple[int, int]] = set()
        for tag in exmedia.real_tags(*pair):
            key = (tag.kind, tag.body[0])
            if key in seen:
                continue
            seen.add(key)
            flags = b"\x00" if tag.kind == TAG_VIDEO else b"\x01"
            write("exheader", f"{pair[0]}-{tag.kind}-{tag.body[0]:02x}", flags + tag.body[:1500])
    nal = bytes.fromhex("000000056588840021")
    write("exheader", "multitrack-many-codecs", b"\x00" + exmedia.multitrack(
        0x96, 2, 1, [(b"avc1", 0, b"\0\0\x28" + nal), (b"av01", 1, nal)]))  # fmt: skip
    write("exheader", "multitrack-audio", b"\x01" + exmedia.multitrack(
        0x95, 1, 0, [(b"Opus", 0, b"OpusHead\x01\x02" + bytes(9)), (b"Opus", 1, b"")]))  # fmt: skip
    write("exheader", "modex-nano", b"\x00" + exmedia.video(1, b"hvc1", b"\0\0\0" + nal,
                                                             mod=b"\x0f\x42\x3f"))  # fmt: skip
    caps = {"fourCcList": ["hvc1", "*"], "capsEx": 1.0, "videoFourCcInfoMap": {"av01": 4.0}}
    write("exheader", "connect-caps", b"\x00" + amf0.encode_all(caps))
    flv = make_flv(seconds=1.0, fps=10, width=64, height=64, gop=5, video_codec="libx265",
                   audio_codec="libopus", sample_rate=48000)  # fmt: skip
    session = ClientSession()
    session.connect("app", "rtmp://127.0.0.1/app", fourCcList=["hvc1", "Opus"], capsEx=1.0)
    session.create_stream()
    stream = _self_answered(session, [t for t in read_flv_tags(flv) if t.kind in (8, 9)])
    write("session", "client-hevc-opus", b"\x00" + stream[:12000])


def _self_answered(session: ClientSession, tags: list[FlvTag]) -> bytes:
    """What `session` sends to a ServerSession that answers it (handshake included), with
    `tags` published: the bytes after the handshake."""
    from rtmpd.rtmp.session import ServerSession

    server = ServerSession()
    sent = bytearray()
    session.publish("seedkey")
    for _ in range(50):
        up = session.data_to_send()
        sent += up
        server.receive_data(up, 0.0)
        while (event := server.next_event()) is not None:
            if type(event).__name__ == "PublishRequest":
                server.accept_publish(1)
        session.receive_data(server.data_to_send())
        if session.publishing:
            break
    for tag in tags:
        (session.send_video if tag.kind == TAG_VIDEO else session.send_audio)(tag.timestamp,
                                                                              tag.body)  # fmt: skip
    sent += session.data_to_send()
    return bytes(sent[HANDSHAKE_BYTES:])


if __name__ == "__main__":
    main()
