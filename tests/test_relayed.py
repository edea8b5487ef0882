"""Media pulled from another RTMP server, told apart from its bytes (rtmpd.rtmp.relayed): the
same kind and key as the server session's tap gives a publisher's messages, for real legacy and
enhanced media and hand-built headers; and ClientSession's play side against ServerSession, no
sockets: play, Play.Start, media as the server sent it, the end."""

from __future__ import annotations

from functools import cache

import pytest

from rtmpd.rtmp import amf0
from rtmpd.rtmp.amf_values import EcmaArray
from rtmpd.rtmp.chunk import serialize_message
from rtmpd.rtmp.client import ClientSession, MediaMessage, Status
from rtmpd.rtmp.config import SessionConfig
from rtmpd.rtmp.errors import ProtocolError
from rtmpd.rtmp.events import PlayEnd, PlayRequest, RawKind, RawMedia
from rtmpd.rtmp.messages import MessageType, encode_data
from rtmpd.rtmp.relayed import classify, metadata
from rtmpd.rtmp.session import ServerSession
from tests.support import exmedia
from tests.support.core import RawClient, drain, pump, real_configs
from tests.support.media import TAG_AUDIO, TAG_VIDEO, make_flv, read_flv_tags

NAL = bytes.fromhex("00000005 6588840021")
VIDEO, AUDIO = MessageType.VIDEO.value, MessageType.AUDIO.value


@cache
def legacy() -> list[tuple[int, bytes]]:
    tags = read_flv_tags(make_flv(seconds=0.5, fps=10, width=64, height=64))
    return [(t.kind, t.body) for t in tags if t.kind in (TAG_AUDIO, TAG_VIDEO)]


def hand_built() -> list[tuple[int, bytes]]:
    avcc, asc = real_configs()
    hvc = exmedia.real_tags("libx265", "libopus")[0].body[5:]
    color = amf0.encode_all("colorInfo", {"colorConfig": {"bitDepth": 10.0}})
    return [
        (VIDEO, b"\x17\x00\x00\x00\x00" + avcc),
        (VIDEO, b"\x17\x01\x00\x00\x00" + NAL),
        (VIDEO, b"\x27\x01\x00\x00\x00" + NAL),
        (VIDEO, b"\x17\x02\x00\x00\x00"),  # AVC end of sequence
        (VIDEO, b"\x57\x00"),  # an info frame: nothing to relay
        (VIDEO, b"\x22" + NAL),  # Sorenson H.263: a frame with no packet type
        (AUDIO, b"\xaf\x00" + asc),
        (AUDIO, b"\xaf\x01" + b"\x21\x10"),
        (AUDIO, b"\x2f" + b"\xff\xfb\x90\x00"),  # MP3
        (VIDEO, exmedia.video(0, b"hvc1", hvc)),
        (VIDEO, exmedia.video(3, b"hvc1", NAL)),
        (VIDEO, exmedia.video(3, b"hvc1", NAL, frame=2)),
        (VIDEO, exmedia.video(4, b"hvc1", color)),
        (VIDEO, exmedia.video(2, b"hvc1", b"")),
        (VIDEO, exmedia.multitrack(0x96, 1, 0, [(b"hvc1", 0, hvc), (b"hvc1", 1, hvc)])),
        (VIDEO, exmedia.multitrack(0x96, 1, 3, [(b"hvc1", 0, NAL), (b"hvc1", 1, NAL)])),
        (AUDIO, exmedia.audio(4, b"Opus", bytes.fromhex("0006"))),
        (AUDIO, exmedia.audio(2, b"Opus", b"")),
        (AUDIO, exmedia.multitrack(0x95, 2, 1, [(b"Opus", 0, b"\x01"), (b"mp4a", 1, b"\x02")])),
    ]


def every_kind() -> list[tuple[int, bytes]]:
    out = legacy() + hand_built()
    for pair in (("libx265", "libopus"), ("libsvtav1", "flac"), ("libvpx-vp9", "ac3")):
        out += [(t.kind, t.body) for t in exmedia.real_tags(*pair)]
    return out


def tapped(msg_type: int, body: bytes, ts: int) -> RawMedia | None:
    """What a tapped publishing ServerSession hands out for one message."""
    client = RawClient(ServerSession(SessionConfig()), "whole")
    client.connect()
    client.publish("key1234")
    drain(client.server)
    assert client.server.accept_publish(1)
    client.server.tap(1)
    client.send(msg_type, body, 1, ts)
    raw = [e for e in drain(client.server) if isinstance(e, RawMedia)]
    return raw[0] if raw else None


def test_classify_gives_the_kind_and_key_the_server_tap_gives() -> None:
    seen: set[RawKind] = set()
    keys: set[int] = set()
    for ts, (msg_type, body) in enumerate(every_kind()):
        raw = tapped(msg_type, body, ts)
        got = classify(msg_type, body)
        assert got == (None if raw is None else (raw.kind, raw.key)), (msg_type, body[:8].hex())
        if got is not None:
            seen.add(got[0])
            if got[0] is RawKind.HEADER:
                keys.add(got[1])
    assert seen == set(RawKind)
    assert len(keys) == 5  # video, video of two tracks, audio, multichannel, metadata: apart


@pytest.mark.parametrize("body", [b"\x17\x01\x00", b"\x80", b"\x90", b"\x96\x10hvc"])
def test_a_truncated_header_is_a_protocol_error(body: bytes) -> None:
    with pytest.raises(ProtocolError):
        classify(VIDEO if body[0] != 0x90 else AUDIO, body)


def test_metadata_with_or_without_set_data_frame() -> None:
    values = {"width": 320.0, "encoder": "x"}
    assert metadata(encode_data("onMetaData", EcmaArray(values))) == values
    assert metadata(encode_data("@setDataFrame", "onMetaData", values)) == values
    assert metadata(encode_data("|RtmpSampleAccess", False, False)) is None
    assert metadata(encode_data("onMetaData", "no")) is None


def test_client_plays_and_gets_the_media_and_the_end() -> None:
    client = ClientSession()
    server = ServerSession(SessionConfig())
    client.connect("app", "rtmp://localhost/app")
    client.create_stream()
    client.play("benw")
    events = pump(client, server)
    [request] = [e for e in events if isinstance(e, PlayRequest)]
    assert request.name == "benw"
    assert server.accept_play(request.stream_id)
    pump(client, server)
    got = drain(client)
    codes = [e.code for e in got if isinstance(e, Status)]
    assert codes == ["NetStream.Play.Reset", "NetStream.Play.Start"]
    sent = [(VIDEO, b"\x17\x00\x00\x00\x00" + real_configs()[0]), (VIDEO, b"\x17\x01\x00\x00\x00"
            + NAL), (AUDIO, b"\xaf\x01\x21\x10")]  # fmt: skip
    for ts, (msg_type, body) in enumerate(sent):
        csid = 6 if msg_type == VIDEO else 4
        server.send_serialized(serialize_message(csid, msg_type, request.stream_id, ts * 40,
                                                 body, 4096))  # fmt: skip
    server.send_message(5, MessageType.DATA_AMF0, request.stream_id,
                        encode_data("onMetaData", EcmaArray({"width": 64.0})))  # fmt: skip
    pump(client, server)
    media = [e for e in drain(client) if isinstance(e, MediaMessage)]
    assert [(m.msg_type, m.timestamp, bytes(m.payload)) for m in media[:3]] == [
        (t, i * 40, b) for i, (t, b) in enumerate(sent)
    ]
    kinds = [classify(m.msg_type, m.payload) for m in media[:3]]
    assert [k[0] for k in kinds if k is not None] == [RawKind.HEADER, RawKind.KEYFRAME,
                                                       RawKind.FRAME]  # fmt: skip
    assert metadata(media[3].payload) == {"width": 64.0}
    assert server.end_play(request.stream_id, "the stream ended")
    assert PlayEnd(request.stream_id, "the stream ended") in pump(client, server)
    codes = [e.code for e in drain(client) if isinstance(e, Status)]
    assert codes == ["NetStream.Play.UnpublishNotify", "NetStream.Play.Stop"]
    assert server.closed
