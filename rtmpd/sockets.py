"""What the RTMP and HTTP listeners do with their sockets before their own protocol runs: bind
`[::]` for IPv4 too, count connections node-wide, read a PROXY header on the loop, and the
RTMPS listener's settings.

Apart from rtmpd.server and rtmpd.web.guard because both need the same: one PROXY adapter
(the sans-I/O reader of rtmpd.proxyproto, its deadline and its refusal) instead of one per
listener, and nothing here knows RTMP or HTTP.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from .proxyproto import ProxyHeaderError, ProxyPolicy, ProxyReader

#: Kernel-side writes an RTMP connection queues before it stops producing (pauses reading).
WRITE_HIGH_WATER = 256 * 1024


def dual_stack_socket(host: str, port: int) -> socket.socket | None:
    """A listening socket for `[::]` that takes IPv4 clients too (IPV6_V6ONLY off): that is
    what `[::]` means to whoever writes it, and asyncio would bind it IPv6-only. None for any
    other host (asyncio binds those)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if ip.version != 6 or not ip.is_unspecified or not socket.has_dualstack_ipv6():
        return None
    return socket.create_server((host, port), family=socket.AF_INET6, dualstack_ipv6=True)


class NodeCount(Protocol):
    """The connections the other rtmpd workers of this node hold on the same port, and this
    worker's own as it tells them (rtmpd.node_table): the caps count both."""

    def elsewhere(self) -> int: ...

    def elsewhere_from(self, host: str) -> int: ...

    def add(self, delta: int) -> None: ...

    def add_host(self, host: str, delta: int) -> None: ...


class TlsListenError(OSError):
    """The RTMPS listener could not bind (the plain one did, and is closed again)."""


@dataclass(slots=True)
class TlsListener:
    """Where RTMPS listens, and the context new handshakes use (swapped on reload)."""

    host: str
    port: int
    context: ssl.SSLContext
    #: An already listening socket to take connections from (a worker's, from its supervisor).
    sock: socket.socket | None = None


class ProxyGate:
    """A connection's first bytes while a PROXY header may or must come (`ProxyPolicy.reader`
    for its peer). A trusted proxy's header names the client: `admit(source)` is called with
    the address it names (None: the proxy spoke for itself), and returns whether the
    connection goes on. A header from anyone else, a wrong one, or none from a trusted proxy
    within the policy's timeout (once `arm`ed) goes to `refuse(why)`."""

    __slots__ = ("required", "_reader", "_timer", "_timeout", "_admit", "_refuse")

    def __init__(
        self,
        policy: ProxyPolicy,
        peer: str,
        admit: Callable[[tuple[str, int] | None], bool],
        refuse: Callable[[str], None],
    ) -> None:
        self._reader: ProxyReader | None = policy.reader(peer)
        self.required = self._reader.required
        self._timer: asyncio.TimerHandle | None = None
        self._timeout = policy.timeout
        self._admit = admit
        self._refuse = refuse

    @property
    def waiting(self) -> bool:
        """Bytes still go to `feed` (the header, or the first bytes, has not been read yet)."""
        return self._reader is not None

    def arm(self) -> None:
        """Start the trusted proxy's deadline for its header."""
        self._timer = asyncio.get_running_loop().call_later(self._timeout, self._late)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def feed(self, data: bytes) -> bytes:
        """The bytes after the header, for the connection's own protocol (b"" while the
        header is incomplete, or when the connection was refused)."""
        reader = self._reader
        assert reader is not None
        try:
            result = reader.feed(data)
        except ProxyHeaderError as exc:
            self._fail(str(exc))
            return b""
        if result is None:
            return b""
        header, rest = result
        self._reader = None
        if reader.required:
            self.cancel()
            if not self._admit(header.source if header is not None else None):
                return b""
        return rest

    def _late(self) -> None:
        self._timer = None
        if self._reader is not None:
            self._fail("no PROXY protocol header in time from a trusted proxy")

    def _fail(self, why: str) -> None:
        self._reader = None
        self.cancel()
        self._refuse(why)
