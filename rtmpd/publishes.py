"""This process's accepted publishes: the server's `PublishHandler` (a request becomes an
auth attempt, an accepted one a `Publish` into its packager and broadcast), what ends them,
and what the packager says of their segments.

Apart from rtmpd.app because the publishes are one set with one life cycle (decided, fed,
announced to other nodes at the first segment, ended with one webhook), where the
composition root only builds the parts they use and samples them each tick.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from typing import Any

from rtmpd.auth.limiter import client_host
from rtmpd.auth.model import RATE_LIMITED
from rtmpd.auth.service import TAKEN_OVER, Accepted, AuthService, PublishAttempt
from rtmpd.config import Config
from rtmpd.hls import HlsService, SegmentWritten
from rtmpd.rtmp.events import PublishRequest
from rtmpd.rtmp_contract import Accept, Publisher, Reject
from rtmpd.web.metrics import Metrics

from . import webhooks
from .channels import ChannelDirectory
from .health import PublishHealth
from .on_air import OnAir
from .publish import Publish
from .webhooks import Webhooks


class Publishes:
    """The live publishes of this process, from their decision to their end."""

    def __init__(
        self,
        config: Config,
        auth: AuthService,
        hls: HlsService,
        metrics: Metrics,
        hooks: Webhooks,
        on_air: OnAir,
        directory: ChannelDirectory,
        *,
        shared: bool,
        spawn: Callable[[Coroutine[Any, Any, None]], None],
        node_url: Callable[[], str],
    ) -> None:
        self.config = config
        self.auth = auth
        self.hls = hls
        self.metrics = metrics
        self.webhooks = hooks
        self.on_air = on_air
        self.directory = directory
        #: With workers: a publish taken over by another worker leaves its name's HLS there.
        self.shared = shared
        self._spawn = spawn
        self._node_url = node_url
        self.live: set[Publish] = set()
        self._playing: set[Publish] = set()  # publishes whose first segment was announced

    async def authorize(self, publisher: Publisher, request: PublishRequest) -> Accept | Reject:
        info = publisher.info
        attempt = PublishAttempt(
            app=info.app,
            key=request.name,
            query=request.query,
            addr=info.peer,
            tcurl=info.tc_url or "",
            flashver=info.flashver or "",
            swfurl=info.swf_url or "",
            pageurl=info.page_url or "",
            clientid=str(info.conn_id),
            publish_type=request.publish_type,
        )
        decision = await self.auth.authorize(attempt, publisher.close)
        if not isinstance(decision, Accepted):
            self.metrics.publish_attempt("denied")
            if decision != RATE_LIMITED:  # a blocked guesser is one event, not thousands
                self.webhooks.emit(webhooks.PUBLISH_REFUSED, {
                    "reason": decision.description, "addr": client_host(info.peer),
                    "app": info.app,
                })  # fmt: skip
            return Reject(decision.code, decision.description)
        self.metrics.publish_attempt("accepted")
        packager = self.hls.open_stream(decision.name)
        health = PublishHealth(self.config.hls.fragment, time.time())
        broadcast = self.on_air.broadcast(decision.name)
        if not broadcast.publishes:
            await self.on_air.add_pushes(broadcast)
        raw = self.on_air.relays(broadcast)
        publish = Publish(decision.name, publisher, packager, decision.lease, health=health,
                          metrics=self.metrics, on_end=self._ended,
                          fanout=broadcast.fanout if raw else None,
                          on_taken_over=self.hls.release if self.shared else None)  # fmt: skip
        broadcast.attach(publish)
        self.live.add(publish)
        self.metrics.set_live(len(self.live))
        self.webhooks.emit(webhooks.STREAM_STARTED, {
            "name": decision.name, "started_at": webhooks.iso(decision.lease.since),
        })  # fmt: skip
        return Accept(decision.name, publish, raw=raw)

    def _ended(self, publish: Publish, reason: str) -> None:
        self.live.discard(publish)
        self._playing.discard(publish)
        self.metrics.set_live(len(self.live))
        broadcast = self.on_air.broadcasts.get(publish.name)
        if broadcast is not None:
            broadcast.detach(publish)
        if reason == TAKEN_OVER or any(p.name == publish.name for p in self.live):
            return  # a reconnect took over: the stream goes on, no stream.ended
        ended = time.time()
        self.webhooks.emit(webhooks.STREAM_ENDED, {
            "name": publish.name, "reason": reason,
            "started_at": webhooks.iso(publish.lease.since), "ended_at": webhooks.iso(ended),
            "duration_seconds": round(max(ended - publish.lease.since, 0.0), 3),
        })  # fmt: skip

    def sample(self, now: float) -> None:
        """The tick: each publish's bytes and health sample."""
        for publish in self.live:
            publish.count_bytes()
            publish.health.sample(now, publish.publisher.bytes_received)

    def segment_written(self, segment: SegmentWritten) -> None:
        """The packager's word of a segment: health, and at a publish's first segment its
        node's URL for the other nodes (they may send viewers here now)."""
        self.metrics.segment_written(segment.lag)
        for publish in self.live:
            if publish.name == segment.name:
                publish.health.segment(segment.duration, segment.lag)
                if publish not in self._playing:  # other nodes may send viewers here now
                    self._playing.add(publish)
                    self._spawn(self.auth.playing(
                        publish.name, self._node_url(), self.directory.details(publish.name)
                    ))  # fmt: skip
