"""The values the HLS package exchanges with its callers: segment events and stream info.
Plain data, no behaviour."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


@dataclass(frozen=True, slots=True)
class SegmentWritten:
    name: str
    sequence: int
    duration: float  # seconds
    size: int  # bytes
    lag: float  # wall seconds from the arrival of the closing packet to the playlist listing it


class Codec(StrEnum):
    """The codecs the packager takes, as the composition root names them (from the FLV codec
    ids and enhanced RTMP FourCCs, which this package never sees)."""

    H264 = "h264"
    HEVC = "hevc"
    AV1 = "av1"
    VP9 = "vp9"
    AAC = "aac"
    MP3 = "mp3"
    OPUS = "opus"
    FLAC = "flac"
    AC3 = "ac3"
    EAC3 = "eac3"


#: What MPEG-TS segments carry (HLS's MPEG-TS rules: ISO/IEC 13818-1 stream types 0x1B, 0x24,
#: 0x0F, 0x03/0x04, 0x81, 0x87); every codec goes into fMP4.
TS_CODECS = frozenset((Codec.H264, Codec.HEVC, Codec.AAC, Codec.MP3, Codec.AC3, Codec.EAC3))
#: Their names for people (logs, the streamer's error, the API).
CODEC_NAMES = {
    Codec.H264: "H.264", Codec.HEVC: "HEVC", Codec.AV1: "AV1", Codec.VP9: "VP9",
    Codec.AAC: "AAC", Codec.MP3: "MP3", Codec.OPUS: "Opus", Codec.FLAC: "FLAC",
    Codec.AC3: "AC-3", Codec.EAC3: "E-AC-3",
}  # fmt: skip


class Bound(StrEnum):
    """What a publish went past when the packager ended it."""

    BREAKS = "breaks"  # timestamp jumps, new sequence headers or tiny size cuts over and over
    STREAM_BYTES = "max_stream_bytes"  # the files of its name
    TOTAL_BYTES = "max_total_bytes"  # the files of every name (and its name held the most)
    SPEED = "max_speed"  # media far ahead of real time
    FORMAT = "format"  # a track the configured segment format cannot carry (format = "ts")


@dataclass(frozen=True, slots=True)
class Violation:
    """Why the packager ended a publish; `description` is for the publisher (the onStatus
    error its software shows) and the log line, so it says what to change."""

    bound: Bound
    description: str


@dataclass(frozen=True, slots=True)
class Keyframe:
    """The latest IDR picture, enough to decode one frame (thumbnails)."""

    avcc: bytes = field(repr=False)  # the decoder's extradata: avcC, hvcC, av1C (VP9: unused)
    data: bytes = field(repr=False)  # the frame as RTMP brought it
    timestamp: int = 0
    decoder: str = "h264"  # FFmpeg's decoder for it


@dataclass(frozen=True, slots=True)
class StreamInfo:
    name: str
    live: bool
    video_codec: str | None  # RFC 6381: avc1.PPCCLL, hvc1/hev1..., av01..., vp09...
    audio_codec: str | None  # mp4a.40.N, opus, fLaC, ac-3, ec-3
    width: int | None
    height: int | None
    fps: float | None
    sample_rate: int | None
    channels: int | None
    video_kbps: float | None
    audio_kbps: float | None
    keyframe: Keyframe | None
    video_name: str | None = None  # for people: "H.264", "HEVC", "AV1", "VP9"
    audio_name: str | None = None  # "AAC", "HE-AAC", "MP3", "Opus", "FLAC", "AC-3", "E-AC-3"
    fmp4: bool = False  # its segments are fMP4 (else MPEG-TS)
    track: int = 0  # the video track it is of (multitrack)
    #: Multitrack: the other video tracks' renditions (track 0's are the fields above).
    renditions: tuple[StreamInfo, ...] = ()

    @property
    def codecs(self) -> str:
        """The CODECS attribute value of a master playlist, e.g. "avc1.42C01E,mp4a.40.2"."""
        return ",".join(c for c in (self.video_codec, self.audio_codec) if c)
