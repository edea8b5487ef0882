"""Protocol control, user control and command payloads; FLV audio/video bodies and codec
configurations (byte vectors both ways, truncation, garbage)."""

from __future__ import annotations

import struct

import pytest

from rtmpd.rtmp import flv, limits, messages
from rtmpd.rtmp.errors import ProtocolError
from rtmpd.rtmp.flv import fourcc
from rtmpd.rtmp.messages import PeerBandwidthLimit
from tests.support.wire import (
    abort,
    parse_set_peer_bandwidth,
    ping_request,
    set_buffer_length,
    stream_eof,
)


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


ONE = struct.pack(">d", 1.0).hex()

# --- protocol control -------------------------------------------------------------------------


def test_protocol_control_builders() -> None:
    assert messages.set_chunk_size(4096) == h("00001000")
    assert abort(4) == h("00000004")
    assert messages.window_ack_size(2_500_000) == h("002625a0")
    assert messages.set_peer_bandwidth(2_500_000, PeerBandwidthLimit.DYNAMIC) == h("002625a0 02")


def test_acknowledgement_wraps_at_32_bits() -> None:
    assert messages.acknowledgement(1234) == h("000004d2")
    assert messages.acknowledgement(2**32 + 5) == h("00000005")


def test_protocol_control_parsers() -> None:
    assert messages.parse_u32(h("002625a0"), "x") == 2_500_000
    assert parse_set_peer_bandwidth(h("002625a0 01")) == (2_500_000, 1)
    with pytest.raises(ProtocolError, match="short Window"):
        messages.parse_u32(h("0026"), "Window Acknowledgement Size")
    with pytest.raises(ProtocolError):
        parse_set_peer_bandwidth(h("002625a0"))


USER_CONTROL = {
    "stream begin": (messages.stream_begin(1), h("0000 00000001"), (0, 1, 0)),
    "stream eof": (stream_eof(1), h("0001 00000001"), (1, 1, 0)),
    "ping request": (ping_request(123), h("0006 0000007b"), (6, 123, 0)),
    "ping response": (messages.ping_response(123), h("0007 0000007b"), (7, 123, 0)),
    "buffer length": (
        set_buffer_length(1, 3000),
        h("0003 00000001 00000bb8"),
        (3, 1, 3000),
    ),
}


@pytest.mark.parametrize("name", sorted(USER_CONTROL))
def test_user_control_both_ways(name: str) -> None:
    built, wire, parsed = USER_CONTROL[name]
    assert built == wire
    uc = messages.parse_user_control(wire)
    assert (uc.event, uc.value, uc.buffer_length) == parsed


def test_user_control_short() -> None:
    for bad in ("00", "0006 0000", "0003 00000001 0000"):
        with pytest.raises(ProtocolError):
            messages.parse_user_control(h(bad))
    # An event we do not act on may be short; it is then just ignored.
    assert messages.parse_user_control(h("001f")).value == 0


# --- commands -----------------------------------------------------------------------------------


def test_encode_command_vector() -> None:
    wire = h("02 0007 5f726573756c74" + "00" + ONE + "05" + "00" + ONE)
    assert messages.encode_command("_result", 1, None, 1.0) == wire
    cmd = messages.parse_command(wire)
    assert cmd == messages.Command("_result", 1.0, None, [1.0])


def test_parse_command_minimal_and_amf3() -> None:
    wire = messages.encode_command("deleteStream", 0, None, 1.0)
    assert messages.parse_command(b"\x00" + wire, amf3=True).args == [1.0]
    short = h("02 0004 74657374" + "00" + ONE)  # no command object at all
    assert messages.parse_command(short) == messages.Command("test", 1.0, None, [])


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        h("02 0004 74657374"),  # no transaction id
        h("00" + ONE + "00" + ONE),  # name is a number
        h("02 0004 74657374 01 01"),  # transaction id is a boolean
    ],
)
def test_parse_command_rejects(payload: bytes) -> None:
    with pytest.raises(ProtocolError):
        messages.parse_command(payload)


def test_command_size_cap() -> None:
    big = messages.encode_command("x", 1, "a" * limits.MAX_COMMAND_SIZE)
    with pytest.raises(ProtocolError, match="too large"):
        messages.parse_command(big)


def test_parse_data() -> None:
    wire = messages.encode_data("@setDataFrame", "onMetaData", {"width": 320.0})
    assert messages.parse_data(wire) == ["@setDataFrame", "onMetaData", {"width": 320.0}]
    assert messages.parse_data(b"\x00" + wire, amf3=True)[2] == {"width": 320.0}


# --- FLV bodies -------------------------------------------------------------------------------

NAL = h("00000005 6588840021")


def test_avc_nalu_with_negative_composition_time() -> None:
    tag = flv.parse_video(h("17 01 fffff6") + NAL)
    assert (tag.frame_type, tag.codec_id, tag.packet_type) == (1, 7, 1)
    assert tag.composition_offset == -10
    assert bytes(tag.data) == NAL
    assert tag.is_frame and not tag.is_config


def test_avc_inter_frame_and_sequence_header_and_end() -> None:
    inter = flv.parse_video(h("27 01 000021") + NAL)
    assert (inter.frame_type, inter.composition_offset) == (2, 33)
    config = flv.parse_video(h("17 00 000000 01640016"))
    assert config.is_config and bytes(config.data) == h("01640016")
    end = flv.parse_video(h("17 02 000000"))
    assert end.is_end and not end.is_config and not end.is_frame


def test_other_video_codecs_pass_through() -> None:
    tag = flv.parse_video(h("22") + b"h263")
    assert (tag.codec_id, tag.packet_type, bytes(tag.data)) == (2, None, b"h263")
    assert tag.is_frame
    info = flv.parse_video(h("57 00"))  # info/command frame: one command byte, not AVC
    assert not info.is_frame and not info.is_config


def test_enhanced_rtmp_headers_are_left_to_exheader() -> None:
    """The legacy parsers refuse enhanced headers (tests/test_exheader.py has those)."""
    for parse, body in ((flv.parse_video, h("91") + b"hvc1"), (flv.parse_audio, h("91") + b"Opus")):
        with pytest.raises(ProtocolError, match="exheader"):
            parse(body)
    assert fourcc(b"hvc1") == 0x68766331


@pytest.mark.parametrize("body", ["", "17", "17 01 00", "91 6876", "91 68766331 00"])
def test_truncated_video(body: str) -> None:
    with pytest.raises(ProtocolError):
        flv.parse_video(h(body))


def test_audio_bodies() -> None:
    raw = flv.parse_audio(h("af 01 2110"))
    assert (raw.sound_format, raw.sound_rate, raw.sound_size, raw.channels) == (10, 44100, 16, 2)
    assert (raw.packet_type, bytes(raw.data)) == (1, h("2110"))
    config = flv.parse_audio(h("af 00 1210"))
    assert (config.packet_type, bytes(config.data)) == (0, h("1210"))
    mp3 = flv.parse_audio(h("2e fffb"))
    assert (mp3.sound_format, mp3.sound_rate, mp3.sound_size, mp3.channels) == (2, 44100, 16, 1)
    assert (mp3.packet_type, bytes(mp3.data)) == (None, h("fffb"))
    for bad in ("", "af"):
        with pytest.raises(ProtocolError):
            flv.parse_audio(h(bad))
