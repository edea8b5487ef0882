"""How bytes reach a parser: whole, one at a time, in small or large reads, or cut at given
points. The one helper the tests and the fuzz targets use to feed sans-I/O parsers, so every
parser is exercised with the same splits a socket can produce."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

#: The modes every parser test runs: all at once, one byte at a time, in 7-byte pieces.
FEEDS = ["whole", "bytewise", "sevens"]
#: All modes; "head" is byte by byte for the first 600 bytes (handshake and first chunks),
#: then the rest at once; "thousands" is 1000-byte reads.
MODES = ("whole", "head", "sevens", "thousands", "bytewise")
_HEAD_BYTES = 600


def pieces(data: bytes, mode: str) -> Iterator[bytes]:
    """Cut `data` as the reads of a socket might in `mode` (one of MODES)."""
    if mode == "whole":
        yield data
    elif mode == "bytewise":
        for i in range(len(data)):
            yield data[i : i + 1]
    elif mode == "head":
        head = min(len(data), _HEAD_BYTES)
        for i in range(head):
            yield data[i : i + 1]
        yield data[head:]
    elif mode in ("sevens", "thousands"):
        step = 7 if mode == "sevens" else 1000
        for i in range(0, len(data), step):
            yield data[i : i + step]
    else:
        raise ValueError(f"unknown mode {mode!r}")


def mode_from_flags(flags: int) -> str:
    """The mode a fuzz input's flags byte picks (bits 2-3): whole, head, sevens, thousands."""
    return MODES[(flags >> 2) & 3]


def cut(data: bytes, points: Iterable[int]) -> list[bytes]:
    """`data` cut at each of `points` (taken modulo len(data) + 1, so any int is a point)."""
    at = sorted({p % (len(data) + 1) for p in points})
    out, last = [], 0
    for p in at:
        out.append(data[last:p])
        last = p
    out.append(data[last:])
    return out
