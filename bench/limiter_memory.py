"""Memory of the failed-publish limiter at its bound (off CI; the figure is in
docs/RELIABILITY.md): `python -m bench.limiter_memory [ADDRESSES]`.

Every address is an IPv6 client in a /64 of its own: first that many clients are blocked (five
failures each), then as many others fail once, which fills both of the limiter's tables. Twice
MAX_CLIENTS addresses of each kind by default, so that the tables churn at their bound (their
hash tables stay at the size the churn made them). Measured with tracemalloc: Python
allocations only.
"""

from __future__ import annotations

import sys
import tracemalloc

from rtmpd.auth.limiter import MAX_CLIENTS, FailureLimiter

MIB = 1024 * 1024


def measure(addresses: int) -> tuple[int, int]:
    """Bytes held by a limiter after `addresses` blocked clients, then `addresses` failing
    ones: (blocked table alone, both tables)."""
    blocked = [f"2001:db8:{i >> 16:x}:{i & 0xFFFF:x}::1" for i in range(addresses)]
    failing = [f"2001:db9:{i >> 16:x}:{i & 0xFFFF:x}::1" for i in range(addresses)]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    limiter = FailureLimiter(5, 60.0, 60.0, clock=lambda: 1_000_000.0)
    for host in blocked:
        for _ in range(5):
            limiter.failure(host)
    first = tracemalloc.get_traced_memory()[0] - before
    for host in failing:
        limiter.failure(host)
    both = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return first, both


def main(argv: list[str]) -> None:
    addresses = int(argv[0]) if argv else 2 * MAX_CLIENTS
    blocked, both = measure(addresses)
    kept = min(addresses, MAX_CLIENTS)
    print(f"{addresses} blocked and {addresses} failing clients fed; {kept} kept in each table")
    print(f"blocked table: {blocked / MIB:.1f} MiB ({blocked / kept:.0f} bytes per client)")
    print(f"both tables: {both / MIB:.1f} MiB ({both / (2 * kept):.0f} bytes per client)")


if __name__ == "__main__":
    main(sys.argv[1:])
