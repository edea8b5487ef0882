"""Where LL-HLS partial segments start, and their target: pure decisions over (track, DTS).

Rules (draft-pantos-hls-rfc8216bis 4.4.4.9): a part lasts at most PART-TARGET, and at least 85%
of it unless it is INDEPENDENT or the last part of its segment. Parts are cut on the frames of
one track only (video when there is video, else audio; audio also while a rendition's video is
overdue: `stand_in`), so a part holds whole frame intervals:
a part starts at the first such frame at least `part_ms` (less a little jitter) after the
start of the one before, and every segment starts a part. With regular frames every part then
lasts the same whole number of frames. PART-TARGET is decided once, from the first part that
ended for its length: its duration plus a few milliseconds for timestamp jitter, never below
`part_ms`; it then holds for the life of the playlist, like the target duration.
"""

from __future__ import annotations

#: Timestamps come in whole milliseconds: frame intervals jitter by one.
JITTER_MS = 2
#: Kept above the first full part's duration, for that jitter.
TARGET_HEADROOM_MS = 5


def decide_part_target(first_full_part_ms: int, part_ms: int) -> int:
    """PART-TARGET in ms for a playlist whose first part that ended on length lasted this."""
    return max(part_ms, first_full_part_ms + TARGET_HEADROOM_MS)


class PartCutter:
    """Says where parts start. Feed every frame of the driving track (`frame`); segment starts
    are told with `segment_start` (they always start a part)."""

    __slots__ = ("part_ms", "start", "independent")

    def __init__(self, part_ms: int) -> None:
        if part_ms <= 0:
            raise ValueError("part duration must be positive")
        self.part_ms = part_ms
        self.start: int | None = None  # DTS of the open part's first frame
        self.independent = False  # the open part starts with a keyframe

    def segment_start(self, dts: int, keyframe: bool) -> None:
        self.start = dts
        self.independent = keyframe

    def frame(self, dts: int, keyframe: bool) -> bool:
        """True when this frame starts a new part (the open one ends before it)."""
        start = self.start
        if start is None:
            self.start, self.independent = dts, keyframe
            return True
        if dts - start >= self.part_ms - JITTER_MS:
            self.start, self.independent = dts, keyframe
            return True
        return False

    def stand_in(self, dts: int, step: int) -> bool:
        """A frame of the other track while the driving one is overdue (video stalled): True
        when it starts a new part (not an independent one), so that the open part, with one
        more `step` ms frame, would not outgrow `part_ms`."""
        start = self.start
        if start is None or dts + step - start > self.part_ms:
            self.start, self.independent = dts, False
            return True
        return False

    def reset(self) -> None:
        """A publish ended or a new timeline starts: the next frame starts a part."""
        self.start = None
