"""Channel thumbnails: JPEGs kept in memory, remade at most every 10 s, decoded off the loop.

`ThumbnailCache` wraps the directory's `thumbnail(name)`, which takes a snapshot on the event
loop and hands back a slow render function, so requests are answered from memory: a fresh
entry is returned as is, a stale one is returned while a single background refresh runs the
render in a worker thread, and only a channel's very first thumbnail is awaited.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

MAX_AGE = 10.0


@dataclass(slots=True)
class _Entry:
    jpeg: bytes | None
    made: float


class ThumbnailCache:
    def __init__(
        self,
        source: Callable[[str], Callable[[], bytes | None] | None],
        *,
        max_age: float = MAX_AGE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self.max_age = max_age
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._pending: dict[str, asyncio.Task[bytes | None]] = {}

    async def get(self, name: str) -> bytes | None:
        """The thumbnail of a live channel; call it only for names known to be live."""
        now = self._clock()
        self._forget_old(now)
        entry = self._entries.get(name)
        if entry is not None and now - entry.made < self.max_age:
            return entry.jpeg
        task = self._pending.get(name)
        if task is None:
            task = asyncio.create_task(self._refresh(name))
            self._pending[name] = task
            task.add_done_callback(lambda _: self._pending.pop(name, None))
        if entry is not None and entry.jpeg is not None:
            return entry.jpeg
        return await asyncio.shield(task)

    async def _refresh(self, name: str) -> bytes | None:
        loop = asyncio.get_running_loop()
        try:
            render = self._source(name)  # on the loop: the snapshot of the live state
            jpeg = None if render is None else await loop.run_in_executor(None, render)
        except Exception:
            log.exception("thumbnail of %s failed", name)
            jpeg = None
        self._entries[name] = _Entry(jpeg, self._clock())
        return jpeg

    def _forget_old(self, now: float) -> None:
        """Drop channels nobody asked about for a while (they went offline, most likely)."""
        cutoff = now - 6 * self.max_age
        for name in [n for n, e in self._entries.items() if e.made < cutoff]:
            del self._entries[name]
