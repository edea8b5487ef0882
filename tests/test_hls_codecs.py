"""Sequence header parsing: AVCDecoderConfigurationRecord + SPS, AudioSpecificConfig."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from rtmpd.hls.codecs import parse_asc, parse_avcc, parse_sps, unescape

from tests.support.hls import Event, encode_h264, media


def avcc_of(events: Sequence[Event]) -> bytes:
    return bytes(next(e[2] for e in events if e[0] == "video_config"))


def asc_of(events: Sequence[Event]) -> bytes:
    return bytes(next(e[2] for e in events if e[0] == "audio_config"))


def test_avcc_from_a_publisher() -> None:
    config = parse_avcc(avcc_of(media(seconds=1)))
    assert (config.width, config.height) == (320, 240)
    assert config.codec_string == "avc1.42C00D"  # libx264 ultrafast: constrained baseline
    assert config.nal_length_size == 4
    assert len(config.sps) == 1 and len(config.pps) == 1


@pytest.mark.parametrize(
    ("width", "height", "kwargs", "codec"),
    [
        (200, 150, {}, "avc1.64000C"),  # High profile, cropped both ways
        (200, 150, {"profile": "main"}, "avc1.4D400C"),
        (200, 150, {"profile": "high422", "pix_fmt": "yuv422p"}, "avc1.7A000C"),
        (202, 150, {"profile": "high444", "pix_fmt": "yuv444p", "x264_params": "cqm=jvt"},
         "avc1.F4000C"),  # 4:4:4 crop units, scaling matrices in the SPS
        (320, 240, {"x264_params": "cqm=jvt"}, "avc1.64000D"),
        (322, 180, {"x264_params": "interlaced=1"}, "avc1.640015"),  # field coding crop
    ],
)  # fmt: skip
def test_sps_sizes_with_cropping_and_coding_tools(
    width: int, height: int, kwargs: dict[str, Any], codec: str
) -> None:
    config = parse_avcc(avcc_of(encode_h264(width, height, **kwargs)))
    assert (config.width, config.height) == (width, height)
    assert config.codec_string == codec


def test_emulation_prevention_bytes_are_removed() -> None:
    assert unescape(b"\x67\x00\x00\x03\x01\x00\x00\x03\x00") == b"\x67\x00\x00\x01\x00\x00\x00"
    assert unescape(b"\x67\x01\x02") == b"\x67\x01\x02"


GOOD_AVCC = avcc_of(media(seconds=1))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x01\x42",
        b"garbage garbage garbage",
        b"\x02" + GOOD_AVCC[1:],  # version 2
        GOOD_AVCC[:4] + bytes([GOOD_AVCC[4] & 0xFC | 2]) + GOOD_AVCC[5:],  # NAL length size 3
        GOOD_AVCC[:-3],  # PPS cut short
        GOOD_AVCC[:6] + b"\x00\x05" + GOOD_AVCC[8:],  # SPS length points past its bytes
        GOOD_AVCC[:5] + b"\xe0" + GOOD_AVCC[6:],  # no SPS
        GOOD_AVCC[:8] + b"\x68" + GOOD_AVCC[9:],  # "SPS" is a PPS NAL unit
        bytes.fromhex("01016000000090000000000000f000fcfdf8f800000f03"),  # HEVC (hvcC) record
    ],
)
def test_unusable_avcc_is_refused(data: bytes) -> None:
    with pytest.raises(ValueError):
        parse_avcc(data)


def test_an_sps_this_parser_cannot_read_still_muxes_without_a_size() -> None:
    sps = bytes.fromhex("6742c00d")  # header only: the body is missing
    pps = bytes.fromhex("68ce3c80")
    record = bytes([1, 0x42, 0xC0, 0x0D, 0xFF, 0xE1]) + len(sps).to_bytes(2, "big") + sps
    record += b"\x01" + len(pps).to_bytes(2, "big") + pps
    config = parse_avcc(record)
    assert config.width is None and config.height is None
    assert config.codec_string == "avc1.42C00D"
    with pytest.raises(ValueError):
        parse_sps(sps)


def bits(spec: str) -> bytes:
    """Bytes from a string of 0/1 (spaces ignored), zero-padded to whole bytes."""
    spec = spec.replace(" ", "")
    spec += "0" * (-len(spec) % 8)
    return int(spec, 2).to_bytes(len(spec) // 8, "big")


def test_asc_from_a_publisher() -> None:
    config = parse_asc(asc_of(media(seconds=1)))
    assert (config.codec_string, config.sample_rate, config.channels) == ("mp4a.40.2", 44100, 2)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("00010 0011 0001 000", ("mp4a.40.2", 48000, 1)),
        ("00001 0100 0110 000", ("mp4a.40.1", 44100, 6)),  # AAC Main, 5.1
        ("00010 0011 0111 000", ("mp4a.40.2", 48000, 8)),  # channel config 7 is 7.1
        ("00010 0011 0000 000", ("mp4a.40.2", 48000, None)),  # channels in a PCE
        ("00010 1111 000000010111011100000000 0010 000", ("mp4a.40.2", 96000, 2)),
        ("00101 0110 0010 0011 00010", ("mp4a.40.5", 48000, 2)),  # HE-AAC: 24 kHz core, SBR
        ("11101 0110 0010 0011 00010", ("mp4a.40.29", 48000, 2)),  # HE-AACv2
    ],
)
def test_asc_vectors(spec: str, expected: tuple[str, int, int | None]) -> None:
    config = parse_asc(bits(spec))
    assert (config.codec_string, config.sample_rate, config.channels) == expected


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x12",
        bits("00010 1101 0010 000"),  # reserved frequency index 13
        bits("00000 0011 0010 000"),  # object type 0
        bits("11111 000101 0011 0010"),  # escape to object type 37: not ADTS-able
        bits("00010 0011 1000 000"),  # reserved channel configuration
        bits("00101 0110 0010 0011 11111 000000"),  # SBR over object type 32
        bits("00010 1111 000000000000000000000000 0010 000"),  # explicit rate 0
    ],
)
def test_unusable_asc_is_refused(data: bytes) -> None:
    with pytest.raises(ValueError):
        parse_asc(data)
