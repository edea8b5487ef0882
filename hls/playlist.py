"""Live media playlists (RFC 8216): a sliding window of finished segments and its text.

Pure: no I/O, no clock. `PlaylistWindow` holds the state of one public name for the life of
its playlist (across re-publishes, so the media sequence never resets) and renders it.

Window rule: after a segment is added, the oldest ones leave while what stays still covers
both `playlist_length` and three target durations (RFC 8216 6.2.2). In steady state that is
`playlist_length / fragment` segments plus one partial, like nginx-rtmp's `hls_playlist_length`.
The window is bounded by count as well (`max_segments`): media time alone let a stream whose
segments last a millisecond list thousands of them (every timestamp 0, a jump every frame).

Target rule: a live playlist may only change by appending, removing from the head, advancing
its sequence numbers and adding ENDLIST (RFC 8216 6.2.1), so EXT-X-TARGETDURATION is decided
once, before the first segment is listed (`decide_target`), and kept for the life of the
playlist; a window that starts a new life of the name (`successor`) decides anew.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Segment:
    uri: str  # relative to the playlist
    sequence: int  # media sequence number
    duration_ms: int
    discontinuity: bool = False  # an EXT-X-DISCONTINUITY tag precedes it
    program_date_time: float | None = None  # unix seconds of its first frame
    map_uri: str | None = None  # fMP4: the init segment it needs (EXT-X-MAP)
    gap: bool = False  # lost (EXT-X-GAP): listed so that the numbering goes on (LL-HLS)


def format_duration(duration_ms: int) -> str:
    """EXTINF value: seconds with three decimals (exact, from integer milliseconds)."""
    return f"{duration_ms // 1000}.{duration_ms % 1000:03d}"


def rounded_seconds(duration_ms: int) -> int:
    """A duration rounded to the nearest whole second, halves up: what RFC 8216 4.3.3.1
    compares with the target ("the EXTINF duration ... when rounded to the nearest integer,
    MUST be less than or equal to the target duration")."""
    return max(1, (duration_ms + 500) // 1000)


def decide_target(first_ms: int, fragment_ms: int) -> int:
    """The target for a playlist whose first segment lasts `first_ms`: the rounded length of
    that segment (which tells the keyframe interval the publisher uses), at least the
    fragment's; the segmenter keeps every later segment under it plus half a second."""
    return max(rounded_seconds(first_ms), rounded_seconds(fragment_ms))


def max_segments(keep_ms: int, fragment_ms: int) -> int:
    """The most segments a window that must cover `keep_ms` lists: twice what whole fragments
    take (cuts wait for a fragment, so honest segments are that long except a few: the end of
    a publish, a discontinuity, a size cut), and four more."""
    return 2 * -(-keep_ms // fragment_ms) + 4


def format_date_time(unix: float) -> str:
    """ISO 8601 with milliseconds in UTC, e.g. 2016-10-22T20:40:23.630Z."""
    total_ms = round(unix * 1000)
    seconds, ms = divmod(total_ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{ms:03d}Z"


def render(
    segments: Iterable[Segment],
    *,
    media_sequence: int,
    target_duration: int,
    discontinuity_sequence: int = 0,
    endlist: bool = False,
) -> str:
    """The playlist text for `segments` (oldest first). EXT-X-VERSION is what the tags used
    need: 3 for MPEG-TS segments, 6 once EXT-X-MAP is there (fMP4), 8 for EXT-X-GAP."""
    segments = list(segments)
    version = 8 if any(s.gap for s in segments) else 6 if any(s.map_uri for s in segments) else 3
    lines = [
        "#EXTM3U",
        f"#EXT-X-VERSION:{version}",
        f"#EXT-X-TARGETDURATION:{target_duration}",
        f"#EXT-X-MEDIA-SEQUENCE:{media_sequence}",
    ]
    if discontinuity_sequence:
        lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{discontinuity_sequence}")
    current_map: str | None = None
    for segment in segments:
        segment_head(lines, segment, segment.map_uri != current_map)
        segment_tail(lines, segment)
        current_map = segment.map_uri
    if endlist:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def segment_head(lines: list[str], segment: Segment, new_map: bool) -> None:
    """The tags that come before a segment's parts: discontinuity, map, date-time."""
    if segment.discontinuity:
        lines.append("#EXT-X-DISCONTINUITY")
    if new_map and segment.map_uri is not None:
        lines.append(f'#EXT-X-MAP:URI="{segment.map_uri}"')
    if segment.program_date_time is not None:
        lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{format_date_time(segment.program_date_time)}")


def segment_tail(lines: list[str], segment: Segment) -> None:
    """What comes after its parts: EXT-X-GAP if it was lost, EXTINF and its URI."""
    if segment.gap:
        lines.append("#EXT-X-GAP")
    lines.append(f"#EXTINF:{format_duration(segment.duration_ms)},")
    lines.append(segment.uri)


class PlaylistWindow:
    """The segments currently listed for one name, and the counters that must never go back."""

    __slots__ = (
        "playlist_length_ms", "fragment_ms", "segments", "next_sequence", "target_duration",
        "discontinuity_sequence", "endlist",
    )  # fmt: skip

    def __init__(
        self,
        playlist_length_ms: int,
        first_sequence: int = 0,
        *,
        fragment_ms: int,
        target_duration: int | None = None,
        discontinuity_sequence: int = 0,
    ) -> None:
        if fragment_ms <= 0:
            raise ValueError("fragment_ms must be positive")
        self.playlist_length_ms = playlist_length_ms
        self.fragment_ms = fragment_ms  # [hls] fragment: what bounds the count
        self.segments: deque[Segment] = deque()
        self.next_sequence = first_sequence
        self.target_duration = target_duration
        self.discontinuity_sequence = discontinuity_sequence
        self.endlist = False

    @classmethod
    def restore(cls, text: str, playlist_length_ms: int, fragment_ms: int) -> PlaylistWindow:
        """Rebuild the window from a playlist `render` wrote (an earlier run of the server), so
        clients holding it see it go on. ValueError if the text is not such a playlist."""
        lines = text.splitlines()
        if not lines or lines[0] != "#EXTM3U":
            raise ValueError("not an M3U8 playlist")
        numbers = {"MEDIA-SEQUENCE": 0, "TARGETDURATION": 0, "DISCONTINUITY-SEQUENCE": 0}
        segments: list[Segment] = []
        duration: int | None = None
        discontinuity = gap = False
        date_time: float | None = None
        map_uri: str | None = None
        for line in lines[1:]:
            tag, _, value = line.partition(":")
            if tag[7:] in numbers and tag.startswith("#EXT-X-"):
                numbers[tag[7:]] = int(value)
            elif line == "#EXT-X-DISCONTINUITY":
                discontinuity = True
            elif line == "#EXT-X-GAP":
                gap = True
            elif tag == "#EXT-X-MAP":
                map_uri = value.removeprefix('URI="').removesuffix('"')
                if not map_uri or "/" in map_uri or "\\" in map_uri:
                    raise ValueError(f"unexpected map line {line!r}")
            elif tag == "#EXT-X-PROGRAM-DATE-TIME":
                date_time = datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            elif tag == "#EXTINF":
                duration = round(float(value.split(",", 1)[0]) * 1000)
            elif line and not line.startswith("#"):
                if duration is None or duration <= 0 or "/" in line or "\\" in line:
                    raise ValueError(f"unexpected segment line {line!r}")
                sequence = numbers["MEDIA-SEQUENCE"] + len(segments)
                segments.append(
                    Segment(line, sequence, duration, discontinuity, date_time, map_uri, gap)
                )
                duration, discontinuity, gap, date_time = None, False, False, None
        window = cls(
            playlist_length_ms,
            numbers["MEDIA-SEQUENCE"] + len(segments),
            fragment_ms=fragment_ms,
            target_duration=numbers["TARGETDURATION"] or None,
            discontinuity_sequence=numbers["DISCONTINUITY-SEQUENCE"],
        )
        window.segments.extend(segments)
        return window

    def successor(self) -> PlaylistWindow:
        """An empty window as if every listed segment had left this one: the counters go on,
        so a client still holding the old playlist never sees them go back; the target is
        decided anew by the next life of the name."""
        return PlaylistWindow(
            self.playlist_length_ms,
            self.next_sequence,
            fragment_ms=self.fragment_ms,
            discontinuity_sequence=self.discontinuity_sequence
            + sum(1 for s in self.segments if s.discontinuity),
        )

    @property
    def media_sequence(self) -> int:
        return self.segments[0].sequence if self.segments else self.next_sequence

    @property
    def duration_ms(self) -> int:
        return sum(s.duration_ms for s in self.segments)

    def add(
        self,
        uri: str,
        duration_ms: int,
        *,
        discontinuity: bool = False,
        program_date_time: float | None = None,
        map_uri: str | None = None,
        gap: bool = False,
    ) -> tuple[Segment, list[Segment]]:
        """List a finished segment; returns it and the segments that left the window, oldest
        first. The target must be decided first."""
        if duration_ms <= 0:
            raise ValueError("segment duration must be positive")
        if self.target_duration is None:
            raise ValueError("decide the target duration before listing a segment")
        segment = Segment(uri, self.next_sequence, duration_ms, discontinuity, program_date_time,
                          map_uri, gap)  # fmt: skip
        self.next_sequence += 1
        self.segments.append(segment)
        self.endlist = False
        keep_ms = max(self.playlist_length_ms, 3000 * self.target_duration)
        total = self.duration_ms
        most = max_segments(keep_ms, self.fragment_ms)
        removed = []
        while len(self.segments) > 1 and (
            total - self.segments[0].duration_ms >= keep_ms or len(self.segments) > most
        ):
            old = self.segments.popleft()
            total -= old.duration_ms
            if old.discontinuity:
                self.discontinuity_sequence += 1
            removed.append(old)
        return segment, removed

    def render(self) -> str:
        return render(
            self.segments,
            media_sequence=self.media_sequence,
            target_duration=self.target_duration or 1,
            discontinuity_sequence=self.discontinuity_sequence,
            endlist=self.endlist,
        )
