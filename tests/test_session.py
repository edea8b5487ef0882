"""ServerSession driven byte by byte by a hand-built client: replies on the wire, events,
state transitions, limits, timers, and hostile input turning into ProtocolViolation."""

from __future__ import annotations

import pytest

from rtmpd.rtmp import amf0, limits, messages, records
from rtmpd.rtmp.chunk import Message, serialize_message
from rtmpd.rtmp.config import SessionConfig
from rtmpd.rtmp.events import (
    Audio,
    AudioConfig,
    Connect,
    Metadata,
    PlayEnd,
    PlayRequest,
    ProtocolViolation,
    ProtocolWarning,
    PublishEnd,
    PublishRequest,
    RawKind,
    RawMedia,
    SequenceEnd,
    TimedOut,
    Video,
    VideoConfig,
)
from rtmpd.rtmp.messages import MessageType, encode_command, encode_data, parse_command
from rtmpd.rtmp.session import ConnState, ServerSession, StreamState
from tests.support.core import RawClient, drain, real_configs
from tests.support.pieces import FEEDS
from tests.support.wire import ping_request


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


NAL = h("00000005 6588840021")


def commands(replies: list[Message]) -> list[messages.Command]:
    return [
        parse_command(m.payload)
        for m in replies
        if m.msg_type in (MessageType.COMMAND_AMF0, MessageType.COMMAND_AMF3)
    ]


def statuses(replies: list[Message]) -> list[tuple[int, str, str, str]]:
    out = []
    for m in replies:
        if m.msg_type == MessageType.COMMAND_AMF0:
            cmd = parse_command(m.payload)
            if cmd.name == "onStatus":
                info = cmd.args[0]
                out.append((m.stream_id, info["level"], info["code"], info["description"]))
    return out


def connected(mode: str = "whole", config: SessionConfig | None = None) -> RawClient:
    client = RawClient(ServerSession(config or SessionConfig()), mode)
    client.connect()
    client.collect()
    drain(client.server)
    return client


def publishing(mode: str = "whole") -> RawClient:
    client = connected(mode)
    client.publish("key1234")
    assert drain(client.server) == [PublishRequest(1, "key1234", "", "live")]
    assert client.server.accept_publish(1)
    client.collect()
    return client


# --- connect ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", FEEDS)
def test_connect(mode: str) -> None:
    client = RawClient(ServerSession(), mode)
    assert client.server.state is ConnState.AWAIT_CONNECT
    assert client.server.bytes_received == 1 + 1536 + 1536
    client.connect("live", swfUrl="s", pageUrl="p")
    [event] = drain(client.server)
    assert isinstance(event, Connect)
    assert (event.app, event.tc_url, event.flashver) == (
        "live",
        "rtmp://localhost/live",
        "FMLE/3.0",
    )
    assert (event.swf_url, event.page_url, event.object_encoding) == ("s", "p", 0)
    assert event.properties["app"] == "live"
    wire = client.server.data_to_send()
    # The first reply, byte for byte: Window Acknowledgement Size 2500000 on chunk stream 2.
    assert wire.startswith(h("02 000000 000004 05 00000000 002625a0"))
    client.reader.feed(wire)
    replies = []
    while (m := client.reader.next_message()) is not None:
        replies.append(m)
    assert [(m.csid, m.msg_type, bytes(m.payload)) for m in replies[:2]] == [
        (2, 5, h("002625a0")),
        (2, 6, h("002625a0 02")),
    ]
    # Set Chunk Size is applied by the chunk layer, not delivered: check the bytes (a fmt 1
    # header: same chunk stream and message stream as the message before) and the effect.
    assert h("42 000000 000004 01 00001000") in wire
    assert client.reader.chunk_size == 4096
    [result] = commands(replies[2:])
    assert (result.name, result.transaction_id) == ("_result", 1.0)
    assert result.command_object["fmsVer"].startswith("FMS/")
    assert result.command_object["capabilities"] == 31.0
    info = result.args[0]
    assert (info["level"], info["code"]) == ("status", "NetConnection.Connect.Success")
    assert info["objectEncoding"] == 0.0
    assert client.server.state is ConnState.CONNECTED


def test_connect_echoes_object_encoding_and_accepts_amf3_commands() -> None:
    client = RawClient(ServerSession())
    payload = b"\x00" + encode_command("connect", 1, {"app": "live", "objectEncoding": 3.0})
    client.send(MessageType.COMMAND_AMF3, payload)
    [event] = drain(client.server)
    assert isinstance(event, Connect) and event.object_encoding == 3
    assert commands(client.collect())[0].args[0]["objectEncoding"] == 3.0


def test_release_stream_fcpublish_and_create_stream() -> None:
    client = connected()
    client.command("releaseStream", 2, None, "key1234")
    client.command("FCPublish", 3, None, "key1234")
    client.command("createStream", 4)
    client.command("createStream", 5)
    got = [(c.name, c.transaction_id, c.args) for c in commands(client.collect())]
    assert ("_result", 2.0, []) in got
    assert ("_result", 3.0, []) in got
    assert ("_result", 4.0, [1.0]) in got and ("_result", 5.0, [2.0]) in got
    fc = [c for c in got if c[0] == "onFCPublish"]
    assert fc and fc[0][2][0]["code"] == "NetStream.Publish.Start"
    assert "key1234" not in repr(fc)  # the key is not echoed
    assert drain(client.server) == []


def test_stream_count_is_bounded() -> None:
    client = connected(config=SessionConfig(max_streams=2))
    for tid in (2, 3, 4):
        client.command("createStream", tid)
    got = [(c.name, c.transaction_id) for c in commands(client.collect())]
    assert got == [("_result", 2.0), ("_result", 3.0), ("_error", 4.0)]
    assert not client.server.closed


# --- publish ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", FEEDS)
def test_publish_accept(mode: str) -> None:
    client = connected(mode)
    client.publish("key1234?token=abc&x=1")
    assert drain(client.server) == [PublishRequest(1, "key1234", "token=abc&x=1", "live")]
    assert client.server.stream_state(1) is StreamState.PUBLISH_PENDING
    assert client.server.get_timer() is None  # waiting on our decision, not the peer
    assert client.server.accept_publish(1)
    replies = client.collect()
    begin = [m for m in replies if m.msg_type == MessageType.USER_CONTROL]
    assert [bytes(m.payload) for m in begin] == [h("0000 00000001")]
    assert statuses(replies) == [(1, "status", "NetStream.Publish.Start", "Publishing")]
    assert client.server.stream_state(1) is StreamState.PUBLISHING
    assert not client.server.accept_publish(1)  # only once


def test_publish_reject() -> None:
    client = connected()
    client.publish("badkey")
    drain(client.server)
    assert client.server.reject_publish(1, "NetStream.Publish.BadName", "Unknown stream key")
    assert statuses(client.collect()) == [
        (1, "error", "NetStream.Publish.BadName", "Unknown stream key")
    ]
    assert client.server.closed
    assert not client.server.accept_publish(1)
    client.command("createStream", 9)  # ignored once closed
    assert client.collect() == [] and drain(client.server) == []


def test_publish_type_defaults_to_live() -> None:
    client = connected()
    client.command("createStream", 2)
    client.command("publish", 0, None, "k", stream_id=1)
    client.command("createStream", 3)
    client.command("publish", 0, None, "k2", "record", stream_id=2)
    assert drain(client.server) == [
        PublishRequest(1, "k", "", "live"),
        PublishRequest(2, "k2", "", "record"),
    ]


def _media_messages(client: RawClient, stream_id: int = 1, base: int = 0) -> None:
    avc, asc = real_configs()
    client.send(
        MessageType.DATA_AMF0,
        encode_data("@setDataFrame", "onMetaData", amf0.EcmaArray(width=64.0)),
        stream_id,
        base,
        5,
    )
    client.send(MessageType.VIDEO, h("17 00 000000") + avc, stream_id, base, 7)
    client.send(MessageType.AUDIO, h("af 00") + asc, stream_id, base, 6)
    client.send(MessageType.VIDEO, h("17 01 000028") + NAL, stream_id, base + 40, 7)
    client.send(MessageType.AUDIO, h("af 01 2110"), stream_id, base + 23, 6)
    client.send(MessageType.VIDEO, h("27 01 fffff6") + NAL, stream_id, base + 80, 7)


@pytest.mark.parametrize("mode", FEEDS)
def test_media_events(mode: str) -> None:
    client = publishing(mode)
    base = 2**32 - 50  # extended timestamps, and the 32-bit clock wraps between frames
    _media_messages(client, base=base)
    avc, asc = real_configs()
    events = drain(client.server)
    assert events[:3] == [
        Metadata(1, {"width": 64.0}),
        VideoConfig(1, base, 7, avc, 0, records.parse_avc(avc)),
        AudioConfig(1, base, 10, asc, 0, records.AacConfig(2, 44100, 2)),
    ]
    video1, audio, video2 = events[3:]
    assert isinstance(video1, Video) and isinstance(video2, Video) and isinstance(audio, Audio)
    assert (video1.timestamp, video1.keyframe, video1.composition_offset) == (base + 40, True, 40)
    assert bytes(video1.data) == NAL and (video1.frame_type, video1.track) == (1, 0)
    assert (video2.timestamp, video2.keyframe, video2.composition_offset) == (base + 80, False, -10)
    assert video2.frame_type == 2
    assert (audio.timestamp, audio.codec_id, audio.sound_rate, audio.channels) == (
        base + 23,
        10,
        44100,
        2,
    )
    assert bytes(audio.data) == h("2110")
    assert video2.timestamp > 2**32  # unwrapped past 32 bits


def test_other_codecs_pass_through() -> None:
    client = publishing()
    client.send(MessageType.VIDEO, h("22") + b"h263", 1, 10, 7)  # Sorenson H.263 inter frame
    client.send(MessageType.AUDIO, h("2e fffb"), 1, 11, 6)  # MP3, 44.1 kHz, 16 bit, mono
    client.send(MessageType.VIDEO, h("90") + b"hvc1" + h("0102"), 1, 12, 7)  # enhanced start
    client.send(MessageType.VIDEO, h("91") + b"hvc1" + h("000021") + NAL, 1, 13, 7)
    client.send(MessageType.VIDEO, h("17 02 000000"), 1, 14, 7)  # AVC end of sequence
    client.send(MessageType.VIDEO, h("57 01"), 1, 15, 7)  # info frame
    client.send(MessageType.AUDIO, h("af 05 00"), 1, 16, 6)  # unknown AAC packet type
    hvc1 = int.from_bytes(b"hvc1", "big")
    assert drain(client.server) == [
        Video(1, 10, 2, False, 0, b"h263", 2),
        Audio(1, 11, 2, 44100, 16, 1, h("fffb")),
        VideoConfig(1, 12, hvc1, h("0102")),  # too short to read: no record
        Video(1, 13, hvc1, True, 33, NAL, 1),
        SequenceEnd(1, 14, 7, True),
    ]
    assert not client.server.closed


def test_metadata_forms() -> None:
    client = publishing()
    client.send(MessageType.DATA_AMF0, encode_data("onMetaData", {"a": 1.0}), 1, 0, 5)
    client.send(
        MessageType.DATA_AMF3,
        b"\x00" + encode_data("@setDataFrame", "onMetaData", {"b": 2.0}),
        1,
        0,
        5,
    )
    client.send(MessageType.DATA_AMF0, encode_data("onTextData", {"text": "hi"}), 1, 0, 5)
    assert drain(client.server) == [Metadata(1, {"a": 1.0}), Metadata(1, {"b": 2.0})]


def test_media_before_publish_is_ignored_and_counted() -> None:
    client = connected()
    client.command("createStream", 2)
    client.send(MessageType.VIDEO, h("17 01 000000") + NAL, 1, 0, 7)
    client.send(MessageType.AUDIO, h("af 01 2110"), 0, 0, 6)
    client.send(MessageType.DATA_AMF0, encode_data("onMetaData", {"a": 1.0}), 1, 0, 5)
    assert drain(client.server) == []
    assert client.server.ignored_media == 3
    assert not client.server.closed


def test_media_pipelined_behind_publish_waits_in_order() -> None:
    client = connected()
    client.publish("key1234")
    _media_messages(client)
    events = drain(client.server)
    assert isinstance(events[0], PublishRequest)
    assert [type(e) for e in events[1:4]] == [Metadata, VideoConfig, AudioConfig]
    assert client.server.accept_publish(1)


def test_reject_drops_pipelined_media() -> None:
    client = connected()
    client.publish("key1234")
    _media_messages(client)
    request = client.server.next_event()
    assert isinstance(request, PublishRequest)
    client.server.reject_publish(1, "NetStream.Publish.Denied", "Banned")
    assert drain(client.server) == []


def test_empty_media_messages_are_skipped() -> None:
    client = publishing()
    client.send(MessageType.AUDIO, b"", 1, 0, 6)
    client.send(MessageType.VIDEO, b"", 1, 0, 7)
    assert drain(client.server) == [] and not client.server.closed


def test_aggregate_message() -> None:
    client = publishing()

    def tag(kind: int, ts: int, body: bytes) -> bytes:
        head = bytes([kind]) + len(body).to_bytes(3, "big") + (ts & 0xFFFFFF).to_bytes(3, "big")
        return head + bytes([ts >> 24]) + bytes(3) + body + (11 + len(body)).to_bytes(4, "big")

    payload = tag(9, 1000, h("27 01 000000") + NAL) + tag(8, 1020, h("af 01 2110"))
    client.send(MessageType.AGGREGATE, payload, 1, 5000, 7)
    events = drain(client.server)
    assert [(type(e), e.timestamp) for e in events] == [(Video, 5000), (Audio, 5020)]
    client.send(MessageType.AGGREGATE, payload[:-10], 1, 5000, 7)
    assert "aggregate" in violation(client)


# --- ending a publish -----------------------------------------------------------------------


def test_fcunpublish_then_delete_stream_ends_once() -> None:
    client = publishing()
    client.command("FCUnpublish", 5, None, "key1234")
    client.command("deleteStream", 0, None, 1.0)
    assert drain(client.server) == [PublishEnd(1, "FCUnpublish")]
    replies = client.collect()
    assert (1, "status", "NetStream.Unpublish.Success", "Stopped") in statuses(replies)
    assert client.server.stream_state(1) is None
    assert not client.server.closed
    assert client.server.get_timer() is not None  # waiting for a new publish again


@pytest.mark.parametrize("target", [float("inf"), float("nan"), 1.5, -1.0, 1e300])
def test_delete_stream_with_odd_numbers_is_ignored(target: float) -> None:
    client = publishing()
    client.command("deleteStream", 0, None, target)
    assert drain(client.server) == [] and not client.server.closed
    assert client.server.stream_state(1) is StreamState.PUBLISHING


def test_delete_stream_ends_publish() -> None:
    client = publishing()
    client.command("deleteStream", 0, None, 1.0)
    client.command("deleteStream", 0, None, 1.0)
    assert drain(client.server) == [PublishEnd(1, "deleteStream")]


# GStreamer's rtmp2sink stops with FCUnpublish(name) and then deleteStream with no stream id
# and the name instead: null and the name, or the name alone.
GSTREAMER_DELETES = [
    encode_command("deleteStream", 6.0, None, None, "key1234"),
    encode_command("deleteStream", 6.0, None, "key1234"),
]


@pytest.mark.parametrize("mode", FEEDS)
@pytest.mark.parametrize("wire", GSTREAMER_DELETES, ids=["null-and-name", "name"])
def test_gstreamer_stop_is_understood(mode: str, wire: bytes) -> None:
    client = publishing(mode)
    client.send(MessageType.COMMAND_AMF0, encode_command("FCUnpublish", 5.0, None, "key1234"))
    client.send(MessageType.COMMAND_AMF0, wire)
    assert drain(client.server) == [PublishEnd(1, "FCUnpublish")]  # no violation, no warning
    assert client.server.stream_state(1) is None and not client.server.closed


@pytest.mark.parametrize("wire", GSTREAMER_DELETES, ids=["null-and-name", "name"])
def test_delete_stream_by_name_ends_the_publish_of_that_name(wire: bytes) -> None:
    client = publishing()
    client.command("createStream", 3)
    client.command("publish", 0, None, "other", "live", stream_id=2)
    assert drain(client.server) == [PublishRequest(2, "other", "", "live")]
    client.send(MessageType.COMMAND_AMF0, wire)
    assert drain(client.server) == [PublishEnd(1, "deleteStream")]
    assert client.server.stream_state(2) is StreamState.PUBLISH_PENDING  # "other" untouched


@pytest.mark.parametrize("args", [(), (None,), (True,), ({"a": 1.0},)])
def test_delete_stream_naming_nothing_is_a_warning(args: tuple[object, ...]) -> None:
    client = publishing()
    client.command("deleteStream", 6, None, *args)
    assert drain(client.server) == [
        ProtocolWarning("deleteStream without a stream id or name; ignored")
    ]
    assert client.server.stream_state(1) is StreamState.PUBLISHING and not client.server.closed


def test_close_stream_ends_publish_and_allows_a_new_one() -> None:
    client = publishing()
    client.command("closeStream", 0, stream_id=1)
    assert drain(client.server) == [PublishEnd(1, "closeStream")]
    client.command("publish", 0, None, "again", "live", stream_id=1)
    assert drain(client.server) == [PublishRequest(1, "again", "", "live")]


def test_publish_withdrawn_before_the_decision() -> None:
    client = connected()
    client.publish("key1234")
    client.command("deleteStream", 0, None, 1.0)
    assert drain(client.server) == [PublishRequest(1, "key1234", "", "live")]
    assert client.server.accept_publish(1)  # late, but the caller gets its PublishEnd
    assert drain(client.server) == [PublishEnd(1, "unpublished before accept")]
    assert not client.server.accept_publish(1)


def test_close_ends_running_publishes() -> None:
    client = publishing()
    client.server.close()
    client.server.close()
    assert drain(client.server) == [PublishEnd(1, "closed")]
    assert client.server.closed and client.server.get_timer() is None


# --- play and other commands ----------------------------------------------------------------


def test_play_is_reported_and_waits_for_the_callers_answer() -> None:
    client = connected()
    client.command("createStream", 2)
    client.command("play", 0, None, "somebody?token=1", stream_id=1)
    assert drain(client.server) == [PlayRequest(1, "somebody", "token=1")]
    assert client.server.stream_state(1) is StreamState.PLAY_REQUESTED
    assert not client.server.closed and client.server.get_timer() is None  # no publish due


def test_play_refused_says_why_and_closes() -> None:
    client = connected()
    client.command("createStream", 2)
    client.command("play", 0, None, "somebody", stream_id=1)
    drain(client.server)
    assert client.server.reject_play(1, "NetStream.Play.Failed", "Playback is off")
    assert statuses(client.collect()) == [(1, "error", "NetStream.Play.Failed", "Playback is off")]
    assert client.server.closed and not client.server.accept_play(1)


def test_play_accepted_then_media_then_end() -> None:
    client = connected()
    client.command("createStream", 2)
    client.command("play", 0, None, "somebody", stream_id=1)
    drain(client.server)
    assert client.server.accept_play(1) and not client.server.accept_play(1)
    replies = client.collect()
    assert [code for _, _, code, _ in statuses(replies)] == [
        "NetStream.Play.Reset", "NetStream.Play.Start"
    ]  # fmt: skip
    assert any(m.msg_type == MessageType.DATA_AMF0 for m in replies)  # |RtmpSampleAccess
    msg = serialize_message(7, MessageType.VIDEO, 1, 40, b"\x17\x01\x00\x00\x00" + NAL, 4096)
    client.server.send_serialized(msg)
    [video] = [m for m in client.collect() if m.msg_type == MessageType.VIDEO]
    assert (video.timestamp, bytes(video.payload)) == (40, msg.data[12:])
    assert client.server.end_play(1, "the stream ended")
    codes = [code for _, _, code, _ in statuses(client.collect())]
    assert codes == ["NetStream.Play.UnpublishNotify", "NetStream.Play.Stop"]
    assert drain(client.server) == [PlayEnd(1, "the stream ended")] and client.server.closed


def test_play_ends_with_delete_stream_and_with_close() -> None:
    client = connected()
    for stream_id in (1, 2):
        client.command("createStream", 2)
        client.command("play", 0, None, "somebody", stream_id=stream_id)
        drain(client.server)
        assert client.server.accept_play(stream_id)
    client.command("deleteStream", 0, None, 1.0)
    assert drain(client.server) == [PlayEnd(1, "deleteStream")]
    client.server.close()
    assert drain(client.server) == [PlayEnd(2, "closed")]


def test_tapped_stream_hands_out_each_message_as_it_came() -> None:
    client = publishing()
    client.server.tap(1)
    config = h("17 00 000000") + real_configs()[0]
    key = b"\x17\x01\x00\x00\x00" + NAL
    inter = b"\x27\x01\x00\x00\x00" + NAL
    for ts, body in ((0, config), (0, key), (40, inter)):
        client.send(MessageType.VIDEO, body, 1, ts)
    events = drain(client.server)
    raw = [e for e in events if isinstance(e, RawMedia)]
    assert [(bytes(e.payload), e.kind, e.timestamp) for e in raw] == [
        (config, RawKind.HEADER, 0), (key, RawKind.KEYFRAME, 0), (inter, RawKind.FRAME, 40)
    ]  # fmt: skip
    assert isinstance(events[0], VideoConfig) and isinstance(events[2], Video)  # parsed first
    client.server.tap(1, False)
    client.send(MessageType.VIDEO, inter, 1, 80)
    assert not any(isinstance(e, RawMedia) for e in drain(client.server))


def test_unknown_command_gets_error_and_connection_stays() -> None:
    client = connected()
    client.command("getMeSomething", 7, None, "x")
    client.command("_checkbw", 8)
    client.command("onStatus", 0)  # notifications from the peer need no answer
    got = commands(client.collect())
    assert [(c.name, c.transaction_id) for c in got] == [("_error", 7.0), ("_error", 8.0)]
    assert got[0].args[0]["code"] == "NetConnection.Call.Failed"
    client.command("createStream", 9)
    assert commands(client.collect())[0].args == [1.0]


def test_ping_request_is_answered() -> None:
    client = connected()
    client.send(MessageType.USER_CONTROL, ping_request(0xABCDEF01), 0, 0, 2)
    [reply] = client.collect()
    assert (reply.msg_type, bytes(reply.payload)) == (4, h("0007 abcdef01"))


def test_acknowledgements_follow_the_peer_window() -> None:
    client = connected()

    def acks() -> list[bytes]:
        replies = client.collect()
        return [bytes(m.payload) for m in replies if m.msg_type == MessageType.ACKNOWLEDGEMENT]

    def received(offset: int = 0) -> bytes:
        return (client.server.bytes_received - offset).to_bytes(4, "big")

    client.send(MessageType.WINDOW_ACK_SIZE, messages.window_ack_size(1000), 0, 0, 2)
    assert acks() == [received()]  # over 3000 bytes (the handshake) were never acknowledged
    client.send(MessageType.VIDEO, bytes(500), 5, 0, 7)  # ignored media still counts
    assert acks() == []
    client.send(MessageType.VIDEO, bytes(500), 5, 0, 7)
    assert acks() == [received()]
    # The sequence number wraps at 32 bits (simulate 4 GiB already received).
    client.server._bytes_received += 2**32
    client.send(MessageType.VIDEO, bytes(1500), 5, 0, 7)
    assert acks() == [received(2**32)]


# --- violations -------------------------------------------------------------------------------


def violation(client: RawClient) -> str:
    events = drain(client.server)
    assert client.server.closed
    bad = [e for e in events if isinstance(e, ProtocolViolation)]
    assert len(bad) == 1
    return bad[0].reason


@pytest.mark.parametrize("mode", FEEDS)
def test_command_before_connect(mode: str) -> None:
    client = RawClient(ServerSession(), mode)
    client.command("createStream", 1)
    assert "before connect" in violation(client)


def test_second_connect() -> None:
    client = connected()
    client.connect()
    assert "second connect" in violation(client)


def test_connect_without_app() -> None:
    client = RawClient(ServerSession())
    client.command("connect", 1, {"tcUrl": "x"})
    assert "app" in violation(client)


def test_publish_on_a_stream_never_created() -> None:
    client = connected()
    client.command("publish", 0, None, "key", "live", stream_id=3)
    assert "not created" in violation(client)


def test_publish_twice_on_one_stream() -> None:
    client = publishing()
    client.command("publish", 0, None, "key1234", "live", stream_id=1)
    assert "publish" in violation(client)


def test_names_are_bounded() -> None:
    ok = connected()
    ok.publish("k" * 256)
    assert isinstance(drain(ok.server)[0], PublishRequest)
    client = connected()
    client.publish("secret" + "k" * 251)
    reason = violation(client)
    assert "secret" not in reason  # the key never shows up in a reason
    assert statuses(client.collect())[0][2] == "NetStream.Publish.BadName"
    app = RawClient(ServerSession())
    app.connect("a" * 257)
    assert "too long" in violation(app)


def test_unreadable_codec_config_is_passed_on_for_the_packager_to_judge() -> None:
    """The core bounds a codec record's size but does not judge its content: an empty or
    garbage record costs the track it configures (the packager logs and drops it), not the
    publish."""
    client = publishing()
    client.send(MessageType.VIDEO, h("17 00 000000 00 64 00 16"), 1, 0, 7)
    client.send(MessageType.AUDIO, h("af 00"), 1, 0, 6)
    events = drain(client.server)
    assert not client.server.closed
    assert [type(e) for e in events] == [VideoConfig, AudioConfig]
    assert events[0].data == h("00 64 00 16") and events[1].data == b""


def test_oversized_codec_config_is_a_violation() -> None:
    client = publishing()
    client.send(MessageType.VIDEO, h("17 00 000000") + bytes(limits.MAX_CONFIG_SIZE + 1), 1, 0, 7)
    assert "video configuration too large" in violation(client)
    client2 = publishing()
    client2.send(MessageType.AUDIO, h("af 00") + bytes(limits.MAX_CONFIG_SIZE + 1), 1, 0, 6)
    assert "audio configuration too large" in violation(client2)


@pytest.mark.parametrize("mode", FEEDS)
def test_chunk_garbage_is_a_violation_not_an_exception(mode: str) -> None:
    client = connected(mode)
    client.feed(h("47 000000 000001 09 00"))  # fmt 1 on a chunk stream never opened
    assert "starts with" in violation(client)
    client.feed(b"more bytes after close are ignored")
    assert drain(client.server) == []


def test_handshake_garbage_is_a_violation() -> None:
    server = ServerSession()
    server.receive_data(b"\x06" + bytes(1536), 0.0)
    assert server.closed
    [event] = drain(server)
    assert isinstance(event, ProtocolViolation) and "version" in event.reason


def test_violation_ends_running_publishes() -> None:
    client = publishing()
    client.feed(h("47 000000 000001 09 00"))
    events = drain(client.server)
    assert isinstance(events[0], ProtocolViolation)
    assert events[1:] == [PublishEnd(1, "protocol violation")]


# --- timers -----------------------------------------------------------------------------------


def test_handshake_timeout() -> None:
    server = ServerSession(SessionConfig(), now=100.0)
    assert server.get_timer() == 110.0
    server.receive_data(b"\x03", 101.0)  # a byte is not a handshake
    server.handle_timer(109.9)
    assert not server.closed and drain(server) == []
    server.handle_timer(110.0)
    [event] = drain(server)
    assert isinstance(event, TimedOut) and "handshake" in event.reason
    assert server.closed and server.get_timer() is None


def test_connect_to_publish_and_idle_timeouts() -> None:
    server = ServerSession(SessionConfig(), now=0.0)
    client = RawClient(server, now=1.0)  # the handshake completes at t=1
    assert server.get_timer() == 11.0
    client.now = 5.0
    client.connect()
    assert server.get_timer() == 15.0
    client.now = 7.0
    client.publish("key1234")
    assert server.get_timer() is None
    server.accept_publish(1)
    assert server.get_timer() == 37.0
    client.now = 20.0
    client.send(MessageType.AUDIO, h("af 01 2110"), 1, 0, 6)
    assert server.get_timer() == 50.0
    server.handle_timer(49.0)
    assert not server.closed
    server.handle_timer(50.0)
    events = drain(server)
    assert isinstance(events[-2], TimedOut) and "media" in events[-2].reason
    assert events[-1] == PublishEnd(1, "timeout")


def test_no_publish_timeout() -> None:
    client = connected()
    deadline = client.server.get_timer()
    assert deadline is not None
    client.server.handle_timer(deadline)
    [event] = drain(client.server)
    assert isinstance(event, TimedOut) and "publish" in event.reason


def test_transitions_table_is_consistent() -> None:
    from rtmpd.rtmp.states import STREAM_TRANSITIONS

    reachable = {StreamState.IDLE} | set(STREAM_TRANSITIONS.values())
    assert set(StreamState) == reachable
