"""A strict checker for the live media playlists rtmpd writes (RFC 8216, its 2nd edition's
LL-HLS rules, plus house rules).

`validate(text)` parses one playlist and checks it on its own; `PlaylistHistory.check(text)`
also checks it against the previous version of the same playlist (media sequence monotone, a
target duration and a part target that never change, segments and parts keep their sequence
numbers, URIs and durations, the window rule). Both raise `PlaylistError` with the rule that
failed. Any test that makes playlists can use it.

LL-HLS rules (draft-pantos-hls-rfc8216bis): EXT-X-PART-INF with PART-TARGET whenever parts are
listed; every part at most PART-TARGET, and at least 85% of it unless INDEPENDENT or the last
of its segment; a complete segment lasts what its parts add up to; parts listed for the
segments ending within three target durations of the end and for none older; PART-HOLD-BACK at
least three part targets, HOLD-BACK three targets, CAN-SKIP-UNTIL six; one PRELOAD-HINT for a
part not listed yet, none after ENDLIST; EXT-X-SKIP only where asked for, and only over segments
older than CAN-SKIP-UNTIL; EXT-X-VERSION as the tags used need (3; 6 with EXT-X-MAP; 8 with
EXT-X-GAP; 9 with parts or EXT-X-SKIP).

Multitrack renditions: EXT-X-RENDITION-REPORT (URI, LAST-MSN, optional LAST-PART) only at the
end of an LL-HLS media playlist, after the preload hint, never after ENDLIST;
`parse_multivariant(text)` checks a multivariant playlist (every EXT-X-STREAM-INF with an
integer BANDWIDTH and followed by its URI; RESOLUTION as WxH, FRAME-RATE with 3 decimals).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime

_EXTINF = re.compile(r"#EXTINF:(\d+\.\d{3}),")
_PDT = re.compile(r"#EXT-X-PROGRAM-DATE-TIME:(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)")
_ATTR = re.compile(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)')
_INT_TAGS = {
    "#EXT-X-VERSION": "version",
    "#EXT-X-TARGETDURATION": "target_duration",
    "#EXT-X-MEDIA-SEQUENCE": "media_sequence",
    "#EXT-X-DISCONTINUITY-SEQUENCE": "discontinuity_sequence",
}


class PlaylistError(AssertionError):
    """The playlist breaks a rule."""


@dataclass(frozen=True)
class PlaylistPart:
    uri: str
    duration: float
    independent: bool


@dataclass(frozen=True)
class PlaylistSegment:
    uri: str
    duration: float
    sequence: int
    discontinuity: bool
    program_date_time: datetime | None
    map_uri: str | None = None
    gap: bool = False
    parts: tuple[PlaylistPart, ...] = ()


@dataclass
class MediaPlaylist:
    version: int = 0
    target_duration: int = 0
    media_sequence: int = 0
    discontinuity_sequence: int = 0
    has_discontinuity_sequence: bool = False
    endlist: bool = False
    segments: list[PlaylistSegment] = field(default_factory=list)
    part_target: float | None = None
    server_control: dict[str, str] = field(default_factory=dict)
    open_parts: list[PlaylistPart] = field(default_factory=list)  # of the segment being made
    preload_hint: str | None = None
    skipped: int = 0
    reports: list[dict[str, str]] = field(default_factory=list)  # EXT-X-RENDITION-REPORT

    @property
    def duration(self) -> float:
        return sum(s.duration for s in self.segments)

    @property
    def uris(self) -> list[str]:
        return [s.uri for s in self.segments]

    @property
    def low_latency(self) -> bool:
        return self.part_target is not None

    @property
    def first_sequence(self) -> int:
        """Of the first segment listed in full (after the skipped ones)."""
        return self.media_sequence + self.skipped


def _fail(rule: str, text: str) -> PlaylistError:
    return PlaylistError(f"{rule}\n--- playlist ---\n{text}")


def attributes(value: str) -> dict[str, str]:
    return {k: v.strip('"') for k, v in _ATTR.findall(value)}


def parse(text: str) -> MediaPlaylist:
    """Parse a media playlist, enforcing the syntax rtmpd writes."""
    if not text.endswith("\n"):
        raise _fail("playlist must end with a newline", text)
    lines = text[:-1].split("\n")
    if lines[0] != "#EXTM3U":
        raise _fail("first line must be #EXTM3U", text)
    playlist = MediaPlaylist()
    seen: set[str] = set()
    duration: float | None = None
    disc = gap = False
    pdt: datetime | None = None
    map_uri: str | None = None
    parts: list[PlaylistPart] = []
    for line in lines[1:]:
        if not line or line != line.strip():
            raise _fail(f"blank line or stray whitespace: {line!r}", text)
        if line.startswith("#EXT-X-RENDITION-REPORT:"):
            attrs = attributes(line.partition(":")[2])
            if playlist.endlist or playlist.part_target is None:
                raise _fail("rendition reports are for live LL-HLS playlists", text)
            if not attrs.get("URI") or not attrs.get("LAST-MSN", "").isdigit():
                raise _fail(f"a rendition report needs URI and LAST-MSN: {line!r}", text)
            if not attrs.get("LAST-PART", "0").isdigit():
                raise _fail(f"LAST-PART must be a decimal integer: {line!r}", text)
            playlist.reports.append(attrs)
            continue
        if playlist.reports:
            raise _fail("rendition reports come last", text)
        if playlist.endlist:
            raise _fail("nothing may follow #EXT-X-ENDLIST", text)
        if playlist.preload_hint is not None:
            raise _fail("nothing may follow the preload hint", text)
        tag, _, value = line.partition(":")
        started = duration is not None or disc or parts or pdt is not None
        if tag in _INT_TAGS:
            if playlist.segments or started:
                raise _fail(f"{tag} must come before the first segment", text)
            if tag in seen:
                raise _fail(f"{tag} appears twice", text)
            seen.add(tag)
            if not value.isdigit():
                raise _fail(f"{tag} needs a decimal integer: {line!r}", text)
            setattr(playlist, _INT_TAGS[tag], int(value))
        elif tag in ("#EXT-X-PART-INF", "#EXT-X-SERVER-CONTROL", "#EXT-X-SKIP"):
            if playlist.segments or started or tag in seen:
                raise _fail(f"{tag} must come once, before the first segment", text)
            seen.add(tag)
            attrs = attributes(value)
            if tag == "#EXT-X-PART-INF":
                playlist.part_target = float(attrs["PART-TARGET"])
            elif tag == "#EXT-X-SERVER-CONTROL":
                playlist.server_control = attrs
            else:
                playlist.skipped = int(attrs["SKIPPED-SEGMENTS"])
        elif line.startswith("#EXTINF:"):
            match = _EXTINF.fullmatch(line)
            if match is None:
                raise _fail(f"EXTINF needs 3 decimals and a trailing comma: {line!r}", text)
            if duration is not None:
                raise _fail("two EXTINF tags for one segment", text)
            duration = float(match.group(1))
        elif line == "#EXT-X-DISCONTINUITY":
            if duration is not None or disc or parts or pdt is not None:
                raise _fail("DISCONTINUITY must precede the segment's other tags once", text)
            disc = True
        elif line == "#EXT-X-GAP":
            gap = True
        elif tag == "#EXT-X-MAP":
            if duration is not None or parts:
                raise _fail("EXT-X-MAP must precede the segment it applies to", text)
            map_uri = attributes(value)["URI"]
        elif tag == "#EXT-X-PROGRAM-DATE-TIME":
            match = _PDT.fullmatch(line)
            if match is None:
                raise _fail(f"PROGRAM-DATE-TIME must be ISO 8601 with ms and Z: {line!r}", text)
            pdt = datetime.fromisoformat(match.group(1).replace("Z", "+00:00"))
        elif tag == "#EXT-X-PART":
            attrs = attributes(value)
            if duration is not None:
                raise _fail("a part after its segment's EXTINF", text)
            parts.append(PlaylistPart(attrs["URI"], float(attrs["DURATION"]),
                                      attrs.get("INDEPENDENT") == "YES"))  # fmt: skip
        elif tag == "#EXT-X-PRELOAD-HINT":
            attrs = attributes(value)
            if attrs.get("TYPE") != "PART":
                raise _fail("rtmpd hints parts only", text)
            playlist.preload_hint = attrs["URI"]
        elif line == "#EXT-X-ENDLIST":
            if duration is not None or disc or parts:
                raise _fail("ENDLIST inside a segment's tags", text)
            playlist.endlist = True
        elif line.startswith("#"):
            raise _fail(f"unexpected tag {line!r}", text)
        else:
            if duration is None:
                raise _fail(f"segment URI without EXTINF: {line!r}", text)
            if "://" in line or line.startswith("/") or ".." in line or "\\" in line:
                raise _fail(f"segment URI must be a plain relative file name: {line!r}", text)
            sequence = playlist.first_sequence + len(playlist.segments)
            playlist.segments.append(
                PlaylistSegment(line, duration, sequence, disc, pdt, map_uri, gap, tuple(parts))
            )
            duration, disc, gap, pdt, parts = None, False, False, None, []
    if duration is not None or gap or (disc and not parts):
        raise _fail("tags after the last segment URI", text)
    if parts:
        playlist.open_parts = parts
    elif pdt is not None:
        raise _fail("PROGRAM-DATE-TIME without a segment or parts after it", text)
    for tag in ("#EXT-X-VERSION", "#EXT-X-TARGETDURATION", "#EXT-X-MEDIA-SEQUENCE"):
        if tag not in seen:
            raise _fail(f"{tag} is missing", text)
    playlist.has_discontinuity_sequence = "#EXT-X-DISCONTINUITY-SEQUENCE" in seen
    return playlist


def _needed_version(p: MediaPlaylist) -> int:
    if p.low_latency or p.skipped:
        return 9
    if any(s.gap for s in p.segments):
        return 8
    if any(s.map_uri for s in p.segments):
        return 6
    return 3


def validate(
    text: str,
    *,
    playlist_length: float | None = None,
    pdt_tolerance: float = 0.002,
    skip_requested: bool = False,
) -> MediaPlaylist:
    """Parse and check one playlist on its own. With `playlist_length`, also check the window
    is no longer than needed: dropping its oldest segment would leave less than
    max(playlist_length, 3 x target duration)."""
    playlist = parse(text)
    if playlist.version != _needed_version(playlist):
        raise _fail(f"EXT-X-VERSION must be {_needed_version(playlist)}", text)
    if not playlist.segments and not playlist.open_parts:
        raise _fail("a written playlist lists at least one segment or part", text)
    if playlist.segments:
        longest = max(s.duration for s in playlist.segments)
        if playlist.target_duration < math.floor(round(longest, 3) + 0.5):
            raise _fail("an EXTINF rounded to the nearest integer exceeds TARGETDURATION", text)
    if any(s.duration <= 0 for s in playlist.segments):
        raise _fail("EXTINF must be positive", text)
    if len(set(playlist.uris)) != len(playlist.uris):
        raise _fail("a segment URI appears twice", text)
    if playlist.has_discontinuity_sequence and playlist.discontinuity_sequence == 0:
        raise _fail("DISCONTINUITY-SEQUENCE is written only once one left the window", text)
    if any(s.map_uri is not None for s in playlist.segments) and not (
        playlist.skipped or playlist.segments[0].map_uri
    ):
        raise _fail("fMP4 segments need EXT-X-MAP from the first one", text)
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
    if playlist_length is not None and len(playlist.segments) > 1 and not playlist.skipped:
        keep = max(playlist_length, 3 * playlist.target_duration)
        if playlist.duration - playlist.segments[0].duration >= keep - 1e-6:
            raise _fail(f"window longer than needed for {keep} s", text)
    if playlist.skipped and not skip_requested:
        raise _fail("EXT-X-SKIP in an answer that did not ask for a delta update", text)
    _check_low_latency(playlist, text)
    return playlist


def _check_low_latency(p: MediaPlaylist, text: str) -> None:
    has_parts = bool(p.open_parts) or any(s.parts for s in p.segments)
    if not p.low_latency:
        if has_parts or p.preload_hint or p.server_control:
            raise _fail("parts, hints or server control without EXT-X-PART-INF", text)
        return
    target, part_target = p.target_duration, p.part_target
    assert part_target is not None
    control = p.server_control
    if control.get("CAN-BLOCK-RELOAD") != "YES":
        raise _fail("LL-HLS needs CAN-BLOCK-RELOAD=YES", text)
    if float(control.get("PART-HOLD-BACK", 0)) < 3 * part_target - 1e-9:
        raise _fail("PART-HOLD-BACK below three part targets", text)
    if float(control.get("HOLD-BACK", 3 * target)) < 3 * target:
        raise _fail("HOLD-BACK below three target durations", text)
    if float(control.get("CAN-SKIP-UNTIL", 0)) < 6 * target:
        raise _fail("CAN-SKIP-UNTIL below six target durations", text)
    groups = [(list(s.parts), s.duration) for s in p.segments if s.parts]
    if p.open_parts:
        groups.append((p.open_parts, None))
    for parts, extinf in groups:
        for i, part in enumerate(parts):
            if part.duration > part_target + 1e-6:
                raise _fail(f"part {part.uri} longer than PART-TARGET", text)
            last = i == len(parts) - 1 and extinf is not None
            if part.duration < 0.85 * part_target - 1e-6 and not (part.independent or last):
                raise _fail(f"part {part.uri} shorter than 85% of PART-TARGET", text)
        if extinf is not None and abs(sum(q.duration for q in parts) - extinf) > 0.002 * len(parts):
            raise _fail("a segment's parts do not add up to its EXTINF", text)
    # Parts for the segments ending within three target durations of the end, none older.
    tail = sum(q.duration for q in p.open_parts)
    for segment in reversed(p.segments):
        if tail < 3 * target - 1e-6 and not segment.parts and not segment.gap:
            raise _fail(f"{segment.uri} is within three targets of the end without parts", text)
        if tail >= 3 * target + 1e-6 and segment.parts:
            raise _fail(f"{segment.uri} lists parts older than three targets", text)
        tail += segment.duration
    uris = [q.uri for s in p.segments for q in s.parts] + [q.uri for q in p.open_parts]
    if len(set(uris)) != len(uris):
        raise _fail("a part URI appears twice", text)
    if p.endlist:
        if p.preload_hint is not None or p.open_parts:
            raise _fail("nothing is hinted or open after ENDLIST", text)
    elif p.preload_hint is None or p.preload_hint in uris:
        raise _fail("a live LL-HLS playlist hints the next part, one not listed yet", text)
    if p.skipped:
        # What is still listed starts where the skipped segments end: at least CAN-SKIP-UNTIL
        # before the end of the playlist.
        until = float(control["CAN-SKIP-UNTIL"])
        if p.duration + sum(q.duration for q in p.open_parts) < until - 1e-6:
            raise _fail("EXT-X-SKIP over segments newer than CAN-SKIP-UNTIL", text)


class PlaylistHistory:
    """Successive versions of one playlist; `check` each new version as it is written."""

    def __init__(self, *, playlist_length: float | None = None) -> None:
        self.playlist_length = playlist_length
        self.versions: list[MediaPlaylist] = []
        self.seen: dict[int, PlaylistSegment] = {}  # every segment ever listed, by sequence
        self.parts: dict[tuple[int, int], PlaylistPart] = {}  # every part, by (msn, index)

    @property
    def last(self) -> MediaPlaylist:
        return self.versions[-1]

    def check(self, text: str, *, skip_requested: bool = False) -> MediaPlaylist:
        new = validate(text, playlist_length=self.playlist_length, skip_requested=skip_requested)
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
            self._parts(segment.sequence, segment.parts, text)
        if new.open_parts:
            self._parts(new.first_sequence + len(new.segments), new.open_parts, text)
        self.versions.append(new)
        return new

    def _parts(self, msn: int, parts: tuple[PlaylistPart, ...] | list[PlaylistPart],
               text: str) -> None:  # fmt: skip
        for i, part in enumerate(parts):
            old = self.parts.setdefault((msn, i), part)
            if old != part:
                raise _fail(f"part {i} of segment {msn} changed meaning", text)

    def _compare(self, old: MediaPlaylist, new: MediaPlaylist, text: str) -> None:
        if new.media_sequence < old.media_sequence:
            raise _fail("MEDIA-SEQUENCE went backwards", text)
        if new.target_duration != old.target_duration:
            raise _fail("TARGETDURATION changed (RFC 8216 6.2.1)", text)
        if old.part_target is not None and new.part_target != old.part_target:
            raise _fail("PART-TARGET changed", text)
        if new.discontinuity_sequence < old.discontinuity_sequence:
            raise _fail("DISCONTINUITY-SEQUENCE went backwards", text)
        if new.skipped or old.skipped:
            return  # a delta update: the head is not there to compare
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


_RESOLUTION = re.compile(r"\d+x\d+")
_FRAME_RATE = re.compile(r"\d+\.\d{3}")


def parse_multivariant(text: str) -> list[dict[str, str]]:
    """The EXT-X-STREAM-INF attributes of a multivariant playlist, each with its "URI"."""
    if not text.endswith("\n"):
        raise _fail("playlist must end with a newline", text)
    lines = text[:-1].split("\n")
    if lines[0] != "#EXTM3U":
        raise _fail("first line must be #EXTM3U", text)
    variants: list[dict[str, str]] = []
    pending: dict[str, str] | None = None
    for line in lines[1:]:
        tag, _, value = line.partition(":")
        if tag == "#EXT-X-STREAM-INF":
            if pending is not None:
                raise _fail("EXT-X-STREAM-INF without a URI", text)
            pending = attributes(value)
            if not pending.get("BANDWIDTH", "").isdigit():
                raise _fail(f"BANDWIDTH must be a decimal integer: {line!r}", text)
            average = pending.get("AVERAGE-BANDWIDTH")
            if average is not None and not average.isdigit():
                raise _fail(f"AVERAGE-BANDWIDTH must be a decimal integer: {line!r}", text)
            if "RESOLUTION" in pending and not _RESOLUTION.fullmatch(pending["RESOLUTION"]):
                raise _fail(f"RESOLUTION must be WxH: {line!r}", text)
            if "FRAME-RATE" in pending and not _FRAME_RATE.fullmatch(pending["FRAME-RATE"]):
                raise _fail(f"FRAME-RATE needs 3 decimals: {line!r}", text)
        elif tag in ("#EXT-X-VERSION", "#EXT-X-INDEPENDENT-SEGMENTS"):
            if variants or pending is not None:
                raise _fail(f"{tag} must come before the variants", text)
        elif line.startswith("#") or not line:
            raise _fail(f"unexpected line {line!r}", text)
        else:
            if pending is None:
                raise _fail(f"a URI without EXT-X-STREAM-INF: {line!r}", text)
            if "/" in line or ".." in line:
                raise _fail(f"variant URI must be a plain relative file name: {line!r}", text)
            pending["URI"] = line
            variants.append(pending)
            pending = None
    if pending is not None or not variants:
        raise _fail("no variant, or a last EXT-X-STREAM-INF without a URI", text)
    return variants
