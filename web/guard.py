"""The HTTP port's connections: caps, idle connections at the cap, and slow clients.

- Request head: aiohttp arms its keep-alive timer when a connection opens and again after each
  response, and closes the connection if a complete request head has not arrived by then; data
  trickling in does not re-arm it. A short `keepalive_timeout` is therefore also the
  request-header timeout that defeats slowloris.
- Response: it must make progress. A client that leaves our output unread for `send_timeout`
  seconds (writes paused that long here, or a file chunk not taken in that time, see
  hlsfiles.py) is reset, as nginx does with send_timeout and reset_timedout_connection: a reset
  frees the socket buffer at once, where a close would leave it queued to a reader that is gone.
- Caps: aiohttp has none. Past the per-address cap a new connection gets a bare 503 and is
  closed before aiohttp sees it, so one address cannot hold everything. At the total cap the
  least recently active idle connection (no request being handled on it: a keep-alive
  connection between requests, one that has not sent a complete request yet) is reset to make
  room, as nginx reuses keep-alive connections when it runs out; only when every connection is
  busy is the new one refused with a 503. A request being handled (a file being sent, a
  blocking playlist request) is never idle: the middleware marks it busy until its response is
  written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from rtmpd.proxyproto import ProxyPolicy, plain_host
from rtmpd.sockets import NodeCount, ProxyGate, dual_stack_socket

from .metrics import Metrics
from .protocol import SERVER, RequestHandler, Runner, Throttle

#: Seconds a connection may take to deliver a complete request head (after opening or after
#: the previous response); also how long an idle keep-alive connection stays open.
HTTP_KEEPALIVE_TIMEOUT = 15.0
#: Seconds a response may wait for the client to take its next chunk; nginx's send_timeout
#: default. A player fetches a segment in a fraction of its duration, so a client that takes
#: nothing for a minute has stopped reading; waiting less would cut viewers on a congested link
#: for no gain, since the caps bound how many such clients there can be meanwhile.
HTTP_SEND_TIMEOUT = 60.0
#: Open HTTP connections, in total and from one client address.
HTTP_MAX_CONNECTIONS = 4096
HTTP_MAX_CONNECTIONS_PER_IP = 256

_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nServer: " + SERVER.encode() + b"\r\n"
    b"Content-Length: 0\r\nConnection: close\r\n\r\n"
)


@dataclass(slots=True, eq=False)
class Connection:
    """One admitted connection: its address, whether requests are being handled on it, and the
    timer that resets it when the client stops taking our output."""

    host: str
    transport: asyncio.BaseTransport
    busy: int = 0
    stall: asyncio.TimerHandle | None = None
    open: bool = True


def client_host(peername: object) -> str:
    """The address a connection is counted under; an IPv4 client of a dual-stack socket
    (::ffff:a.b.c.d) counts as the IPv4 address it is."""
    if not isinstance(peername, tuple) or not peername:
        return "?"
    return plain_host(str(peername[0]))


class ConnectionGuard:
    """Counts open connections per address, keeps the idle ones in order of last activity, and
    resets clients that stop reading."""

    def __init__(
        self,
        max_connections: int = HTTP_MAX_CONNECTIONS,
        max_per_ip: int = HTTP_MAX_CONNECTIONS_PER_IP,
        *,
        send_timeout: float = HTTP_SEND_TIMEOUT,
        metrics: Metrics | None = None,
        log: logging.Logger | None = None,
        clock: Callable[[], float] | None = None,
        proxy: ProxyPolicy | None = None,
        node: NodeCount | None = None,
    ) -> None:
        self.max_connections = max_connections
        #: With rtmpd workers: the caps are the node's, the other workers' connections count.
        self.node = node
        #: PROXY protocol on this port: trusted proxies' headers name the client.
        self.proxy = proxy
        self.max_per_ip = max_per_ip
        self.send_timeout = send_timeout
        self.log = log or logging.getLogger("rtmpd.http")
        self.refused = 0
        self._metrics = metrics
        self._conns: dict[asyncio.BaseTransport, Connection] = {}
        self._idle: OrderedDict[Connection, None] = OrderedDict()  # least recently active first
        self._per_ip: dict[str, int] = {}
        timing: dict[str, Any] = {} if clock is None else {"clock": clock}
        self._refusals = Throttle(self.log, logging.WARNING, "refused", **timing)
        self._reaped = Throttle(self.log, logging.INFO, "closed", **timing)
        self._stalls = Throttle(self.log, logging.INFO, "reset", **timing)
        self._proxy_refusals = Throttle(self.log, logging.WARNING, "refused", **timing)

    @property
    def connections(self) -> int:
        return len(self._conns)

    @property
    def idle(self) -> int:
        return len(self._idle)

    def admit(self, host: str, transport: asyncio.BaseTransport) -> Connection | None:
        """Count a new connection in, or None (then it gets the 503). At the total cap the least
        recently active idle connection is reset to make room."""
        node = self.node
        from_host = self._per_ip.get(host, 0) + (node.elsewhere_from(host) if node else 0)
        if from_host >= self.max_per_ip:
            self._refuse(f"{self.max_per_ip} HTTP connections already open from {host}")
            return None
        held = len(self._conns) + (node.elsewhere() if node is not None else 0)
        if held >= self.max_connections and not self._close_idle():
            self._refuse(f"{self.max_connections} HTTP connections already open, all busy")
            return None
        conn = Connection(host, transport)
        self._conns[transport] = conn
        self._per_ip[host] = self._per_ip.get(host, 0) + 1
        self._idle[conn] = None
        if node is not None:
            node.add(1)
            node.add_host(host, 1)
        return conn

    def release(self, conn: Connection) -> None:
        """The connection is gone (also fine for one already dropped here)."""
        if not conn.open:
            return
        conn.open = False
        del self._conns[conn.transport]
        self._idle.pop(conn, None)
        if self.node is not None:
            self.node.add(-1)
            self.node.add_host(conn.host, -1)
        left = self._per_ip.get(conn.host, 0) - 1
        if left > 0:
            self._per_ip[conn.host] = left
        else:
            self._per_ip.pop(conn.host, None)
        self.resumed(conn)

    def active(self, conn: Connection) -> None:
        """Bytes arrived: an idle connection becomes the most recently active."""
        if conn in self._idle:
            self._idle.move_to_end(conn)

    @contextlib.contextmanager
    def busy(self, transport: asyncio.BaseTransport | None) -> Iterator[None]:
        """A request is being handled on this connection: it is not idle until this ends."""
        conn = self._conns.get(transport) if transport is not None else None
        if conn is None:
            yield
            return
        conn.busy += 1
        self._idle.pop(conn, None)
        try:
            yield
        finally:
            conn.busy -= 1
            if not conn.busy and conn.open:
                self._idle[conn] = None

    def paused(self, conn: Connection) -> None:
        """The transport's buffer is full: the client has `send_timeout` to take some of it."""
        if conn.stall is None and conn.open:
            loop = asyncio.get_running_loop()
            conn.stall = loop.call_later(self.send_timeout, self._stalled, conn)

    def resumed(self, conn: Connection) -> None:
        if conn.stall is not None:
            conn.stall.cancel()
            conn.stall = None

    def _stalled(self, conn: Connection) -> None:
        conn.stall = None
        self.send_stalled(conn.transport)

    def send_stalled(self, transport: asyncio.BaseTransport) -> None:
        """The client took nothing for `send_timeout` seconds: reset the connection."""
        conn = self._conns.get(transport)
        host = conn.host if conn is not None else client_host(transport.get_extra_info("peername"))
        if self._metrics is not None:
            self._metrics.http_connection_dropped("send_timeout")
        self._stalls("HTTP client %s took nothing for %g s; connection reset", host,
                     self.send_timeout)  # fmt: skip
        reset(transport)

    def _close_idle(self) -> bool:
        if not self._idle:
            return False
        conn = next(iter(self._idle))
        self.release(conn)
        reset(conn.transport)
        if self._metrics is not None:
            self._metrics.http_connection_dropped("idle")
        self._reaped("HTTP: %d connections open; the least recently active idle one (%s) was "
                     "closed to make room", self.max_connections, conn.host)  # fmt: skip
        return True

    def proxy_refused(self, host: str, why: str) -> None:
        """A connection's PROXY header was wrong, missing or not its to send: closed."""
        if self._metrics is not None:
            self._metrics.http_connection_dropped("proxy_protocol")
        self._proxy_refusals("HTTP connection from %s refused: %s", host, why)

    def _refuse(self, why: str) -> None:
        self.refused += 1
        if self._metrics is not None:
            self._metrics.http_connection_dropped("refused")
        self._refusals("HTTP connection refused: %s", why)


def reset(transport: asyncio.BaseTransport) -> None:
    """Abort (RST): what the client had not taken yet is dropped at once, not kept queued."""
    if isinstance(transport, asyncio.WriteTransport):
        transport.abort()
    else:
        transport.close()


def busy_middleware(guard: ConnectionGuard) -> Middleware:
    """Marks the connection busy while a request is handled and its response written."""

    @web.middleware
    async def busy(request: web.Request, handler: Handler) -> web.StreamResponse:
        with guard.busy(request.transport):
            response = await handler(request)
            # aiohttp would write a Response only after the middlewares returned, with the
            # connection already counted idle: write it here. A client gone is aiohttp's to see.
            with contextlib.suppress(ConnectionError):
                await response.prepare(request)
                await response.write_eof()
        return response

    return busy


class _Guarded(asyncio.Protocol):
    """Stands in front of aiohttp's protocol: reads a PROXY header where one may or must come,
    admits the connection or answers 503, and tells the guard about activity and stalled
    writes."""

    __slots__ = ("_factory", "_guard", "_inner", "_conn", "_gate", "_transport", "_peer")

    def __init__(self, factory: Callable[[], asyncio.Protocol], guard: ConnectionGuard) -> None:
        self._factory = factory
        self._guard = guard
        self._inner: asyncio.Protocol | None = None
        self._conn: Connection | None = None
        self._gate: ProxyGate | None = None
        self._transport: asyncio.BaseTransport | None = None
        self._peer = "?"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._peer = client_host(transport.get_extra_info("peername"))
        policy = self._guard.proxy
        if policy is not None:
            self._gate = ProxyGate(policy, self._peer, self._admit, self._refuse)
            if self._gate.required:  # admitted once the header names the client
                self._gate.arm()
                return
        self._start(transport, self._peer, None)

    def _start(self, transport: asyncio.BaseTransport, host: str,
               forwarded: tuple[str, int] | None) -> None:  # fmt: skip
        self._conn = self._guard.admit(host, transport)
        if self._conn is None:
            assert isinstance(transport, asyncio.Transport)
            transport.write(_BUSY)
            transport.close()
            return
        self._inner = self._factory()
        if forwarded is not None and isinstance(self._inner, RequestHandler):
            self._inner.forwarded = forwarded
        self._inner.connection_made(transport)

    def _admit(self, source: tuple[str, int] | None) -> bool:
        assert self._transport is not None
        host = plain_host(source[0]) if source is not None else self._peer
        self._start(self._transport, host, (host, source[1]) if source else None)
        return self._conn is not None

    def _refuse(self, why: str) -> None:
        self._guard.proxy_refused(self._peer, why)
        if self._transport is not None:  # connection_lost releases what was admitted
            self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._gate is not None:
            self._gate.cancel()
        if self._inner is not None and self._conn is not None:
            self._guard.release(self._conn)
            self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._gate is not None and self._gate.waiting:
            rest = self._gate.feed(data)
            if rest:
                self.data_received(rest)
            return
        if self._inner is not None and self._conn is not None:
            self._guard.active(self._conn)
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def pause_writing(self) -> None:
        if self._inner is not None and self._conn is not None:
            self._guard.paused(self._conn)
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None and self._conn is not None:
            self._guard.resumed(self._conn)
            self._inner.resume_writing()


class GuardedSite(web.TCPSite):
    """A TCPSite whose connections pass a `ConnectionGuard` first, served by rtmpd's
    `RequestHandler` when the runner is a `Runner`; `[::]` listens for IPv4 as well."""

    __slots__ = ("guard", "sock")

    def __init__(self, runner: web.BaseRunner, host: str, port: int, *, guard: ConnectionGuard,
                 reuse_address: bool | None = None,
                 sock: socket.socket | None = None) -> None:  # fmt: skip
        super().__init__(runner, host, port, reuse_address=reuse_address)
        self.guard = guard
        #: An already listening socket (a worker's, made by its supervisor) instead of binding.
        self.sock = sock

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner
        runner = self._runner
        server = runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        make: Callable[[], asyncio.Protocol] = server
        if isinstance(runner, Runner):
            args = runner.handler_args
            make = lambda: RequestHandler(server, loop=loop, **args)  # noqa: E731
        guard = self.guard
        sock = self.sock or (dual_stack_socket(self._host, self._port) if self._host else None)
        if sock is not None:
            self._server = await loop.create_server(
                lambda: _Guarded(make, guard), sock=sock, backlog=self._backlog
            )
        else:
            self._server = await loop.create_server(
                lambda: _Guarded(make, guard),
                self._host,
                self._port,
                backlog=self._backlog,
                reuse_address=self._reuse_address,
            )
        sockets = self._server.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port
