"""nginx (Debian's) as the caching edge in front of rtmpd, running deploy/nginx-edge.conf:
1,000 viewers through the edge, and the origin's own request counts per segment, per part and
per blocking playlist reload.

- A whole rtmpd with a live publish: every viewer fetches the playlist and every segment at
  the same moment; the origin sends each segment once (proxy_cache_lock) and every playlist
  request (no-cache, as its headers say).
- LL-HLS: rtmpd's web app answering blocking reloads from a real `LivePlaylist` that the test
  feeds part by part (the packager's LL-HLS wiring lands separately): 1,000 viewers block on
  the next part, and the origin sees one request for it, and one for the part's bytes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from rtmpd.hls.llhls import LivePlaylist, Part
from rtmpd.hls.parts import decide_part_target
from rtmpd.hls.playlist import PlaylistWindow
from rtmpd.web import create_app, make_runner
from rtmpd.web.live import Waiters
from rtmpd.web.metrics import Metrics

from tests.support.app import HeldPublisher, media_tags, start_server
from tests.support.engines import nginx
from tests.support.web import MemoryDirectory

VIEWERS = 1000
pytestmark = pytest.mark.timeout(150)


def origin_requests(metrics: Metrics, route: str) -> float:
    total = 0.0
    for metric in metrics.registry.collect():
        for sample in metric.samples:
            if sample.name == "rtmpd_http_requests_total" and sample.labels["route"] == route:
                total += sample.value
    return total


@pytest.fixture
async def viewers() -> AsyncIterator[aiohttp.ClientSession]:
    connector = aiohttp.TCPConnector(limit=VIEWERS + 50, force_close=False)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        yield session


async def fetch(http: aiohttp.ClientSession, url: str) -> tuple[int, bytes, str]:
    async with http.get(url) as response:
        return response.status, await response.read(), response.headers.get("X-Cache", "")


async def test_a_thousand_viewers_through_the_edge_cost_the_origin_one_request_per_segment(
    tmp_path: Path, viewers: aiohttp.ClientSession
) -> None:
    # The edge is one address to rtmpd: its per-address cap must leave room for it.
    server = await start_server(tmp_path, http={"max_connections_per_ip": 4096})
    try:
        assert server.auth.store is not None
        key = await server.auth.store.add_user("benw")
        publisher = HeldPublisher(server.rtmp.port, key)
        await publisher.start()
        publisher.send_tags(media_tags(seconds=4, fps=10, width=96, height=64))
        playlist = tmp_path / "rtmpd-data" / "hls" / "benw" / "index.m3u8"
        async with asyncio.timeout(10):
            while not playlist.exists() or playlist.read_text().count("#EXTINF") < 3:
                await asyncio.sleep(0.05)
        with nginx(f"127.0.0.1:{server.http_port}") as edge:
            base = f"http://127.0.0.1:{edge.port}/live/benw/"
            before = {
                r: origin_requests(server.metrics, r) for r in ("hls_playlist", "hls_segment")
            }
            lists = await asyncio.gather(*(fetch(viewers, base + "index.m3u8")
                                           for _ in range(VIEWERS)))  # fmt: skip
            assert {status for status, _, _ in lists} == {200}
            text = lists[0][1].decode()
            segments = [line for line in text.splitlines() if line.endswith(".ts")]
            assert len(segments) >= 3
            got = await asyncio.gather(*(fetch(viewers, base + name)
                                         for _ in range(VIEWERS) for name in segments))  # fmt: skip
            assert {status for status, _, _ in got} == {200}
            for i, name in enumerate(segments):
                on_disk = (playlist.parent / name).read_bytes()
                assert all(body == on_disk for _, body, _ in got[i :: len(segments)])
            per_segment = (origin_requests(server.metrics, "hls_segment") - before["hls_segment"]
                           ) / len(segments)  # fmt: skip
            playlists = origin_requests(server.metrics, "hls_playlist") - before["hls_playlist"]
            print(f"\n{VIEWERS} viewers x {len(segments)} segments through the edge: origin "
                  f"requests per segment {per_segment:g}, playlists {playlists:g}")  # fmt: skip
            assert per_segment == 1
            assert playlists == VIEWERS  # no-cache: the edge asks every time, as told
            # One viewer per segment went through to the origin; the rest waited on the lock.
            assert sum(cache == "MISS" for _, _, cache in got) == len(segments)
        await publisher.close()
    finally:
        await server.stop()


class FedPlaylist:
    """A LiveSource over a real LivePlaylist that the test feeds: 200 ms parts, 2 s segments."""

    def __init__(self) -> None:
        self.window = PlaylistWindow(12_000, fragment_ms=2000, target_duration=2)
        self.live = LivePlaylist(self.window, decide_part_target(200, 200))
        self.parts: dict[str, bytes] = {}
        self.count = 0
        self.hinted: tuple[int, int] = (0, 0)

    def add_part(self) -> tuple[int, int]:
        """One more part; its (msn, index)."""
        msn, index = self.window.next_sequence, self.count % 10
        self.count += 1
        name = f"p{self.count}.m4s"
        self.parts[name] = name.encode() * 100
        pdt = 1_700_000_000.0 + self.count * 0.2
        self.live.part(Part(name, 200, independent=index == 0), msn, pdt, False, "init.mp4",
                       f"p{self.count + 1}.m4s")  # fmt: skip
        if index == 9:
            segment, _ = self.window.add(f"{msn}.m4s", 2000, program_date_time=pdt,
                                         map_uri="init.mp4")  # fmt: skip
            self.live.listed(segment)
        self.hinted = (msn, index + 1) if index < 9 else (msn + 1, 0)
        return msn, index

    def playlist(self, name: str) -> LivePlaylist | None:
        return self.live if name == "ll" else None

    def part(self, name: str, file: str) -> bytes | None:
        return self.parts.get(file) if name == "ll" else None

    def next_part(self, name: str, file: str) -> tuple[int, int] | None:
        return self.hinted if name == "ll" and file == f"p{self.count + 1}.m4s" else None


async def test_blocking_reloads_of_a_thousand_viewers_collapse_into_one_per_part(
    tmp_path: Path, viewers: aiohttp.ClientSession
) -> None:
    source, waiters, metrics = FedPlaylist(), Waiters(), Metrics()
    for _ in range(25):
        source.add_part()
    directory = MemoryDirectory()
    directory.add("ll", live=True)
    app = create_app(hls_path=tmp_path, nested=True, directory=directory, metrics=metrics,
                     live=source, waiters=waiters, low_latency=True)  # fmt: skip
    runner = make_runner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        with nginx(f"127.0.0.1:{port}") as edge:
            base = f"http://127.0.0.1:{edge.port}/live/ll/"
            rounds = 3
            playlist_counts, part_counts, woken = [], [], []
            for _ in range(rounds):
                msn, part = source.hinted
                next_name = f"p{source.count + 1}.m4s"
                url = f"{base}index.m3u8?_HLS_msn={msn}&_HLS_part={part}"
                before = origin_requests(metrics, "hls_playlist")
                waiting = [asyncio.ensure_future(fetch(viewers, url)) for _ in range(VIEWERS)]
                await asyncio.sleep(0.8)  # every viewer is blocked, at the edge or the origin
                assert not any(task.done() for task in waiting)
                source.add_part()
                ready = asyncio.get_running_loop().time()
                waiters.ready("ll", msn, part)
                answers = await asyncio.gather(*waiting)
                woken.append(asyncio.get_running_loop().time() - ready)
                assert {status for status, _, _ in answers} == {200}
                assert all(next_name.encode() in body for _, body, _ in answers)
                playlist_counts.append(origin_requests(metrics, "hls_playlist") - before)
                before_parts = origin_requests(metrics, "hls_segment")
                parts = await asyncio.gather(*(fetch(viewers, base + next_name)
                                               for _ in range(VIEWERS)))  # fmt: skip
                assert {body for _, body, _ in parts} == {source.parts[next_name]}
                part_counts.append(origin_requests(metrics, "hls_segment") - before_parts)
            print(f"\n{VIEWERS} viewers blocking through the edge: origin requests per blocking "
                  f"reload {playlist_counts}, per part {part_counts}; all answered "
                  f"{', '.join(f'{w * 1000:.0f}' for w in woken)} ms after the part")  # fmt: skip
            assert playlist_counts == [1] * rounds
            assert part_counts == [1] * rounds
    finally:
        await runner.cleanup()
