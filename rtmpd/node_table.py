"""Node-wide counts of rtmpd workers: connections per port (in all and per client address) and
the bytes of the HLS folder, so that `[rtmp]`/`[http] max_connections`,
`max_connections_per_ip` and `[hls] max_total_bytes` bound the node, not each worker.

A small table in shared memory: a file in the supervisor's private folder, mapped by every
worker, one slot per worker. A worker writes only its own slot (a plain store of its own
count), and reads the others' when it decides (admitting a connection, after an HLS write): no
lock, no message, no other process that must answer, and a stuck worker stalls nobody. Chosen
over the supervisor's control channel, which would put a round trip (or a count up to a line
behind) in front of every accept. The supervisor zeroes a dead worker's slot (its connections
are gone with it; its HLS files are counted by whoever finishes its streams) and a worker
zeroes its own when it starts. Costs: docs/BENCHMARKS.md ("Node-wide bounds").

Per-address counts are kept in `BUCKETS` buckets per port by a CRC-32 of the address, so the
others' count for an address is an upper bound: addresses sharing a bucket add up. With the
default caps (50 RTMP, 256 HTTP connections per address) a bucket shared by other addresses
reaches a cap only when thousands of connections are open from them.
"""

from __future__ import annotations

import mmap
import struct
import zlib
from enum import Enum
from pathlib import Path

#: The table's file in the supervisor's private folder.
FILE = "counts"
#: Buckets of per-address counts per port and worker.
BUCKETS = 4096
_U32 = struct.Struct("<I")
_I64 = struct.Struct("<q")


class Port(Enum):
    """Where in a slot a port's counts are."""

    RTMP = 0
    HTTP = 1


#: A slot: HLS bytes, the largest live stream's bytes, ended streams' bytes (i64 each); then
#: per port its connection count and BUCKETS per-address counts (u32 each).
_HLS_BYTES = 0
_HLS_LARGEST = 8
_HLS_ENDED = 16
_PORTS_AT = 24
_PORT_SIZE = 4 * (1 + BUCKETS)
SLOT = _PORTS_AT + len(Port) * _PORT_SIZE


def create(path: Path, count: int) -> None:
    """The table for `count` workers, all zero (the supervisor, before starting them)."""
    with path.open("wb") as out:
        out.truncate(count * SLOT)


def _bucket(host: str) -> int:
    return zlib.crc32(host.encode("utf-8", "replace")) % BUCKETS


class NodeTable:
    """The table as one worker (`index`, 1-based, of `count`) sees it."""

    def __init__(self, path: Path, index: int, count: int) -> None:
        with path.open("r+b") as f:
            self._map = mmap.mmap(f.fileno(), count * SLOT)
        self._own = (index - 1) * SLOT
        self._others = tuple(i * SLOT for i in range(count) if i != index - 1)

    def clear(self, index: int) -> None:
        """Zero worker `index`'s slot (it died, or starts now)."""
        at = (index - 1) * SLOT
        self._map[at : at + SLOT] = bytes(SLOT)

    def connections(self, port: Port) -> NodeConnections:
        return NodeConnections(self._map, self._own, self._others, _PORTS_AT + port.value *
                               _PORT_SIZE)  # fmt: skip

    def hls(self) -> NodeBytes:
        return NodeBytes(self._map, self._own, self._others)

    def close(self) -> None:
        self._map.close()


class NodeConnections:
    """One port's connections: this worker's counts, and the other workers'."""

    __slots__ = ("_map", "_total", "_buckets", "_others")

    def __init__(self, buf: mmap.mmap, own: int, others: tuple[int, ...], at: int) -> None:
        self._map = buf
        self._total = own + at
        self._buckets = own + at + 4
        self._others = tuple(o + at for o in others)

    def elsewhere(self) -> int:
        """Connections the other workers hold."""
        total = 0
        buf, unpack = self._map, _U32.unpack_from
        for at in self._others:
            total += unpack(buf, at)[0]
        return total

    def elsewhere_from(self, host: str) -> int:
        """Connections the other workers hold from `host` (or an address in its bucket)."""
        offset = 4 + 4 * _bucket(host)
        total = 0
        buf, unpack = self._map, _U32.unpack_from
        for at in self._others:
            total += unpack(buf, at + offset)[0]
        return total

    def add(self, delta: int) -> None:
        """This worker holds `delta` connections more."""
        _add32(self._map, self._total, delta)

    def add_host(self, host: str, delta: int) -> None:
        """This worker holds `delta` connections more from `host`."""
        _add32(self._map, self._buckets + 4 * _bucket(host), delta)


class NodeBytes:
    """The HLS folder's bytes: this worker's, and the other workers'."""

    __slots__ = ("_map", "_own", "_others")

    def __init__(self, buf: mmap.mmap, own: int, others: tuple[int, ...]) -> None:
        self._map = buf
        self._own = own
        self._others = others

    def set(self, total: int) -> None:
        """The bytes this worker's streams hold now."""
        _I64.pack_into(self._map, self._own + _HLS_BYTES, total)

    def elsewhere(self) -> int:
        """The bytes the other workers' streams hold (after every HLS write: kept cheap)."""
        total = 0
        buf, unpack = self._map, _I64.unpack_from
        for at in self._others:
            total += unpack(buf, at)[0]
        return total

    def set_largest(self, count: int) -> None:
        """The bytes this worker's largest live stream holds (0: none live)."""
        _I64.pack_into(self._map, self._own + _HLS_LARGEST, count)

    def set_ended(self, count: int) -> None:
        """The bytes this worker's ended streams (in their grace) hold."""
        _I64.pack_into(self._map, self._own + _HLS_ENDED, count)

    def ended_elsewhere(self) -> int:
        return sum(_I64.unpack_from(self._map, at + _HLS_ENDED)[0] for at in self._others)

    def largest_elsewhere(self) -> int:
        """The bytes of the largest live stream the other workers hold."""
        return max((_I64.unpack_from(self._map, at + _HLS_LARGEST)[0] for at in self._others),
                   default=0)  # fmt: skip


def _add32(buf: mmap.mmap, at: int, delta: int) -> None:
    _U32.pack_into(buf, at, max(_U32.unpack_from(buf, at)[0] + delta, 0))
