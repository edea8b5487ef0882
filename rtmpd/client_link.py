"""The other way round from rtmpd.server: a connection rtmpd opens to another RTMP server (a
push destination, or a sibling worker's private unix socket for a stream pulled), running the
core's `ClientSession` on an asyncio transport.

Apart from the server because it shares nothing with it but the idea: no listener, no caps, no
decisions; rtmpd.push and rtmpd.pull build the session and hand it here. The import contract
names the modules that may import the core's client session.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable

from rtmpd.rtmp.client import ClientEvent, ClientSession
from rtmpd.rtmp.errors import ProtocolError

from .sockets import WRITE_HIGH_WATER


class ClientLink(asyncio.Protocol):
    """A connection rtmpd opened to another RTMP server (a push destination), running the
    core's `ClientSession`: bytes read go in, its events go to `on_event` in order, what it
    wants sent is written. `buffered` is the output the peer has not taken yet (the caller
    bounds it); `done` resolves with the reason once the connection is gone. A peer that takes
    nothing for `stall_timeout` seconds while output waits is disconnected."""

    def __init__(
        self,
        session: ClientSession,
        on_event: Callable[[ClientEvent], None],
        stall_timeout: float = 30.0,
    ) -> None:
        self.session = session
        self._on_event = on_event
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.done: asyncio.Future[str] = self.loop.create_future()
        self.stall_timeout = stall_timeout
        self._stall: asyncio.TimerHandle | None = None

    @property
    def buffered(self) -> int:
        transport = self.transport
        return transport.get_write_buffer_size() if transport is not None else 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        self.flush()

    def data_received(self, data: bytes) -> None:
        try:
            self.session.receive_data(data)
            while (event := self.session.next_event()) is not None:
                self._on_event(event)
        except ProtocolError as exc:
            self.close(f"protocol error: {exc}", abort=True)
            return
        self.flush()

    def eof_received(self) -> bool:
        self._finish("closed by the server")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish(f"connection error: {exc}" if exc else "closed by the server")

    def pause_writing(self) -> None:
        if self._stall is None and not self.done.done():
            self._stall = self.loop.call_later(self.stall_timeout, self._stalled)

    def resume_writing(self) -> None:
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None

    def _stalled(self) -> None:
        self._stall = None
        self.close(f"the server took nothing for {self.stall_timeout:g} s", abort=True)

    def flush(self) -> None:
        out = self.session.data_to_send()
        transport = self.transport
        if out and transport is not None and not transport.is_closing():
            transport.write(out)

    def close(self, reason: str, *, abort: bool = False) -> None:
        """Close from our side (after flushing, unless `abort`)."""
        transport = self.transport
        if transport is not None and not transport.is_closing():
            if abort:
                transport.abort()
            else:
                self.flush()
                transport.close()
        self._finish(reason)

    def _finish(self, reason: str) -> None:
        self.resume_writing()
        if not self.done.done():
            self.done.set_result(reason)


async def open_client_link(
    session: ClientSession,
    on_event: Callable[[ClientEvent], None],
    host: str,
    port: int,
    *,
    tls: ssl.SSLContext | None = None,
    stall_timeout: float = 30.0,
) -> ClientLink:
    """Connect to host:port (over TLS with `tls`, checking the certificate against `host`)
    and start the handshake; raises OSError (ssl.SSLError included) when that fails."""
    loop = asyncio.get_running_loop()
    _, link = await loop.create_connection(
        lambda: ClientLink(session, on_event, stall_timeout), host, port, ssl=tls,
        server_hostname=host if tls is not None else None,
    )  # fmt: skip
    return link


async def open_unix_client_link(
    session: ClientSession,
    on_event: Callable[[ClientEvent], None],
    path: str,
    *,
    stall_timeout: float = 30.0,
) -> ClientLink:
    """Connect to the unix socket `path` (a sibling worker's private RTMP listener) and start
    the handshake; raises OSError when that fails."""
    loop = asyncio.get_running_loop()
    _, link = await loop.create_unix_connection(
        lambda: ClientLink(session, on_event, stall_timeout), path
    )
    return link
