"""HLS output settings: the `[hls]` section of the configuration file, loaded straight into
this object (rtmpd.config) and checked once, here.

Names follow nginx-rtmp's hls_* directives. Zero means "derived" for `max_fragment` (ten
fragments, as nginx-rtmp), `grace` (two playlist lengths), `max_stream_bytes` (what
GENEROUS_BITRATE makes in the time a stream's files stay) and `max_total_bytes` (most of the
space the folder has, found at start: rtmpd.hls.quota), so the file and the code share one
sentinel.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import msgspec
from msgspec.structs import force_setattr

Seconds = Annotated[float, msgspec.Meta(ge=0)]
Bytes = Annotated[int, msgspec.Meta(ge=0)]
#: Bits per second the derived max_stream_bytes is made for: generous (4K at 60 fps is 35 to 51
#: Mb/s in YouTube's recommendations; most streams are under 10).
GENEROUS_BITRATE = 50_000_000


class Naming(StrEnum):
    """hls_fragment_naming: what a segment file is named after."""

    SYSTEM = "system"  # wall-clock ms of the segment start
    SEQUENTIAL = "sequential"  # media sequence number
    TIMESTAMP = "timestamp"  # stream ms


class Format(StrEnum):
    """What segments are made of."""

    TS = "ts"  # MPEG-TS, as the seed's recipe serves it
    FMP4 = "fmp4"  # fragmented MP4 (CMAF): needed for LL-HLS and for the newer codecs
    AUTO = "auto"  # MPEG-TS where every track of the stream fits it, fMP4 otherwise


class HlsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Where and how HLS is written; times in seconds."""

    path: Path = Path("rtmpd-data/hls")
    fragment: Seconds = 5.0
    playlist_length: Seconds = 30.0
    naming: Naming = Naming.SYSTEM
    nested: bool = True
    cleanup: bool = True
    endlist: bool = True
    max_fragment: Seconds = 0.0
    max_segment_bytes: Bytes = 64 * 1024 * 1024
    grace: Seconds = 0.0
    format: Format = Format.AUTO
    low_latency: bool = False  # LL-HLS (parts, blocking reloads); implies fMP4
    part_duration: Seconds = 0.2
    max_stream_bytes: Bytes = 0
    max_total_bytes: Bytes = 0
    max_speed: float = 2.0
    speed_burst: Seconds = 30.0
    max_renditions: int = 4  # multitrack video: renditions per publish, track 0 included

    def __post_init__(self) -> None:
        # Constructed in code (tests) the fields are not type-checked: normalise them here.
        force_setattr(self, "path", Path(self.path))
        for key, kind in (("naming", Naming), ("format", Format)):
            value = getattr(self, key)
            try:
                force_setattr(self, key, kind(value))
            except ValueError:
                choices = ", ".join(n.value for n in kind)
                raise ValueError(f"{key}: {value!r} is not one of {choices}") from None
        if not self.fragment > 0:
            raise ValueError("fragment: must be greater than 0")
        if self.playlist_length < self.fragment:
            raise ValueError("playlist_length: must be at least one fragment")
        if self.max_fragment and self.max_fragment < self.fragment:
            raise ValueError("max_fragment: must be at least [hls] fragment")
        if self.max_segment_bytes <= 0:
            raise ValueError("max_segment_bytes: must be greater than 0")
        if self.grace < 0:
            raise ValueError("grace: must not be negative")
        if not 0.05 <= self.part_duration <= self.fragment / 2:
            raise ValueError("part_duration: must be from 0.05 s to half of [hls] fragment")
        if self.max_stream_bytes and self.max_stream_bytes < self.max_segment_bytes:
            raise ValueError("max_stream_bytes: must be at least max_segment_bytes")
        if not self.max_speed >= 1:
            raise ValueError("max_speed: must be at least 1 (real time)")
        if self.speed_burst < 0:
            raise ValueError("speed_burst: must not be negative")
        if not 1 <= self.max_renditions <= 16:
            raise ValueError("max_renditions: must be from 1 to 16")

    @property
    def fmp4_only(self) -> bool:
        """fMP4 whatever the tracks: asked for, or needed by LL-HLS."""
        return self.low_latency or self.format is Format.FMP4

    @property
    def effective_max_fragment(self) -> float:
        return self.max_fragment or 10 * self.fragment

    @property
    def effective_grace(self) -> float:
        return self.grace or 2 * self.playlist_length

    @property
    def held_seconds(self) -> float:
        """Media a real-time stream's files cover at most, with room to spare: three windows
        (the window listed, the one waiting for cleanup, RFC 8216 6.2.2, and the segment
        being written), a window being the playlist length or three fragments."""
        return 3 * max(self.playlist_length, 3 * self.fragment)

    @property
    def effective_max_stream_bytes(self) -> int:
        return self.max_stream_bytes or round(GENEROUS_BITRATE / 8 * self.held_seconds)
