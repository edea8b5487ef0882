"""Publish decisions: which key may publish, under which public name, for how long.

The composition root asks `authorize()` for every publish and gets `Accepted` (with a `Lease`
whose `end()` clears live state exactly once) or `Denied`. The decision itself comes from one
decider (`rtmpd.auth.decider`): the user database, or nginx-rtmp style callbacks when
`[auth] on_publish` is set. What both share is here: the failed-attempt limit, the live-lease
table with takeover or reject, the revocation of a live publisher, and the accept log line.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .backend import open_store
from .callbacks import CallbackClient, CallbackDecider, PlayCallbacks
from .config import AuthConfig, Duplicate
from .database import LEASE, DatabaseDecider
from .decider import Decider, Granted, Request
from .lease import Accepted, Lease
from .limiter import AttemptGuard, FailureLimiter, client_host
from .locks import KeyedLocks
from .model import (
    ALREADY_LIVE,
    RATE_LIMITED,
    UNKNOWN_APP,
    Channel,
    Denied,
    PlayAttempt,
    PublishAttempt,
)
from .sqlstore import KeyOwner, LiveRecord, SqlStore

TAKEN_OVER = "taken over by a new connection"
#: Seconds between checks for bans, removals and new keys made by other processes.
REVOKE_POLL = 0.5
#: Seconds a database write waits for another writer before the decision is "unavailable".
DB_BUSY_TIMEOUT = 5.0

__all__ = ["Accepted", "AuthService", "Channel", "Denied", "Lease",
           "PublishAttempt", "TAKEN_OVER"]  # fmt: skip


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
        db_url: str = "",
        node: str = "",
        lease: float = LEASE,
    ) -> None:
        self.config = config
        self.app = app
        self._clock = clock
        self._log = log or logging.getLogger("rtmpd.auth")
        self._guard = AttemptGuard(
            FailureLimiter(config.max_failures, config.failure_window, config.backoff, clock=clock),
            self._log,
        )
        #: The user database, for managing users while the server runs; None in callback mode.
        self.store: SqlStore | None = None
        self._database: DatabaseDecider | None = None
        # Any: whatever grant a decider gives, the service only hands back to that decider.
        self._decider: Decider[Any]
        if config.on_publish:
            client = CallbackClient(
                config.on_publish,
                config.on_publish_done or None,
                config.callback_timeout,
                self._log,
            )
            by_callback: Decider[Request] = CallbackDecider(client, self._guard, self._log)
            self._decider = by_callback
        else:
            self.store = open_store(db_path, db_url, busy_timeout=db_busy_timeout, clock=clock)
            self._database = DatabaseDecider(
                self.store, self._guard, self._revoke,
                revoke_poll=revoke_poll, clock=clock, log=self._log, node=node, lease=lease,
                takeover=config.duplicate is Duplicate.TAKEOVER,
            )  # fmt: skip
            by_database: Decider[KeyOwner] = self._database
            self._decider = by_database
        #: on_play / on_play_done, in either mode; None: play by address only ([rtmp] allow_play).
        self.play_callbacks: PlayCallbacks | None = None
        if config.on_play:
            self.play_callbacks = PlayCallbacks(
                config.on_play, config.on_play_done or None, config.callback_timeout, self._log
            )
        self._live: dict[str, Lease] = {}
        #: One accept at a time per public name (takeover or reject, live state), any number of
        #: names at once: one lock for all made N publishers wait N database writes in a row.
        self._accepting: KeyedLocks[str] = KeyedLocks()
        self._running = False

    # -- life cycle -------------------------------------------------------------------------

    async def start(self) -> None:
        await self._decider.start()
        if self.play_callbacks is not None:
            await self.play_callbacks.start()
        self._running = True
        if self.store is not None and self.store.readable_by_others():
            self._log.warning(
                "%s can be read by other users (it holds key digests and addresses); "
                "chmod 600 it (and its -wal and -shm files)", self.store.where,
            )  # fmt: skip

    async def stop(self) -> None:
        """Stop after the RTMP server: leases still live here end without callbacks (the
        database clears their live state)."""
        self._running = False  # from now on a lease's end() changes nothing
        self._live = {}
        await self._decider.stop()
        if self.play_callbacks is not None:
            await self.play_callbacks.close()

    # -- decisions --------------------------------------------------------------------------

    async def authorize(
        self, attempt: PublishAttempt, disconnect: Callable[[str], None]
    ) -> Accepted | Denied:
        host = client_host(attempt.addr)
        if self._guard.blocked(host):
            return RATE_LIMITED
        key, _, extra = attempt.key.partition("?")  # defensive: the caller already split it
        request = Request(attempt, key, attempt.query or extra, host)
        if _app_name(attempt.app) != self.app:
            return self._guard.refused(host, key, UNKNOWN_APP)
        decision = await self._decider.decide(request)
        if isinstance(decision, Denied):
            return decision
        return await self._grant(decision, request, disconnect)

    async def _grant(
        self, granted: Granted[Any], request: Request, disconnect: Callable[[str], None]
    ) -> Accepted | Denied:
        addr = request.attempt.addr
        lease = Lease(granted.name, self._clock(), addr, disconnect, self._lease_ended)
        async with self._accepting.hold(lease.name):
            current = self._live.get(lease.name)
            if current is not None and self.config.duplicate is Duplicate.REJECT:
                self._log.info("publish to %s from %s refused: already live", lease.name, addr)
                return ALREADY_LIVE
            denied = await self._decider.went_live(lease, granted.grant)
            if denied is not None:
                return denied
            self._live[lease.name] = lease
        if current is not None:
            self._log.info("%s taken over by %s", lease.name, addr)
            self._disconnect(current, TAKEN_OVER)
        self._log.info("publish from %s accepted under %s", addr, lease.name)
        return Accepted(lease.name, lease)

    def _disconnect(self, lease: Lease, reason: str) -> None:
        try:
            lease.disconnect(reason)
        except Exception:
            self._log.exception("disconnecting the publisher of %s failed", lease.name)

    async def _revoke(self, lease: Lease, reason: str) -> None:
        """A decider found that a live publisher may no longer publish."""
        self._log.info("disconnecting the publisher of %s: %s", lease.name, reason)
        self._disconnect(lease, reason)
        await lease.end()

    async def _lease_ended(self, lease: Lease) -> None:
        if not self._running:
            return
        if self._live.get(lease.name) is lease:
            del self._live[lease.name]
        await self._decider.ended(lease)

    async def authorize_play(self, attempt: PlayAttempt) -> str | Denied:
        """The public name a player may play (on_play's answer when set, else the name it
        asked for), or why not."""
        if self.play_callbacks is None:
            return attempt.name
        return await self.play_callbacks.play(attempt)

    def play_ended(self, attempt: PlayAttempt) -> None:
        if self.play_callbacks is not None:
            self.play_callbacks.play_done(attempt)

    # -- other workers ----------------------------------------------------------------------

    def share_failures(self, send: Callable[[str], None]) -> None:
        """Tell `send` the client of every failed attempt counted here (the failed-key limit
        across rtmpd workers: each counts the others' failures too)."""
        self._guard.on_failure = send

    def failed_elsewhere(self, host: str) -> None:
        """A failed attempt from `host` that another worker counted."""
        self._guard.failed_elsewhere(host)

    @property
    def stale(self) -> list[str]:
        """The names this node held live before it started (a previous run that died)."""
        return list(self._database.stale) if self._database is not None else []

    async def release_node(self, node: str) -> list[str]:
        """Clear the live records of `node`, another worker of this node that died; the names
        cleared by this call (a reconnect that took a name over elsewhere keeps its record)."""
        if self._database is None:
            return []
        return await self._database.release_node(node)

    # -- channels ---------------------------------------------------------------------------

    async def live_names(self) -> set[str]:
        return set(self._live)

    async def live_channels(self) -> list[Channel]:
        return [Channel(name, True, lease.since) for name, lease in sorted(self._live.items())]

    async def channel(self, name: str) -> Channel | None:
        """The channel for a page or the API; None if unknown. Raises StoreError when the
        database cannot be read."""
        return await self._decider.channel(name, self._live.get(name))

    # -- other nodes ------------------------------------------------------------------------

    def remote(self, name: str) -> LiveRecord | None:
        """The live record of `name` when another node (or worker) holds it, as of the
        watcher's last look (it re-reads on every change it is told of)."""
        if self._database is None or name in self._live:
            return None
        return self._database.remote.get(name)

    def remote_live(self) -> list[LiveRecord]:
        """Every live record other nodes hold."""
        if self._database is None:
            return []
        return [r for r in self._database.remote.values() if r.name not in self._live]

    async def playing(self, name: str, url: str, details: str | None = None) -> None:
        """The publish of `name` here has a playlist at the HTTP base `url` (for other
        nodes: their channel lists, and where they send its viewers); `details` is what they
        show of it (opaque to auth)."""
        if self._database is not None and name in self._live:
            await self._database.playing(name, url, details)
