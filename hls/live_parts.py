"""The LL-HLS side of one name: its parts in memory, their URIs and its `LivePlaylist`.

A name's state (rtmpd.hls.name_state) hands over every part its publish makes and every segment
it lists; this keeps the bytes of the parts that a playlist version still shows (plus one
segment more, for clients holding an older version), names them, and tells a `LiveListener`
(the HTTP layer's waiting requests, joined by the composition root) what now exists.

Part URIs count up for the life of the name's state and carry a token of when that life
began (`p<life>_<n>.m4s`), so the preload hint can name the next part before anyone knows
which segment it will open, and a URI is never reused for other bytes by a later life (a cache
in front keeps parts as long as segments). PART-TARGET is decided from the first part that
ended for its length (rtmpd.hls.parts); parts made before that wait for it.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from .llhls import PARTS_FOR_TARGETS, LivePlaylist, Part
from .owner import FinishedPart
from .parts import decide_part_target
from .playlist import PlaylistWindow, Segment

_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


class LiveListener(Protocol):
    """Told when a part or a segment exists (rtmpd.web.live.Waiters has this shape)."""

    def ready(self, name: str, msn: int, part: int | None) -> None:
        """Part `part` of segment `msn` (None: the whole segment) now exists."""

    def release(self, name: str) -> None:
        """The name's stream ended or its playlist went: wake everything waiting on it."""


def life_token(now: float) -> str:
    """Base 36 of the wall-clock milliseconds: short, and different for every life."""
    n = round(now * 1000)
    digits = ""
    while n:
        n, d = divmod(n, 36)
        digits = _DIGITS[d] + digits
    return digits or "0"


class NameLive:
    """LL-HLS state of one name. Parts arrive in order with their segment's position."""

    __slots__ = ("name", "playlist", "reports", "_window", "_part_ms", "_listener", "_prefix",
                 "_token", "_count", "_bytes", "_by_segment", "_early")  # fmt: skip

    def __init__(self, name: str, window: PlaylistWindow, part_ms: int, prefix: str,
                 listener: LiveListener | None, now: float | None = None) -> None:  # fmt: skip
        self.name = name
        self.playlist: LivePlaylist | None = None  # once PART-TARGET is decided
        self._window = window
        self._part_ms = part_ms
        self._listener = listener
        self._token = life_token(time.time() if now is None else now)
        self._prefix = f"{prefix}p{self._token}_"
        #: Multitrack: the EXT-X-RENDITION-REPORT lines of the other renditions.
        self.reports: Callable[[], list[str]] | None = None
        self._count = 0
        self._bytes: dict[str, bytes] = {}  # part URI -> bytes, of the parts still kept
        self._by_segment: deque[tuple[int, list[str]]] = deque()  # (msn, its part URIs)
        self._early: list[tuple[Part, int, FinishedPart]] = []  # before PART-TARGET

    # -- from the name's state ---------------------------------------------------------------

    def rename(self, name: str, prefix: str) -> None:
        """A new publish made this name a rendition (or a single stream again): what waiters
        it wakes and what its part URIs start with from now on (URIs stay unique: the count
        goes on)."""
        self.name = name
        self._prefix = f"{prefix}p{self._token}_"

    def part(self, part: FinishedPart) -> None:
        msn = self._window.next_sequence + part.ahead
        uri = self._uri(self._count)
        self._count += 1
        self._bytes[uri] = part.data
        if not self._by_segment or self._by_segment[-1][0] != msn:
            self._by_segment.append((msn, []))
        self._by_segment[-1][1].append(uri)
        entry = Part(uri, part.duration_ms, part.independent)
        if self.playlist is None:
            self._early.append((entry, msn, part))
            if not part.full:
                return
            self._start(decide_part_target(part.duration_ms, self._part_ms))
        else:
            self._add(entry, msn, part)

    def listed(self, segment: Segment) -> None:
        if self.playlist is None and self._early:
            longest = max(p.duration_ms for p, _, _ in self._early)
            self._start(decide_part_target(longest, self._part_ms))
        playlist = self.playlist
        if playlist is None:
            return
        playlist.listed(segment)
        self._trim()
        if self._listener is not None:
            self._listener.ready(self.name, segment.sequence, None)

    def end(self, endlist: bool) -> None:
        """The publish ended: ENDLIST (when the playlist says it) and no hint; waiters wake."""
        self._early.clear()
        if self.playlist is not None:
            if endlist:
                self.playlist.end()
            else:
                self.playlist.open = None
                self.playlist.next_part_uri = ""
        if self._listener is not None:
            self._listener.release(self.name)

    def close(self) -> None:
        """The name's files went: nothing is served from memory any more."""
        self.playlist = None
        self._bytes.clear()
        self._by_segment.clear()
        if self._listener is not None:
            self._listener.release(self.name)

    # -- for the HTTP layer -------------------------------------------------------------------

    def part_bytes(self, uri: str) -> bytes | None:
        return self._bytes.get(uri)

    def hinted(self, uri: str) -> tuple[int, int] | None:
        """(msn, part) the preload hint's part will have, if `uri` is what it names."""
        playlist = self.playlist
        if playlist is None or playlist.ended or uri != playlist.next_part_uri:
            return None
        open_ = playlist.open
        if open_ is not None:
            return open_.sequence, len(open_.parts)
        return self._window.next_sequence, 0

    @property
    def kept_bytes(self) -> int:
        return sum(len(b) for b in self._bytes.values())

    # -- internals ------------------------------------------------------------------------------

    def _uri(self, n: int) -> str:
        return f"{self._prefix}{n}.m4s"

    def _start(self, part_target_ms: int) -> None:
        self.playlist = LivePlaylist(self._window, part_target_ms)
        self.playlist.reports = self.reports
        early, self._early = self._early, []
        for entry, msn, part in early:
            self._add(entry, msn, part)

    def _add(self, entry: Part, msn: int, part: FinishedPart) -> None:
        playlist = self.playlist
        assert playlist is not None
        playlist.part(entry, msn, part.program_date_time, part.discontinuity, part.map_uri,
                      self._uri(self._count))  # fmt: skip
        if self._listener is not None:
            self._listener.ready(self.name, msn, playlist.last[1])

    def _trim(self) -> None:
        """Keep the parts of the segments a playlist version shows (those ending within
        PARTS_FOR_TARGETS targets of its end) and one segment more."""
        window = self._window
        keep_ms = (PARTS_FOR_TARGETS + 1) * (window.target_duration or 1) * 1000
        oldest = window.next_sequence
        total = 0
        for segment in reversed(window.segments):
            oldest = segment.sequence
            total += segment.duration_ms
            if total >= keep_ms:
                break
        by_segment = self._by_segment
        while by_segment and by_segment[0][0] < oldest:
            for uri in by_segment.popleft()[1]:
                self._bytes.pop(uri, None)
