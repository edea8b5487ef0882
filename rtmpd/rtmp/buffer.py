"""Receive buffer: a bytearray and the offset of the first byte not yet parsed.

The chunk parser reads `data` directly from `pos` (indexing is the fastest way Python has to
look at bytes) and calls `consume_to` once it has parsed something whole; a header that has
not fully arrived is simply read again after the next `append`. Consumed bytes are dropped
lazily: the front of the bytearray is only cut once it is at least half of the buffer, so
compaction costs amortised O(1) per byte. The number of bytes held but not yet parsed is
bounded; a peer that makes us hold more is breaking the protocol.
"""

from __future__ import annotations

from .errors import ProtocolError
from .limits import MAX_UNPARSED_BYTES

_COMPACT_MIN = 4096


class ReceiveBuffer:
    """bytearray + parse offset."""

    __slots__ = ("_data", "_pos", "_max")

    def __init__(self, max_unparsed: int = MAX_UNPARSED_BYTES) -> None:
        self._data = bytearray()
        self._pos = 0  # first byte not yet parsed
        self._max = max_unparsed

    @property
    def unparsed(self) -> int:
        """Bytes held that are not yet parsed."""
        return len(self._data) - self._pos

    @property
    def data(self) -> bytearray:
        """The backing bytearray, for the parser to index directly from `pos`.

        Never keep a memoryview of it across `append` (that would block resizing).
        """
        return self._data

    @property
    def pos(self) -> int:
        return self._pos

    def append(self, data: bytes | bytearray | memoryview) -> None:
        if len(self._data) - self._pos + len(data) > self._max:
            raise ProtocolError(
                f"more than {self._max} unparsed bytes buffered ({self.unparsed} + {len(data)})"
            )
        pos = self._pos
        if pos:
            if pos == len(self._data):
                self._data.clear()
                self._pos = 0
            elif pos >= _COMPACT_MIN and pos * 2 >= len(self._data):
                del self._data[:pos]
                self._pos = 0
        self._data += data

    def consume_to(self, pos: int) -> None:
        """Everything before `pos` (an index into `data`) is parsed."""
        self._pos = pos
