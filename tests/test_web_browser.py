"""The channel page in a real headless Chromium: native HLS, hls.js, and going live/offline.

Media comes from rtmpd.hls's HlsService, fed FLV tags paced in real time (here the pacing is the
point: a player only plays a live stream as fast as it grows). Screenshots land in
test-artifacts/. Needs tests/setup_browser.sh (Debian's chromium, hls.js from npm).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from rtmpd.hls import HlsConfig, HlsService, Keyframe, StreamPackager, keyframe_to_jpeg
from rtmpd.web import StreamStats
from rtmpd.web.live import Waiters

from rtmpd.live_source import HlsLiveSource
from tests.support.browser.cdp import HLSJS, Page, chromium
from tests.support.media import TAG_AUDIO, TAG_VIDEO, FlvTag, make_flv, read_flv_tags
from tests.support.web import MemoryDirectory, Served, serve

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
NAME = "benw"
GUARD = 60.0  # seconds before a wait gives up: a hang guard, not a speed requirement


@pytest.fixture(scope="module")
def tags() -> list[FlvTag]:
    return read_flv_tags(make_flv(seconds=30, fps=25, width=640, height=360, gop=25))


class HlsDirectory(MemoryDirectory):
    """MemoryDirectory plus codec facts and thumbnails from a real HlsService."""

    def __init__(self, hls: HlsService) -> None:
        super().__init__()
        self.hls = hls
        self.keyframes: dict[str, Keyframe] = {}

    def stats(self, name: str) -> StreamStats | None:
        info = self.hls.stream_info(name)  # on the event loop: snapshot the keyframe here
        if info is None:
            return None
        if info.keyframe is not None:
            self.keyframes[name] = info.keyframe
        return StreamStats(
            info.video_codec, info.width, info.height, info.fps, info.video_kbps,
            info.audio_codec, info.sample_rate, info.channels, info.audio_kbps,
        )  # fmt: skip

    def thumbnail(self, name: str) -> Callable[[], bytes | None] | None:
        key = self.keyframes.get(name)  # on the loop: the immutable snapshot
        if key is None:
            return None
        return lambda: keyframe_to_jpeg(key.avcc, key.data)  # in a worker thread


async def feed(packager: StreamPackager, tags: list[FlvTag]) -> None:
    """Send FLV tags to the packager at the pace of their timestamps."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for tag in tags:
        delay = start + tag.timestamp / 1000 - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        body = tag.body
        if tag.kind == TAG_VIDEO:
            if body[1] == 0:
                packager.video_config(tag.timestamp, body[5:])
            else:
                cts = int.from_bytes(body[2:5], "big", signed=True)
                packager.video(tag.timestamp, cts, tag.is_keyframe, body[5:])
        elif tag.kind == TAG_AUDIO:
            if body[1] == 0:
                packager.audio_config(tag.timestamp, body[2:])
            else:
                packager.audio(tag.timestamp, body[2:])


@contextlib.asynccontextmanager
async def live_stream(
    hls: HlsService, directory: HlsDirectory, tags: list[FlvTag]
) -> AsyncIterator[None]:
    """Publish NAME while the block runs: directory live, packager fed in real time."""
    packager = hls.open_stream(NAME)
    directory.go_live(NAME)
    task = asyncio.create_task(feed(packager, tags))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        packager.close()
        directory.add(NAME)  # offline again


async def watch_playback(page: Page, seconds: float) -> float:
    """Wait until the video has played `seconds` past the first moment it was seen playing."""
    first = await page.wait_for(
        "(() => { const v = document.querySelector('video');"
        " return v.currentTime > 0 && !v.paused && v.currentTime; })()",
        GUARD,
    )
    end = max(first + seconds, seconds)
    reached: float = await page.wait_for(
        f"(() => {{ const t = document.querySelector('video').currentTime;"
        f" return t >= {end} && t; }})()",
        GUARD,
    )
    return reached


@contextlib.asynccontextmanager
async def setup(
    tmp_path: Path, **app_kwargs: object
) -> AsyncIterator[tuple[HlsService, HlsDirectory, Served]]:
    hls = HlsService(HlsConfig(tmp_path / "hls", fragment=1.0, playlist_length=6.0))
    directory = HlsDirectory(hls)
    directory.add(NAME)
    async with serve(tmp_path / "hls", directory, **app_kwargs) as served:  # type: ignore[arg-type]
        try:
            yield hls, directory, served
        finally:
            hls.close()


async def test_offline_card_turns_into_native_player_and_back(
    tmp_path: Path, tags: list[FlvTag]
) -> None:
    async with setup(tmp_path) as (hls, directory, served), chromium(tmp_path / "profile") as page:
        await page.open(f"{served.base}/{NAME}")
        await page.wait_for(
            "document.querySelector('.offline') && !document.querySelector('.offline').hidden",
            GUARD,
        )
        assert await page.evaluate("document.querySelector('.player').hidden") is True
        await page.screenshot(ARTIFACTS / "web-offline.png")

        async with live_stream(hls, directory, tags):
            await page.wait_for("!document.querySelector('.player').hidden", GUARD)
            assert await page.evaluate("document.querySelector('.offline').hidden") is True
            reached = await watch_playback(page, 5.0)
            assert reached >= 5.0
            engine = await page.evaluate("document.getElementById('channel').dataset.engine")
            assert engine == "native"  # Chromium 1xx on Debian plays HLS itself
            await page.wait_for(
                "document.querySelector('[data-field=viewers]').textContent === '1'", GUARD
            )
            await page.screenshot(ARTIFACTS / "web-native.png")
            async with served.get("/") as r:
                home = await r.text()
            assert f'<img src="/thumb/{NAME}.jpg"' in home
            async with served.get(f"/thumb/{NAME}.jpg") as r:
                assert (await r.read())[:2] == b"\xff\xd8"
            await page.navigate(f"{served.base}/")
            await page.wait_for(
                "document.querySelector('.card img') && "
                "document.querySelector('.card img').naturalWidth > 0",
                GUARD,
            )
            await page.screenshot(ARTIFACTS / "web-home.png")
            await page.navigate(f"{served.base}/{NAME}")
            await page.wait_for("document.querySelector('video').currentTime > 0", GUARD)

        # the publisher stopped: the page goes back to the offline card by itself
        await page.wait_for("!document.querySelector('.offline').hidden", GUARD)
        assert await page.evaluate("document.querySelector('.player').hidden") is True
        assert await page.evaluate("document.querySelector('video').getAttribute('src')") is None
        assert not [c for c in page.console if "exception" in c or "Security Policy" in c], (
            page.console
        )


async def test_hlsjs_player(tmp_path: Path, tags: list[FlvTag]) -> None:
    assert HLSJS.is_file(), f"{HLSJS} is missing: run tests/setup_browser.sh"
    async with (
        setup(tmp_path, hlsjs_file=HLSJS) as (hls, directory, served),
        live_stream(hls, directory, tags),
        chromium(tmp_path / "profile") as page,
    ):
        await asyncio.sleep(2.5)  # let a couple of segments exist, as for a late viewer
        await page.open(f"{served.base}/{NAME}?player=hlsjs")
        reached = await watch_playback(page, 5.0)
        assert reached >= 5.0
        assert await page.evaluate("document.getElementById('channel').dataset.engine") == "hlsjs"
        assert await page.evaluate("typeof window.Hls") == "function"
        src = await page.evaluate("document.querySelector('script[src*=hls]').src")
        assert src.startswith(f"{served.base}/static/vendor/hls.min.js?v=")
        video_src = await page.evaluate("document.querySelector('video').src")
        assert video_src.startswith("blob:")  # MediaSource: hls.js, not the native player
        await page.screenshot(ARTIFACTS / "web-hlsjs.png")
        assert not [line for line in page.console if "error" in line], page.console


async def test_the_end_of_a_stream_plays_out_before_the_offline_card(
    tmp_path: Path, tags: list[FlvTag]
) -> None:
    """When the publisher stops, the page keeps playing what is buffered to the playlist's end
    (ENDLIST) and only then shows the offline card, instead of dropping the last seconds."""
    assert HLSJS.is_file(), f"{HLSJS} is missing: run tests/setup_browser.sh"
    hls = HlsService(HlsConfig(tmp_path / "hls", fragment=2.0, playlist_length=12.0))
    directory = HlsDirectory(hls)
    directory.add(NAME)
    async with (
        serve(tmp_path / "hls", directory, hlsjs_file=HLSJS) as served,
        chromium(tmp_path / "profile") as page,
    ):
        try:
            async with live_stream(hls, directory, tags[: len(tags) // 2]):
                await asyncio.sleep(4.5)
                await page.open(f"{served.base}/{NAME}?player=hlsjs")
                await watch_playback(page, 3.0)
                await page.evaluate(
                    "(() => { const v = document.querySelector('video');"
                    " window.endedAt = null; v.addEventListener('ended',"
                    " () => { window.endedAt = v.currentTime; }); })()"
                )
            # Offline now (ENDLIST written, the directory says so): still playing, ending.
            await page.wait_for("document.getElementById('channel').classList.contains('ending')",
                                GUARD)  # fmt: skip
            assert await page.evaluate("document.querySelector('.player').hidden") is False
            playing_at = await page.evaluate("document.querySelector('video').currentTime")
            await page.wait_for("!document.querySelector('.offline').hidden", 3 * GUARD)
            ended_at = await page.evaluate("window.endedAt")
            assert ended_at is not None and ended_at > playing_at  # played to the very end
        finally:
            hls.close()


async def test_hlsjs_plays_low_latency_hls_with_parts_and_blocking_reloads(
    tmp_path: Path, tags: list[FlvTag]
) -> None:
    """With low_latency on, the channel page plays with hls.js in low-latency mode (even where
    the browser has a native HLS player, which would not fetch parts): it loads parts and uses
    blocking playlist reloads, and shows the latency."""
    assert HLSJS.is_file(), f"{HLSJS} is missing: run tests/setup_browser.sh"
    waiters = Waiters()
    config = HlsConfig(tmp_path / "hls", fragment=1.0, playlist_length=6.0, low_latency=True)
    hls = HlsService(config, live=waiters)
    directory = HlsDirectory(hls)
    directory.add(NAME)
    source = HlsLiveSource(hls, nested=True)
    async with (
        serve(tmp_path / "hls", directory, hlsjs_file=HLSJS, live=source, waiters=waiters,
              low_latency=True) as served,
        live_stream(hls, directory, tags),
        chromium(tmp_path / "profile") as page,
    ):  # fmt: skip
        try:
            await asyncio.sleep(2.5)
            await page.open(f"{served.base}/{NAME}")
            await watch_playback(page, 4.0)
            assert await page.evaluate("document.getElementById('channel').dataset.engine") == (
                "hlsjs"
            )
            requested: list[str] = await page.evaluate(
                "performance.getEntriesByType('resource').map(e => e.name)"
            )
            parts = [u for u in requested if "/live/benw/p" in u and u.endswith(".m4s")]
            blocking = [u for u in requested if "_HLS_msn=" in u]
            assert len(parts) >= 5 and len(blocking) >= 5, requested
            await page.wait_for(
                "document.querySelector('[data-field=latency]').textContent"
                ".includes('low latency')",
                GUARD,
            )
            await page.screenshot(ARTIFACTS / "web-llhls.png")
            assert not [line for line in page.console if "error" in line], page.console
        finally:
            hls.close()
