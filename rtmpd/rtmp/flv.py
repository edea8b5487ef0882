"""FLV audio/video tag bodies, which are exactly RTMP audio/video message payloads.

Video: 1 byte (frame type << 4 | codec id); for AVC (7) then an AVC packet type and a signed
24-bit composition time. Audio: 1 byte (format << 4 | rate << 2 | size << 1 | channels); for
AAC (10) then an AAC packet type. Enhanced RTMP's headers (the top bit of a video body's first
byte, sound format 9) are rtmpd.rtmp.exheader's; the parsers here refuse them. Codec
configuration records are only bounded in size here: whether one is usable is the packager's
call, and an unusable one costs the track it configures, not the publish. An RTMP aggregate
message is FLV tags back to back (11-byte tag header, body, 4-byte back pointer);
`aggregate_tags` splits one. `codec_name` names every codec, legacy or enhanced.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum

from .errors import ProtocolError

Buffer = bytes | bytearray | memoryview


class InvalidConfig(ProtocolError):
    """A codec configuration record past the size bound."""


class VideoFrameType(IntEnum):
    KEY = 1
    INTER = 2
    DISPOSABLE_INTER = 3
    GENERATED_KEY = 4
    INFO = 5


class VideoCodec(IntEnum):
    JPEG = 1
    SORENSON_H263 = 2
    SCREEN = 3
    VP6 = 4
    VP6_ALPHA = 5
    SCREEN_V2 = 6
    AVC = 7


class AvcPacketType(IntEnum):
    SEQUENCE_HEADER = 0
    NALU = 1
    END_OF_SEQUENCE = 2


class SoundFormat(IntEnum):
    LINEAR_PCM = 0
    ADPCM = 1
    MP3 = 2
    LINEAR_PCM_LE = 3
    NELLYMOSER_16K = 4
    NELLYMOSER_8K = 5
    NELLYMOSER = 6
    G711_ALAW = 7
    G711_MULAW = 8
    AAC = 10
    SPEEX = 11
    MP3_8K = 14


class AacPacketType(IntEnum):
    SEQUENCE_HEADER = 0
    RAW = 1


SOUND_RATES = (5512, 11025, 22050, 44100)


def fourcc(code: bytes) -> int:
    """The codec id an enhanced-RTMP FourCC is passed through as (b"hvc1" -> int)."""
    return int.from_bytes(code, "big")


@dataclass(frozen=True, slots=True)
class VideoTag:
    """A parsed video body. `packet_type` is the AVC (or enhanced) packet type, None for
    codecs without one; `data` is what follows the header."""

    frame_type: int
    codec_id: int
    packet_type: int | None
    composition_offset: int
    data: Buffer

    @property
    def is_config(self) -> bool:
        return self.packet_type == AvcPacketType.SEQUENCE_HEADER

    @property
    def is_end(self) -> bool:
        return self.packet_type == AvcPacketType.END_OF_SEQUENCE

    @property
    def is_frame(self) -> bool:
        if self.frame_type == VideoFrameType.INFO:
            return False
        return self.packet_type is None or self.packet_type == AvcPacketType.NALU


@dataclass(frozen=True, slots=True)
class AudioTag:
    """A parsed audio body: rate in Hz, sample size in bits, channel count; `packet_type` is
    the AAC packet type (None for other formats); `data` follows the header."""

    sound_format: int
    sound_rate: int
    sound_size: int
    channels: int
    packet_type: int | None
    data: Buffer


def parse_video(body: Buffer) -> VideoTag:
    n = len(body)
    if n < 1:
        raise ProtocolError("empty video message")
    b0 = body[0]
    view = memoryview(body)
    if b0 & EX_VIDEO_BIT:
        raise ProtocolError("enhanced RTMP video header (rtmpd.rtmp.exheader parses it)")
    frame_type = b0 >> 4
    codec = b0 & 0x0F
    # Info/command frames carry one command byte, not a codec packet, whatever the codec.
    if codec != VideoCodec.AVC or frame_type == VideoFrameType.INFO:
        return VideoTag(frame_type, codec, None, 0, view[1:])
    if n < 5:
        raise ProtocolError(f"truncated AVC video header ({n} bytes)")
    return VideoTag(frame_type, codec, body[1], _s24(view, 2), view[5:])


def _s24(view: memoryview, pos: int) -> int:
    value = (view[pos] << 16) | (view[pos + 1] << 8) | view[pos + 2]
    return value - 0x1000000 if value & 0x800000 else value


def parse_audio(body: Buffer) -> AudioTag:
    n = len(body)
    if n < 1:
        raise ProtocolError("empty audio message")
    b0 = body[0]
    view = memoryview(body)
    fmt = b0 >> 4
    rate = SOUND_RATES[(b0 >> 2) & 3]
    size = 16 if b0 & 2 else 8
    channels = 2 if b0 & 1 else 1
    if fmt == EX_AUDIO_FORMAT:
        raise ProtocolError("enhanced RTMP audio header (rtmpd.rtmp.exheader parses it)")
    if fmt != SoundFormat.AAC:
        return AudioTag(fmt, rate, size, channels, None, view[1:])
    if n < 2:
        raise ProtocolError("truncated AAC audio header")
    return AudioTag(fmt, rate, size, channels, body[1], view[2:])


#: The top bit of a video body announces enhanced RTMP's video header.
EX_VIDEO_BIT = 0x80
#: Sound format 9 announces enhanced RTMP's audio header (a packet type and a FourCC).
EX_AUDIO_FORMAT = 9
_LEGACY_VIDEO = {1: "JPEG", 2: "Sorenson H.263", 3: "Screen video", 4: "On2 VP6",
                 5: "On2 VP6 with alpha", 6: "Screen video v2", 7: "H.264", 12: "HEVC"}  # fmt: skip
_LEGACY_AUDIO = {0: "PCM", 1: "ADPCM", 2: "MP3", 3: "PCM", 4: "Nellymoser", 5: "Nellymoser",
                 6: "Nellymoser", 7: "G.711 A-law", 8: "G.711 mu-law", 10: "AAC", 11: "Speex",
                 14: "MP3", 15: "device-specific sound"}  # fmt: skip
_FOURCCS = {b"avc1": "H.264", b"hvc1": "HEVC", b"av01": "AV1", b"vp09": "VP9", b"vp08": "VP8",
            b"vvc1": "VVC", b"Opus": "Opus", b"fLaC": "FLAC", b"ac-3": "AC-3", b"ec-3": "E-AC-3",
            b"mp4a": "AAC", b".mp3": "MP3"}  # fmt: skip


def codec_name(codec_id: int, *, video: bool) -> str:
    """A codec by the name people know it by (for logs and for what a publisher is told):
    enhanced RTMP's FourCCs ("hvc1" is HEVC) and the legacy FLV ids, never a bare number."""
    if codec_id > 0xFFFF:
        code = codec_id.to_bytes(4, "big")
        known = _FOURCCS.get(code)
        if known is not None:
            return known
        shown = code.decode("ascii", "replace")
        return f"FourCC {shown!r}" if shown.isprintable() else f"FourCC {codec_id:#010x}"
    names = _LEGACY_VIDEO if video else _LEGACY_AUDIO
    return names.get(codec_id, f"FLV {'video' if video else 'sound'} format {codec_id}")


def aggregate_tags(payload: Buffer) -> Iterator[tuple[int, int, memoryview]]:
    """(tag type, timestamp relative to the first tag, body) for each tag of an aggregate
    message, lazily: a tag that overruns the message raises after the ones before it."""
    data = memoryview(payload)
    n = len(data)
    pos = 0
    base: int | None = None
    while pos < n:
        if pos + 11 > n:
            raise ProtocolError("truncated aggregate message")
        kind = data[pos] & 0x1F
        size = (data[pos + 1] << 16) | (data[pos + 2] << 8) | data[pos + 3]
        ts = (data[pos + 4] << 16) | (data[pos + 5] << 8) | data[pos + 6] | data[pos + 7] << 24
        end = pos + 11 + size
        if end > n:
            raise ProtocolError("aggregate sub-message overruns the message")
        if base is None:
            base = ts
        yield kind, ts - base, data[pos + 11 : end]
        pos = end + 4
