"""Removals of HLS files that wait for their time: segments a client may still be fetching after
they left the playlist, and a whole stream once its grace after the publish is over.

Pure bookkeeping: the queue says what is due, `HlsService.tick` decides and removes.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum


class Removal(Enum):
    """What a cleanup entry removes."""

    SEGMENT = "segment"  # one segment file of a stream (it left the window, or a leftover)
    STREAM = "stream"  # every file of a stream, unless it was published again meanwhile


@dataclass(order=True, frozen=True, slots=True)
class Cleanup:
    """One removal, due at `due` (wall seconds); ties go in the order they were scheduled."""

    due: float
    order: int
    removal: Removal = field(compare=False)
    name: str = field(compare=False)
    file: str = field(default="", compare=False)  # SEGMENT: the file, in the stream's folder
    generation: int = field(default=0, compare=False)  # STREAM: the publish it was due after


class CleanupQueue:
    """Scheduled removals, soonest first."""

    __slots__ = ("_heap", "_order")

    def __init__(self) -> None:
        self._heap: list[Cleanup] = []
        self._order = itertools.count()

    def schedule_segment(self, due: float, name: str, file: str) -> None:
        heapq.heappush(self._heap, Cleanup(due, next(self._order), Removal.SEGMENT, name, file))

    def schedule_stream(self, due: float, name: str, generation: int) -> None:
        entry = Cleanup(due, next(self._order), Removal.STREAM, name, generation=generation)
        heapq.heappush(self._heap, entry)

    def pop_due(self, now: float) -> Iterator[Cleanup]:
        """Take out the entries due by `now`, soonest first (also ones added meanwhile)."""
        heap = self._heap
        while heap and heap[0].due <= now:
            yield heapq.heappop(heap)
