"""ClientSession against ServerSession, no sockets: the whole publish exchange, real media
(libx264 + aac from tests/media.py) arriving with identical timestamps and payloads, across
chunk sizes, extended and wrapping timestamps, interleaved chunks, aborts, frames cut by pyrtmp,
and pre-serialized messages shared between publishers (the load generator's path)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from functools import cache
from typing import Any

import pytest

from rtmpd.rtmp import amf0
from rtmpd.rtmp.chunk import ChunkReader, ChunkWriter, SerializedMessage, serialize_message
from rtmpd.rtmp.client import (
    ClientSession,
    CommandResult,
    Connected,
    ReconnectRequest,
    ServerCommand,
    StreamCreated,
)
from rtmpd.rtmp.client import Status as ClientStatus
from rtmpd.rtmp.events import (
    Audio,
    AudioConfig,
    Connect,
    Event,
    Metadata,
    PublishEnd,
    PublishRequest,
    SequenceEnd,
    Video,
    VideoConfig,
)
from rtmpd.rtmp.exheader import CapsEx
from rtmpd.rtmp.handshake import ClientHandshake
from rtmpd.rtmp.messages import ChunkStreamId, MessageType, parse_command
from rtmpd.rtmp.session import ServerSession, StreamState
from tests.support.core import client_events, drain, pump, send_abort, send_raw
from tests.support.media import FlvTag, make_flv, read_flv_tags
from tests.support.wire import ping_request


@cache
def tags() -> tuple[FlvTag, ...]:
    return tuple(read_flv_tags(make_flv(seconds=1, width=160, height=120, fps=25)))


def _s24(b: bytes) -> int:
    v = int.from_bytes(b, "big")
    return v - (1 << 24) if v & 0x800000 else v


def expected_events(offset: int = 0) -> list[tuple[Any, ...]]:
    """What the server must report for tags() sent with timestamps shifted by `offset`."""
    out: list[tuple[Any, ...]] = []
    for t in tags():
        ts, b = t.timestamp + offset, t.body
        if t.kind == 9 and b[1] == 0:
            out.append(("VideoConfig", 1, ts, 7, b[5:]))
        elif t.kind == 9 and b[1] == 1:
            out.append(("Video", 1, ts, 7, b[0] >> 4 == 1, _s24(b[2:5]), b[5:]))
        elif t.kind == 9 and b[1] == 2:  # AVC end of sequence
            out.append(("SequenceEnd", 1, ts, 7, True))
        elif t.kind == 8 and b[1] == 0:
            out.append(("AudioConfig", 1, ts, 10, b[2:]))
        elif t.kind == 8:
            out.append(("Audio", 1, ts, 10, 44100, 16, 2, b[2:]))
        elif t.kind == 18:
            out.append(("Metadata", 1, amf0.decode_all(b)[1]))
    return out


def as_tuples(events: list[Event]) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for e in events:
        if isinstance(e, VideoConfig | AudioConfig):
            out.append((type(e).__name__, e.stream_id, e.timestamp, e.codec_id, bytes(e.data)))
        elif isinstance(e, Video):
            out.append(
                ("Video", e.stream_id, e.timestamp, e.codec_id, e.keyframe, e.composition_offset,
                 bytes(e.data))
            )  # fmt: skip
        elif isinstance(e, Audio):
            out.append(
                ("Audio", e.stream_id, e.timestamp, e.codec_id, e.sound_rate, e.sound_size,
                 e.channels, bytes(e.data))
            )  # fmt: skip
        elif isinstance(e, Metadata):
            out.append(("Metadata", e.stream_id, e.values))
        elif isinstance(e, SequenceEnd):
            out.append(("SequenceEnd", e.stream_id, e.timestamp, e.codec_id, e.video))
        else:
            out.append((type(e).__name__,))
    return out


def send_tags(client: ClientSession, offset: int = 0) -> None:
    for t in tags():
        ts = t.timestamp + offset
        if t.kind == 9:
            client.send_video(ts, t.body)
        elif t.kind == 8:
            client.send_audio(ts, t.body)
        else:
            client.send_message(ChunkStreamId.DATA, MessageType.DATA_AMF0, 1, ts, t.body)


def publishing_pair(
    chunk_size: int = 4096, **client_args: Any
) -> tuple[ClientSession, ServerSession]:
    client = ClientSession(chunk_size=chunk_size, **client_args)
    server = ServerSession()
    client.connect("live", "rtmp://localhost/live")
    client.create_stream()
    client.publish("secretkey")
    events = pump(client, server)
    assert [type(e) for e in events] == [Connect, PublishRequest]
    assert events[1] == PublishRequest(1, "secretkey", "", "live")
    assert server.accept_publish(1)
    assert pump(client, server) == []
    assert client.publishing
    return client, server


def test_connect_create_stream_publish_accept() -> None:
    client = ClientSession()
    server = ServerSession()
    client.connect("live", "rtmp://localhost/live", swfUrl="x")
    client.create_stream()
    client.publish("secretkey?t=1")
    events = pump(client, server)
    assert isinstance(events[0], Connect) and events[0].swf_url == "x"
    assert events[1] == PublishRequest(1, "secretkey", "t=1", "live")
    got = client_events(client)
    assert isinstance(got[0], Connected)
    assert got[0].info["code"] == "NetConnection.Connect.Success"
    assert got[1] == StreamCreated(1)
    kinds = {type(e) for e in got[2:]}
    assert kinds == {CommandResult, ServerCommand}  # releaseStream, FCPublish, onFCPublish
    assert not client.publishing
    server.accept_publish(1)
    pump(client, server)
    [status] = client_events(client)
    assert isinstance(status, ClientStatus)
    assert (status.stream_id, status.level, status.code) == (1, "status", "NetStream.Publish.Start")
    assert client.publishing


def test_reject() -> None:
    client = ClientSession()
    server = ServerSession()
    client.connect("live", "rtmp://localhost/live")
    client.create_stream()
    client.publish("wrongkey")
    pump(client, server)
    client_events(client)
    server.reject_publish(1, "NetStream.Publish.Denied", "Unknown stream key")
    pump(client, server)
    [status] = client_events(client)
    assert isinstance(status, ClientStatus)
    assert (status.level, status.code, status.description) == (
        "error", "NetStream.Publish.Denied", "Unknown stream key",
    )  # fmt: skip
    assert server.closed and not client.publishing


@pytest.mark.parametrize("chunk_size", [1, 128, 4096, 65536])
def test_real_media_arrives_identical(chunk_size: int) -> None:
    client, server = publishing_pair(chunk_size)
    send_tags(client)
    assert as_tuples(pump(client, server)) == expected_events()
    assert server.ignored_media == 0


@pytest.mark.parametrize(
    "offset",
    [0xFFFFFF + 1000, 2**32 - 500],
    ids=["extended", "wrap"],
)
def test_timestamps_extended_and_wrapping(offset: int) -> None:
    client, server = publishing_pair(4096)
    send_tags(client, offset)
    got = as_tuples(pump(client, server))
    assert got == expected_events(offset)
    # In the wrap case the 32-bit clock went round mid-stream and the events kept counting.
    assert (got[-1][2] > 2**32) == (offset > 2**31)


def _split_chunks(msg: SerializedMessage) -> list[bytes]:
    """The chunks of a serialized fmt 0 message (1-byte basic headers)."""
    ext = 4 if msg.timestamp & 0xFFFFFFFF >= 0xFFFFFF else 0
    first = 12 + ext + min(msg.chunk_size, msg.length)
    out = [msg.data[:first]]
    pos = first
    while pos < len(msg.data):
        end = pos + 1 + ext + msg.chunk_size
        out.append(msg.data[pos:end])
        pos = end
    assert b"".join(out) == msg.data
    return out


def test_interleaved_chunks_of_audio_and_video() -> None:
    client, server = publishing_pair(128)
    video = [t for t in tags() if t.kind == 9]
    audio = [t for t in tags() if t.kind == 8]
    data = b""
    pairs = 0
    for v, a in zip(video, audio, strict=False):
        vc = _split_chunks(serialize_message(ChunkStreamId.VIDEO, 9, 1, v.timestamp, v.body, 128))
        ac = _split_chunks(serialize_message(ChunkStreamId.AUDIO, 8, 1, a.timestamp, a.body, 128))
        for i in range(max(len(vc), len(ac))):
            data += (vc[i] if i < len(vc) else b"") + (ac[i] if i < len(ac) else b"")
        pairs += len(ac) > 1 and len(vc) > 1
    assert pairs  # some messages really were interleaved chunk by chunk
    send_raw(client, server, data)
    events = pump(client, server)
    got_video = [e for e in as_tuples(events) if e[0] in ("Video", "VideoConfig")]
    got_audio = [e for e in as_tuples(events) if e[0] in ("Audio", "AudioConfig")]
    want = expected_events()
    n = min(len(video), len(audio))
    assert got_video == [e for e in want if e[0] in ("Video", "VideoConfig")][:n]
    assert got_audio == [e for e in want if e[0] in ("Audio", "AudioConfig")][:n]


def test_abort_discards_the_partial_message() -> None:
    client, server = publishing_pair(128)
    frame = next(t for t in tags() if t.kind == 9 and t.body[1] == 1 and len(t.body) > 300)
    partial = _split_chunks(serialize_message(ChunkStreamId.VIDEO, 9, 1, 40, frame.body, 128))
    send_raw(client, server, b"".join(partial[:2]))
    send_abort(client, ChunkStreamId.VIDEO)
    client.send_video(80, frame.body)
    [event] = pump(client, server)
    assert isinstance(event, Video) and event.timestamp == 80
    assert bytes(event.data) == frame.body[5:]


def test_shared_serialized_messages_for_many_publishers() -> None:
    pairs = [publishing_pair(4096) for _ in range(2)]
    shared = [
        serialize_message(
            ChunkStreamId.VIDEO if t.kind == 9 else ChunkStreamId.AUDIO, t.kind, 1,
            t.timestamp, t.body, 4096,
        )
        for t in tags()
        if t.kind in (8, 9)
    ]  # fmt: skip
    for client, server in pairs:
        for msg in shared[:3]:
            client.send_serialized(msg)
            assert client.data_to_send() is msg.data  # handed over as-is, no copy
            server.receive_data(msg.data, 0.0)
        for msg in shared[3:]:
            client.send_serialized(msg)
        client.send_audio(tags()[-1].timestamp + 100, b"\xaf\x01\x21\x10")  # compressed after
    results = [as_tuples(pump(c, s)) for c, s in pairs]
    assert results[0] == results[1]
    want = [e for e in expected_events() if e[0] != "Metadata"]
    assert results[0][:-1] == want
    assert results[0][-1][:3] == ("Audio", 1, tags()[-1].timestamp + 100)
    with pytest.raises(ValueError):
        pairs[0][0].send_serialized(serialize_message(7, 9, 1, 0, b"\x17", 128))


def test_delete_stream_ends_the_publish_once() -> None:
    client, server = publishing_pair()
    send_tags(client)
    pump(client, server)
    client.delete_stream()
    assert pump(client, server) == [PublishEnd(1, "FCUnpublish")]
    assert not client.publishing and not server.closed


def test_digest_handshake_client() -> None:
    client, server = publishing_pair(digest=True)
    client.send_video(0, b"\x17\x02\x00\x00\x00")
    assert pump(client, server) == [SequenceEnd(1, 0, 7, True)]
    assert not server.closed


def test_client_answers_pings() -> None:
    client, server = publishing_pair()
    # A fmt 0 message needs no context, so it can be slipped into the server's byte stream.
    client.receive_data(ChunkWriter().write(2, MessageType.USER_CONTROL, 0, 0, ping_request(78)))
    out = client.data_to_send()
    assert out[-6:] == b"\x00\x07\x00\x00\x00\x4e"  # Ping Response echoing 78
    server.receive_data(out, 0.0)
    assert drain(server) == [] and not server.closed


# --- pyrtmp-made frames -----------------------------------------------------------------------


@pytest.fixture
def pyrtmp() -> Iterator[Any]:
    root = logging.getLogger()
    level = root.level
    from pyrtmp import messages
    from pyrtmp.amf import serializers

    yield messages, serializers
    root.setLevel(level)


def test_frames_from_pyrtmp_writer_and_serializer(pyrtmp: Any) -> None:
    from bitstring import BitStream

    pmessages, serializers = pyrtmp

    def frame(csid: int, msg_type: int, stream_id: int, payload: bytes) -> bytes:
        chunk = pmessages.Chunk(
            chunk_type=0, chunk_id=csid, timestamp=0, msg_length=len(payload),
            msg_type_id=msg_type, msg_stream_id=stream_id, payload=payload,
        )  # fmt: skip
        return b"".join(raw.to_bytes() for raw in chunk.to_raw_chunks(128))

    def command(*values: Any) -> bytes:
        stream = BitStream()
        for value in values:
            serializers.AMF0Serializer.create_object(stream, value)
        return bytes(stream.bytes)

    server = ServerSession()
    hs = ClientHandshake()
    server.receive_data(hs.data_to_send(), 0.0)
    hs.receive_data(server.data_to_send())
    server.receive_data(hs.data_to_send(), 0.0)
    connect = command("connect", 1, {"app": "live", "tcUrl": "rtmp://h/live", "fpad": False})
    server.receive_data(frame(3, 20, 0, connect), 0.0)
    server.receive_data(frame(3, 20, 0, command("createStream", 2, None)), 0.0)
    server.receive_data(frame(3, 20, 1, command("publish", 0, None, "secretkey", "live")), 0.0)
    events = drain(server)
    assert isinstance(events[0], Connect) and events[0].app == "live"
    assert events[1] == PublishRequest(1, "secretkey", "", "live")
    server.accept_publish(1)
    video = next(t for t in tags() if t.kind == 9 and t.body[1] == 1 and len(t.body) > 300)
    server.receive_data(frame(6, 9, 1, video.body), 0.0)
    [event] = drain(server)
    assert isinstance(event, Video) and bytes(event.data) == video.body[5:]


# --- enhanced RTMP v2: reconnect requests -----------------------------------------------------


def test_reconnect_request_reaches_a_client_that_announced_it() -> None:
    client, server = publishing_pair(caps_ex=CapsEx.RECONNECT)
    (connected,) = [e for e in drain(client) if isinstance(e, Connected)]
    assert int(connected.properties["capsEx"]) & CapsEx.RECONNECT  # the server sends them
    assert server.peer_caps.reconnect
    assert server.request_reconnect("rtmp://other.example/app", "Server update")
    wire = server.data_to_send()
    reader = ChunkReader()
    reader.set_chunk_size(4096)  # the server announced it after connect
    reader.feed(wire)
    msg = reader.next_message()
    assert msg is not None and (msg.msg_type, msg.stream_id) == (MessageType.COMMAND_AMF0, 0)
    cmd = parse_command(msg.payload)
    assert (cmd.name, cmd.transaction_id, cmd.command_object) == ("onStatus", 0.0, None)
    assert cmd.args[0] == {
        "level": "status",
        "code": "NetConnection.Connect.ReconnectRequest",
        "description": "Server update",
        "tcUrl": "rtmp://other.example/app",
    }
    client.receive_data(wire)
    assert drain(client) == [ReconnectRequest("rtmp://other.example/app", "Server update")]
    assert server.stream_state(1) is StreamState.PUBLISHING  # it goes on until the client goes
    assert server.request_reconnect()  # no tcUrl: the client reconnects where it is
    client.receive_data(server.data_to_send())
    assert drain(client) == [ReconnectRequest("", "Reconnect, please")]


def test_no_reconnect_request_to_a_client_that_did_not_announce_it() -> None:
    client, server = publishing_pair()
    assert not server.peer_caps.reconnect and not server.peer_caps.enhanced
    assert not server.request_reconnect("rtmp://other.example/app")
    assert server.data_to_send() == b""
    fresh = ServerSession()
    assert not fresh.request_reconnect()  # nor before connect
