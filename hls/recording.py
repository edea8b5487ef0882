"""Recordings, the pure part: the `[record]` settings, a recording's folder and files, its
playlist text (appended to while it records, rewritten as a VOD at its end), its JSON sidecar
and which recordings retention removes.

A recording is one broadcast of a public name: from its first segment to the end of the [hls]
grace after its last publish (takeovers and reconnects in between go on in the same
recording). Its folder, `<path>/<name>/<id>/`, holds:

- `00001.ts` ... (or `.m4s`, with `init1.mp4` ... for fMP4 runs): the HLS segments, hard
  links to the files the packager wrote (copies across file systems), numbered by the
  recording, so names never clash;
- `index.m3u8`: while recording an EVENT playlist, one entry appended per segment (the
  journal a SIGKILL leaves); at the end a `EXT-X-PLAYLIST-TYPE:VOD` playlist with ENDLIST;
- `recording.json`: start, end, duration, size, what was lost (written atomically);
- `recording.mp4` (PyAV remux, faststart, no re-encode) and `thumb.jpg`, once made.

Lost media (a segment the disk had no room for, the packager's or ours) is an
EXT-X-DISCONTINUITY before the next segment recorded, not EXT-X-GAP: every player and FFmpeg's
HLS reader know the first, FFmpeg does not know the second.
"""

from __future__ import annotations

import builtins
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any

import msgspec
from msgspec.structs import force_setattr

from .playlist import PlaylistWindow, Segment, rounded_seconds, segment_head, segment_tail

Bytes = Annotated[int, msgspec.Meta(ge=0)]
Days = Annotated[float, msgspec.Meta(ge=0)]

PLAYLIST = "index.m3u8"
SIDECAR = "recording.json"
MP4 = "recording.mp4"
THUMB = "thumb.jpg"
#: A recording's id: its start in UTC, "-<n>" added when a second one started that second.
ID_PATTERN = r"\d{8}-\d{6}(?:-\d{1,4})?"
#: Files of a recording the web serves (the sidecar and temp files are not among them).
FILE_PATTERN = r"(?:index\.m3u8|\d{5,9}\.(?:ts|m4s)|init\d{1,6}\.mp4|recording\.mp4|thumb\.jpg)"
_ID = re.compile(ID_PATTERN)
_OURS = re.compile(rf"{FILE_PATTERN}|recording\.json|\..+\.tmp")
#: Derived max_bytes: this part of what the folder's file system has at start.
DERIVED_SHARE = 0.5
RECORDING, ENDED = "recording", "ended"


class RecordConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`[record]`: keep each broadcast as a VOD (HLS and MP4)."""

    enabled: bool = False
    path: Path = Path("rtmpd-data/recordings")
    #: Recordings older than this many days (from their end) are removed; 0: kept until
    #: max_bytes needs their room.
    keep_days: Days = 0.0
    #: Hard bound on the bytes of all recordings; the oldest go first. 0: derived, half of
    #: what the folder's file system has at start (free space plus recordings already there).
    max_bytes: Bytes = 0

    def __post_init__(self) -> None:
        force_setattr(self, "path", Path(self.path))


@dataclass(frozen=True, slots=True)
class RecordingInfo:
    """What the sidecar says (and the server keeps in memory) about one recording."""

    name: str
    id: str
    started_at: float  # unix seconds of the first segment
    ended_at: float | None = None  # None while recording
    duration_ms: int = 0
    bytes: int = 0  # every file of it on disk (the sidecar counted as 1 KiB)
    segments: int = 0
    discontinuities: int = 0  # EXT-X-DISCONTINUITY tags: new timelines and lost media
    lost: int = 0  # segments lost to the disk (or to max_bytes) while recording
    format: str = "ts"  # "ts" or "fmp4"
    state: str = RECORDING  # RECORDING, then ENDED
    mp4: bool = False  # recording.mp4 is there
    mp4_error: str | None = None  # why it could not be made (not retried)
    thumbnail: bool = False
    stopped: str | None = None  # why it stopped before the broadcast ended (max_bytes)
    node: str = ""  # the worker that holds it ("<node>.w<N>"; "" without workers)

    @property
    def recording(self) -> bool:
        return self.state == RECORDING

    def to_json(self) -> builtins.bytes:
        return msgspec.json.encode({f: getattr(self, f) for f in self.__slots__})

    @classmethod
    def from_json(cls, data: builtins.bytes) -> RecordingInfo:
        """ValueError when `data` is not a sidecar this module wrote."""
        try:
            raw: Any = msgspec.json.decode(data)
            info = cls(**{k: v for k, v in raw.items() if k in cls.__slots__})
        except (msgspec.DecodeError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a recording sidecar: {exc}") from None
        if not _ID.fullmatch(info.id) or not isinstance(info.started_at, float | int):
            raise ValueError("not a recording sidecar: bad id or start")
        return info

    def changed(self, **changes: Any) -> RecordingInfo:
        return replace(self, **changes)


def new_id(started_at: float, taken: Iterable[str]) -> str:
    """The id of a recording starting at `started_at`, unique among `taken`."""
    base = time.strftime("%Y%m%d-%H%M%S", time.gmtime(started_at))
    used = set(taken)
    if base not in used:
        return base
    n = 2
    while f"{base}-{n}" in used:
        n += 1
    return f"{base}-{n}"


def is_id(text: str) -> bool:
    return _ID.fullmatch(text) is not None


def is_ours(file_name: str) -> bool:
    """A file a recording folder holds that this module could have written."""
    return _OURS.fullmatch(file_name) is not None


def segment_file(number: int, ext: str) -> str:
    return f"{number:05d}.{ext}"


def init_file(number: int) -> str:
    return f"init{number}.mp4"


def event_header(target: int, fmp4: bool) -> str:
    """The head of the playlist while recording: an EVENT playlist (entries only added)."""
    return _header(target, 6 if fmp4 else 3, "EVENT")


def entry_text(segment: Segment, new_map: bool) -> str:
    """One segment's lines, appended to the playlist in one write."""
    lines: list[str] = []
    segment_head(lines, segment, new_map)
    segment_tail(lines, segment)
    return "\n".join(lines) + "\n"


def vod_text(segments: Sequence[Segment]) -> str:
    """The finished recording: EXT-X-PLAYLIST-TYPE:VOD, every segment, ENDLIST. The target is
    the longest segment, rounded (RFC 8216 4.3.3.1)."""
    target = max((rounded_seconds(s.duration_ms) for s in segments), default=1) or 1
    fmp4 = any(s.map_uri for s in segments)
    parts = [_header(target, 6 if fmp4 else 3, "VOD")]
    current: str | None = None
    for segment in segments:
        parts.append(entry_text(segment, segment.map_uri != current))
        current = segment.map_uri
    parts.append("#EXT-X-ENDLIST\n")
    return "".join(parts)


def _header(target: int, version: int, kind: str) -> str:
    return (
        f"#EXTM3U\n#EXT-X-VERSION:{version}\n#EXT-X-TARGETDURATION:{target}\n"
        f"#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-PLAYLIST-TYPE:{kind}\n#EXT-X-INDEPENDENT-SEGMENTS\n"
    )


def parse_entries(text: str) -> list[Segment]:
    """The segments of a recording's playlist, EVENT or VOD. What a SIGKILL (or a full disk)
    may have cut off mid-line is dropped: entries are appended one whole line at a time."""
    text = text[: text.rfind("\n") + 1]
    try:
        window = PlaylistWindow.restore(text, 1, 1)
    except ValueError:
        return []
    return list(window.segments)


def expired(
    recordings: Iterable[RecordingInfo], now: float, keep_days: float
) -> list[RecordingInfo]:
    """Finished recordings past keep_days (0: none)."""
    if not keep_days:
        return []
    cutoff = now - keep_days * 86400
    return [r for r in recordings if not r.recording and (r.ended_at or r.started_at) < cutoff]


def to_make_room(
    recordings: Iterable[RecordingInfo], total: int, needed: int, max_bytes: int
) -> list[RecordingInfo] | None:
    """The finished recordings to remove, oldest first, so that `needed` more bytes fit under
    `max_bytes`; None when even removing all of them is not enough."""
    over = total + needed - max_bytes
    if over <= 0:
        return []
    chosen: list[RecordingInfo] = []
    for info in sorted((r for r in recordings if not r.recording), key=lambda r: r.started_at):
        chosen.append(info)
        over -= info.bytes
        if over <= 0:
            return chosen
    return None
