"""A broadcast: one public name on the air, across takeovers and reconnects within the grace.

A publish ends; the broadcast does not, yet: a streamer whose connection dropped usually
comes back within seconds, and players, push destinations and the recording should see one
stream, not two. The broadcast ends when no publish of its name came back within `grace`
seconds ([hls] grace: the time the name's HLS playlist waits for it too); then its players
are told the stream ended, its destinations unpublish and its recording is finished.

Each broadcast owns a `Fanout` (rtmpd.relay: the GOP cache and the outputs) and the parts
that follow it (`BroadcastPart`: the push relays, the recording), which hear when a publish
starts and when the broadcast ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol

from .relay import Fanout

log = logging.getLogger("rtmpd")


class BroadcastPart(Protocol):
    """Something that lives as long as a broadcast (a push relay, a recording)."""

    def publish_started(self) -> None:
        """A publish (the first, a takeover or a reconnect) feeds the broadcast now."""

    def end(self) -> None:
        """The broadcast is over (its grace ran out, or the server stops)."""


class Broadcast:
    """One name on the air; see the module docstring."""

    def __init__(
        self,
        name: str,
        grace: float,
        on_end: Callable[[Broadcast], None],
        *,
        on_drop: Callable[[str, int], None] | None = None,
        fanout: Fanout | None = None,
    ) -> None:
        self.name = name
        self.grace = grace
        self.started = time.time()
        #: A fanout with players already (a stream pulled from another worker came here).
        self.fanout = fanout if fanout is not None else Fanout(name, on_drop=on_drop)
        self.parts: list[BroadcastPart] = []
        self.publishes = 0  # publishes attached so far
        self._live: object | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._on_end = on_end
        self.ended = False

    @property
    def live(self) -> bool:
        return self._live is not None

    def attach(self, publish: object) -> None:
        """`publish` feeds the broadcast from now on (its first, a takeover, a reconnect)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.publishes += 1
        self._live = publish
        self.fanout.attach(publish)
        for part in self.parts:
            part.publish_started()

    def detach(self, publish: object) -> None:
        """`publish` ended; unless another took over, the grace starts."""
        self.fanout.detach(publish)
        if self._live is not publish:
            return
        self._live = None
        if self.grace <= 0:
            self.end()
            return
        self._timer = asyncio.get_running_loop().call_later(self.grace, self.end)

    def end(self) -> None:
        if self.ended:
            return
        self.ended = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        log.info("broadcast of %s ended after %d publish(es)", self.name, self.publishes)
        self.fanout.finish()
        for part in self.parts:
            try:
                part.end()
            except Exception:
                log.exception("%s: ending the broadcast failed", self.name)
        self._on_end(self)
