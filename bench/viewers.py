"""Simulated HLS viewers: each reloads the playlist once per target duration and fetches every
new segment, as a player does. aiohttp, one connection per viewer, spread over processes.

Time to first byte is measured to the response headers (aiohttp returns the response then);
segment bodies are read to the end and discarded. Every non-200 answer, reset or timeout is an
error, counted by kind.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench.hlswatch import parse_playlist
from bench.loadgen import percentile

TIMEOUT = aiohttp.ClientTimeout(total=30, sock_connect=10)


@dataclass(slots=True)
class ViewerStats:
    playlist_ttfb: list[float] = field(default_factory=list)
    segment_ttfb: list[float] = field(default_factory=list)
    segment_total: list[float] = field(default_factory=list)
    bytes: int = 0
    errors: Counter[str] = field(default_factory=Counter)

    def merge(self, other: ViewerStats) -> None:
        self.playlist_ttfb += other.playlist_ttfb
        self.segment_ttfb += other.segment_ttfb
        self.segment_total += other.segment_total
        self.bytes += other.bytes
        self.errors.update(other.errors)

    def summary(self, seconds: float, viewers: int) -> dict[str, Any]:
        pl, sg, tot = (
            sorted(self.playlist_ttfb),
            sorted(self.segment_ttfb),
            sorted(self.segment_total),
        )
        requests = len(pl) + len(sg)

        def ms(values: list[float], pct: float) -> float | None:
            return round(percentile(values, pct) * 1000, 2) if values else None

        return {
            "viewers": viewers,
            "seconds": round(seconds, 1),
            "requests": requests,
            "requests_per_s": round(requests / seconds, 1) if seconds else 0.0,
            "playlist_requests": len(pl),
            "segment_requests": len(sg),
            "playlist_ttfb_ms_p50": ms(pl, 50),
            "playlist_ttfb_ms_p99": ms(pl, 99),
            "segment_ttfb_ms_p50": ms(sg, 50),
            "segment_ttfb_ms_p99": ms(sg, 99),
            "segment_download_ms_p99": ms(tot, 99),
            "throughput_mbps": round(self.bytes * 8 / seconds / 1e6, 1) if seconds else 0.0,
            "errors": sum(self.errors.values()),
            "error_kinds": dict(self.errors.most_common(5)),
        }


async def _viewer(
    base: str, path: str, stop_at: float, phase: float, stats: ViewerStats, segments: bool
) -> None:
    await asyncio.sleep(phase)
    seen: set[str] = set()
    first = True
    conn = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(base, connector=conn, timeout=TIMEOUT) as http:
        while time.monotonic() < stop_at:
            began = time.monotonic()
            target = 5.0
            try:
                async with http.get(path) as resp:
                    stats.playlist_ttfb.append(time.monotonic() - began)
                    text = await resp.text()
                    if resp.status != 200:
                        stats.errors[f"playlist HTTP {resp.status}"] += 1
                        text = ""
                for line in text.splitlines():
                    if line.startswith("#EXT-X-TARGETDURATION:"):
                        target = float(line.split(":", 1)[1])
                _, items, _ = parse_playlist(text)
                uris = [uri for _, uri in items]
                fresh = [u for u in (uris[-1:] if first else uris) if u not in seen]
                first = False
                folder = path.rsplit("/", 1)[0]
                for uri in fresh:
                    seen.add(uri)
                    if not segments:
                        continue
                    await _segment(http, uri if uri.startswith("/") else f"{folder}/{uri}", stats)
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                stats.errors[type(exc).__name__] += 1
            delay = target - (time.monotonic() - began)
            if delay > 0:
                await asyncio.sleep(min(delay, max(stop_at - time.monotonic(), 0)))


async def _segment(http: aiohttp.ClientSession, url: str, stats: ViewerStats) -> None:
    began = time.monotonic()
    async with http.get(url) as resp:
        stats.segment_ttfb.append(time.monotonic() - began)
        if resp.status != 200:
            stats.errors[f"segment HTTP {resp.status}"] += 1
        async for chunk in resp.content.iter_chunked(1 << 20):
            stats.bytes += len(chunk)
    stats.segment_total.append(time.monotonic() - began)


async def run_viewers(
    base: str, path: str, count: int, seconds: float, spread: float, segments: bool = True
) -> ViewerStats:
    """`count` viewers of `base + path` for `seconds`, their first loads spread over `spread`;
    `segments=False` reloads playlists only (what the server does for the playlist alone)."""
    stats = ViewerStats()
    stop_at = time.monotonic() + seconds
    await asyncio.gather(
        *(
            _viewer(base, path, stop_at, random.uniform(0, spread), stats, segments)
            for _ in range(count)
        )
    )
    return stats


def _process_main(
    base: str, path: str, count: int, seconds: float, spread: float, segments: bool
) -> ViewerStats:
    return asyncio.run(run_viewers(base, path, count, seconds, spread, segments))


def run_in_processes(
    base: str,
    path: str,
    viewers: int,
    seconds: float,
    *,
    processes: int = 2,
    spread: float = 5.0,
    segments: bool = True,
) -> ViewerStats:
    """Blocking: split `viewers` over `processes` worker processes and merge their stats."""
    shares = [
        viewers // processes + (1 if i < viewers % processes else 0) for i in range(processes)
    ]
    total = ViewerStats()
    with ProcessPoolExecutor(processes) as pool:
        futures = [
            pool.submit(_process_main, base, path, n, seconds, spread, segments)
            for n in shares
            if n
        ]
        for fut in futures:
            total.merge(fut.result())
    return total
