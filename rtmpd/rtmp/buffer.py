"""Receive buffer with transactional reads.

A parser reads tentatively (`read_*` move a cursor), then either `commit()`s what it read or
`rollback()`s to the last commit when the bytes it needs have not arrived yet. Committed bytes
are dropped lazily: the front of the bytearray is only cut once it is at least half of the
buffer, so compaction costs amortised O(1) per byte. The number of bytes held but not yet
committed is bounded; a peer that makes us hold more is breaking the protocol.
"""

from __future__ import annotations

from .errors import ProtocolError
from .limits import MAX_UNPARSED_BYTES

_COMPACT_MIN = 4096


class ReceiveBuffer:
    """bytearray + committed offset + tentative cursor."""

    __slots__ = ("_data", "_start", "_pos", "_max")

    def __init__(self, max_unparsed: int = MAX_UNPARSED_BYTES) -> None:
        self._data = bytearray()
        self._start = 0  # first byte not yet committed
        self._pos = 0  # tentative read cursor, >= _start
        self._max = max_unparsed

    def __len__(self) -> int:
        """Bytes readable from the cursor."""
        return len(self._data) - self._pos

    @property
    def unparsed(self) -> int:
        """Bytes held that are not yet committed."""
        return len(self._data) - self._start

    @property
    def data(self) -> bytearray:
        """The backing bytearray, for hot-path parsers that index it directly from `pos`.

        Never keep a memoryview of it across `append` (that would block resizing).
        """
        return self._data

    @property
    def pos(self) -> int:
        return self._pos

    def append(self, data: bytes | bytearray | memoryview) -> None:
        if len(self._data) - self._start + len(data) > self._max:
            raise ProtocolError(
                f"more than {self._max} unparsed bytes buffered ({self.unparsed} + {len(data)})"
            )
        start = self._start
        if start:
            if start == len(self._data):
                self._data.clear()
                self._pos -= start
                self._start = 0
            elif start >= _COMPACT_MIN and start * 2 >= len(self._data):
                del self._data[:start]
                self._pos -= start
                self._start = 0
        self._data += data

    def advance(self, n: int) -> None:
        """Move the cursor over `n` bytes the caller has checked are there."""
        self._pos += n

    def read_u8(self) -> int | None:
        if self._pos >= len(self._data):
            return None
        value = self._data[self._pos]
        self._pos += 1
        return value

    def read_exactly(self, n: int) -> bytes | None:
        """Exactly `n` bytes, or None (cursor unchanged) when fewer are buffered."""
        end = self._pos + n
        if end > len(self._data):
            return None
        value = bytes(self._data[self._pos : end])
        self._pos = end
        return value

    def read_into(self, target: bytearray, offset: int, limit: int) -> int:
        """Copy up to `limit` readable bytes into target[offset:]; returns how many."""
        n = min(limit, len(self._data) - self._pos)
        if n <= 0:
            return 0
        pos = self._pos
        with memoryview(self._data) as view:
            target[offset : offset + n] = view[pos : pos + n]
        self._pos = pos + n
        return n

    def commit(self) -> None:
        self._start = self._pos

    def commit_at(self, pos: int) -> None:
        """Move the cursor to `pos` (read directly from `data`) and commit."""
        self._start = self._pos = pos

    def rollback(self) -> None:
        self._pos = self._start
