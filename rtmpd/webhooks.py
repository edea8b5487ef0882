"""Signed webhooks: a JSON POST to `[webhooks] url` when a stream starts or ends, a publish is
refused, or a user is banned.

`emit()` is synchronous and O(1): it never waits for the receiver, so ingest never does. A few
workers deliver from one queue, each attempt bounded by `timeout`; a failed delivery waits its
backoff (1 s, 2 s, 4 s ... up to a minute) outside the workers, so a failing event never holds
up the others, and is given up after `retry_for` seconds. At most `max_pending` deliveries
exist at once (queued, in flight or waiting to retry); past that new events are dropped and
counted. Outcomes go to the `on_outcome` callback (the composition root counts them in
/metrics).

Each POST carries `Rtmpd-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>." + body>`
with `[webhooks] secret` (the scheme Stripe uses; signed again on every attempt, so `t` is
fresh), `Rtmpd-Event` (the type) and `Rtmpd-Delivery` (the event id, the same on every
attempt: receivers drop duplicates by it). docs/webhooks.md shows a receiver.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

import aiohttp
import msgspec

Seconds = Annotated[float, msgspec.Meta(ge=0)]
Count = Annotated[int, msgspec.Meta(ge=1)]

SIGNATURE_HEADER = "Rtmpd-Signature"
#: The events rtmpd sends.
STREAM_STARTED = "stream.started"
STREAM_ENDED = "stream.ended"
PUBLISH_REFUSED = "publish.refused"
USER_BANNED = "user.banned"
WORKERS = 4
MAX_BACKOFF = 60.0


class WebhooksConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The `[webhooks]` section: no `url`, no webhooks."""

    url: str = ""
    secret: str = ""
    timeout: Seconds = 5.0
    retry_for: Seconds = 900.0
    max_pending: Count = 1000

    def __post_init__(self) -> None:
        if self.url and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"url: {self.url!r} is not an http:// or https:// URL")
        if self.url and not self.secret:
            raise ValueError("secret: must be set with url (receivers check the signature)")
        if self.timeout <= 0:
            raise ValueError("timeout: must be greater than 0")


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The `Rtmpd-Signature` header's value for `body` sent at `timestamp`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(slots=True)
class _Delivery:
    event_id: str
    kind: str
    body: bytes
    first: float  # monotonic time of the first attempt's queueing
    attempts: int = 0
    problem: str = field(default="")


class Webhooks:
    """Delivers events to one URL; `start()` before `emit()`, `stop()` at shutdown."""

    def __init__(
        self,
        config: WebhooksConfig,
        *,
        on_outcome: Callable[[str], None] = lambda outcome: None,
        log: logging.Logger | None = None,
        backoff: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._on_outcome = on_outcome
        self._log = log or logging.getLogger("rtmpd.webhooks")
        self._backoff = backoff
        self._clock = clock
        self._queue: asyncio.Queue[_Delivery] = asyncio.Queue()
        self._timers: dict[str, asyncio.TimerHandle] = {}  # by event id: waiting to retry
        self._workers: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self._busy = 0  # deliveries being attempted now
        self.pending = 0  # queued, in flight or waiting to retry
        self._dropped_unlogged = 0
        self._dropped_logged_at = float("-inf")

    @property
    def enabled(self) -> bool:
        return bool(self.config.url)

    async def start(self) -> None:
        if not self.enabled:
            return
        timeout = aiohttp.ClientTimeout(total=self.config.timeout)
        headers = {"User-Agent": "rtmpd-webhooks/1"}
        self._session = aiohttp.ClientSession(timeout=timeout, headers=headers)
        self._workers = [asyncio.create_task(self._work(), name=f"rtmpd-webhooks-{i}")
                         for i in range(WORKERS)]  # fmt: skip

    async def stop(self, drain: float = 2.0) -> None:
        """Give queued first attempts up to `drain` seconds (the streams that ended at
        shutdown), then drop what is left."""
        if self._session is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain
        while (not self._queue.empty() or self._busy) and loop.time() < deadline:
            await asyncio.sleep(0.02)
        for timer in self._timers.values():
            timer.cancel()
        for task in self._workers:
            task.cancel()
        for task in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.pending:
            self._log.warning("%d webhook(s) not delivered before shutdown", self.pending)
        self._workers, self._timers, self.pending = [], {}, 0
        await self._session.close()
        self._session = None

    def emit(self, kind: str, data: dict[str, Any]) -> None:
        """Queue one event; never waits. Dropped (and counted) when `max_pending` are pending."""
        if self._session is None:
            return
        if self.pending >= self.config.max_pending:
            self._on_outcome("dropped")
            self._log_drop()
            return
        event_id = f"evt_{uuid.uuid4().hex}"
        envelope = {"id": event_id, "type": kind, "created": iso(self._clock()), "data": data}
        body = json.dumps(envelope, separators=(",", ":")).encode()
        self.pending += 1
        self._queue.put_nowait(_Delivery(event_id, kind, body, time.monotonic()))

    def _log_drop(self) -> None:
        self._dropped_unlogged += 1
        now = time.monotonic()
        if now - self._dropped_logged_at >= 60:
            self._log.warning(
                "webhook queue full (%d pending): %d event(s) dropped",
                self.pending, self._dropped_unlogged,
            )  # fmt: skip
            self._dropped_logged_at, self._dropped_unlogged = now, 0

    async def _work(self) -> None:
        while True:
            delivery = await self._queue.get()
            self._busy += 1
            try:
                delivered = await self._attempt(delivery)
            finally:
                self._busy -= 1
            self._settle(delivery, delivered)

    async def _attempt(self, delivery: _Delivery) -> bool:
        assert self._session is not None
        delivery.attempts += 1
        headers = {
            "Content-Type": "application/json",
            "Rtmpd-Event": delivery.kind,
            "Rtmpd-Delivery": delivery.event_id,
            SIGNATURE_HEADER: sign(self.config.secret, int(self._clock()), delivery.body),
        }
        try:
            async with self._session.post(
                self.config.url, data=delivery.body, headers=headers, allow_redirects=False
            ) as response:
                await response.read()
                if 200 <= response.status < 300:
                    return True
                delivery.problem = f"HTTP {response.status}"
        except TimeoutError:
            delivery.problem = f"no answer within {self.config.timeout:g} s"
        except (aiohttp.ClientError, OSError) as exc:
            delivery.problem = type(exc).__name__
        return False

    def _settle(self, delivery: _Delivery, delivered: bool) -> None:
        if delivered:
            self.pending -= 1
            self._on_outcome("delivered")
            if delivery.attempts > 1:
                self._log.info("webhook %s delivered after %d attempts",
                               delivery.kind, delivery.attempts)  # fmt: skip
            return
        waited = time.monotonic() - delivery.first
        if waited >= self.config.retry_for:
            self.pending -= 1
            self._on_outcome("failed")
            self._log.warning(
                "webhook %s given up after %d attempts in %.0f s: %s",
                delivery.kind, delivery.attempts, waited, delivery.problem,
            )  # fmt: skip
            return
        self._on_outcome("retried")
        if delivery.attempts == 1:
            self._log.warning(
                "webhook %s failed (%s); retrying for up to %g s",
                delivery.kind, delivery.problem, self.config.retry_for,
            )  # fmt: skip
        delay = min(MAX_BACKOFF, self._backoff * 2 ** (delivery.attempts - 1))
        delay = min(delay * random.uniform(0.8, 1.2), self.config.retry_for - waited)
        handle = asyncio.get_running_loop().call_later(max(delay, 0.0), self._retry, delivery)
        self._timers[delivery.event_id] = handle

    def _retry(self, delivery: _Delivery) -> None:
        self._timers.pop(delivery.event_id, None)
        self._queue.put_nowait(delivery)
