"""What a publish's packager and the name it goes out under tell each other: the
`PackagerOwner` protocol (after gohlslib's muxerSegmenterParent), the segment and part a
packager hands over once finished, and the `OpenSegment` it keeps until then.

Apart from the packager (rtmpd.hls.packager) so that the owner's side (rtmpd.hls.name_state,
rtmpd.hls.live_parts, rtmpd.hls.recorder) depends on these few types, not on how a publish is
cut and muxed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .muxer import SegmentOutput
from .renditions import Renditions


@dataclass(frozen=True, slots=True)
class FinishedSegment:
    """A segment complete on disk under its final name, as its owner is told about it."""

    path: Path
    duration_ms: int
    size: int  # bytes
    discontinuity: bool  # a new timeline starts here, or the segment before it was lost
    program_date_time: float  # unix seconds of its first frame
    closed_at: float  # wall seconds when the packet that closed it arrived
    opened_at: float  # wall seconds when its first packet arrived
    map_uri: str | None = None  # fMP4: its init segment (EXT-X-MAP)
    gap: bool = False  # fMP4: lost (a disk error), listed as EXT-X-GAP so numbering goes on


@dataclass(frozen=True, slots=True)
class FinishedPart:
    """An LL-HLS part complete in memory, as its owner is told about it."""

    data: bytes
    duration_ms: int
    independent: bool  # starts with a keyframe
    full: bool  # ended for its length (the others end their segment)
    ahead: int  # segments opened before its own and not listed yet (its msn is that far on)
    program_date_time: float  # of its segment
    discontinuity: bool  # its segment starts a new timeline
    map_uri: str | None  # its segment's init segment


class PackagerOwner(Protocol):
    """What a publish needs from the name it goes out under: a path for each new segment, to
    be told what is finished, and the playlist's target duration once it is decided. Listing,
    the playlist window and cleanup stay with the owner, which outlives the publish."""

    def segment_path(self, timestamp: int, program_date_time: float, ext: str = "ts") -> Path:
        """Where the segment starting at `timestamp` (stream ms) goes; nothing is there yet."""

    def init_written(self, path: Path, data: bytes) -> str:
        """Write the init segment of an fMP4 run at `path`; returns its URI (EXT-X-MAP)."""

    def segment_finished(self, segment: FinishedSegment) -> None:
        """List `segment`, complete on disk."""

    def part_finished(self, part: FinishedPart) -> None:
        """An LL-HLS part of the segment being made is complete (only with low_latency)."""

    def publish_finished(self, publish: object, ended: bool) -> None:
        """The packager `publish` stopped (`ended`) or was taken over; its last segment is
        already listed. (The owner only tells whether it is its open publish.)"""

    def make_room(self) -> None:
        """A write of this publish took the HLS folder past max_total_bytes: make room, which
        may stop this publish or another."""

    def open_renditions(self) -> Renditions | None:
        """The other video tracks of the owner's open publish (multitrack), or None where
        renditions cannot be written (logged by the owner)."""

    @property
    def lists_fmp4(self) -> bool:
        """The playlist lists an fMP4 segment (one with an init segment)."""

    @property
    def target_duration(self) -> int | None:
        """EXT-X-TARGETDURATION in seconds once decided (it then never changes), else None."""


class OpenSegment:
    """A segment from its first packet until its output is listed."""

    __slots__ = (
        "serial", "path", "output", "start", "pdt", "new_timeline", "duration_ms", "closed_at",
        "opened_at", "vbytes", "abytes", "vframes", "vfirst", "vlast", "map_uri", "parts", "gap",
    )  # fmt: skip

    def __init__(
        self,
        serial: int,
        path: Path,
        output: SegmentOutput,
        start: int,
        pdt: float,
        new: bool,
        opened_at: float,
    ) -> None:
        self.serial = serial
        self.path = path
        self.output = output
        self.start = start
        self.pdt = pdt
        self.new_timeline = new  # else it continues the one before (unless that one was lost)
        self.duration_ms = 0  # set when it is cut
        self.closed_at = 0.0
        self.opened_at = opened_at
        self.vbytes = 0
        self.abytes = 0
        self.vframes = 0
        self.vfirst = -1
        self.vlast = -1
        self.map_uri: str | None = None  # fMP4: the run's init segment
        self.parts = 0  # LL-HLS parts told to the owner
        self.gap = False  # a rendition's segment with no media (EXT-X-GAP): no output
