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


class Bound(StrEnum):
    """What a publish went past when the packager ended it."""

    BREAKS = "breaks"  # timestamp jumps, new sequence headers or tiny size cuts over and over
    STREAM_BYTES = "max_stream_bytes"  # the files of its name
    TOTAL_BYTES = "max_total_bytes"  # the files of every name (and its name held the most)
    SPEED = "max_speed"  # media far ahead of real time


@dataclass(frozen=True, slots=True)
class Violation:
    """Why the packager ended a publish; `description` is for the publisher (the onStatus
    error its software shows) and the log line, so it says what to change."""

    bound: Bound
    description: str


@dataclass(frozen=True, slots=True)
class Keyframe:
    """The latest IDR picture, enough to decode one frame (thumbnails)."""

    avcc: bytes = field(repr=False)
    data: bytes = field(repr=False)  # AVCC-framed NAL units
    timestamp: int = 0


@dataclass(frozen=True, slots=True)
class StreamInfo:
    name: str
    live: bool
    video_codec: str | None  # avc1.PPCCLL
    audio_codec: str | None  # mp4a.40.N
    width: int | None
    height: int | None
    fps: float | None
    sample_rate: int | None
    channels: int | None
    video_kbps: float | None
    audio_kbps: float | None
    keyframe: Keyframe | None

    @property
    def codecs(self) -> str:
        """The CODECS attribute value of a master playlist, e.g. "avc1.42C01E,mp4a.40.2"."""
        return ",".join(c for c in (self.video_codec, self.audio_codec) if c)
