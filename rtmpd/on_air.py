"""The names on the air in this process and whoever follows them: each name's `Broadcast`
(its fanout and GOP cache, across reconnects within the grace), its push relays, and the RTMP
players (from here, or pulled from the worker holding the stream).

Apart from rtmpd.app because it is one piece with its own state and one decision, the
server's `PlayHandler`; the composition root asks it for a publish's broadcast and builds the
rest.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections.abc import Callable

from rtmpd.auth import destinations
from rtmpd.auth.accounts import Accounts
from rtmpd.auth.model import PLAY_FAILED, PLAY_NOT_FOUND, Denied, PlayAttempt
from rtmpd.auth.service import AuthService
from rtmpd.auth.store import StoreError
from rtmpd.config import Config
from rtmpd.rtmp.events import PlayRequest
from rtmpd.rtmp_contract import PlayAccept, Player, Reject
from rtmpd.web.metrics import Metrics

from .broadcast import Broadcast
from .pull import Pulls
from .push import PushRelay, PushStatus
from .relay import PlayerOutput

log = logging.getLogger("rtmpd")


class OnAir:
    """This process's broadcasts by name, their push relays and their players."""

    def __init__(
        self,
        config: Config,
        auth: AuthService,
        metrics: Metrics,
        *,
        accounts: Accounts | None,
        pulls: Pulls | None,
    ) -> None:
        self.config = config
        self.auth = auth
        self.metrics = metrics
        self.accounts = accounts
        #: With workers: streams of siblings pulled for players here (rtmpd.pull).
        self.pulls = pulls
        self._play_networks = config.rtmp.play_networks
        #: Names on the air (live, or within the grace after their last publish).
        self.broadcasts: dict[str, Broadcast] = {}
        self.players: set[PlayerOutput] = set()
        #: The TLS context a push to an rtmps:// destination starts from (tests trust their CA).
        self.push_tls: Callable[[], ssl.SSLContext] = ssl.create_default_context
        self._pushes_connected = 0

    def broadcast(self, name: str) -> Broadcast:
        """The name's broadcast: the one in its grace, else a new one."""
        broadcast = self.broadcasts.get(name)
        if broadcast is None or broadcast.ended:
            # A takeover from another worker: its players here go on with this publish.
            fanout = self.pulls.adopt(name) if self.pulls is not None else None
            broadcast = Broadcast(name, self.config.hls.effective_grace, self._broadcast_ended,
                                  on_drop=self.metrics.relay_dropped, fanout=fanout)  # fmt: skip
            self.broadcasts[name] = broadcast
        return broadcast

    async def add_pushes(self, broadcast: Broadcast) -> None:
        """The broadcast's push relays: every [[push]] of the configuration, and its user's
        destinations (read once, when the broadcast starts)."""
        targets: list[tuple[int | None, destinations.DestinationUrl]] = [
            (None, entry.target) for entry in self.config.push
        ]
        if self.accounts is not None:
            try:
                for dest in await self.accounts.destinations(broadcast.name):
                    with contextlib.suppress(destinations.InvalidDestination):
                        targets.append((dest.destination_id, destinations.parse_url(dest.url)))
            except StoreError as exc:  # UnknownUser included: a callback-mode name
                if not isinstance(exc, LookupError):
                    log.warning("%s: push destinations not read: %s", broadcast.name, exc)
        for destination_id, target in targets:
            relay = PushRelay(broadcast.fanout, target, destination_id=destination_id,
                              tls=self.push_tls, on_connected=self._push_connected)  # fmt: skip
            broadcast.parts.append(relay)

    def _push_connected(self, change: int) -> None:
        self._pushes_connected += change
        self.metrics.set_pushes(self._pushes_connected)

    def push_status(self, name: str) -> list[PushStatus]:
        broadcast = self.broadcasts.get(name)
        if broadcast is None:
            return []
        return [p.status() for p in broadcast.parts if isinstance(p, PushRelay)]

    def sample_pushes(self) -> None:
        """The tick's sample of every push relay (its rates)."""
        for broadcast in self.broadcasts.values():
            for part in broadcast.parts:
                if isinstance(part, PushRelay):
                    part.sample()

    def relays(self, broadcast: Broadcast) -> bool:
        """Whether the broadcast's media goes anywhere as it came (players, destinations):
        only then does the core tap it."""
        return bool(self._play_networks.networks) or bool(broadcast.parts)

    def _broadcast_ended(self, broadcast: Broadcast) -> None:
        if self.broadcasts.get(broadcast.name) is broadcast:
            del self.broadcasts[broadcast.name]

    def end_all(self) -> None:
        """The server stops: every broadcast ends now, whatever its grace."""
        for broadcast in list(self.broadcasts.values()):
            broadcast.end()

    # -- PlayHandler ---------------------------------------------------------------------

    async def authorize_play(self, player: Player, request: PlayRequest) -> PlayAccept | Reject:
        """By public name, from an address in [rtmp] allow_play (and on_play's yes, when
        set), of a name on the air."""
        info = player.info
        if info.app.partition("?")[0].strip("/") != self.config.rtmp.app:
            return Reject(PLAY_NOT_FOUND, "unknown application")
        if not self._play_allowed(info.peer):
            return Reject(PLAY_FAILED, "playback is not allowed from this address")
        attempt = PlayAttempt(
            app=info.app, name=request.name, query=request.query, addr=info.peer,
            tcurl=info.tc_url or "", flashver=info.flashver or "", swfurl=info.swf_url or "",
            pageurl=info.page_url or "", clientid=str(info.conn_id), start=request.start,
            duration=request.duration, reset=request.reset,
        )  # fmt: skip
        decided = await self.auth.authorize_play(attempt)
        if isinstance(decided, Denied):
            return Reject(decided.code, decided.description)
        broadcast = self.broadcasts.get(decided)
        pull = None
        if broadcast is None or broadcast.ended or not broadcast.live:
            # Held by another worker (also after a takeover there): pulled from it.
            pull = self.pulls.join(decided) if self.pulls is not None else None
        if pull is not None:
            fanout = pull.fanout
        elif broadcast is None or broadcast.ended:
            return Reject(PLAY_NOT_FOUND, "no such live stream")
        else:
            fanout = broadcast.fanout

        def ended(reason: str) -> None:
            self.players.discard(output)
            self.metrics.set_players(len(self.players))
            self.auth.play_ended(attempt)
            if pull is not None and self.pulls is not None:
                self.pulls.leave(pull)

        output = PlayerOutput(fanout, player, on_end=ended)
        self.players.add(output)
        self.metrics.set_players(len(self.players))
        return PlayAccept(decided, output)

    def _play_allowed(self, peer: str) -> bool:
        return self._play_networks.trusts(peer)
