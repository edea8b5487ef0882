"""Publish decisions: which key may publish, under which public name, for how long.

The composition root asks `authorize()` for every publish and gets `Accepted` (with a `Lease`
whose `end()` clears live state exactly once) or `Denied`. A watcher task cuts live
publishers whose user was banned, removed or given a new key, also when that happened in
another process (`rtmpd users` from a shell).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import keys
from .callbacks import CallbackAccept, CallbackClient
from .config import AuthConfig, Duplicate
from .limiter import AttemptGuard, FailureLimiter, client_host
from .model import (
    ALREADY_LIVE,
    INACTIVE,
    RATE_LIMITED,
    UNAVAILABLE,
    UNKNOWN_APP,
    UNKNOWN_KEY,
    Channel,
    Denied,
    PublishAttempt,
)
from .names import valid_path_name, valid_public_name
from .store import Store, StoreError

TAKEN_OVER = "taken over by a new connection"
#: Seconds between checks for bans, removals and new keys made by other processes.
REVOKE_POLL = 0.5
#: Seconds a database write waits for another writer before the decision is "unavailable".
DB_BUSY_TIMEOUT = 5.0

__all__ = ["Accepted", "AuthService", "Channel", "Denied", "Lease",
           "PublishAttempt", "TAKEN_OVER"]  # fmt: skip


class Lease:
    """The right to publish under `name`; `end()` gives it back exactly once."""

    __slots__ = ("name", "since", "checked", "_service", "_disconnect", "_user_id", "_digest",
                 "_token", "_attempt", "_key", "_query", "_ended")  # fmt: skip

    def __init__(
        self,
        service: AuthService,
        name: str,
        since: float,
        disconnect: Callable[[str], None],
        *,
        user_id: int = 0,
        digest: bytes = b"",
        attempt: PublishAttempt | None = None,
        key: str = "",
        query: str = "",
    ) -> None:
        self.name = name
        self.since = since
        self.checked = False  # seen by the revocation watcher since it was granted
        self._service = service
        self._disconnect = disconnect
        self._user_id = user_id
        self._digest = digest
        self._token = secrets.token_hex(8)
        self._attempt = attempt  # kept only in callback mode, for on_publish_done
        self._key = key
        self._query = query
        self._ended = False

    @property
    def ended(self) -> bool:
        return self._ended

    async def end(self) -> None:
        if self._ended:
            return
        self._ended = True
        await self._service._lease_ended(self)

    def __repr__(self) -> str:
        return f"Lease(name={self.name!r}, ended={self._ended})"


@dataclass(frozen=True, slots=True)
class Accepted:
    name: str
    lease: Lease


def _app_name(app: str) -> str:
    return app.partition("?")[0].strip("/")


class AuthService:
    """Publish decisions from the local user database, or from nginx-rtmp style callbacks
    when `config.on_publish` is set (then no database is opened at all)."""

    def __init__(
        self,
        config: AuthConfig,
        db_path: Path,
        *,
        app: str = "app",
        revoke_poll: float = REVOKE_POLL,
        db_busy_timeout: float = DB_BUSY_TIMEOUT,
        clock: Callable[[], float] = time.time,
        log: logging.Logger | None = None,
    ) -> None:
        self.config = config
        self.app = app
        self._revoke_poll = revoke_poll
        self._clock = clock
        self._log = log or logging.getLogger("rtmpd.auth")
        self.store = Store(db_path, busy_timeout=db_busy_timeout, clock=clock)
        self._guard = AttemptGuard(
            FailureLimiter(config.max_failures, config.failure_window, config.backoff, clock=clock),
            self._log,
        )
        self._callbacks: CallbackClient | None = None
        if config.on_publish:
            self._callbacks = CallbackClient(
                config.on_publish,
                config.on_publish_done or None,
                config.callback_timeout,
                self._log,
            )
        self._live: dict[str, Lease] = {}
        self._accept_lock = asyncio.Lock()
        self._watcher: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._pending_clears: dict[int, tuple[str, float]] = {}
        self._marker: tuple[int, int] | None = None
        self._running = False

    # -- life cycle -------------------------------------------------------------------------

    async def start(self) -> None:
        if self._callbacks is not None:
            await self._callbacks.start()
        else:
            await self.store.open()
            stale = await self.store.clear_all_live()
            if stale:
                self._log.info("cleared %d stale live flag(s) from a previous run", stale)
            self._watcher = asyncio.create_task(self._watch(), name="rtmpd-auth-revocations")
        self._running = True

    async def stop(self) -> None:
        """Stop after the RTMP server: leases still live here are cleared without callbacks."""
        self._running = False
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=self.config.callback_timeout)
        leases, self._live = list(self._live.values()), {}
        for lease in leases:
            lease._ended = True
            if self._callbacks is None:
                self._pending_clears[lease._user_id] = (lease._token, self._clock())
        if self._callbacks is not None:
            await self._callbacks.close()
        else:
            with contextlib.suppress(StoreError):
                await self._retry_pending_clears()
            await self.store.close()

    # -- decisions --------------------------------------------------------------------------

    async def authorize(
        self, attempt: PublishAttempt, disconnect: Callable[[str], None]
    ) -> Accepted | Denied:
        host = client_host(attempt.addr)
        if self._guard.blocked(host):
            return RATE_LIMITED
        key, _, extra = attempt.key.partition("?")  # defensive: the caller already split it
        query = attempt.query or extra
        if _app_name(attempt.app) != self.app:
            return self._guard.refused(host, key, UNKNOWN_APP)
        if self._callbacks is not None:
            return await self._authorize_callback(attempt, key, query, host, disconnect)
        if not key or len(key) > keys.MAX_KEY_CHARS:
            return self._guard.refused(host, key, UNKNOWN_KEY)
        async with self._guard.turn(host):
            if self._guard.blocked(host):
                return RATE_LIMITED
            try:
                owner = await self.store.find_by_key(key)
            except StoreError as exc:
                self._log.error("publish from %s not decided: %s", host, exc)
                return UNAVAILABLE
            if owner is None:
                return self._guard.refused(host, key, UNKNOWN_KEY)
            if not owner.active:
                return self._guard.refused(host, key, INACTIVE)
            self._guard.succeeded(host)
        lease = Lease(
            self, owner.name, self._clock(), disconnect, user_id=owner.user_id,
            digest=owner.key_digest,
        )  # fmt: skip
        return await self._grant(lease, attempt.addr, key)

    async def _authorize_callback(
        self,
        attempt: PublishAttempt,
        key: str,
        query: str,
        host: str,
        disconnect: Callable[[str], None],
    ) -> Accepted | Denied:
        assert self._callbacks is not None
        answer = await self._callbacks.publish(attempt, key, query)
        if not isinstance(answer, CallbackAccept):
            if answer.failed_attempt:
                return self._guard.refused(host, key, answer.denied)
            return answer.denied
        self._guard.succeeded(host)
        lease = Lease(
            self, answer.name, self._clock(), disconnect, attempt=attempt, key=key, query=query
        )
        return await self._grant(lease, attempt.addr, key)

    async def _grant(self, lease: Lease, addr: str, key: str) -> Accepted | Denied:
        async with self._accept_lock:
            current = self._live.get(lease.name)
            if current is not None and self.config.duplicate is Duplicate.REJECT:
                self._log.info("publish to %s from %s refused: already live", lease.name, addr)
                return ALREADY_LIVE
            if self._callbacks is None:
                try:
                    await self.store.set_live(lease._user_id, lease.since, addr, lease._token)
                except StoreError as exc:
                    self._log.error("publish to %s from %s not granted: %s", lease.name, addr, exc)
                    return UNAVAILABLE
            self._live[lease.name] = lease
        if current is not None:
            self._log.info("%s taken over by %s", lease.name, addr)
            self._disconnect(current, TAKEN_OVER)
        shown = lease.name if lease.name != key else f"its own name ({keys.key_hint(key)})"
        self._log.info("publish from %s accepted under %s", addr, shown)
        return Accepted(lease.name, lease)

    def _disconnect(self, lease: Lease, reason: str) -> None:
        try:
            lease._disconnect(reason)
        except Exception:
            self._log.exception("disconnecting the publisher of %s failed", lease.name)

    async def _lease_ended(self, lease: Lease) -> None:
        if self._live.get(lease.name) is lease:
            del self._live[lease.name]
            if self._callbacks is None:
                ended = self._clock()
                try:
                    await self.store.clear_live(lease._user_id, lease._token, ended)
                except StoreError as exc:
                    self._log.warning("live state of %s kept for a retry: %s", lease.name, exc)
                    self._pending_clears[lease._user_id] = (lease._token, ended)
        if self._callbacks is not None and lease._attempt is not None and self._running:
            label = lease.name if lease.name != lease._key else keys.key_hint(lease._key)
            task = asyncio.create_task(
                self._callbacks.publish_done(lease._attempt, lease._key, lease._query, label)
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    # -- revocation -------------------------------------------------------------------------

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._revoke_poll)
            try:
                await self._retry_pending_clears()
                await self.check_revocations()
            except StoreError as exc:
                self._log.warning("revocation check postponed: %s", exc)
            except Exception:
                self._log.exception("revocation check failed")

    async def _retry_pending_clears(self) -> None:
        for user_id, (token, ended) in list(self._pending_clears.items()):
            await self.store.clear_live(user_id, token, ended)
            del self._pending_clears[user_id]

    async def check_revocations(self) -> None:
        """Cut live publishers whose user is gone, banned or has a new key. Cheap when nothing
        changed: one PRAGMA read."""
        if not self._live:
            return
        marker = await self.store.change_marker()
        leases = list(self._live.values())
        if marker == self._marker and all(lease.checked for lease in leases):
            return
        states = await self.store.user_states([lease._user_id for lease in leases])
        self._marker = marker
        for lease in leases:
            lease.checked = True
            if self._live.get(lease.name) is not lease:
                continue
            state = states.get(lease._user_id)
            if state is None:
                reason = "user removed"
            elif not state.active:
                reason = "user banned"
            elif not keys.digests_equal(state.key_digest, lease._digest):
                reason = "stream key changed"
            else:
                continue
            self._log.info("disconnecting the publisher of %s: %s", lease.name, reason)
            self._disconnect(lease, reason)
            await lease.end()

    # -- channels ---------------------------------------------------------------------------

    async def live_names(self) -> set[str]:
        return set(self._live)

    async def live_channels(self) -> list[Channel]:
        return [Channel(name, True, lease.since) for name, lease in sorted(self._live.items())]

    async def channel(self, name: str) -> Channel | None:
        """The channel for a page or the API; None if unknown. Raises StoreError when the
        database cannot be read."""
        lease = self._live.get(name)
        if self._callbacks is not None:
            if lease is None or not valid_path_name(name):
                return None
            return Channel(name, True, lease.since)
        if not valid_public_name(name):
            return None
        user = await self.store.get_user(name)
        if user is None:
            return None
        return Channel(user.name, user.active, lease.since if lease is not None else None)
