"""hls.js in a real headless Chromium switches between the renditions of a multitrack publish.

The stream is packaged by rtmpd.hls from FFmpeg's multitrack FLV (two H.264 encodes of the same
pictures, 640x360 and 320x180, the same GOP, AAC), flat out and ended (hls.js plays it from the
start); the page is one of rtmpd's own (same origin, its Content-Security-Policy) with hls.js
driven directly: it loads the multivariant playlist, lists both levels, plays the low one, and
is told to switch (`currentLevel`), after which LEVEL_SWITCHED fires and the video decodes
frames at the other size. The same live with LL-HLS (fed in real time): hls.js in low-latency
mode loads parts and blocks on both renditions' playlists. Needs tests/setup_browser.sh."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from rtmpd.hls import HlsConfig, HlsService, StreamPackager
from rtmpd.web.live import Waiters

from rtmpd.live_source import HlsLiveSource
from tests.support.browser.cdp import HLSJS, Page, chromium
from tests.support.hls import Event, feed, media
from tests.support.web import MemoryDirectory, serve
from tests.test_web_browser import GUARD, NAME

pytestmark = pytest.mark.browser

START = """(() => {
  window.seen = { levels: null, switched: [], fatal: [] };
  const video = document.createElement("video");
  video.muted = true;
  document.body.append(video);
  const hls = new Hls({ startLevel: 0, lowLatencyMode: %s });
  window.hls = hls;
  hls.on(Hls.Events.MANIFEST_PARSED, (_e, data) => {
    seen.levels = data.levels.map((l) => [l.width, l.height, l.bitrate]);
    hls.currentLevel = 0;  // manual: no switch but the one asked for below
  });
  hls.on(Hls.Events.LEVEL_SWITCHED, (_e, data) => seen.switched.push(data.level));
  hls.on(Hls.Events.ERROR, (_e, data) => { if (data.fatal) seen.fatal.push(data.details); });
  hls.attachMedia(video);
  hls.loadSource("/live/%s/index.m3u8");
  video.play();
  return true;
})()"""
FRAMES = "document.querySelector('video').getVideoPlaybackQuality().totalVideoFrames"
WIDTH = "document.querySelector('video').videoWidth"


async def test_hlsjs_lists_the_renditions_and_switches_to_the_other(tmp_path: Path) -> None:
    assert HLSJS.is_file(), f"{HLSJS} is missing: run tests/setup_browser.sh"
    hls = HlsService(HlsConfig(tmp_path / "hls", fragment=1.0, playlist_length=60.0))
    packager = hls.open_stream(NAME)
    feed(packager, media(seconds=10, fps=25, gop=25, width=640, height=360,
                         renditions=((320, 180),)))  # fmt: skip
    packager.close()
    async with (
        serve(tmp_path / "hls", MemoryDirectory(), hlsjs_file=HLSJS) as served,
        chromium(tmp_path / "profile") as page,
    ):
        await page.open(f"{served.base}/no_such_channel")  # one of rtmpd's pages, its origin
        await page.evaluate(
            "(() => { const s = document.createElement('script');"
            " s.src = '/static/vendor/hls.min.js'; document.head.append(s); return true; })()"
        )
        await page.wait_for("typeof window.Hls === 'function'", GUARD)
        await switch_levels(page, low_latency=False)


async def switch_levels(page: Page, *, low_latency: bool) -> None:
    """hls.js on the page: both levels listed, the low one plays, then the other one."""
    await page.evaluate(
        "(() => { const s = document.createElement('script');"
        " s.src = '/static/vendor/hls.min.js'; document.head.append(s); return true; })()"
    )
    await page.wait_for("typeof window.Hls === 'function'", GUARD)
    assert await page.evaluate(START % ("true" if low_latency else "false", NAME)) is True
    await page.wait_for(f"{WIDTH} === 320 && {FRAMES} >= 10", GUARD)
    seen: dict[str, Any] = await page.evaluate("seen")
    assert [level[:2] for level in seen["levels"]] == [[320, 180], [640, 360]]
    assert seen["levels"][0][2] < seen["levels"][1][2]  # BANDWIDTH, measured
    before = await page.evaluate(FRAMES)
    await page.evaluate("(() => { hls.currentLevel = 1; return true; })()")
    await page.wait_for(f"seen.switched.includes(1) && {WIDTH} === 640", GUARD)
    await page.wait_for(f"{FRAMES} >= {before + 25}", GUARD)  # a second of it decoded
    seen = await page.evaluate("seen")
    assert seen["fatal"] == [] and seen["switched"][-1] == 1
    assert await page.evaluate("document.querySelector('video').error") is None


async def feed_in_real_time(packager: StreamPackager, events: tuple[Event, ...]) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    for event in events:
        delay = start + event[1] / 1000 - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        feed(packager, [event])


async def test_hlsjs_switches_renditions_of_a_live_low_latency_stream(tmp_path: Path) -> None:
    """Live, LL-HLS: hls.js in low-latency mode plays the low rendition's parts, and switches
    to the other one (whose playlist it asks for from the rendition report) while live."""
    assert HLSJS.is_file(), f"{HLSJS} is missing: run tests/setup_browser.sh"
    waiters = Waiters()
    config = HlsConfig(tmp_path / "hls", fragment=1.0, playlist_length=6.0, low_latency=True)
    hls = HlsService(config, live=waiters)
    events = media(seconds=14, fps=25, gop=25, width=640, height=360, renditions=((320, 180),))
    packager = hls.open_stream(NAME)
    task = asyncio.create_task(feed_in_real_time(packager, events))
    try:
        async with (
            serve(tmp_path / "hls", MemoryDirectory(), hlsjs_file=HLSJS,
                  live=HlsLiveSource(hls, nested=True), waiters=waiters) as served,
            chromium(tmp_path / "profile") as page,
        ):  # fmt: skip
            await asyncio.sleep(2.5)  # a couple of segments: the multivariant playlist is there
            await page.open(f"{served.base}/no_such_channel")
            await switch_levels(page, low_latency=True)
            requested: list[str] = await page.evaluate(
                "performance.getEntriesByType('resource').map(e => e.name)"
            )
            for track in (0, 1):
                parts = [u for u in requested if f"/live/{NAME}/v{track}-p" in u]
                blocking = [u for u in requested if f"v{track}.m3u8?_HLS_msn=" in u]
                assert parts and blocking, requested
            assert not task.done()  # live all along
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        packager.close()
