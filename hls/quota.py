"""How much disk HLS holds: every file of ours, per public name and under the whole folder, and
the bounds on both ([hls] max_stream_bytes, max_total_bytes).

Bytes count from the moment they are written into a segment's temp file (the muxer's
`SegmentOutput` adds each write), stay counted while the file is listed or waits for cleanup,
and are given back when it is removed; a name's playlist counts too. So what a bound compares
with is what is on disk, whatever state the files are in: a stream sending 103 Mb/s in real
time kept 783 MB, every timestamp 0 filled a 1 GiB tmpfs in 3 s.

Pure bookkeeping: what happens at a bound is decided by the packager (its name is past its
bound: the publish ends) and the service (the folder is past its bound: it makes room).
"""

from __future__ import annotations

import os
from typing import Protocol

from .model import Bound

MIB = 1024 * 1024
#: The derived total leaves this part of the space the folder has free for everyone else.
TOTAL_SHARE = 0.9


class SharedBytes(Protocol):
    """The bytes other processes packaging into the same folder hold (rtmpd workers: each
    tells the others its own), so that max_total_bytes bounds the folder, not each process."""

    def set(self, total: int) -> None:
        """The bytes this process holds now."""

    def elsewhere(self) -> int:
        """The bytes the other processes hold."""
        ...

    def set_largest(self, count: int) -> None:
        """The bytes this process's largest live stream holds."""

    def largest_elsewhere(self) -> int:
        """The bytes of the largest live stream another process holds."""
        ...

    def set_ended(self, count: int) -> None:
        """The bytes this process's ended streams hold (files waiting for their grace)."""

    def ended_elsewhere(self) -> int:
        """The bytes the other processes' ended streams hold."""
        ...


class DiskQuota:
    """The bytes under the HLS folder that are ours, and the two bounds."""

    __slots__ = ("max_stream", "max_total", "total", "shared", "largest")

    def __init__(self, max_stream: int, max_total: int) -> None:
        self.max_stream = max_stream
        self.max_total = max_total
        self.total = 0
        #: With other processes in the folder: their bytes count against max_total too.
        self.shared: SharedBytes | None = None
        #: The most bytes one name held since the service last told `shared` its largest.
        self.largest = 0

    def folder_total(self) -> int:
        """The bytes under the folder: ours, and the other processes' when shared."""
        shared = self.shared
        return self.total if shared is None else self.total + shared.elsewhere()

    def usage(self) -> StreamUsage:
        """A new name's account."""
        return StreamUsage(self)


class StreamUsage:
    """The bytes one name holds: its segments listed, waiting for cleanup or being written,
    and its playlist."""

    __slots__ = ("quota", "bytes")

    def __init__(self, quota: DiskQuota) -> None:
        self.quota = quota
        self.bytes = 0

    def add(self, count: int) -> None:
        """`count` bytes were written (negative: removed)."""
        self.bytes += count
        quota = self.quota
        quota.total += count
        if quota.shared is not None:
            quota.shared.set(quota.total)
            if self.bytes > quota.largest:  # a growing name (a live one) is told at once
                quota.largest = self.bytes
                quota.shared.set_largest(self.bytes)

    def release(self) -> None:
        """Every file of the name is gone."""
        self.add(-self.bytes)

    def over(self) -> Bound | None:
        """The bound past which things are, the name's first."""
        quota = self.quota
        if self.bytes > quota.max_stream:
            return Bound.STREAM_BYTES
        if quota.folder_total() > quota.max_total:
            return Bound.TOTAL_BYTES
        return None


def derived_total(folder: str, ours: int) -> int:
    """max_total_bytes when it is 0: TOTAL_SHARE of what the folder's file system has for us
    (the space free to unprivileged users plus what our files there already take)."""
    try:
        stat = os.statvfs(folder)
    except OSError:
        return 1 << 62  # the folder is not usable: writes will fail and say so
    return int(TOTAL_SHARE * (stat.f_bavail * stat.f_frsize + ours))


def size_text(count: int) -> str:
    """Bytes for people: 536 MiB, 0.95 MiB."""
    return f"{count / MIB:.0f} MiB" if count >= 10 * MIB else f"{count / MIB:.2f} MiB"


def describe_stream_bound(max_stream: int, bitrate: float) -> str:
    return (
        f"stream ended: its HLS files (the playlist window, segments waiting for cleanup, the "
        f"segment being written) take more than {size_text(max_stream)}, the server's limit "
        f"per stream ([hls] max_stream_bytes); lower the bitrate (about {bitrate / 1e6:.3g} "
        f"Mb/s fits)"
    )


def describe_total_bound(max_total: int) -> str:
    return (
        f"stream ended: the server's HLS folder holds its limit of {size_text(max_total)} "
        f"([hls] max_total_bytes) and this stream held the most of it; try again later"
    )
