"""Live media playlists (RFC 8216): a sliding window of finished segments and its text.

Pure: no I/O, no clock. `PlaylistWindow` holds the state of one public name for the life of
its playlist (across re-publishes, so the media sequence never resets) and renders it.

Window rule: after a segment is added, the oldest ones leave while what stays still covers
both `playlist_length` and three target durations (RFC 8216 6.2.2). In steady state that is
`playlist_length / fragment` segments plus one partial, like nginx-rtmp's `hls_playlist_length`.
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


def format_duration(duration_ms: int) -> str:
    """EXTINF value: seconds with three decimals (exact, from integer milliseconds)."""
    return f"{duration_ms // 1000}.{duration_ms % 1000:03d}"


def target_duration_for(duration_ms: int) -> int:
    """Whole seconds no shorter than the segment (RFC 8216 4.3.3.1)."""
    return max(1, -(-duration_ms // 1000))


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
    """The playlist text for `segments` (oldest first)."""
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:3",
        f"#EXT-X-TARGETDURATION:{target_duration}",
        f"#EXT-X-MEDIA-SEQUENCE:{media_sequence}",
    ]
    if discontinuity_sequence:
        lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{discontinuity_sequence}")
    for segment in segments:
        if segment.discontinuity:
            lines.append("#EXT-X-DISCONTINUITY")
        if segment.program_date_time is not None:
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{format_date_time(segment.program_date_time)}")
        lines.append(f"#EXTINF:{format_duration(segment.duration_ms)},")
        lines.append(segment.uri)
    if endlist:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


class PlaylistWindow:
    """The segments currently listed for one name, and the counters that must never go back."""

    __slots__ = (
        "playlist_length_ms", "segments", "next_sequence", "target_duration",
        "discontinuity_sequence", "endlist",
    )  # fmt: skip

    def __init__(
        self,
        playlist_length_ms: int,
        first_sequence: int = 0,
        *,
        target_duration: int = 1,
        discontinuity_sequence: int = 0,
    ) -> None:
        self.playlist_length_ms = playlist_length_ms
        self.segments: deque[Segment] = deque()
        self.next_sequence = first_sequence
        self.target_duration = target_duration
        self.discontinuity_sequence = discontinuity_sequence
        self.endlist = False

    @classmethod
    def restore(cls, text: str, playlist_length_ms: int) -> PlaylistWindow:
        """Rebuild the window from a playlist `render` wrote (an earlier run of the server), so
        clients holding it see it go on. ValueError if the text is not such a playlist."""
        lines = text.splitlines()
        if not lines or lines[0] != "#EXTM3U":
            raise ValueError("not an M3U8 playlist")
        numbers = {"MEDIA-SEQUENCE": 0, "TARGETDURATION": 1, "DISCONTINUITY-SEQUENCE": 0}
        segments: list[Segment] = []
        duration: int | None = None
        discontinuity = False
        date_time: float | None = None
        for line in lines[1:]:
            tag, _, value = line.partition(":")
            if tag[7:] in numbers and tag.startswith("#EXT-X-"):
                numbers[tag[7:]] = int(value)
            elif line == "#EXT-X-DISCONTINUITY":
                discontinuity = True
            elif tag == "#EXT-X-PROGRAM-DATE-TIME":
                date_time = datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            elif tag == "#EXTINF":
                duration = round(float(value.split(",", 1)[0]) * 1000)
            elif line and not line.startswith("#"):
                if duration is None or duration <= 0 or "/" in line or "\\" in line:
                    raise ValueError(f"unexpected segment line {line!r}")
                sequence = numbers["MEDIA-SEQUENCE"] + len(segments)
                segments.append(Segment(line, sequence, duration, discontinuity, date_time))
                duration, discontinuity, date_time = None, False, None
        window = cls(
            playlist_length_ms,
            numbers["MEDIA-SEQUENCE"] + len(segments),
            target_duration=max(1, numbers["TARGETDURATION"]),
            discontinuity_sequence=numbers["DISCONTINUITY-SEQUENCE"],
        )
        window.segments.extend(segments)
        return window

    def successor(self) -> PlaylistWindow:
        """An empty window as if every listed segment had left this one: the counters go on,
        so a client still holding the old playlist never sees them go back."""
        return PlaylistWindow(
            self.playlist_length_ms,
            self.next_sequence,
            target_duration=self.target_duration,
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
    ) -> tuple[Segment, list[Segment]]:
        """List a finished segment; returns it and the segments that left the window."""
        if duration_ms <= 0:
            raise ValueError("segment duration must be positive")
        segment = Segment(uri, self.next_sequence, duration_ms, discontinuity, program_date_time)
        self.next_sequence += 1
        self.segments.append(segment)
        self.endlist = False
        self.target_duration = max(self.target_duration, target_duration_for(duration_ms))
        keep_ms = max(self.playlist_length_ms, 3000 * self.target_duration)
        total = self.duration_ms
        removed = []
        while len(self.segments) > 1 and total - self.segments[0].duration_ms >= keep_ms:
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
            target_duration=self.target_duration,
            discontinuity_sequence=self.discontinuity_sequence,
            endlist=self.endlist,
        )
