"""The PROXY protocol (HAProxy's, versions 1 and 2), sans-I/O: bytes in, the client's address
out, for the RTMP and HTTP listeners behind a load balancer.

A load balancer in TCP mode hides the client: rtmpd would see the balancer's address in its
per-address caps, the failed-key limit and its logs. With `send-proxy` (v1, a text line) or
`send-proxy-v2` (binary) the balancer writes the client's address first, then the client's
bytes. Only peers listed as trusted proxies may do that; the policy (`ProxyPolicy`):

- a trusted peer must start with a header (a misconfigured balancer that forwards raw bytes
  would otherwise let any client write one of its own);
- any other peer is served as it connects, unless its first bytes are a PROXY header: then it
  is refused, since it claims an address it may not claim.

No library: the PyPI ones are unmaintained, and the format is two small fixed layouts
(haproxy.org's proxy-protocol.txt). A v2 LOCAL header (the balancer's own health check) and
v1 UNKNOWN keep the peer's own address; UDP and unix-socket addresses are refused.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable
from dataclasses import dataclass

V1_PREFIX = b"PROXY "
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
#: A v1 line is at most 107 bytes with its CRLF (the spec's bound).
V1_MAX = 107
#: The v2 header bytes we take at most (16 fixed + addresses + TLVs); HAProxy's are far below.
V2_MAX = 16 + 1024
#: Seconds a trusted proxy has to send its header before the connection is closed.
HEADER_TIMEOUT = 10.0

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
IP = ipaddress.IPv4Address | ipaddress.IPv6Address


class ProxyHeaderError(ValueError):
    """The bytes are not an acceptable PROXY header; the message says why (no peer bytes)."""


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """What a header says: the client's address and port, or None to keep the peer's own (v2
    LOCAL, v1 UNKNOWN: the balancer speaking for itself)."""

    version: int
    source: tuple[str, int] | None


@dataclass(frozen=True, slots=True)
class TrustedNetworks:
    """Addresses or CIDR networks, as `trusted_proxies` lists them."""

    networks: tuple[Network, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> TrustedNetworks:
        """ValueError names an entry that is no IP address or network."""
        networks = []
        for entry in entries:
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or network") from None
        return cls(tuple(networks))

    def trusts(self, host: str) -> bool:
        ip = _ip(host)
        return ip is not None and any(ip in net for net in self.networks)


@dataclass(frozen=True, slots=True)
class ProxyPolicy:
    """PROXY protocol on one listener: who must send a header, and how long they have."""

    trusted: TrustedNetworks
    timeout: float = HEADER_TIMEOUT

    def reader(self, peer: str) -> ProxyReader:
        return ProxyReader(required=self.trusted.trusts(peer))


class ProxyReader:
    """Reads the start of one connection: `feed` until it returns (header or None, the bytes
    after it). With `required`, the header must be there; without, a header is an error and
    anything else is handed back untouched."""

    __slots__ = ("required", "_buffer")

    def __init__(self, *, required: bool) -> None:
        self.required = required
        self._buffer = b""

    def feed(self, data: bytes) -> tuple[ProxyHeader | None, bytes] | None:
        """None while more bytes are needed; raises ProxyHeaderError."""
        self._buffer += data
        buffer = self._buffer
        kind = _kind(buffer)
        if kind is None:
            return None
        if not self.required:
            if kind:
                raise ProxyHeaderError("a PROXY protocol header from a peer not in trusted_proxies")
            self._buffer = b""
            return None, buffer
        if not kind:
            raise ProxyHeaderError("no PROXY protocol header from a trusted proxy")
        parsed = parse_v1(buffer) if kind == 1 else parse_v2(buffer)
        if parsed is None:
            return None
        header, used = parsed
        self._buffer = b""
        return header, buffer[used:]


def _kind(data: bytes) -> int | None:
    """1 or 2 for a header's start, 0 for anything else, None while it could still be one."""
    for version, signature in ((1, V1_PREFIX), (2, V2_SIGNATURE)):
        size = min(len(data), len(signature))
        if data[:size] == signature[:size]:
            return version if len(data) >= len(signature) else None
    return 0


def parse_v1(data: bytes) -> tuple[ProxyHeader, int] | None:
    """The v1 line: "PROXY TCP4 SRC DST SPORT DPORT" CRLF (TCP6 alike, or UNKNOWN); (header,
    bytes used) or None for more."""
    end = data.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        if len(data) >= V1_MAX or b"\n" in data:
            raise ProxyHeaderError("PROXY v1 line too long or not ended by CRLF")
        return None
    try:
        fields = data[:end].decode("ascii").split(" ")
    except UnicodeDecodeError:
        raise ProxyHeaderError("PROXY v1 line is not ASCII") from None
    used = end + 2
    if len(fields) >= 2 and fields[1] == "UNKNOWN":
        return ProxyHeader(1, None), used
    if len(fields) != 6 or fields[1] not in ("TCP4", "TCP6"):
        raise ProxyHeaderError("PROXY v1 line is not PROXY TCP4|TCP6 SRC DST SPORT DPORT")
    family = 4 if fields[1] == "TCP4" else 6
    try:
        source, destination = (ipaddress.ip_address(f) for f in fields[2:4])
    except ValueError:
        raise ProxyHeaderError(f"PROXY v1 line has no {fields[1]} addresses") from None
    if source.version != family or destination.version != family:
        raise ProxyHeaderError(f"PROXY v1 line has no {fields[1]} addresses")
    port = _port(fields[4])
    _port(fields[5])
    return ProxyHeader(1, (str(_ip(str(source))), port)), used


def _port(text: str) -> int:
    if not text.isdigit() or len(text) > 5 or int(text) > 65535:
        raise ProxyHeaderError("PROXY v1 line has a bad port")
    return int(text)


def parse_v2(data: bytes) -> tuple[ProxyHeader, int] | None:
    """The binary header: signature, version and command, family, length, addresses, TLVs;
    (header, bytes used) or None for more."""
    if len(data) < 16:
        return None
    version_command, family, length = struct.unpack_from("!BBH", data, 12)
    if version_command >> 4 != 2:
        raise ProxyHeaderError(f"PROXY v2 header of version {version_command >> 4}")
    command = version_command & 0x0F
    if command not in (0, 1):
        raise ProxyHeaderError(f"PROXY v2 header with unknown command {command}")
    if 16 + length > V2_MAX:
        raise ProxyHeaderError(f"PROXY v2 header of {16 + length} bytes (at most {V2_MAX})")
    used = 16 + length
    if len(data) < used:
        return None
    if command == 0:  # LOCAL: the balancer's own connection
        return ProxyHeader(2, None), used
    body = data[16:used]
    if family == 0x11:  # TCP over IPv4
        if length < 12:
            raise ProxyHeaderError("PROXY v2 TCP4 header too short")
        source = str(ipaddress.IPv4Address(body[:4]))
        port = struct.unpack_from("!H", body, 8)[0]
    elif family == 0x21:  # TCP over IPv6
        if length < 36:
            raise ProxyHeaderError("PROXY v2 TCP6 header too short")
        ip6 = ipaddress.IPv6Address(body[:16])
        source = str(ip6.ipv4_mapped or ip6)
        port = struct.unpack_from("!H", body, 32)[0]
    elif family == 0x00:  # UNSPEC: keep the peer's address
        return ProxyHeader(2, None), used
    else:
        raise ProxyHeaderError(f"PROXY v2 header for family 0x{family:02x} (only TCP is taken)")
    return ProxyHeader(2, (source, port)), used


def v1_line(source: tuple[str, int], destination: tuple[str, int]) -> bytes:
    """A v1 header (for tests and tools): TCP4 or TCP6 by the source address."""
    family = "TCP6" if ":" in source[0] else "TCP4"
    return (f"PROXY {family} {source[0]} {destination[0]} {source[1]} {destination[1]}\r\n"
            .encode("ascii"))  # fmt: skip


def v2_header(
    source: tuple[str, int] | None, destination: tuple[str, int] = ("0.0.0.0", 0)
) -> bytes:
    """A v2 header (for tests and tools): PROXY over TCP4/TCP6, or LOCAL when `source` is None."""
    if source is None:
        return V2_SIGNATURE + struct.pack("!BBH", 0x20, 0x00, 0)
    src, dst = ipaddress.ip_address(source[0]), ipaddress.ip_address(destination[0])
    family = 0x11 if src.version == 4 else 0x21
    if dst.version != src.version:
        dst = ipaddress.ip_address("::" if src.version == 6 else "0.0.0.0")
    body = src.packed + dst.packed + struct.pack("!HH", source[1], destination[1])
    return V2_SIGNATURE + struct.pack("!BBH", 0x21, family, len(body)) + body


def _ip(host: str) -> IP | None:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def plain_host(host: str) -> str:
    """An IPv4 client of a dual-stack socket (::ffff:a.b.c.d) is that IPv4 address, in the logs,
    the caps, the rate limits and the callbacks' `addr` alike, on the RTMP and HTTP ports."""
    if ":" in host:
        try:
            mapped = ipaddress.IPv6Address(host.partition("%")[0]).ipv4_mapped
        except ValueError:
            return host
        if mapped is not None:
            return str(mapped)
    return host
