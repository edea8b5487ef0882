"""Publish decisions from the user database: keys looked up by digest, live state kept in the
store, and a watcher that cuts live publishers whose user was banned, removed or given a new
key, also when that happened in another process (`rtmpd users` from a shell) or on another
node, and those whose live record another node took over.

The live records are leases (`rtmpd.auth.sqlstore`): the watcher renews this node's, clears
any node's that expired, and keeps a snapshot of the records other nodes hold (`remote`), for
the channel list and for sending viewers to the node that serves a stream.
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
from .model import (
    ALREADY_LIVE,
    INACTIVE,
    RATE_LIMITED,
    UNAVAILABLE,
    UNKNOWN_KEY,
    Channel,
    Denied,
)
from .names import valid_public_name
from .sqlstore import KeyOwner, LiveRecord, StoreError, User, UserState

#: Seconds a live record lasts unless its node renews it (renewed every third of that).
LEASE = 15.0

#: Why a publisher is cut when its live record now belongs to a publish on another node (or
#: another worker, or another connection that went through another process).
TAKEN_OVER_ELSEWHERE = "taken over by a new connection"
#: Cuts a live publisher: disconnects it for the reason given and ends its lease.
Revoke = Callable[[Lease, str], Awaitable[None]]


class UserDatabase(Protocol):
    """What the decider needs of the user database (`Store`, on SQLite). Failures raise
    `StoreError`."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def find_by_key(self, key: str) -> KeyOwner | None: ...

    async def get_user(self, name: str) -> User | None: ...

    async def set_live(
        self, user_id: int, since: float, peer: str, token: str, *, node: str = "",
        expires: float | None = None, replace: bool = True,
    ) -> bool: ...  # fmt: skip

    async def mark_playing(
        self, user_id: int, token: str, url: str, details: str | None = None
    ) -> bool: ...

    async def renew_live(self, node: str, expires: float) -> int: ...

    async def take_node_live(self, node: str) -> list[str]: ...

    async def clear_expired(self, now: float) -> int: ...

    async def live_records(self, now: float) -> list[LiveRecord]: ...

    async def clear_live(self, user_id: int, token: str, ended: float) -> bool:
        """Clear live state if `token` still owns it."""
        ...

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
        node: str = "",
        lease: float = LEASE,
        takeover: bool = True,
    ) -> None:
        self._store = store
        self.node = node
        self.lease = lease
        self._takeover = takeover
        #: The names whose live records this node held before it started (a previous run).
        self.stale: list[str] = []
        #: Live records other nodes hold, by name (refreshed by the watcher).
        self.remote: dict[str, LiveRecord] = {}
        self._renewed = float("-inf")
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
        self.stale = await self._store.take_node_live(self.node)
        if self.stale:
            self._log.info("cleared %d stale live flag(s) from a previous run", len(self.stale))
        await self._leases()
        self._watcher = asyncio.create_task(self._watch(), name="rtmpd-auth-revocations")

    async def release_node(self, node: str) -> list[str]:
        """Clear the live records of `node`, another process that died (an rtmpd worker):
        the names cleared here (none if another process cleared them first)."""
        try:
            names = await self._store.take_node_live(node)
        except StoreError as exc:
            self._log.warning("live records of %s not cleared (its restart will): %s", node, exc)
            return []
        for name in names:
            record = self.remote.get(name)
            if record is not None and record.node == node:
                del self.remote[name]
        return names

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
            written = await self._store.set_live(
                grant.user_id, lease.since, lease.peer, token, node=self.node,
                expires=self._clock() + self.lease, replace=self._takeover,
            )  # fmt: skip
        except StoreError as exc:
            self._log.error("publish to %s from %s not granted: %s", lease.name, lease.peer, exc)
            return UNAVAILABLE
        if not written:
            self._log.info("publish to %s from %s refused: live on another node", lease.name,
                           lease.peer)  # fmt: skip
            return ALREADY_LIVE
        self._live[lease.name] = _Live(lease, grant, token)
        self.remote.pop(lease.name, None)
        return None

    async def playing(self, name: str, url: str, details: str | None = None) -> None:
        """The publish of `name` here has a playlist, served under the HTTP base `url`: the
        other nodes list it from now on (with `details`) and send its viewers here."""
        record = self._live.get(name)
        if record is None:
            return
        try:
            await self._store.mark_playing(record.owner.user_id, record.token, url, details)
        except StoreError as exc:
            self._log.warning("%s not marked as playing in the database: %s", name, exc)

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
                if self._clock() - self._renewed >= self.lease / 3:
                    await self._leases()
                await self._check_revocations()
            except StoreError as exc:
                self._log.warning("revocation check postponed: %s", exc)
            except Exception:
                self._log.exception("revocation check failed")

    async def _retry_pending_clears(self) -> None:
        for user_id, (token, ended) in list(self._pending_clears.items()):
            await self._store.clear_live(user_id, token, ended)
            del self._pending_clears[user_id]

    async def _leases(self) -> None:
        """Renew this node's live records, clear any that expired, read the others'."""
        now = self._clock()
        self._renewed = now
        if self._live:
            await self._store.renew_live(self.node, now + self.lease)
        expired = await self._store.clear_expired(now)
        if expired:
            self._log.info("cleared %d live record(s) whose node stopped renewing them", expired)
        await self._read_remote(now)

    async def _read_remote(self, now: float) -> None:
        records = await self._store.live_records(now)
        # A record under this node's own name that it no longer holds is one being cleared
        # (its publish just ended): never "elsewhere", or its viewers would be sent here.
        self.remote = {r.name: r for r in records
                       if r.name not in self._live and r.node != self.node}  # fmt: skip

    async def _check_revocations(self) -> None:
        """Cut live publishers whose user is gone, banned or has a new key, or whose live
        record another node or connection took over. Cheap when nothing changed: one PRAGMA
        read (SQLite), no query at all (PostgreSQL's notifications)."""
        marker = await self._store.change_marker()
        live = list(self._live.values())
        if marker == self._marker and all(record.checked for record in live):
            return
        if marker != self._marker:
            await self._read_remote(self._clock())
        self._marker = marker
        if not live:
            return
        states = await self._store.user_states([record.owner.user_id for record in live])
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
            elif state.live_token is None:
                reason = "live record lost (its lease ran out unrenewed)"
            elif state.live_token != record.token:
                reason = TAKEN_OVER_ELSEWHERE
            else:
                continue
            await self._revoke(record.lease, reason)
