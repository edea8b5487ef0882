"""Viewer counting: distinct clients that fetched a channel's playlist recently.

A client is its remote address plus User-Agent, hashed so the table holds no addresses; the hash
is unkeyed on purpose (nothing secret to leak, nothing to rotate). HLS players refetch the
playlist every target duration, so a 30 s window counts everyone watching.

With rtmpd workers each worker counts the requests it answers; the count shown is the sum of
every worker's (`elsewhere`: the others' counts, exchanged once a second by rtmpd.worker), so a
player whose requests land on two workers within the window counts twice. With LL-HLS every
playlist request of a stream is answered by its owner, which counts them all.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

WINDOW = 30.0
MAX_CLIENTS_PER_CHANNEL = 100_000


class ViewerTracker:
    def __init__(self, window: float = WINDOW, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self._clock = clock
        self._seen: dict[str, dict[bytes, float]] = {}

    @staticmethod
    def client_id(remote: str | None, user_agent: str) -> bytes:
        return hashlib.blake2b(
            f"{remote or ''}\n{user_agent}".encode("utf-8", "replace"), digest_size=12
        ).digest()

    def seen(self, name: str, remote: str | None, user_agent: str) -> None:
        """Record a playlist fetch of `name`."""
        now = self._clock()
        clients = self._seen.setdefault(name, {})
        if len(clients) >= MAX_CLIENTS_PER_CHANNEL:
            self._prune(name, now)
            if len(clients) >= MAX_CLIENTS_PER_CHANNEL:
                return  # a flood of made-up clients: stop growing, the count saturates
        clients[self.client_id(remote, user_agent)] = now

    def count(self, name: str) -> int:
        now = self._clock()
        self._prune(name, now)
        return len(self._seen.get(name, ()))

    def counts(self) -> dict[str, int]:
        """Every channel's count (channels with viewers only)."""
        now = self._clock()
        for name in list(self._seen):
            self._prune(name, now)
        return {name: len(clients) for name, clients in self._seen.items()}

    def total(self) -> int:
        now = self._clock()
        for name in list(self._seen):
            self._prune(name, now)
        return sum(len(clients) for clients in self._seen.values())

    def _prune(self, name: str, now: float) -> None:
        clients = self._seen.get(name)
        if clients is None:
            return
        cutoff = now - self.window
        stale = [key for key, when in clients.items() if when < cutoff]
        for key in stale:
            del clients[key]
        if not clients:
            del self._seen[name]
