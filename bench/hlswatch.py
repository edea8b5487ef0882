"""Segment lag from outside the server: inotify on the HLS folder, playlists parsed as written.

Both rtmpd and nginx-rtmp write `<hls>/<name>/index.m3u8` (nested) by rename or in place;
every IN_MOVED_TO / IN_CLOSE_WRITE of a playlist is read at once and each newly listed segment
is stamped with that wall-clock time. A segment's media end is the sum of the EXTINF durations
so far, counted from the stream's first keyframe; matched to the keyframe the load generator
sent with that timestamp, it gives lag = listed - sent (the keyframe that closed the segment).
Runs on the load generator's event loop (loop.add_reader), so it costs a few reads per segment.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import ctypes
import ctypes.util
import os
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.loadgen import PublisherRecord, percentile

IN_CLOSE_WRITE = 0x008
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_ISDIR = 0x40000000
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000
_EVENT = struct.Struct("iIII")
PLAYLIST = "index.m3u8"
MATCH_MS = 150  # a segment end within this of a sent keyframe is that keyframe


@dataclass(slots=True)
class Listed:
    seq: int
    duration: float
    uri: str
    listed: float  # wall time we saw it in the playlist


@dataclass(slots=True)
class StreamSegments:
    name: str
    segments: dict[int, Listed] = field(default_factory=dict)
    first_seq: int | None = None
    endlist: bool = False
    ts_sizes: dict[str, int] = field(default_factory=dict)  # segment file -> bytes when written


def parse_playlist(text: str) -> tuple[int, list[tuple[float, str]], bool]:
    """(media sequence, [(duration, uri)], endlist) of a media playlist."""
    seq = 0
    items: list[tuple[float, str]] = []
    duration: float | None = None
    endlist = False
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            seq = int(line.split(":", 1)[1])
        elif line.startswith("#EXTINF:"):
            duration = float(line.split(":", 1)[1].split(",", 1)[0])
        elif line == "#EXT-X-ENDLIST":
            endlist = True
        elif line and not line.startswith("#") and duration is not None:
            items.append((duration, line))
            duration = None
    return seq, items, endlist


class HlsWatcher:
    """Watches `root` (nested layout) for playlists; call `start()` inside a running loop."""

    def __init__(self, root: Path, names: set[str] | None = None) -> None:
        self.root = root
        self.names = names  # only these streams (the folder may hold others' streams)
        self.streams: dict[str, StreamSegments] = {}
        self._fd = -1
        self._dirs: dict[int, str] = {}  # watch descriptor -> stream name ("" = root)
        self._libc: Any = None

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        self._libc = libc
        self._fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self._watch(self.root, "", IN_CREATE | IN_MOVED_TO)
        for child in self.root.iterdir():
            if child.is_dir():
                self._add_stream(child.name)
        asyncio.get_running_loop().add_reader(self._fd, self._read)

    def stop(self) -> None:
        if self._fd >= 0:
            asyncio.get_running_loop().remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1

    def _watch(self, path: Path, name: str, mask: int) -> None:
        wd = self._libc.inotify_add_watch(self._fd, os.fsencode(path), mask)
        if wd >= 0:
            self._dirs[wd] = name

    def _add_stream(self, name: str) -> None:
        if name in self.streams or (self.names is not None and name not in self.names):
            return
        self.streams[name] = StreamSegments(name)
        self._watch(self.root / name, name, IN_CLOSE_WRITE | IN_MOVED_TO)
        self._load(name)  # it may have been written before the watch

    def _read(self) -> None:
        try:
            data = os.read(self._fd, 1 << 16)
        except BlockingIOError:
            return
        pos = 0
        while pos + _EVENT.size <= len(data):
            wd, mask, _, size = _EVENT.unpack_from(data, pos)
            raw = data[pos + _EVENT.size : pos + _EVENT.size + size]
            pos += _EVENT.size + size
            fname = raw.split(b"\0", 1)[0].decode(errors="replace")
            owner = self._dirs.get(wd)
            if owner == "" and mask & IN_ISDIR:
                self._add_stream(fname)
            elif owner and fname == PLAYLIST:
                self._load(owner)
            elif owner and fname.endswith((".ts", ".m4s")):  # MPEG-TS or fMP4 segments
                with contextlib.suppress(OSError):
                    size = os.stat(self.root / owner / fname).st_size
                    self.streams[owner].ts_sizes[fname] = size

    def _load(self, name: str) -> None:
        now = time.time()
        try:
            text = (self.root / name / PLAYLIST).read_text()
        except (FileNotFoundError, UnicodeDecodeError):
            return
        st = self.streams[name]
        try:
            seq, items, endlist = parse_playlist(text)
        except ValueError:
            return
        for i, (duration, uri) in enumerate(items):
            n = seq + i
            if n not in st.segments:
                st.segments[n] = Listed(n, duration, uri, now)
                if st.first_seq is None or n < st.first_seq:
                    st.first_seq = n
        st.endlist = st.endlist or endlist


@dataclass(slots=True)
class LagReport:
    segments: int
    matched: int
    lags: list[float]
    late: int
    missing: int
    unmatched: int
    late_threshold: float
    media_seconds_listed: float

    def summary(self) -> dict[str, Any]:
        lags = sorted(self.lags)
        return {
            "segments_listed": self.segments,
            "segments_matched": self.matched,
            "media_seconds_listed": round(self.media_seconds_listed, 1),
            "lag_ms_p50": round(percentile(lags, 50) * 1000, 1) if lags else None,
            "lag_ms_p99": round(percentile(lags, 99) * 1000, 1) if lags else None,
            "lag_ms_max": round(lags[-1] * 1000, 1) if lags else None,
            "late_threshold_ms": round(self.late_threshold * 1000),
            "late_segments": self.late,
            "missing_segments": self.missing,
            "unmatched_segments": self.unmatched,
        }


def segment_lags(
    watcher: HlsWatcher, records: list[PublisherRecord], *, late: float = 1.0
) -> LagReport:
    """Match every listed segment to the keyframe that closed it (see the module doc).

    missing: sequence numbers never seen between the first and the last listed one, plus
    publishers that sent more than two segments' worth of media but got no playlist at all.
    """
    lags: list[float] = []
    total = matched = late_n = missing = unmatched = 0
    media = 0.0
    for rec in records:
        st = watcher.streams.get(rec.name)
        if st is None or not st.segments or st.first_seq is None:
            if rec.media_ms_sent > 12_000:
                missing += 1
            continue
        kf = {ts: wall for ts, wall in rec.keyframes}
        kf_ts = sorted(kf)
        if not kf_ts:
            continue
        last = max(st.segments)
        missing += sum(1 for n in range(st.first_seq, last + 1) if n not in st.segments)
        end = float(kf_ts[0])
        for n in range(st.first_seq, last + 1):
            seg = st.segments.get(n)
            if seg is None:
                break  # the media timeline is lost past a gap
            total += 1
            media += seg.duration
            end += seg.duration * 1000
            close = _nearest(kf_ts, end)
            if close is None or abs(close - end) > MATCH_MS:
                final = n == last and (st.endlist or seg.listed >= rec.finished - 0.5)
                if not final:  # the final segment ends with the media, not a keyframe
                    unmatched += 1
                continue
            end = float(close)  # EXTINF is rounded: re-anchor on the real keyframe
            matched += 1
            lag = seg.listed - kf[close]
            lags.append(lag)
            if lag > late:
                late_n += 1
    return LagReport(total, matched, lags, late_n, missing, unmatched, late, media)


def _nearest(sorted_ts: list[int], value: float) -> int | None:
    i = bisect.bisect_left(sorted_ts, value)
    best = None
    for j in (i - 1, i):
        if 0 <= j < len(sorted_ts) and (
            best is None or abs(sorted_ts[j] - value) < abs(best - value)
        ):
            best = sorted_ts[j]
    return best
