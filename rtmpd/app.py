"""The composition root: builds auth, the HLS packager, the RTMP server and the web app from
one Config, and joins them.

The server's publish requests go to `Publishes` (rtmpd.publishes: an accepted decision
becomes a `Publish`, the sink the server feeds that publish's media into and ends; the stream
key stops there), its play requests to `OnAir` (rtmpd.on_air: the broadcasts, their push
relays and players). What stops a start is said by rtmpd.startup.

RTMPS is the same RTMP server on a second listener with an SSLContext from [rtmps]; SIGHUP's
`reload_tls` makes a new one from the same files for the next handshakes. `drain` (SIGUSR1,
from `rtmpd drain`) and `shutdown` (SIGTERM: stop listening, drain, stop) ask publishers to
reconnect within `[rtmp] drain_grace`.

Its tick samples each publish's health once per second (rtmpd.health) and tells the webhooks
(rtmpd.webhooks) of users banned (by anyone: the store's account events); streams started
and ended and publishes refused are told by `Publishes`. The web layer gets its `Admin`
(rtmpd.admin, over auth's `Accounts`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from aiohttp import web

from rtmpd.auth.accounts import Accounts
from rtmpd.auth.limiter import FailureLimiter
from rtmpd.auth.service import AuthService
from rtmpd.auth.store import StoreError
from rtmpd.config import Address, Config
from rtmpd.hls import HlsService
from rtmpd.hls.recorder import Recorder
from rtmpd.rtmp.config import SessionConfig
from rtmpd.rtmp_contract import DrainResult
from rtmpd.server import RtmpServer
from rtmpd.sockets import TlsListener, TlsListenError
from rtmpd.web import create_app, make_runner
from rtmpd.web.guard import ConnectionGuard, GuardedSite
from rtmpd.web.live import Waiters
from rtmpd.web.metrics import Metrics
from rtmpd.web.proxies import TrustedProxies
from rtmpd.web.viewers import ViewerTracker

from . import webhooks
from .admin import AdminService
from .channels import ChannelDirectory
from .live_source import HlsLiveSource
from .node_table import Port
from .on_air import OnAir
from .publishes import Publishes
from .pull import Pulls, SiblingPlays, private_listener
from .push import PushStatus
from .startup import StartupError, listen_error, raise_file_limit, tls_context
from .webhooks import Webhooks
from .worker import Worker

log = logging.getLogger("rtmpd")

TICK_SECONDS = 1.0
MIB = 1024 * 1024
#: File descriptors kept free beyond the connection caps: database, segments being written,
#: listening sockets, logs.
FD_RESERVE = 256
#: Seconds stop() lets HTTP responses in progress finish (aiohttp's default is 60: a client that
#: stopped reading would hold the shutdown until its send timeout).
HTTP_SHUTDOWN_GRACE = 5.0


class Rtmpd:
    """The whole server; `start()` binds every port, `stop()` finishes every stream."""

    def __init__(self, config: Config, *, worker: Worker | None = None) -> None:
        self.config = config
        #: One worker of several ([server] workers): its sockets, node name and siblings.
        self.worker = worker
        self.metrics = Metrics()
        #: Viewers of this process's HLS answers (with workers, each counts its own).
        self.viewers = ViewerTracker()
        #: Requests blocked on LL-HLS parts, woken by the packager as parts complete.
        self.waiters = Waiters()
        #: Broadcasts kept as VODs ([record]); None when off.
        self.recorder: Recorder | None = None
        if config.record.enabled:
            self.recorder = Recorder(config.record, grace=config.hls.effective_grace,
                                     log=logging.getLogger("rtmpd.record"),
                                     node=worker.node if worker is not None else "",
                                     shared=worker is not None)  # fmt: skip
        self.hls = HlsService(
            config.hls,
            on_segment=lambda segment: self.publishes.segment_written(segment),
            log=logging.getLogger("rtmpd.hls"),
            live=self.waiters if config.hls.low_latency else None,
            recorder=self.recorder,
            shared=worker is not None,
        )
        if worker is not None:  # [hls] max_total_bytes bounds the folder, all workers' files
            self.hls.quota.shared = worker.table.hls()
        self.auth = AuthService(
            config.auth,
            config.database.path,
            app=config.rtmp.app,
            log=logging.getLogger("rtmpd.auth"),
            db_url=config.database.url,
            node=worker.node if worker is not None else config.database.node_name,
            lease=config.database.lease,
        )
        #: Users and API tokens on the server's own store; None in callback mode (no database).
        self.accounts: Accounts | None = None
        if self.auth.store is not None:
            auth_cfg = config.auth
            limiter = FailureLimiter(
                auth_cfg.max_failures, auth_cfg.failure_window, auth_cfg.backoff
            )
            self.accounts = Accounts(
                self.auth.store, limiter=limiter, log=logging.getLogger("rtmpd.admin")
            )
        #: With workers: streams of siblings pulled for players here, and this worker's
        #: private RTMP listener their pulls of its streams come to (rtmpd.pull).
        self.pulls: Pulls | None = None
        if worker is not None and config.rtmp.allow_play:
            self.pulls = Pulls(config.rtmp.app, self._sibling_rtmp_path,
                               on_drop=self.metrics.relay_dropped)  # fmt: skip
        #: The names on the air, their push relays and players; it decides play requests.
        self.on_air = OnAir(config, self.auth, self.metrics, accounts=self.accounts,
                            pulls=self.pulls)  # fmt: skip
        self.broadcasts = self.on_air.broadcasts
        self._players = self.on_air.players
        self.directory = ChannelDirectory(self.auth, self.hls, worker=worker)
        self.webhooks = Webhooks(
            config.webhooks,
            on_outcome=self.metrics.webhook,
            log=logging.getLogger("rtmpd.webhooks"),
        )
        #: The accepted publishes; it decides publish requests.
        self.publishes = Publishes(config, self.auth, self.hls, self.metrics, self.webhooks,
                                   self.on_air, self.directory, shared=worker is not None,
                                   spawn=self._spawn, node_url=lambda: self.node_url)  # fmt: skip
        tls = None
        if config.rtmps.enabled:
            addr = config.rtmps.address
            tls = TlsListener(addr.host, addr.port, tls_context(self.config.rtmps),
                              sock=worker.rtmps if worker is not None else None)  # fmt: skip
        self.rtmp = RtmpServer(
            self.publishes,
            host=config.rtmp_address.host,
            port=config.rtmp_address.port,
            session_config=SessionConfig(),
            max_connections=config.rtmp.max_connections,
            max_connections_per_ip=config.rtmp.max_connections_per_ip,
            log=logging.getLogger("rtmpd.rtmp"),
            tls=tls,
            play_handler=self.on_air if config.rtmp.allow_play else None,
            proxy=config.rtmp.proxy_policy,
            sock=worker.rtmp if worker is not None else None,
            node=worker.table.connections(Port.RTMP) if worker is not None else None,
        )
        self.sibling_plays = SiblingPlays(self.broadcasts)
        self.sibling_rtmp: RtmpServer | None = None
        self._draining: asyncio.Task[DrainResult] | None = None
        self._stopping: asyncio.Future[None] | None = None
        if worker is not None:  # the failed-key limit holds across workers
            self.auth.share_failures(worker.failed)
            worker.on_failed_elsewhere = self.auth.failed_elsewhere
            worker.on_sibling_died = lambda node: self._spawn(self._sibling_died(node))
        #: HTTP connection caps, idle connections at the cap and the send timeout; the
        #: request-head/keep-alive timeout goes to aiohttp (see rtmpd.web.guard).
        self.http_guard = ConnectionGuard(
            config.http.max_connections,
            config.http.max_connections_per_ip,
            send_timeout=config.http.send_timeout,
            metrics=self.metrics,
            log=logging.getLogger("rtmpd.http"),
            proxy=config.http.proxy_policy,
            node=worker.table.connections(Port.HTTP) if worker is not None else None,
        )
        self.http_keepalive_timeout = config.http.keepalive_timeout
        self._runner: web.AppRunner | None = None
        self._site: GuardedSite | None = None
        self._ticker: asyncio.Task[None] | None = None
        self.http_port = 0
        #: This node's HTTP base URL as viewers reach it ([web] public_http_url, or derived).
        self.node_url = ""
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        raise_file_limit(
            self.config.rtmp.max_connections + self.http_guard.max_connections + FD_RESERVE
        )
        for folder in (self.config.hls_path, self.config.database_path.parent):
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StartupError(f"cannot create {folder}: {exc.strerror}") from None
        try:
            await self.auth.start()
        except Exception as exc:  # noqa: BLE001 - report any database failure in one line
            if self.config.database.url:  # the message names the server (no password)
                raise StartupError(str(exc)) from None
            raise StartupError(f"database {self.config.database_path}: {exc}") from None
        first = self.worker is None or self.worker.cleanup
        if first:  # not while siblings' streams are live
            self.hls.startup_cleanup(await self.auth.live_names())
        else:  # restarted: the streams it held when it died end now (unless taken over)
            self._finish_abandoned(self.auth.stale, "before this worker's restart")
        if self.recorder is not None:  # closes what a killed run left open, then retention
            if first:
                self.recorder.start()
            else:  # a restarted worker takes back its own (the first worker 1 took the rest)
                node = self.worker.node if self.worker is not None else ""
                self.recorder.start(claim=lambda info: info.node == node)
        quota = self.hls.quota
        log.info("HLS files: at most %d MiB per stream, %d MiB in all under %s", quota.max_stream
                 // MIB, quota.max_total // MIB, self.config.hls_path)  # fmt: skip
        if quota.max_total < quota.max_stream:
            log.warning("HLS: only %d MiB for all streams under %s (free space, or [hls] "
                        "max_total_bytes): streams are ended when they fill it",
                        quota.max_total // MIB, self.config.hls_path)  # fmt: skip
        await self.webhooks.start()
        addr = self.config.rtmp_address
        try:
            await self.rtmp.start()
        except TlsListenError as exc:
            where = self.config.rtmps.address
            raise StartupError(f"cannot listen for RTMPS on {where}: {listen_error(exc)}") from None
        except OSError as exc:
            raise StartupError(f"cannot listen for RTMP on {addr}: {listen_error(exc)}") from None
        log.info("RTMP listening on rtmp://%s/%s", Address(addr.host, self.rtmp.port),
                 self.config.rtmp.app)  # fmt: skip
        if self.config.rtmps.enabled:
            tls_addr = self.config.rtmps.address
            log.info("RTMPS listening on rtmps://%s/%s", Address(tls_addr.host, self.rtmp.tls_port),
                     self.config.rtmp.app)  # fmt: skip
        if self.pulls is not None and self.worker is not None:
            await self._start_sibling_rtmp(self.worker.private_rtmp)
        await self._start_http()
        self._ticker = asyncio.create_task(self._tick())
        if self.worker is not None:
            await self.worker.ready()

    async def _start_http(self) -> None:
        addr = self.config.http_address
        web_cfg = self.config.web
        app = create_app(
            hls_path=self.config.hls_path,
            nested=self.config.hls.nested,
            directory=self.directory,
            hlsjs_url=self.config.web.hlsjs_url,
            metrics=self.metrics,
            access_log=logging.getLogger("rtmpd.access") if self.config.http.access_log else None,
            hlsjs_file=Path(web_cfg.hlsjs_file) if web_cfg.hlsjs_file else None,
            admin=None
            if self.accounts is None
            else AdminService(
                self.accounts,
                lambda: self.publishes.live,
                self.config.hls.fragment,
                push_status=self.push_status,
            ),
            trusted_proxies=TrustedProxies.parse(self.config.http.trusted_proxies),
            guard=self.http_guard,
            live=HlsLiveSource(self.hls, self.config.hls.nested)
            if self.config.hls.low_latency
            else None,
            waiters=self.waiters,
            low_latency=self.config.hls.low_latency,
            recordings=self.recorder,
            worker=self.worker.label if self.worker is not None else "",
            sibling=self.directory.sibling if self.worker is not None else None,
            admin_worker=self.worker.admin_path if self.worker is not None else "",
            peers=self.worker.peers if self.worker is not None else None,
            viewers=self.viewers,
            viewers_elsewhere=self.worker.sibling_viewers if self.worker is not None else None,
        )
        self._runner = make_runner(
            app,
            handle_signals=False,
            keepalive_timeout=self.http_keepalive_timeout,
            shutdown_timeout=HTTP_SHUTDOWN_GRACE,
        )
        await self._runner.setup()
        self._site = GuardedSite(
            self._runner, addr.host, addr.port, guard=self.http_guard, reuse_address=True,
            sock=self.worker.http if self.worker is not None else None,
        )  # fmt: skip
        try:
            await self._site.start()
            if self.worker is not None:  # where the other workers reach this one
                await web.UnixSite(self._runner, self.worker.private).start()
        except OSError as exc:
            raise StartupError(f"cannot listen for HTTP on {addr}: {listen_error(exc)}") from None
        self.http_port = self._site.port
        log.info("HTTP listening on http://%s/", Address(addr.host, self.http_port))
        self.node_url = self.config.public_http_url(self.http_port)

    async def _start_sibling_rtmp(self, path: str) -> None:
        """The private RTMP listener the other workers pull this worker's streams from."""
        try:
            sock = private_listener(path)
        except OSError as exc:
            raise StartupError(f"cannot listen for RTMP on {path}: {listen_error(exc)}") from None
        cap = self.config.rtmp.max_connections
        self.sibling_rtmp = RtmpServer(
            self.sibling_plays, host="", port=0, max_connections=cap,
            max_connections_per_ip=cap, log=logging.getLogger("rtmpd.siblings"),
            play_handler=self.sibling_plays, sock=sock,
        )  # fmt: skip
        await self.sibling_rtmp.start()

    def _sibling_rtmp_path(self, name: str) -> str | None:
        remote = self.auth.remote(name)
        if remote is None or self.worker is None:
            return None
        return self.worker.sibling_rtmp(remote.node)

    async def stop(self) -> None:
        """Stop everything; a second call waits for the first (SIGTERM's drain may still be
        stopping when a second signal asks)."""
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop())
        await asyncio.shield(self._stopping)

    async def _stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        if self.worker is not None:
            await self.worker.close()
        await self.rtmp.close()
        if self.pulls is not None:
            self.pulls.close()
        if self.sibling_rtmp is not None:
            await self.sibling_rtmp.close()
        self.on_air.end_all()
        self.hls.close()
        if self.recorder is not None:
            self.recorder.close()
        if self._runner is not None:
            await self._runner.cleanup()
        await self.webhooks.stop()
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await self.auth.stop()

    # -- RTMPS certificates, draining ------------------------------------------------------

    def reload_tls(self) -> bool:
        """Load [rtmps] cert and key again (SIGHUP): the next TLS handshakes use them, running
        connections keep theirs. A pair that does not load leaves the old one in use."""
        if not self.config.rtmps.enabled:
            log.info("reload: RTMPS is off, no certificate to load")
            return False
        try:
            context = tls_context(self.config.rtmps)
        except StartupError as exc:
            log.warning("%s; the certificate in use stays", exc)
            return False
        self.rtmp.set_tls_context(context)
        log.info("[rtmps] certificate reloaded from %s", self.config.rtmps.cert)
        return True

    async def drain(self) -> DrainResult | None:
        """Ask the publishers connected now to reconnect (those that can), give them
        [rtmp] drain_grace, end the rest; the server goes on. None when drain_grace is 0."""
        grace = self.config.rtmp.drain_grace
        if grace <= 0:
            log.info("drain: [rtmp] drain_grace is 0 (off); nothing done")
            return None
        if self._draining is None or self._draining.done():
            self._draining = asyncio.create_task(
                self.rtmp.drain(grace, self.config.rtmp.drain_redirect)
            )
        return await asyncio.shield(self._draining)

    async def shutdown(self) -> None:
        """SIGTERM: stop taking connections, drain (when [rtmp] drain_grace is set), stop."""
        self.rtmp.stop_listening()
        await self.drain()
        await self.stop()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            now = time.time()
            try:
                self.hls.tick(now)
            except Exception:  # a cleanup error must not end cleanup for good
                log.exception("HLS cleanup failed")
            if self.recorder is not None:
                try:
                    self.recorder.tick(now)
                except Exception:
                    log.exception("recordings failed")
            self.publishes.sample(now)
            self.on_air.sample_pushes()
            self.metrics.set_live(len(self.publishes.live))
            self.metrics.set_webhooks_pending(self.webhooks.pending)
            if self.worker is not None:  # codecs, bitrates, viewers for the other workers' API
                names = {publish.name for publish in self.publishes.live}
                self.worker.write_streams(self.directory.shared_stats(names))
                self.worker.write_viewers(self.viewers.counts())
            self.metrics.set_viewers(self.viewers.total())  # /metrics sums the workers' own
            await self._account_events()

    async def _account_events(self) -> None:
        """Users banned since the last tick, by the API or `rtmpd users` alike: webhooks."""
        if self.accounts is None or (self.worker is not None and self.worker.index != 1):
            return  # one worker sends them: two could read the same event before either took it
        try:
            events = await self.accounts.take_events()
        except StoreError as exc:
            log.warning("account events postponed: %s", exc)
            return
        for event in events:
            if event.kind == webhooks.USER_BANNED:
                self.webhooks.emit(
                    event.kind, {"name": event.name, "banned_at": webhooks.iso(event.at)}
                )

    @property
    def push_tls(self) -> Callable[[], ssl.SSLContext]:
        """What a push to an rtmps:// destination makes its TLS context with (the tests' trust
        their CA)."""
        return self.on_air.push_tls

    @push_tls.setter
    def push_tls(self, make: Callable[[], ssl.SSLContext]) -> None:
        self.on_air.push_tls = make

    def push_status(self, name: str) -> list[PushStatus]:
        return self.on_air.push_status(name)

    # -- workers -----------------------------------------------------------------------

    async def _sibling_died(self, node: str) -> None:
        """Worker `node` died: its live records are cleared (by this worker or another, each
        name by one), and the playlists of those cleared here get ENDLIST."""
        self._finish_abandoned(await self.auth.release_node(node), f"when {node} died")

    def _finish_abandoned(self, names: list[str], when: str) -> None:
        for name in names:
            if self.hls.finish_abandoned(name):
                log.info("HLS %s: its publisher went %s; playlist ended", name, when)

    # -- helpers -----------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
