"""Publish decisions from the user database: keys looked up by digest, live state kept in the
store, and a watcher that cuts live publishers whose user was banned, removed or given a new
key, also when that happened in another process (`rtmpd users` from a shell).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from . import keys
from .decider import Granted, Request
from .lease import Lease
from .limiter import AttemptGuard
from .model import INACTIVE, RATE_LIMITED, UNAVAILABLE, UNKNOWN_KEY, Channel, Denied
from .names import valid_public_name
from .store import KeyOwner, StoreError, User, UserState

#: Cuts a live publisher: disconnects it for the reason given and ends its lease.
Revoke = Callable[[Lease, str], Awaitable[None]]


class UserDatabase(Protocol):
    """What the decider needs of the user database (`Store`, on SQLite). Failures raise
    `StoreError`."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def find_by_key(self, key: str) -> KeyOwner | None: ...

    async def get_user(self, name: str) -> User | None: ...

    async def set_live(self, user_id: int, since: float, peer: str, token: str) -> None: ...

    async def clear_live(self, user_id: int, token: str, ended: float) -> bool:
        """Clear live state if `token` still owns it."""
        ...

    async def clear_all_live(self) -> int: ...

    async def user_states(self, user_ids: Sequence[int]) -> dict[int, UserState]: ...

    async def change_marker(self) -> tuple[int, int]:
        """A value that changes whenever anyone commits user data."""
        ...


@dataclass(slots=True)
class _Live:
    """A live lease as the database knows it: whose key it was granted on, and the token
    under which its live state is stored."""

    lease: Lease
    owner: KeyOwner
    token: str
    checked: bool = False  # seen by the revocation watcher since it was granted


class DatabaseDecider:
    """Decides from the user database; implements `Decider[KeyOwner]`."""

    def __init__(
        self,
        store: UserDatabase,
        guard: AttemptGuard,
        revoke: Revoke,
        *,
        revoke_poll: float,
        clock: Callable[[], float],
        log: logging.Logger,
    ) -> None:
        self._store = store
        self._guard = guard
        self._revoke = revoke
        self._revoke_poll = revoke_poll
        self._clock = clock
        self._log = log
        self._live: dict[str, _Live] = {}  # by public name: the lease that owns the live state
        self._pending_clears: dict[int, tuple[str, float]] = {}  # user id -> (token, ended)
        self._marker: tuple[int, int] | None = None
        self._watcher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._store.open()
        stale = await self._store.clear_all_live()
        if stale:
            self._log.info("cleared %d stale live flag(s) from a previous run", stale)
        self._watcher = asyncio.create_task(self._watch(), name="rtmpd-auth-revocations")

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        live, self._live = list(self._live.values()), {}
        for record in live:
            self._pending_clears[record.owner.user_id] = (record.token, self._clock())
        with contextlib.suppress(StoreError):
            await self._retry_pending_clears()
        await self._store.close()

    async def decide(self, request: Request) -> Granted[KeyOwner] | Denied:
        host, key = request.host, request.key
        if not key or len(key) > keys.MAX_KEY_CHARS:
            return self._guard.refused(host, key, UNKNOWN_KEY)
        async with self._guard.turn(host):
            if self._guard.blocked(host):
                return RATE_LIMITED
            try:
                owner = await self._store.find_by_key(key)
            except StoreError as exc:
                self._log.error("publish from %s not decided: %s", host, exc)
                return UNAVAILABLE
            if owner is None:
                return self._guard.refused(host, key, UNKNOWN_KEY)
            if not owner.active:
                return self._guard.refused(host, key, INACTIVE)
        return Granted(owner.name, owner)

    async def went_live(self, lease: Lease, grant: KeyOwner) -> Denied | None:
        token = secrets.token_hex(8)
        try:
            await self._store.set_live(grant.user_id, lease.since, lease.peer, token)
        except StoreError as exc:
            self._log.error("publish to %s from %s not granted: %s", lease.name, lease.peer, exc)
            return UNAVAILABLE
        self._live[lease.name] = _Live(lease, grant, token)
        return None

    async def ended(self, lease: Lease) -> None:
        record = self._live.get(lease.name)
        if record is None or record.lease is not lease:
            return  # taken over: the live state belongs to the newer lease
        del self._live[lease.name]
        ended = self._clock()
        try:
            await self._store.clear_live(record.owner.user_id, record.token, ended)
        except StoreError as exc:
            self._log.warning("live state of %s kept for a retry: %s", lease.name, exc)
            self._pending_clears[record.owner.user_id] = (record.token, ended)

    async def channel(self, name: str, live: Lease | None) -> Channel | None:
        """Raises StoreError when the database cannot be read."""
        if not valid_public_name(name):
            return None
        user = await self._store.get_user(name)
        if user is None:
            return None
        return Channel(user.name, user.active, live.since if live is not None else None)

    # -- revocation -------------------------------------------------------------------------

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._revoke_poll)
            try:
                await self._retry_pending_clears()
                await self._check_revocations()
            except StoreError as exc:
                self._log.warning("revocation check postponed: %s", exc)
            except Exception:
                self._log.exception("revocation check failed")

    async def _retry_pending_clears(self) -> None:
        for user_id, (token, ended) in list(self._pending_clears.items()):
            await self._store.clear_live(user_id, token, ended)
            del self._pending_clears[user_id]

    async def _check_revocations(self) -> None:
        """Cut live publishers whose user is gone, banned or has a new key. Cheap when nothing
        changed: one PRAGMA read."""
        if not self._live:
            return
        marker = await self._store.change_marker()
        live = list(self._live.values())
        if marker == self._marker and all(record.checked for record in live):
            return
        states = await self._store.user_states([record.owner.user_id for record in live])
        self._marker = marker
        for record in live:
            record.checked = True
            if self._live.get(record.lease.name) is not record:
                continue
            state = states.get(record.owner.user_id)
            if state is None:
                reason = "user removed"
            elif not state.active:
                reason = "user banned"
            elif not keys.digests_equal(state.key_digest, record.owner.key_digest):
                reason = "stream key changed"
            else:
                continue
            await self._revoke(record.lease, reason)
