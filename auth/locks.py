"""One asyncio lock per key (a client's turn, a public name's accept), kept only while someone
holds or awaits it, so that the table is bounded by what is in progress."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


@dataclass(slots=True)
class _Held:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0  # holders and waiters


class KeyedLocks(Generic[K]):
    """`async with locks.hold(key):` one at a time per key, any number of keys at once."""

    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held: dict[K, _Held] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: K) -> AsyncIterator[None]:
        held = self._held.get(key)
        if held is None:
            held = self._held[key] = _Held()
        held.users += 1
        try:
            async with held.lock:
                yield
        finally:
            held.users -= 1
            if not held.users:
                del self._held[key]
