"""nginx (Debian's) as the caching edge in front of rtmpd, running deploy/nginx-edge.conf:
1,000 viewers through the edge, and the origin's own request counts per segment, per part and
per blocking playlist reload.

- A whole rtmpd with a live publish: every viewer fetches the playlist and every segment at
  the same moment; the origin sends each segment once (proxy_cache_lock) and every playlist
  request (no-cache, as its headers say).
- LL-HLS: a whole rtmpd with low_latency on, its publisher fed frame by frame by the test (so
  the test decides when each part completes): 1,000 viewers block on the next part through
  the edge, and the origin sees one request for it, and one for the part's bytes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from rtmpd.web.metrics import Metrics

from tests.support.app import HeldPublisher, media_tags, start_server
from tests.support.engines import nginx

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


def next_position(text: str) -> tuple[int, int, str]:
    """(msn, part) of the part after the newest one an LL-HLS playlist lists, and the URI its
    preload hint names (that part's)."""
    msn, segments, parts, hint = 0, 0, 0, ""
    for line in text.splitlines():
        if line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            msn = int(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-PART:"):
            parts += 1
        elif line.startswith("#EXT-X-PRELOAD-HINT:"):
            hint = line.split('URI="', 1)[1].split('"', 1)[0]
        elif line and not line.startswith("#"):
            segments, parts = segments + 1, 0
    return msn + segments, parts, hint


async def test_blocking_reloads_of_a_thousand_viewers_collapse_into_one_per_part(
    tmp_path: Path, viewers: aiohttp.ClientSession
) -> None:
    """A real LL-HLS stream (rtmpd with low_latency, 200 ms parts, fed frame by frame by the
    test so that it decides when each part completes): 1,000 viewers block on the next part
    through the edge, and the origin sees one blocking request for it, and one for its bytes."""
    server = await start_server(
        tmp_path,
        http={"max_connections_per_ip": 4096},
        hls={"low_latency": True, "fragment": 1.0, "playlist_length": 10.0},
    )
    try:
        assert server.auth.store is not None
        key = await server.auth.store.add_user("benw")
        publisher = HeldPublisher(server.rtmp.port, key)
        await publisher.start()
        tags = media_tags(seconds=8, fps=10, width=96, height=64, gop=10)
        sent = 0

        def send_until(ms: int) -> None:
            nonlocal sent
            end = sent
            while end < len(tags) and tags[end].timestamp <= ms:
                end += 1
            publisher.send_tags(tags[sent:end])
            sent = end

        origin = f"http://127.0.0.1:{server.http_port}/live/benw/"
        text = ""
        async with asyncio.timeout(10):
            for ms in range(100, 1500, 100):  # a segment and a few parts
                send_until(ms)
                await asyncio.sleep(0.02)
            while "#EXT-X-PART:" not in text or "#EXTINF" not in text:
                text = await (await viewers.get(origin + "index.m3u8")).text()
                await asyncio.sleep(0.05)
        with nginx(f"127.0.0.1:{server.http_port}") as edge:
            base = f"http://127.0.0.1:{edge.port}/live/benw/"
            rounds = 3
            playlist_counts, part_counts, woken = [], [], []
            for _ in range(rounds):
                msn, part, hint = next_position(text)
                url = f"{base}index.m3u8?_HLS_msn={msn}&_HLS_part={part}"
                before = origin_requests(server.metrics, "hls_playlist")
                waiting = [asyncio.ensure_future(fetch(viewers, url)) for _ in range(VIEWERS)]
                async with asyncio.timeout(20):  # under load the edge takes a while
                    while server.waiters.waiting("benw") == 0:
                        await asyncio.sleep(0.05)
                await asyncio.sleep(0.5)  # every viewer is blocked, at the edge or the origin
                assert not any(task.done() for task in waiting)
                assert server.waiters.waiting("benw") == 1  # the edge sent one of them on
                send_until(tags[sent].timestamp + 200)  # the next part's worth of frames
                ready = asyncio.get_running_loop().time()
                answers = await asyncio.gather(*waiting)
                woken.append(asyncio.get_running_loop().time() - ready)
                assert {status for status, _, _ in answers} == {200}
                assert len({body for _, body, _ in answers}) == 1  # one version for everyone
                text = answers[0][1].decode()
                assert f'URI="{hint}"' in text.split("#EXT-X-PRELOAD-HINT", 1)[0]  # listed
                playlist_counts.append(origin_requests(server.metrics, "hls_playlist") - before)
                before_parts = origin_requests(server.metrics, "hls_segment")
                parts = await asyncio.gather(*(fetch(viewers, base + hint)
                                               for _ in range(VIEWERS)))  # fmt: skip
                assert {status for status, _, _ in parts} == {200}
                bodies = {body for _, body, _ in parts}
                assert len(bodies) == 1 and next(iter(bodies))[4:8] == b"moof"
                part_counts.append(origin_requests(server.metrics, "hls_segment") - before_parts)
            print(f"\n{VIEWERS} viewers blocking through the edge: origin requests per blocking "
                  f"reload {playlist_counts}, per part {part_counts}; all answered "
                  f"{', '.join(f'{w * 1000:.0f}' for w in woken)} ms after the part")  # fmt: skip
            assert playlist_counts == [1] * rounds
            assert part_counts == [1] * rounds
        await publisher.close()
    finally:
        await server.stop()
