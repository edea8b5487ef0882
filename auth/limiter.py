"""Per-client limit on failed publish attempts.

A client is an IPv4 address, or an IPv6 /64: one subscriber gets a whole /64, and an attacker
keyed on full IPv6 addresses could rotate through 2^64 of them. An IPv4 client of a dual-stack
socket (::ffff:a.b.c.d) is its IPv4 address (all of IPv4 would otherwise be one /64).

Failures are counted whatever succeeds in between: one valid key must not buy unlimited guesses
from its address (a success used to wipe the address's failures). The count is a leaky bucket
kept as one float per client (GCRA: the time at which its failures are forgiven): each failure
adds failure_window / max_failures seconds, time drains them, and the failure that brings the
debt to max_failures failures' worth blocks the client for `backoff` seconds, after which it
starts over. So max_failures failures in a burst block; failing at max_failures per
failure_window or slower never does.

O(1) per attempt and no database work while a client is blocked, so a guesser cannot slow down
anyone else. The tables are bounded (`MAX_CLIENTS`, least recently failing clients dropped
first, which then only start over) and cheap per entry: an int key and a float in an
OrderedDict, about 150 bytes (docs/RELIABILITY.md has the measured figure).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable

from .keys import key_fingerprint
from .locks import KeyedLocks
from .model import Denied

#: Clients the limiter remembers at most, in each of its two tables (failing and blocked).
MAX_CLIENTS = 65536
_V6 = 1 << 64  # tags IPv6 /64 keys, so that none equals an IPv4 address's key

#: A client: an IPv4 address or an IPv6 /64 as an int; a host that is no IP address as itself.
ClientKey = int | str


def client_host(addr: str) -> str:
    """The host part of 'ip', 'ip:port', '[v6]:port' or a bare IPv6 address."""
    if addr.startswith("["):
        end = addr.find("]")
        return addr[1:end] if end > 0 else addr
    if addr.count(":") == 1:
        return addr.partition(":")[0]
    return addr


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def client_key(host: str) -> ClientKey:
    """What failures are counted under: the IPv4 address, or the IPv6 address's /64."""
    ip = _ip(host)
    if ip is None:
        return host
    if ip.version == 4:
        return int(ip)
    return _V6 | int(ip) >> 64


def client_label(host: str) -> str:
    """The client as log lines name it: 192.0.2.7, or 2001:db8:1:2::/64."""
    ip = _ip(host)
    if ip is None or ip.version == 4:
        return str(ip or host)
    return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))


class FailureLimiter:
    """max_failures failures in a burst block a client for `backoff` seconds; they are forgiven
    at max_failures per `window` seconds."""

    def __init__(
        self,
        max_failures: int,
        window: float,
        backoff: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = MAX_CLIENTS,
    ) -> None:
        self.max_failures = max_failures
        self.window = window
        self.backoff = backoff
        self._clock = clock
        self._max_entries = max_entries
        self._cost = window / max_failures if max_failures > 0 else 0.0
        #: client -> when its failures are forgiven; least recently failing first
        self._forgiven: OrderedDict[ClientKey, float] = OrderedDict()
        #: client -> blocked until
        self._blocked: OrderedDict[ClientKey, float] = OrderedDict()

    def blocked(self, host: str) -> bool:
        key = client_key(host)
        until = self._blocked.get(key)
        if until is None:
            return False
        if until > self._clock():
            return True
        del self._blocked[key]
        return False

    def failure(self, host: str) -> bool:
        """Record a failure; True when this one starts a block."""
        if self.max_failures <= 0:
            return False
        now = self._clock()
        key = client_key(host)
        forgiven = max(self._forgiven.pop(key, now), now) + self._cost
        # max_failures failures' worth of debt; half a failure of slack for float rounding
        if forgiven - now > self.window - self._cost / 2:
            self._blocked[key] = now + self.backoff
            self._blocked.move_to_end(key)
            if len(self._blocked) > self._max_entries:
                self._blocked.popitem(last=False)
            return True
        self._forgiven[key] = forgiven
        if len(self._forgiven) > self._max_entries:
            self._forgiven.popitem(last=False)
        return False


class AttemptGuard:
    """The limiter as every decider uses it: refusals counted and logged in one place, and a
    turn per address for deciders that look keys up."""

    def __init__(self, limiter: FailureLimiter, log: logging.Logger) -> None:
        self._limiter = limiter
        self._log = log
        self._turns: KeyedLocks[ClientKey] = KeyedLocks()
        #: Told of every failure counted here (rtmpd workers: the others count it too).
        self.on_failure: Callable[[str], None] | None = None

    def blocked(self, host: str) -> bool:
        return self._limiter.blocked(host)

    @contextlib.asynccontextmanager
    async def turn(self, host: str) -> AsyncIterator[None]:
        """One lookup at a time per client (address or /64): concurrent guesses would
        otherwise all pass `blocked()` before the first of them fails, and outrun
        max_failures."""
        async with self._turns.hold(client_key(host)):
            yield

    def failed_elsewhere(self, host: str) -> None:
        """Count a failure another process saw (and logged) from `host`."""
        self._limiter.failure(host)

    def refused(self, host: str, key: str, denied: Denied) -> Denied:
        """Count a failed attempt and log it (with a fingerprint of the key, never the key)."""
        shown = key_fingerprint(key)
        self.failed(host, f"publish from {host} refused (key {shown}): {denied.description}")
        return denied

    def failed(self, host: str, line: str) -> None:
        """Count a failed attempt from `host` and log `line` (and the block it may start)."""
        started_block = self._limiter.failure(host)
        if self.on_failure is not None:
            self.on_failure(host)
        self._log.warning("%s", line)
        if started_block:
            self._log.warning(
                "%s blocked for %g s after %d failed attempts",
                client_label(host), self._limiter.backoff, self._limiter.max_failures,
            )  # fmt: skip
