"""Connection caps for the HTTP port, and the timeout that ends slow requests.

aiohttp arms its keep-alive timer when a connection opens and again after each response, and
closes the connection if a complete request head has not arrived by then; data trickling in
does not re-arm it. A short `keepalive_timeout` is therefore also the request-header timeout
that defeats slowloris. aiohttp has no cap on connections, so `GuardedSite` adds one in total
and one per client address: past either, a new connection gets a bare 503 and is closed before
aiohttp sees it, and the file descriptors a slow client can hold stay bounded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

#: Seconds a connection may take to deliver a complete request head (after opening or after
#: the previous response); also how long an idle keep-alive connection stays open.
HTTP_KEEPALIVE_TIMEOUT = 15.0
#: Open HTTP connections, in total and from one client address.
HTTP_MAX_CONNECTIONS = 4096
HTTP_MAX_CONNECTIONS_PER_IP = 256
#: At most one log line per this many seconds about refused connections (it says how many).
_LOG_EVERY = 10.0

_BUSY = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class ConnectionGuard:
    """Counts open connections per address; says why a new one is refused, or ''."""

    def __init__(
        self,
        max_connections: int = HTTP_MAX_CONNECTIONS,
        max_per_ip: int = HTTP_MAX_CONNECTIONS_PER_IP,
        *,
        log: logging.Logger | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_connections = max_connections
        self.max_per_ip = max_per_ip
        self.log = log or logging.getLogger("rtmpd.http")
        self.refused = 0
        self._clock = clock
        self._open = 0
        self._per_ip: dict[str, int] = {}
        self._logged_at = -_LOG_EVERY
        self._unlogged = 0

    @property
    def connections(self) -> int:
        return self._open

    def admit(self, host: str) -> str:
        if self._open >= self.max_connections:
            why = f"{self.max_connections} HTTP connections already open"
        elif self._per_ip.get(host, 0) >= self.max_per_ip:
            why = f"{self.max_per_ip} HTTP connections already open from {host}"
        else:
            self._open += 1
            self._per_ip[host] = self._per_ip.get(host, 0) + 1
            return ""
        self.refused += 1
        self._unlogged += 1
        now = self._clock()
        if now - self._logged_at >= _LOG_EVERY:
            more = self._unlogged - 1
            extra = f" ({more} more refused since the last report)" if more else ""
            self.log.warning("HTTP connection refused: %s%s", why, extra)
            self._logged_at = now
            self._unlogged = 0
        return why

    def release(self, host: str) -> None:
        self._open -= 1
        left = self._per_ip.get(host, 0) - 1
        if left > 0:
            self._per_ip[host] = left
        else:
            self._per_ip.pop(host, None)


class _Guarded(asyncio.Protocol):
    """Stands in front of aiohttp's protocol: admits the connection or answers 503."""

    __slots__ = ("_factory", "_guard", "_inner", "_host")

    def __init__(self, factory: Callable[[], Any], guard: ConnectionGuard) -> None:
        self._factory = factory
        self._guard = guard
        self._inner: asyncio.Protocol | None = None
        self._host = "?"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        self._host = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        if self._guard.admit(self._host):
            assert isinstance(transport, asyncio.Transport)
            transport.write(_BUSY)
            transport.close()
            return
        self._inner = self._factory()
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._inner is not None:
            self._guard.release(self._host)
            self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._inner is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()


class GuardedSite(web.TCPSite):
    """A TCPSite whose connections pass a `ConnectionGuard` first."""

    __slots__ = ("guard",)

    def __init__(self, runner: web.BaseRunner, host: str, port: int, *, guard: ConnectionGuard,
                 reuse_address: bool | None = None) -> None:  # fmt: skip
        super().__init__(runner, host, port, reuse_address=reuse_address)
        self.guard = guard

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner
        server = self._runner.server
        assert server is not None
        guard = self.guard
        self._server = await asyncio.get_running_loop().create_server(
            lambda: _Guarded(server, guard),
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
        )
        sockets = self._server.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port
