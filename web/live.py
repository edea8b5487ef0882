"""LL-HLS delivery: blocking playlist reloads and parts from memory.

The playlists and parts come from a `LiveSource` (the composition root adapts rtmpd.hls to it;
web never imports hls). A blocking request (`_HLS_msn`, `_HLS_part`) waits on a future of its
own in `Waiters`, keyed by what it waits for: when a part completes, exactly the requests
waiting for it or anything before it wake (a heap, no polling). The rules it answers by
(draft-pantos-hls-rfc8216bis 6.2.5.2): 400 for `_HLS_part` without `_HLS_msn` or for a request
too far ahead, 503 after blocking three target durations, directives ignored after ENDLIST.

Caching (for a proxy or CDN in front, e.g. nginx `proxy_cache` + `proxy_cache_lock`): a
blocking response answers "the playlist holding at least M.N", true for as long as anyone will
ask that, so it is cacheable for a few target durations and identical requests collapse into
one at the edge, as Apple's LL-HLS guidance asks; a plain reload stays `no-cache`; parts, like
segments, never change under their URI and are cacheable for good.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import re
from collections.abc import Mapping
from typing import Protocol

from aiohttp import web

#: A wait for a whole segment is a wait for a part past every part of it.
WHOLE = 1 << 30
#: Blocking longer than this many target durations is a 503 (6.2.5.2).
BLOCK_TARGETS = 3
#: Blocking playlist responses stay fresh this many target durations in a cache.
CACHE_TARGETS = 3


#: A multitrack rendition's files in the nested layout: its playlist `v<track>.m3u8`, its parts
#: and segments `v<track>-...` (rtmpd.hls.renditions).
_RENDITION = re.compile(r"(v\d{1,3})(?:\.m3u8$|-)")


def live_key(name: str, file: str) -> str:
    """What a request's LL-HLS state is held under: the name, or "<name>/v<track>" for a
    multitrack rendition's playlist or part (blocking reloads wait per rendition)."""
    m = _RENDITION.match(file)
    return name if m is None else f"{name}/{m[1]}"


class LivePlaylistView(Protocol):
    """One name's LL-HLS playlist as the web layer asks about it (rtmpd.hls.llhls.LivePlaylist
    has this shape)."""

    @property
    def ended(self) -> bool: ...

    @property
    def part_target_ms(self) -> int: ...

    def target_seconds(self) -> int: ...

    def has(self, msn: int, part: int | None) -> bool: ...

    def too_far(self, msn: int, part: int | None) -> bool: ...

    def render(self, skip: bool = False) -> bytes: ...


class LiveSource(Protocol):
    """Asked by `live_key`: a name, or "<name>/v<track>" for a multitrack rendition."""

    def playlist(self, name: str) -> LivePlaylistView | None:
        """The LL-HLS playlist of `name`, or None (not LL-HLS, or not there: files instead)."""

    def part(self, name: str, file: str) -> bytes | None:
        """The bytes of part `file` of `name` if it is complete and still kept."""

    def next_part(self, name: str, file: str) -> tuple[int, int] | None:
        """(msn, part) of `file` when it is the part the preload hint names, not made yet."""


class Waiters:
    """Futures of blocked requests per name, ordered by (msn, part) they wait for."""

    def __init__(self) -> None:
        self._heaps: dict[str, list[tuple[tuple[int, int], int, asyncio.Future[None]]]] = {}
        self._count = itertools.count()

    def wait(self, name: str, msn: int, part: int | None) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        key = (msn, WHOLE if part is None else part)
        heapq.heappush(self._heaps.setdefault(name, []), (key, next(self._count), future))
        return future

    def ready(self, name: str, msn: int, part: int | None) -> None:
        """Part `part` of segment `msn` (or the whole segment, with None) now exists."""
        heap = self._heaps.get(name)
        if not heap:
            return
        upto = (msn, WHOLE if part is None else part)
        while heap and heap[0][0] <= upto:
            _, _, future = heapq.heappop(heap)
            if not future.done():
                future.set_result(None)
        if not heap:
            del self._heaps[name]

    def release(self, name: str) -> None:
        """Everything of `name` (it ended, or its playlist went): every waiter wakes."""
        for _, _, future in self._heaps.pop(name, []):
            if not future.done():
                future.set_result(None)

    def waiting(self, name: str) -> int:
        return len(self._heaps.get(name, ()))


def directives(query: Mapping[str, str]) -> tuple[int | None, int | None, bool]:
    """(_HLS_msn, _HLS_part, _HLS_skip=YES) of a playlist request; HTTPBadRequest when they are
    not what 6.2.5.2 allows."""
    msn = _number(query.get("_HLS_msn"))
    part = _number(query.get("_HLS_part"))
    if part is not None and msn is None:
        raise web.HTTPBadRequest(reason="_HLS_part without _HLS_msn")
    skip = query.get("_HLS_skip", "").upper() in ("YES", "V2")
    return msn, part, skip


def _number(text: str | None) -> int | None:
    if text is None:
        return None
    if not text.isdigit() or len(text) > 12:
        raise web.HTTPBadRequest(reason="not a decimal number")
    return int(text)


async def blocking_playlist(
    view: LivePlaylistView, waiters: Waiters, name: str, query: Mapping[str, str],
    source: LiveSource,
) -> tuple[bytes, bool]:  # fmt: skip
    """The playlist to answer with, after blocking as the directives ask; and whether it was a
    blocking request (its answer is cacheable)."""
    msn, part, skip = directives(query)
    if msn is None or view.ended:
        return view.render(skip), False
    if view.too_far(msn, part):
        raise web.HTTPBadRequest(reason="too far ahead of the playlist")
    if not view.has(msn, part):
        timeout = BLOCK_TARGETS * view.target_seconds()
        try:
            async with asyncio.timeout(timeout):
                while not view.has(msn, part):
                    await waiters.wait(name, msn, part)
                    current = source.playlist(name)
                    if current is None:
                        raise web.HTTPNotFound()
                    view = current
        except TimeoutError:
            raise web.HTTPServiceUnavailable(reason="blocked too long") from None
    return view.render(skip), True


async def next_part(source: LiveSource, waiters: Waiters, name: str, file: str) -> bytes | None:
    """The bytes of a part, waiting for it when it is the hinted next one; None when there is
    no such part (or it never came: the stream ended)."""
    data = source.part(name, file)
    if data is not None:
        return data
    hinted = source.next_part(name, file)
    view = source.playlist(name)
    if hinted is None or view is None:
        return None
    try:
        async with asyncio.timeout(BLOCK_TARGETS * view.target_seconds()):
            while (data := source.part(name, file)) is None:
                if source.next_part(name, file) is None:
                    return None  # not the next part any more and not made: it never will be
                await waiters.wait(name, *hinted)
    except TimeoutError:
        raise web.HTTPServiceUnavailable(reason="part not ready") from None
    return data


def cache_control(blocking: bool, target_seconds: int) -> str:
    if blocking:
        return f"public, max-age={CACHE_TARGETS * target_seconds}"
    return "no-cache"
