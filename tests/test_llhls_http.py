"""LL-HLS over real HTTP from a whole rtmpd: a publisher over RTMP (rtmpd's own client, so the
test decides when each frame goes and therefore when each part completes), blocking playlist
reloads and hinted parts answered as the parts complete, the error answers of
draft-pantos-hls-rfc8216bis 6.2.5.2, delta updates, cache headers, many blockers, and FFmpeg
reading the playlist end to end."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from rtmpd.app import Rtmpd
from tests.support.app import HeldPublisher, start_server
from tests.support.m3u8_validator import MediaPlaylist, PlaylistHistory
from tests.support.media import FlvTag, make_flv, read_flv_tags
from tests.support.player import play
from tests.support.publisher import run_publisher

NAME = "benw"
START = "NetStream.Publish.Start"
GUARD = 20.0  # a hang guard, not a speed requirement


Answer = tuple[int, "MediaPlaylist | None", str, dict[str, str]]  # status, parsed, text, headers


@dataclass
class Live:
    server: Rtmpd
    publisher: HeldPublisher
    http: aiohttp.ClientSession
    tags: list[FlvTag]
    sent: int = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.http_port}/live/{NAME}"

    def send_until(self, ms: int) -> None:
        """Send the tags up to `ms` of media (sequence headers come first)."""
        end = self.sent
        while end < len(self.tags) and self.tags[end].timestamp <= ms:
            end += 1
        self.publisher.send_tags(self.tags[self.sent : end])
        self.sent = end

    async def playlist(self, query: str = "") -> Answer:
        async with self.http.get(f"{self.base}/index.m3u8{query}") as r:
            text = await r.text()
            headers = dict(r.headers)
            if r.status != 200:
                return r.status, None, text, headers
        history = PlaylistHistory()
        return r.status, history.check(text, skip_requested="_HLS_skip" in query), text, headers

    async def until_parts(self, count: int) -> MediaPlaylist:
        """Send media until the LL playlist lists at least `count` parts."""
        ms = 0
        async with asyncio.timeout(GUARD):
            while True:
                ms += 100
                self.send_until(ms)
                await asyncio.sleep(0.02)
                status, playlist, _, _ = await self.playlist()
                if status == 200 and playlist is not None and playlist.part_target is not None:
                    parts = len(playlist.open_parts) + sum(len(s.parts) for s in playlist.segments)
                    if parts >= count:
                        return playlist


def next_position(playlist: MediaPlaylist) -> tuple[int, int]:
    """(msn, part) of the part after the newest one listed."""
    if playlist.open_parts:
        return playlist.first_sequence + len(playlist.segments), len(playlist.open_parts)
    return playlist.first_sequence + len(playlist.segments), 0


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[Live]:
    server = await start_server(
        tmp_path, hls={"low_latency": True, "fragment": 1.0, "playlist_length": 10.0}
    )
    key = await server.auth.store.add_user(NAME)
    tags = read_flv_tags(make_flv(seconds=14, fps=30, gop=30, width=160, height=96))
    publisher = HeldPublisher(server.rtmp.port, key)
    assert (await publisher.start()).code == START
    async with aiohttp.ClientSession() as http:
        yield Live(server, publisher, http, tags)
    await publisher.close()
    await server.stop()


async def test_a_blocking_reload_returns_when_the_part_it_asks_for_completes(live: Live) -> None:
    playlist = await live.until_parts(3)
    msn, part = next_position(playlist)
    request = asyncio.create_task(live.playlist(f"?_HLS_msn={msn}&_HLS_part={part}"))
    hinted = asyncio.create_task(live.http.get(f"{live.base}/{playlist.preload_hint}"))
    done, _ = await asyncio.wait({request, hinted}, timeout=0.5)
    assert not done  # no media sent: the part does not exist, both wait
    live.send_until(live.tags[live.sent].timestamp + 400)  # two more parts' worth
    status, answer, _, headers = await asyncio.wait_for(request, GUARD)
    assert status == 200 and answer is not None
    assert next_position(answer) > (msn, part)  # it lists the part asked for
    assert headers["Cache-Control"].startswith("public, max-age=")  # a cache may collapse them
    response = await asyncio.wait_for(hinted, GUARD)
    async with response:
        assert response.status == 200 and response.headers["Content-Type"] == "video/iso.segment"
        data = await response.read()
    assert data[4:8] == b"moof"  # a whole part: moof + mdat, never a partial one
    assert response.headers["Expires"] == "Thu, 31 Dec 2037 23:55:55 GMT"
    # A plain reload is not cacheable.
    _, _, _, plain = await live.playlist()
    assert plain["Cache-Control"] == "no-cache"


async def test_the_error_answers_of_blocking_reloads(live: Live) -> None:
    playlist = await live.until_parts(3)
    msn, part = next_position(playlist)
    status, _, text, _ = await live.playlist("?_HLS_part=1")
    assert status == 400 and "_HLS_part without _HLS_msn" in text
    status, _, _, _ = await live.playlist(f"?_HLS_msn={msn + 3}")  # two segments past the last
    assert status == 400
    status, _, _, _ = await live.playlist(f"?_HLS_msn={msn}&_HLS_part={part + 4}")
    assert status == 400  # over three parts past the last
    status, _, _, _ = await live.playlist("?_HLS_msn=x")
    assert status == 400
    # Blocking longer than three target durations: 503 (nothing is sent meanwhile).
    status, _, _, _ = await live.playlist(f"?_HLS_msn={msn}&_HLS_part={part}")
    assert status == 503
    # After ENDLIST the directives are ignored.
    await live.publisher.close()
    async with asyncio.timeout(GUARD):
        while True:
            status, answer, _, _ = await live.playlist()
            if answer is not None and answer.endlist:
                break
            await asyncio.sleep(0.05)
    status, answer, _, _ = await live.playlist(f"?_HLS_msn={msn + 1}&_HLS_part={part + 2}")
    assert status == 200 and answer is not None and answer.endlist


async def test_many_blocked_requests_all_wake_on_one_part(live: Live) -> None:
    playlist = await live.until_parts(3)
    msn, part = next_position(playlist)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as many:

        async def blocked() -> tuple[int, str]:
            url = f"{live.base}/index.m3u8?_HLS_msn={msn}&_HLS_part={part}"
            async with many.get(url) as r:
                return r.status, await r.text()

        requests = [asyncio.create_task(blocked()) for _ in range(200)]
        async with asyncio.timeout(GUARD):
            while live.server.waiters.waiting(NAME) < 200:
                await asyncio.sleep(0.02)
        live.send_until(live.tags[live.sent].timestamp + 400)
        answers = await asyncio.wait_for(asyncio.gather(*requests), GUARD)
    assert {status for status, _ in answers} == {200}
    assert len({text for _, text in answers}) == 1  # one rendered version for all of them
    assert live.server.waiters.waiting(NAME) == 0


async def test_delta_updates_skip_the_old_segments(live: Live) -> None:
    # CAN-SKIP-UNTIL is six target durations (6 s): send 10 s so there is something to skip.
    async with asyncio.timeout(GUARD):
        for ms in range(0, 10_000, 500):
            live.send_until(ms)
            await asyncio.sleep(0.01)
        while True:
            status, full, _, _ = await live.playlist()
            if full is not None and full.duration >= 8:
                break
            await asyncio.sleep(0.05)
    status, delta, text, _ = await live.playlist("?_HLS_skip=YES")
    assert status == 200 and delta is not None and delta.skipped > 0
    assert "#EXT-X-SKIP:SKIPPED-SEGMENTS=" in text
    assert delta.first_sequence == full.first_sequence + delta.skipped
    assert [s.uri for s in delta.segments] == [s.uri for s in full.segments[delta.skipped :]]


async def test_ffmpeg_reads_the_low_latency_fmp4_playlist_with_no_warnings(tmp_path: Path) -> None:
    server = await start_server(tmp_path, hls={"low_latency": True, "playlist_length": 60.0})
    try:
        key = await server.auth.store.add_user(NAME)
        url = f"rtmp://127.0.0.1:{server.rtmp.port}/app/{key}"
        result = await run_publisher(url, seconds=6, fps=30, gop=30, width=160, height=96)
        assert result.returncode == 0, result.stderr
        async with asyncio.timeout(GUARD):
            while "#EXT-X-ENDLIST" not in server.hls.playlist_path(NAME).read_text():
                await asyncio.sleep(0.05)
        played = await play(f"http://127.0.0.1:{server.http_port}/live/{NAME}/index.m3u8")
    finally:
        await server.stop()
    assert played.warnings == []
    assert played.video == 6 * 30 and played.audio > 0
