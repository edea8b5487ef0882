"""An LL-HLS client for the benchmarks: the playlist parsed, a blocking-reload loop for the next
part, and each part's end on the publisher's timeline.

A part's media end is found from outside, the way a player adds durations up: the first segment
starts at the publish's first keyframe, and each later part or segment ends where the durations
listed before it (EXTINF of whole segments, EXT-X-PART DURATION within one) add up to. rtmpd
cuts a part when the first video frame at least PART-TARGET after the part's start arrives
(rtmpd.hls.parts), so the frame at that end is the one that completed the part and the frame
before it is the part's last (`PartLags`).

A follower asks, as hls.js does, for the part after the newest one listed
(`_HLS_msn=M&_HLS_part=N`, or the next segment's part 0 once a segment is listed whole), and
stamps every part the answer lists for the first time with the wall time the answer was read.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench.loadgen import percentile

MATCH_MS = 3  # a part end within this of a sent video frame's timestamp is that frame


@dataclass(slots=True)
class LlPlaylist:
    """What a follower needs of an LL-HLS media playlist."""

    media_sequence: int = 0
    segments: list[tuple[int, int, list[int]]] = field(default_factory=list)  # msn, ms, parts
    open_parts: list[int] = field(default_factory=list)  # durations (ms) of the open segment
    part_uris: dict[tuple[int, int], str] = field(default_factory=dict)
    part_target: float | None = None
    ended: bool = False

    @property
    def open_msn(self) -> int:
        return self.media_sequence + len(self.segments)

    def next_position(self) -> tuple[int, int]:
        """(msn, part) of the part after the newest one listed."""
        return self.open_msn, len(self.open_parts)


def _ms(text: str) -> int:
    return round(float(text) * 1000)


def parse_ll(text: str) -> LlPlaylist:
    out = LlPlaylist()
    parts: list[int] = []
    extinf: int | None = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            out.media_sequence = int(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-PART-INF:"):
            out.part_target = float(line.split("PART-TARGET=", 1)[1].split(",", 1)[0])
        elif line.startswith("#EXT-X-PART:"):
            attrs = line.split(":", 1)[1]
            duration = attrs.split("DURATION=", 1)[1].split(",", 1)[0]
            uri = attrs.split('URI="', 1)[1].split('"', 1)[0]
            out.part_uris[(out.open_msn, len(parts))] = uri
            parts.append(_ms(duration))
        elif line.startswith("#EXTINF:"):
            extinf = _ms(line.split(":", 1)[1].split(",", 1)[0])
        elif line == "#EXT-X-ENDLIST":
            out.ended = True
        elif line and not line.startswith("#") and extinf is not None:
            out.segments.append((out.open_msn, extinf, parts))
            parts, extinf = [], None
    out.open_parts = parts
    return out


class PartTimeline:
    """Every part seen so far and where on the media timeline it ends (ms after the first
    segment's start)."""

    def __init__(self) -> None:
        self.segment_ms: dict[int, int] = {}
        self.parts: dict[int, list[int]] = {}
        self.seen: set[tuple[int, int]] = set()

    def update(self, playlist: LlPlaylist) -> list[tuple[int, int]]:
        """Take a playlist in; the (msn, part) listed for the first time, oldest first."""
        fresh: list[tuple[int, int]] = []
        for msn, ms, parts in playlist.segments:
            self.segment_ms[msn] = ms
            self._parts(msn, parts, fresh)
        self._parts(playlist.open_msn, playlist.open_parts, fresh)
        return fresh

    def _parts(self, msn: int, parts: list[int], fresh: list[tuple[int, int]]) -> None:
        if not parts:
            return
        known = self.parts.setdefault(msn, [])
        if len(parts) > len(known):
            known[len(known) :] = parts[len(known) :]
        for index in range(len(parts)):
            if (msn, index) not in self.seen:
                self.seen.add((msn, index))
                fresh.append((msn, index))

    def end_ms(self, msn: int, index: int) -> int | None:
        """Where part `index` of segment `msn` ends, or None if a segment before it is unknown."""
        start = 0
        for earlier in range(msn):
            ms = self.segment_ms.get(earlier)
            if ms is None:
                return None
            start += ms
        parts = self.parts.get(msn, [])
        if index >= len(parts):
            return None
        return start + sum(parts[: index + 1])


@dataclass(slots=True)
class Answer:
    """A part seen for the first time: its position, media end, when it was read, whether it is
    the one the blocking request asked for."""

    msn: int
    part: int
    end_ms: int | None
    at: float
    asked: bool


async def follow(
    http: aiohttp.ClientSession,
    url: str,
    stop_at: float,
    answers: list[Answer],
    errors: dict[str, int],
    *,
    fetch_parts: bool = False,
    part_ttfb: list[float] | None = None,
) -> None:
    """Blocking reloads of `url` until `stop_at` (monotonic): a plain load first (retried until
    the stream has a playlist with parts), then one blocking request for the next part after
    another; with `fetch_parts`, the new parts' bytes after each answer, as a player does."""
    timeline = PartTimeline()
    folder = url.rsplit("/", 1)[0]
    playlist: LlPlaylist | None = None
    while time.monotonic() < stop_at:
        query = ""
        asked: tuple[int, int] | None = None
        if playlist is not None and playlist.part_target is not None and not playlist.ended:
            asked = playlist.next_position()
            query = f"?_HLS_msn={asked[0]}&_HLS_part={asked[1]}"
        try:
            async with http.get(url + query) as resp:
                text = await resp.text()
                at = time.time()
                if resp.status != 200:
                    if playlist is not None:
                        errors[f"playlist HTTP {resp.status}"] = (
                            errors.get(f"playlist HTTP {resp.status}", 0) + 1
                        )
                    await asyncio.sleep(0.2)
                    continue
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            await asyncio.sleep(0.2)
            continue
        current = parse_ll(text)
        if current.part_target is None:  # not LL-HLS (yet): wait as a plain reload would
            await asyncio.sleep(0.2)
            continue
        fresh = timeline.update(current)
        if playlist is not None:  # the first load's parts were not waited for
            for msn, index in fresh:
                end = timeline.end_ms(msn, index)
                answers.append(Answer(msn, index, end, at, (msn, index) == asked))
        playlist = current
        if current.ended:
            return
        if fetch_parts and asked is not None:
            for msn, index in fresh:
                uri = current.part_uris.get((msn, index))
                if uri is not None:
                    await _fetch(http, f"{folder}/{uri}", errors, part_ttfb)


async def _fetch(
    http: aiohttp.ClientSession, url: str, errors: dict[str, int], ttfb: list[float] | None
) -> None:
    began = time.monotonic()
    try:
        async with http.get(url) as resp:
            if ttfb is not None:
                ttfb.append(time.monotonic() - began)
            await resp.read()
            if resp.status != 200:
                errors[f"part HTTP {resp.status}"] = errors.get(f"part HTTP {resp.status}", 0) + 1
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1


class PartLags:
    """Part lags of one stream: answers matched to the publisher's video frames."""

    def __init__(self, frames: list[tuple[int, float]], base_ms: int) -> None:
        self.ts = [ts for ts, _ in frames]
        self.sent = [at for _, at in frames]
        self.base = base_ms  # media timestamp of the first segment's start (first keyframe)

    def frame(self, end_ms: int) -> int | None:
        """Index of the video frame sent with timestamp base + end_ms (the one that cut the
        part), if any."""
        want = self.base + end_ms
        i = bisect.bisect_left(self.ts, want - MATCH_MS)
        if i < len(self.ts) and abs(self.ts[i] - want) <= MATCH_MS and i > 0:
            return i
        return None

    def lags(self, answer: Answer) -> tuple[float, float] | None:
        """(from the part's last frame sent, from the cutting frame sent), seconds."""
        if answer.end_ms is None:
            return None
        i = self.frame(answer.end_ms)
        if i is None:
            return None
        return answer.at - self.sent[i - 1], answer.at - self.sent[i]


def summarize(values: list[float], prefix: str) -> dict[str, Any]:
    values = sorted(values)
    if not values:
        return {f"{prefix}_count": 0}
    return {
        f"{prefix}_count": len(values),
        f"{prefix}_ms_p50": round(percentile(values, 50) * 1000, 1),
        f"{prefix}_ms_p99": round(percentile(values, 99) * 1000, 1),
        f"{prefix}_ms_max": round(values[-1] * 1000, 1),
    }
