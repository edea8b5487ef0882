"""Who is asking, and over what, when rtmpd sits behind a reverse proxy.

Only a request whose peer is one of `[http] trusted_proxies` may say, in X-Forwarded-Proto and
X-Forwarded-For, that it came over https and from whom: anyone else could claim both. The
client address decides the per-address failed-token limit (behind a proxy, every client would
otherwise share the proxy's one address and one guesser could lock the admin out); the scheme
decides whether the dashboard's cookie is `Secure`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from aiohttp import web

from rtmpd.proxyproto import TrustedNetworks

from .siblings import CLIENT_HEADER, HTTPS_HEADER, private


@dataclass(frozen=True, slots=True)
class TrustedProxies:
    """`[http] trusted_proxies`: the networks of the PROXY reader (one parser, one rule for
    IPv4-mapped peers), with what HTTP asks of them."""

    networks: TrustedNetworks = TrustedNetworks()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> TrustedProxies:
        """Addresses or networks ("127.0.0.1", "10.0.0.0/8"); ValueError names a bad one."""
        return cls(TrustedNetworks.parse(entries))

    def trusts(self, addr: str | None) -> bool:
        return bool(addr) and self.networks.trusts(addr or "")

    def client(self, request: web.Request) -> str:
        """The client's address: the peer, or through trusted proxies the nearest untrusted
        hop of X-Forwarded-For (only well-formed addresses are believed)."""
        if private(request):  # asked by another rtmpd worker: it passed the client on
            return request.headers.get(CLIENT_HEADER, "")
        peer = request.remote or ""
        if not self.trusts(peer):
            return peer
        hops = [
            h.strip() for h in ",".join(request.headers.getall("X-Forwarded-For", [])).split(",")
        ]
        for hop in reversed([h for h in hops if h]):
            if _ip(hop) is None:
                return peer
            if not self.trusts(hop):
                return hop
        return peer

    def https(self, request: web.Request) -> bool:
        """Whether the browser's request came over TLS: to rtmpd itself, or to a trusted proxy
        that says so in X-Forwarded-Proto."""
        if request.secure:
            return True
        if private(request):
            return request.headers.get(HTTPS_HEADER) == "1"
        if not self.trusts(request.remote):
            return False
        proto = request.headers.get("X-Forwarded-Proto", "")
        return proto.split(",")[0].strip().lower() == "https"


def _ip(addr: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not addr:
        return None
    try:
        return ipaddress.ip_address(addr)
    except ValueError:
        return None
