"""The values the HLS package exchanges with its callers: configuration, segment events and
stream info. Plain data, no behaviour beyond validation."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

NAMINGS = ("system", "sequential", "timestamp")


@dataclass(slots=True)
class HlsConfig:
    """HLS output settings; times in seconds. Names follow nginx-rtmp's hls_* directives:
    `naming` is hls_fragment_naming ("system": wall-clock ms of the segment start,
    "sequential": media sequence number, "timestamp": stream ms); `grace` is how long a
    finished stream's files stay before they are removed."""

    path: Path
    fragment: float = 5.0
    playlist_length: float = 30.0
    naming: str = "system"
    nested: bool = True
    cleanup: bool = True
    endlist: bool = True
    max_fragment: float | None = None  # None: 10 x fragment
    max_segment_bytes: int = 64 * 1024 * 1024
    grace: float | None = None  # None: 2 x playlist_length

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if not self.fragment > 0:
            raise ValueError("hls fragment must be positive")
        if self.playlist_length < self.fragment:
            raise ValueError("hls playlist_length must be at least one fragment")
        if self.naming not in NAMINGS:
            raise ValueError(f"hls naming must be one of {', '.join(NAMINGS)}")
        if self.max_fragment is not None and self.max_fragment < self.fragment:
            raise ValueError("hls max_fragment must be at least fragment")
        if self.max_segment_bytes <= 0:
            raise ValueError("hls max_segment_bytes must be positive")
        if self.grace is not None and self.grace < 0:
            raise ValueError("hls grace must not be negative")

    @property
    def effective_max_fragment(self) -> float:
        return self.max_fragment if self.max_fragment is not None else 10 * self.fragment

    @property
    def effective_grace(self) -> float:
        return self.grace if self.grace is not None else 2 * self.playlist_length


@dataclass(frozen=True, slots=True)
class SegmentWritten:
    name: str
    sequence: int
    duration: float  # seconds
    size: int  # bytes
    lag: float  # wall seconds from the arrival of the closing packet to the playlist listing it


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
