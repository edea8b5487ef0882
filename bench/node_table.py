"""What the node-wide bounds of rtmpd workers (rtmpd.node_table) cost on their hot paths.

- HLS: every write of a segment's bytes adds to its name's count (`StreamUsage.add`) and is
  checked against the bounds (`StreamUsage.over`): one process, and a worker of `--workers`
  whose count goes to its slot of the shared table and whose check sums the others'.
- Connections: admitting and releasing an HTTP connection (`ConnectionGuard.admit`/`release`),
  alone and with the node's counts (the same for RTMP's `_admit`/`_forget`).

The best of `--rounds` runs of `--count` operations each, in nanoseconds per operation.

    python -m bench.node_table [--workers 2] [--count 200000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rtmpd.hls.quota import DiskQuota
from rtmpd.web.guard import ConnectionGuard

from rtmpd.node_table import NodeTable, Port, create


def _best(run: Callable[[], None], count: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best / count * 1e9


def _hls(table: NodeTable | None, count: int) -> Callable[[], None]:
    quota = DiskQuota(1 << 40, 1 << 41)
    if table is not None:
        quota.shared = table.hls()
    usage = quota.usage()

    def run() -> None:
        add, over = usage.add, usage.over
        for _ in range(count):
            add(1316)  # a write of 7 TS packets
            over()

    return run


class _Transport(asyncio.BaseTransport):
    pass


def _http(table: NodeTable | None, count: int) -> Callable[[], None]:
    node = table.connections(Port.HTTP) if table is not None else None
    guard = ConnectionGuard(1 << 20, 1 << 20, node=node)
    transports = [_Transport() for _ in range(64)]

    def run() -> None:
        admit, release = guard.admit, guard.release
        for i in range(count):
            conn = admit(f"10.0.{i % 64}.1", transports[i % 64])
            assert conn is not None
            release(conn)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "counts"
        create(path, args.workers)
        table = NodeTable(path, 1, args.workers)
        rows = [
            ("HLS write: add + over, one process", _hls(None, args.count)),
            (f"HLS write: add + over, 1 of {args.workers} workers", _hls(table, args.count)),
            ("HTTP connection: admit + release, one process", _http(None, args.count)),
            (f"HTTP connection: admit + release, 1 of {args.workers} workers",
             _http(table, args.count)),
        ]  # fmt: skip
        for what, run in rows:
            print(f"{what:<55} {_best(run, args.count, args.rounds):8.0f} ns")
        table.close()


if __name__ == "__main__":
    main()
