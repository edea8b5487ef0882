"""Per-address limit on failed publish attempts.

Failures are counted whatever succeeds in between: one valid key must not buy unlimited guesses
from its address (a success used to wipe the address's failures). O(1) per attempt and no
database work while an address is blocked, so a guesser cannot slow down anyone else; the table
is bounded (least recently seen addresses are dropped).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from .keys import key_hint
from .model import Denied


def client_host(addr: str) -> str:
    """The host part of 'ip', 'ip:port', '[v6]:port' or a bare IPv6 address."""
    if addr.startswith("["):
        end = addr.find("]")
        return addr[1:end] if end > 0 else addr
    if addr.count(":") == 1:
        return addr.partition(":")[0]
    return addr


@dataclass(slots=True)
class _Entry:
    failures: deque[float]
    blocked_until: float = field(default=0.0)


class FailureLimiter:
    """After `max_failures` failures within `window` seconds, refuse for `backoff` seconds."""

    def __init__(
        self,
        max_failures: int,
        window: float,
        backoff: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = 65536,
    ) -> None:
        self.max_failures = max_failures
        self.window = window
        self.backoff = backoff
        self._clock = clock
        self._max_entries = max_entries
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def blocked(self, host: str) -> bool:
        entry = self._entries.get(host)
        return entry is not None and entry.blocked_until > self._clock()

    def failure(self, host: str) -> bool:
        """Record a failure; True when this one starts a block."""
        if self.max_failures <= 0:
            return False
        now = self._clock()
        entry = self._entries.get(host)
        if entry is None:
            entry = _Entry(deque(maxlen=self.max_failures))
            self._entries[host] = entry
            if len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(host)
        entry.failures.append(now)
        if len(entry.failures) == self.max_failures and now - entry.failures[0] <= self.window:
            entry.blocked_until = now + self.backoff
            entry.failures.clear()
            return True
        return False


@dataclass(slots=True)
class _Turn:
    lock: asyncio.Lock
    users: int = 0  # holders and waiters


class AttemptGuard:
    """The limiter as every decider uses it: refusals counted and logged in one place, and a
    turn per address for deciders that look keys up."""

    def __init__(self, limiter: FailureLimiter, log: logging.Logger) -> None:
        self._limiter = limiter
        self._log = log
        self._turns: dict[str, _Turn] = {}

    def blocked(self, host: str) -> bool:
        return self._limiter.blocked(host)

    @contextlib.asynccontextmanager
    async def turn(self, host: str) -> AsyncIterator[None]:
        """One lookup at a time per address: concurrent guesses would otherwise all pass
        `blocked()` before the first of them fails, and outrun max_failures. A turn is kept
        only while someone holds or awaits it."""
        turn = self._turns.get(host)
        if turn is None:
            turn = self._turns[host] = _Turn(asyncio.Lock())
        turn.users += 1
        try:
            async with turn.lock:
                yield
        finally:
            turn.users -= 1
            if not turn.users:
                del self._turns[host]

    def refused(self, host: str, key: str, denied: Denied) -> Denied:
        """Count a failed attempt and log it (with a hint of the key, never the key)."""
        started_block = self._limiter.failure(host)
        self._log.warning(
            "publish from %s refused (key %s): %s", host, key_hint(key), denied.description
        )
        if started_block:
            self._log.warning(
                "%s blocked for %g s after %d failed attempts",
                host, self._limiter.backoff, self._limiter.max_failures,
            )  # fmt: skip
        return denied
