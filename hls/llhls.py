"""The Low-Latency HLS view of one playlist: parts, blocking-reload answers, delta updates.

Pure (no I/O, no clock, no asyncio): the name's state (rtmpd.hls.name_state) tells it about
parts and listed segments, the HTTP layer asks it what to answer. Rules, from
draft-pantos-hls-rfc8216bis:
- EXT-X-SERVER-CONTROL: CAN-BLOCK-RELOAD=YES, PART-HOLD-BACK 3 x PART-TARGET (4.4.3.8: at
  least twice, SHOULD be three times), HOLD-BACK 3 x the target duration, CAN-SKIP-UNTIL 6 x
  the target duration (the least the spec allows).
- EXT-X-PART tags are listed for the segment being made and for the segments that end within
  three target durations of the playlist's end (6.2.2), then dropped; EXT-X-PRELOAD-HINT names
  the next part; INDEPENDENT=YES where a part starts with a keyframe.
- Blocking reload (6.2.5.2): `_HLS_msn=M[&_HLS_part=N]` is answered once the playlist holds
  segment M (or part N of it) or anything later; a request more than two segments past the last
  one, or more than three parts (the Advance Part Limit) past the last part, is a 400; after
  ENDLIST the directives are ignored. `_HLS_skip=YES` (6.2.5.1) replaces the segments older
  than CAN-SKIP-UNTIL with EXT-X-SKIP.
Each version of the text is rendered once, however many clients ask for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .playlist import PlaylistWindow, Segment, format_date_time, segment_head, segment_tail

VERSION = 9  # EXT-X-SKIP needs 9; EXT-X-PART, -PRELOAD-HINT, -SERVER-CONTROL come with it
PART_HOLD_BACK_PARTS = 3
HOLD_BACK_TARGETS = 3
SKIP_UNTIL_TARGETS = 6
PARTS_FOR_TARGETS = 3  # parts are listed for segments ending within this many targets
ADVANCE_PART_LIMIT = 3
ADVANCE_SEGMENT_LIMIT = 2


@dataclass(frozen=True, slots=True)
class Part:
    uri: str
    duration_ms: int
    independent: bool


@dataclass(slots=True)
class OpenSegment:
    """The segment being made: its parts so far and the tags that will precede it."""

    sequence: int
    program_date_time: float
    discontinuity: bool
    map_uri: str | None
    parts: list[Part] = field(default_factory=list)


def seconds(ms: int) -> str:
    """A duration attribute: seconds with five decimals, trailing zeros dropped."""
    text = f"{ms / 1000:.5f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


class LivePlaylist:
    """The LL-HLS state of one playlist and its rendered versions."""

    def __init__(self, window: PlaylistWindow, part_target_ms: int) -> None:
        self.window = window
        self.part_target_ms = part_target_ms
        self.parts: dict[int, tuple[Part, ...]] = {}  # of listed segments, by media sequence
        self.open: OpenSegment | None = None
        self.next_part_uri = ""  # what the preload hint names
        self.ended = False
        self.version = 0  # changes with every change: rendered texts are cached per version
        #: Multitrack: EXT-X-RENDITION-REPORT lines for the other renditions (4.4.5.4).
        self.reports: Callable[[], list[str]] | None = None
        self._rendered: dict[bool, tuple[tuple[int, tuple[str, ...]], bytes]] = {}

    # -- changes ------------------------------------------------------------------------------

    def part(self, part: Part, sequence: int, pdt: float, discontinuity: bool,
             map_uri: str | None, next_uri: str) -> None:  # fmt: skip
        """A part of segment `sequence` is complete (the first one opens the segment)."""
        if self.open is None or self.open.sequence != sequence:
            self.open = OpenSegment(sequence, pdt, discontinuity, map_uri)
        self.open.parts.append(part)
        self.next_part_uri = next_uri
        self.ended = False
        self._changed()

    def listed(self, segment: Segment) -> None:
        """`segment` is now in the window: its parts move from the open segment to it."""
        if self.open is not None and self.open.sequence == segment.sequence:
            self.parts[segment.sequence] = tuple(self.open.parts)
            self.open = None
        oldest = self.window.media_sequence
        for sequence in [s for s in self.parts if s < oldest]:
            del self.parts[sequence]
        self._changed()

    def end(self) -> None:
        """ENDLIST: no open segment, no hint, blocking directives ignored from now on."""
        self.open = None
        self.ended = True
        self._changed()

    def _changed(self) -> None:
        self.version += 1

    # -- what clients may ask ------------------------------------------------------------------

    def target_seconds(self) -> int:
        return self.window.target_duration or 1

    @property
    def last(self) -> tuple[int, int]:
        """(media sequence, part index) of the newest complete part; part -1 when the newest
        segment is complete and nothing of the next exists yet."""
        if self.open is not None and self.open.parts:
            return self.open.sequence, len(self.open.parts) - 1
        segments = self.window.segments
        if not segments:
            return self.window.next_sequence - 1, -1
        last = segments[-1]
        return last.sequence, len(self.parts.get(last.sequence, ())) - 1

    def has(self, msn: int, part: int | None) -> bool:
        """Whether a request for segment `msn` (part `part`) can be answered now."""
        if self.ended:
            return True
        newest_complete = self.window.next_sequence - 1
        if msn <= newest_complete:
            return True
        open_ = self.open
        if part is None or open_ is None or open_.sequence != msn:
            return False
        return part < len(open_.parts)

    def too_far(self, msn: int, part: int | None) -> bool:
        """Past what may block (the 400 of 6.2.5.2)."""
        if self.ended:
            return False
        last_msn, last_part = self.last
        if msn > self.window.next_sequence - 1 + ADVANCE_SEGMENT_LIMIT:
            return True
        if part is None:
            return False
        if msn == last_msn:
            return part > last_part + ADVANCE_PART_LIMIT
        return msn > last_msn and part >= ADVANCE_PART_LIMIT

    def render(self, skip: bool = False) -> bytes:
        reports = tuple(self.reports()) if self.reports is not None and not self.ended else ()
        key = (self.version, reports)
        cached = self._rendered.get(skip)
        if cached is not None and cached[0] == key:
            return cached[1]
        text = self._render(skip, reports).encode()
        self._rendered[skip] = (key, text)
        return text

    # -- rendering ---------------------------------------------------------------------------

    def _render(self, skip: bool, reports: tuple[str, ...] = ()) -> str:
        window = self.window
        target = window.target_duration or 1
        segments = list(window.segments)
        control = (f"#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,"
                   f"CAN-SKIP-UNTIL={SKIP_UNTIL_TARGETS * target},"
                   f"PART-HOLD-BACK={seconds(PART_HOLD_BACK_PARTS * self.part_target_ms)},"
                   f"HOLD-BACK={HOLD_BACK_TARGETS * target}")  # fmt: skip
        lines = [
            "#EXTM3U",
            f"#EXT-X-VERSION:{VERSION}",
            f"#EXT-X-TARGETDURATION:{target}",
            control,
            f"#EXT-X-PART-INF:PART-TARGET={seconds(self.part_target_ms)}",
            f"#EXT-X-MEDIA-SEQUENCE:{window.media_sequence}",
        ]
        if window.discontinuity_sequence:
            lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{window.discontinuity_sequence}")
        skipped = self._skippable(segments) if skip else 0
        if skipped:
            lines.append(f"#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}")
        with_parts = self._with_parts(segments)
        current_map = segments[skipped - 1].map_uri if skipped else None
        for index, segment in enumerate(segments[skipped:], start=skipped):
            segment_head(lines, segment, segment.map_uri != current_map)
            current_map = segment.map_uri
            if index >= with_parts:
                self._part_lines(lines, self.parts.get(segment.sequence, ()))
            segment_tail(lines, segment)
        open_ = self.open
        if open_ is not None and open_.parts and not self.ended:
            if open_.discontinuity:
                lines.append("#EXT-X-DISCONTINUITY")
            if open_.map_uri is not None and open_.map_uri != current_map:
                lines.append(f'#EXT-X-MAP:URI="{open_.map_uri}"')
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{format_date_time(open_.program_date_time)}")
            self._part_lines(lines, open_.parts)
        if self.ended:
            lines.append("#EXT-X-ENDLIST")
        elif self.next_part_uri:
            lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{self.next_part_uri}"')
        lines.extend(reports)
        return "\n".join(lines) + "\n"

    @staticmethod
    def _part_lines(lines: list[str], parts: tuple[Part, ...] | list[Part]) -> None:
        for part in parts:
            extra = ",INDEPENDENT=YES" if part.independent else ""
            lines.append(
                f'#EXT-X-PART:DURATION={seconds(part.duration_ms)},URI="{part.uri}"{extra}'
            )

    def _with_parts(self, segments: list[Segment]) -> int:
        """Index of the first listed segment whose parts are shown: those ending within
        PARTS_FOR_TARGETS target durations of the end."""
        keep = PARTS_FOR_TARGETS * (self.window.target_duration or 1) * 1000
        total = sum(p.duration_ms for p in self.open.parts) if self.open is not None else 0
        index = len(segments)
        while index > 0 and total < keep:
            index -= 1
            total += segments[index].duration_ms
        return index

    def _skippable(self, segments: list[Segment]) -> int:
        """How many of the oldest segments end before CAN-SKIP-UNTIL from the end."""
        until = SKIP_UNTIL_TARGETS * (self.window.target_duration or 1) * 1000
        remaining = sum(s.duration_ms for s in segments)
        if self.open is not None:
            remaining += sum(p.duration_ms for p in self.open.parts)
        count = 0
        for segment in segments:
            remaining -= segment.duration_ms
            if remaining < until:
                break
            count += 1
        return count
