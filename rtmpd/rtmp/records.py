"""Codec configuration records, as the sequence start of each codec carries them.

The session attaches what it can read of a record to the configuration event, so a consumer
knows the codec's parameters without parsing bytes itself; the record's bytes travel too, and
whether a record is usable stays the packager's call. So a record that does not parse is no
protocol error: `parse_video_record` / `parse_audio_record` return None for it, and for
codecs without a record (AC-3, E-AC-3 and MP3: their frames carry their own sync headers).

- avc1 (and legacy AVC): AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.3.3)
- hvc1: HEVCDecoderConfigurationRecord (ISO/IEC 14496-15 8.3.3)
- av01: AV1CodecConfigurationRecord (AV1 in ISOBMFF, 2.3); MPEG2TSSequenceStart carries the
  AV1 video descriptor instead, which is passed on unread
- vp09 (vp08): VPCodecConfigurationRecord (VP codec ISOBMFF binding); FFmpeg sends it with the
  FullBox version and flags in front (as in its vpcC box), which is recognised and skipped
- Opus: the ID header ("OpusHead", RFC 7845 5.1)
- fLaC: "fLaC" and metadata blocks, STREAMINFO first (the spec's form); FFmpeg sends the bare
  34-byte STREAMINFO, which is taken as it is
- mp4a (and legacy AAC): AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .exheader import AudioFourCC, VideoFourCC

Buffer = bytes | bytearray | memoryview

_AVC_LEGACY = 7
_AAC_LEGACY = 10
_AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025,
              8000, 7350)  # fmt: skip


class RecordError(ValueError):
    """A record that cannot be read (the session turns it into record=None)."""


@dataclass(frozen=True, slots=True)
class AvcRecord:
    profile: int
    level: int
    nal_length_size: int
    sps: tuple[bytes, ...]
    pps: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class HevcRecord:
    profile: int  # general_profile_idc
    tier: int
    level: int  # general_level_idc (30 x the level)
    chroma_format: int
    bit_depth: int
    nal_length_size: int
    vps: tuple[bytes, ...]
    sps: tuple[bytes, ...]
    pps: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Av1Record:
    profile: int
    level: int  # seq_level_idx_0
    tier: int
    bit_depth: int
    monochrome: bool
    chroma_subsampling: tuple[int, int]
    config_obus: bytes


@dataclass(frozen=True, slots=True)
class VpRecord:
    profile: int
    level: int
    bit_depth: int
    chroma_subsampling: int
    full_range: bool
    colour_primaries: int
    transfer_characteristics: int
    matrix_coefficients: int


@dataclass(frozen=True, slots=True)
class OpusHeader:
    channels: int
    pre_skip: int
    input_sample_rate: int
    output_gain: int  # Q7.8 dB, signed
    mapping_family: int
    stream_count: int
    coupled_count: int
    mapping: bytes


@dataclass(frozen=True, slots=True)
class FlacStreamInfo:
    min_block_size: int
    max_block_size: int
    sample_rate: int
    channels: int
    bits_per_sample: int
    total_samples: int
    streaminfo: bytes  # the 34 bytes of the STREAMINFO block (what a dfLa box holds)


@dataclass(frozen=True, slots=True)
class AacConfig:
    object_type: int
    sample_rate: int
    channels: int  # the channel configuration (0: in a program config element)


VideoRecord = AvcRecord | HevcRecord | Av1Record | VpRecord
AudioRecord = OpusHeader | FlacStreamInfo | AacConfig


def _need(data: Buffer, n: int, what: str) -> None:
    if len(data) < n:
        raise RecordError(f"{what}: {len(data)} bytes, at least {n} needed")


def _nal_list(data: Buffer, pos: int, count: int, width: int) -> tuple[tuple[bytes, ...], int]:
    out = []
    for _ in range(count):
        _need(data, pos + width, "parameter set length")
        size = int.from_bytes(bytes(data[pos : pos + width]), "big")
        pos += width
        _need(data, pos + size, "parameter set")
        out.append(bytes(data[pos : pos + size]))
        pos += size
    return tuple(out), pos


def parse_avc(data: Buffer) -> AvcRecord:
    _need(data, 7, "AVCDecoderConfigurationRecord")
    if data[0] != 1:
        raise RecordError(f"AVCDecoderConfigurationRecord version {data[0]}")
    sps, pos = _nal_list(data, 6, data[5] & 0x1F, 2)
    _need(data, pos + 1, "AVCDecoderConfigurationRecord")
    pps, _ = _nal_list(data, pos + 1, data[pos], 2)
    return AvcRecord(data[1], data[3], (data[4] & 3) + 1, sps, pps)


def parse_hevc(data: Buffer) -> HevcRecord:
    _need(data, 23, "HEVCDecoderConfigurationRecord")
    if data[0] != 1:
        raise RecordError(f"HEVCDecoderConfigurationRecord version {data[0]}")
    sets: dict[int, tuple[bytes, ...]] = {}
    pos = 23
    for _ in range(data[22]):
        _need(data, pos + 3, "HEVC NAL unit array")
        kind = data[pos] & 0x3F
        count = (data[pos + 1] << 8) | data[pos + 2]
        units, pos = _nal_list(data, pos + 3, count, 2)
        sets[kind] = sets.get(kind, ()) + units
    return HevcRecord(
        profile=data[1] & 0x1F,
        tier=(data[1] >> 5) & 1,
        level=data[12],
        chroma_format=data[16] & 3,
        bit_depth=(data[17] & 7) + 8,
        nal_length_size=(data[21] & 3) + 1,
        vps=sets.get(32, ()),
        sps=sets.get(33, ()),
        pps=sets.get(34, ()),
    )


def parse_av1(data: Buffer) -> Av1Record:
    _need(data, 4, "AV1CodecConfigurationRecord")
    if data[0] != 0x81:  # marker bit and version 1
        raise RecordError(f"AV1CodecConfigurationRecord starts with {data[0]:#04x}")
    b2 = data[2]
    high, twelve = b2 & 0x40, b2 & 0x20
    return Av1Record(
        profile=data[1] >> 5,
        level=data[1] & 0x1F,
        tier=b2 >> 7,
        bit_depth=(12 if twelve else 10) if high else 8,
        monochrome=bool(b2 & 0x10),
        chroma_subsampling=((b2 >> 3) & 1, (b2 >> 2) & 1),
        config_obus=bytes(data[4:]),
    )


def parse_vp(data: Buffer) -> VpRecord:
    view = memoryview(data)
    if len(view) >= 12 and view[0] == 1 and bytes(view[1:4]) == b"\0\0\0":
        view = view[4:]  # FFmpeg's form: the vpcC FullBox version (1) and flags (0) first
    _need(view, 8, "VPCodecConfigurationRecord")
    b2 = view[2]
    if view[0] > 3 or b2 >> 4 not in (8, 10, 12):
        raise RecordError(f"VPCodecConfigurationRecord profile {view[0]}, {b2 >> 4} bits")
    return VpRecord(view[0], view[1], b2 >> 4, (b2 >> 1) & 7, bool(b2 & 1), view[3], view[4],
                    view[5])  # fmt: skip


def parse_opus(data: Buffer) -> OpusHeader:
    _need(data, 19, "Opus ID header")
    if bytes(data[:8]) != b"OpusHead":
        raise RecordError("Opus ID header without OpusHead")
    if data[8] >> 4:  # RFC 7845: the major version (upper nibble) must be 0
        raise RecordError(f"Opus ID header version {data[8]}")
    channels, family = data[9], data[18]
    streams, coupled, mapping = 1, channels - 1 if channels == 2 else 0, b""
    if family:
        _need(data, 21 + channels, "Opus channel mapping table")
        streams, coupled, mapping = data[19], data[20], bytes(data[21 : 21 + channels])
    return OpusHeader(
        channels=channels,
        pre_skip=data[10] | (data[11] << 8),  # the ID header is little-endian
        input_sample_rate=int.from_bytes(bytes(data[12:16]), "little"),
        output_gain=int.from_bytes(bytes(data[16:18]), "little", signed=True),
        mapping_family=family,
        stream_count=streams,
        coupled_count=coupled,
        mapping=mapping,
    )


def parse_flac(data: Buffer) -> FlacStreamInfo:
    view = memoryview(data)
    if bytes(view[:4]) == b"fLaC":
        _need(view, 8, "FLAC metadata block header")
        if view[4] & 0x7F != 0:
            raise RecordError("the first FLAC metadata block is not STREAMINFO")
        size = int.from_bytes(bytes(view[5:8]), "big")
        if size != 34:
            raise RecordError(f"FLAC STREAMINFO of {size} bytes")
        view = view[8:]
    _need(view, 34, "FLAC STREAMINFO")
    info = bytes(view[:34])
    packed = int.from_bytes(info[10:18], "big")  # rate 20, channels 3, bits 5, samples 36
    rate = packed >> 44
    if rate == 0:
        raise RecordError("FLAC STREAMINFO with a sample rate of 0")
    return FlacStreamInfo(
        min_block_size=int.from_bytes(info[0:2], "big"),
        max_block_size=int.from_bytes(info[2:4], "big"),
        sample_rate=rate,
        channels=((packed >> 41) & 7) + 1,
        bits_per_sample=((packed >> 36) & 0x1F) + 1,
        total_samples=packed & 0xFFFFFFFFF,
        streaminfo=info,
    )


def parse_aac(data: Buffer) -> AacConfig:
    _need(data, 2, "AudioSpecificConfig")
    bits = int.from_bytes(bytes(data[:6]).ljust(6, b"\0"), "big")
    width = 48
    pos = 0

    def take(n: int) -> int:
        nonlocal pos
        pos += n
        if pos > len(data) * 8:
            raise RecordError("AudioSpecificConfig too short")
        return (bits >> (width - pos)) & ((1 << n) - 1)

    kind = take(5)
    if kind == 31:
        kind = 32 + take(6)
    index = take(4)
    rate = take(24) if index == 15 else _AAC_RATES[index] if index < len(_AAC_RATES) else 0
    if rate == 0:
        raise RecordError(f"AudioSpecificConfig sampling frequency index {index}")
    return AacConfig(kind, rate, take(4))


_VIDEO: dict[int, Callable[[Buffer], VideoRecord]] = {
    _AVC_LEGACY: parse_avc,
    VideoFourCC.AVC.value: parse_avc,
    VideoFourCC.HEVC.value: parse_hevc,
    VideoFourCC.AV1.value: parse_av1,
    VideoFourCC.VP9.value: parse_vp,
    VideoFourCC.VP8.value: parse_vp,
}
_AUDIO: dict[int, Callable[[Buffer], AudioRecord]] = {
    _AAC_LEGACY: parse_aac,
    AudioFourCC.AAC.value: parse_aac,
    AudioFourCC.OPUS.value: parse_opus,
    AudioFourCC.FLAC.value: parse_flac,
}


def parse_video_record(codec_id: int, data: Buffer) -> VideoRecord | None:
    """The record of a video sequence start, or None (unknown codec, empty or unreadable)."""
    parse = _VIDEO.get(codec_id)
    if parse is None or not data:
        return None
    try:
        return parse(data)
    except RecordError:
        return None


def parse_audio_record(codec_id: int, data: Buffer) -> AudioRecord | None:
    """The record of an audio sequence start, or None (none for the codec, empty or
    unreadable)."""
    parse = _AUDIO.get(codec_id)
    if parse is None or not data:
        return None
    try:
        return parse(data)
    except RecordError:
        return None
