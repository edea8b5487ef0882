"""A strict checker for the live media playlists rtmpd writes (RFC 8216 plus house rules).

`validate(text)` parses one playlist and checks it on its own; `PlaylistHistory.check(text)`
also checks it against the previous version of the same playlist (media sequence monotone,
a target duration that never changes, segments keep their sequence numbers, the window rule).
Both raise `PlaylistError` with the rule that failed. Any test that makes playlists can use it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime

_EXTINF = re.compile(r"#EXTINF:(\d+\.\d{3}),")
_PDT = re.compile(r"#EXT-X-PROGRAM-DATE-TIME:(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)")
_INT_TAGS = {
    "#EXT-X-VERSION": "version",
    "#EXT-X-TARGETDURATION": "target_duration",
    "#EXT-X-MEDIA-SEQUENCE": "media_sequence",
    "#EXT-X-DISCONTINUITY-SEQUENCE": "discontinuity_sequence",
}


class PlaylistError(AssertionError):
    """The playlist breaks a rule."""


@dataclass(frozen=True)
class PlaylistSegment:
    uri: str
    duration: float
    sequence: int
    discontinuity: bool
    program_date_time: datetime | None


@dataclass
class MediaPlaylist:
    version: int = 0
    target_duration: int = 0
    media_sequence: int = 0
    discontinuity_sequence: int = 0
    has_discontinuity_sequence: bool = False
    endlist: bool = False
    segments: list[PlaylistSegment] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return sum(s.duration for s in self.segments)

    @property
    def uris(self) -> list[str]:
        return [s.uri for s in self.segments]


def _fail(rule: str, text: str) -> PlaylistError:
    return PlaylistError(f"{rule}\n--- playlist ---\n{text}")


def parse(text: str) -> MediaPlaylist:
    """Parse a media playlist, enforcing the syntax rtmpd writes."""
    if not text.endswith("\n"):
        raise _fail("playlist must end with a newline", text)
    lines = text[:-1].split("\n")
    if lines[0] != "#EXTM3U":
        raise _fail("first line must be #EXTM3U", text)
    playlist = MediaPlaylist()
    seen: set[str] = set()
    pending_duration: float | None = None
    pending_disc = False
    pending_pdt: datetime | None = None
    for line in lines[1:]:
        if not line or line != line.strip():
            raise _fail(f"blank line or stray whitespace: {line!r}", text)
        if playlist.endlist:
            raise _fail("nothing may follow #EXT-X-ENDLIST", text)
        tag = line.split(":", 1)[0]
        if tag in _INT_TAGS:
            if playlist.segments or pending_duration is not None or pending_disc:
                raise _fail(f"{tag} must come before the first segment", text)
            if tag in seen:
                raise _fail(f"{tag} appears twice", text)
            seen.add(tag)
            value = line.split(":", 1)[1] if ":" in line else ""
            if not value.isdigit():
                raise _fail(f"{tag} needs a decimal integer: {line!r}", text)
            setattr(playlist, _INT_TAGS[tag], int(value))
        elif line.startswith("#EXTINF:"):
            match = _EXTINF.fullmatch(line)
            if match is None:
                raise _fail(f"EXTINF needs 3 decimals and a trailing comma: {line!r}", text)
            if pending_duration is not None:
                raise _fail("two EXTINF tags for one segment", text)
            pending_duration = float(match.group(1))
        elif line == "#EXT-X-DISCONTINUITY":
            if pending_duration is not None or pending_disc:
                raise _fail("DISCONTINUITY must precede the segment's other tags once", text)
            pending_disc = True
        elif line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
            match = _PDT.fullmatch(line)
            if match is None:
                raise _fail(f"PROGRAM-DATE-TIME must be ISO 8601 with ms and Z: {line!r}", text)
            pending_pdt = datetime.fromisoformat(match.group(1).replace("Z", "+00:00"))
        elif line == "#EXT-X-ENDLIST":
            if pending_duration is not None or pending_disc:
                raise _fail("ENDLIST inside a segment's tags", text)
            playlist.endlist = True
        elif line.startswith("#"):
            raise _fail(f"unexpected tag {line!r}", text)
        else:
            if pending_duration is None:
                raise _fail(f"segment URI without EXTINF: {line!r}", text)
            if "://" in line or line.startswith("/") or ".." in line or "\\" in line:
                raise _fail(f"segment URI must be a plain relative file name: {line!r}", text)
            sequence = playlist.media_sequence + len(playlist.segments)
            segment = PlaylistSegment(line, pending_duration, sequence, pending_disc, pending_pdt)
            playlist.segments.append(segment)
            pending_duration, pending_disc, pending_pdt = None, False, None
    if pending_duration is not None or pending_disc or pending_pdt is not None:
        raise _fail("tags after the last segment URI", text)
    for tag in ("#EXT-X-VERSION", "#EXT-X-TARGETDURATION", "#EXT-X-MEDIA-SEQUENCE"):
        if tag not in seen:
            raise _fail(f"{tag} is missing", text)
    playlist.has_discontinuity_sequence = "#EXT-X-DISCONTINUITY-SEQUENCE" in seen
    return playlist


def validate(
    text: str, *, playlist_length: float | None = None, pdt_tolerance: float = 0.002
) -> MediaPlaylist:
    """Parse and check one playlist on its own. With `playlist_length`, also check the window
    is no longer than needed: dropping its oldest segment would leave less than
    max(playlist_length, 3 x target duration)."""
    playlist = parse(text)
    if playlist.version != 3:
        raise _fail("EXT-X-VERSION must be 3", text)
    if not playlist.segments:
        raise _fail("a written playlist lists at least one segment", text)
    longest = max(s.duration for s in playlist.segments)
    if playlist.target_duration < math.floor(round(longest, 3) + 0.5):
        raise _fail("an EXTINF rounded to the nearest integer exceeds TARGETDURATION", text)
    if any(s.duration <= 0 for s in playlist.segments):
        raise _fail("EXTINF must be positive", text)
    if len(set(playlist.uris)) != len(playlist.uris):
        raise _fail("a segment URI appears twice", text)
    if playlist.has_discontinuity_sequence and playlist.discontinuity_sequence == 0:
        raise _fail("DISCONTINUITY-SEQUENCE is written only once one left the window", text)
    previous: PlaylistSegment | None = None
    for segment in playlist.segments:
        if segment.program_date_time is None:
            raise _fail("every segment carries PROGRAM-DATE-TIME", text)
        if previous is not None and not segment.discontinuity:
            assert previous.program_date_time is not None
            gap = (segment.program_date_time - previous.program_date_time).total_seconds()
            if abs(gap - previous.duration) > pdt_tolerance:
                raise _fail(f"PROGRAM-DATE-TIME of {segment.uri} is not contiguous", text)
        previous = segment
    if playlist_length is not None and len(playlist.segments) > 1:
        keep = max(playlist_length, 3 * playlist.target_duration)
        if playlist.duration - playlist.segments[0].duration >= keep - 1e-6:
            raise _fail(f"window longer than needed for {keep} s", text)
    return playlist


class PlaylistHistory:
    """Successive versions of one playlist; `check` each new version as it is written."""

    def __init__(self, *, playlist_length: float | None = None) -> None:
        self.playlist_length = playlist_length
        self.versions: list[MediaPlaylist] = []
        self.seen: dict[int, PlaylistSegment] = {}  # every segment ever listed, by sequence

    @property
    def last(self) -> MediaPlaylist:
        return self.versions[-1]

    def check(self, text: str) -> MediaPlaylist:
        new = validate(text, playlist_length=self.playlist_length)
        if self.versions:
            self._compare(self.last, new, text)
        for segment in new.segments:
            old = self.seen.setdefault(segment.sequence, segment)
            if (old.uri, old.duration, old.discontinuity) != (
                segment.uri,
                segment.duration,
                segment.discontinuity,
            ):
                raise _fail(f"media sequence {segment.sequence} changed meaning", text)
        self.versions.append(new)
        return new

    def _compare(self, old: MediaPlaylist, new: MediaPlaylist, text: str) -> None:
        if new.media_sequence < old.media_sequence:
            raise _fail("MEDIA-SEQUENCE went backwards", text)
        if new.target_duration != old.target_duration:
            raise _fail("TARGETDURATION changed (RFC 8216 6.2.1)", text)
        if new.discontinuity_sequence < old.discontinuity_sequence:
            raise _fail("DISCONTINUITY-SEQUENCE went backwards", text)
        removed = [s for s in old.segments if s.sequence < new.media_sequence]
        if len(removed) != new.media_sequence - old.media_sequence:
            raise _fail("MEDIA-SEQUENCE skipped segments that were never listed", text)
        left = sum(1 for s in removed if s.discontinuity)
        if new.discontinuity_sequence != old.discontinuity_sequence + left:
            raise _fail("DISCONTINUITY-SEQUENCE does not count the tags that left", text)
        if removed and not new.endlist and new.duration < 3 * new.target_duration - 1e-6:
            raise _fail("segments removed below three target durations (RFC 8216 6.2.2)", text)
        last_old = old.media_sequence + len(old.segments)
        if new.media_sequence + len(new.segments) < last_old:
            raise _fail("segments disappeared from the end of the playlist", text)
