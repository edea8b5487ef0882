"""A past broadcast plays in the channel page's player, in a real headless Chromium.

The recording is made by rtmpd.hls's HlsService and Recorder from generated media (flat out:
a VOD plays at its own pace), then the page lists it; a click plays it in the same player.
Needs tests/setup_browser.sh (Debian's chromium)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from rtmpd.hls import HlsConfig, HlsService
from rtmpd.hls.recorder import Recorder
from rtmpd.hls.recording import RecordConfig

from tests.support.browser.cdp import chromium
from tests.support.hls import feed, media
from tests.support.web import MemoryDirectory, serve
from tests.test_web_browser import ARTIFACTS, GUARD, NAME, watch_playback

pytestmark = pytest.mark.browser


async def test_a_past_broadcast_plays_in_the_channel_page_player(tmp_path: Path) -> None:
    recorder = Recorder(RecordConfig(True, tmp_path / "rec"), grace=0)
    recorder.start()
    hls = HlsService(HlsConfig(tmp_path / "hls", fragment=1.0, playlist_length=4.0),
                     recorder=recorder)  # fmt: skip
    packager = hls.open_stream(NAME)
    feed(packager, media(seconds=8, width=640, height=360, gop=25))
    packager.close()
    deadline = time.monotonic() + GUARD
    while not (recorder.recordings(NAME) and recorder.recordings(NAME)[0].thumbnail):
        assert time.monotonic() < deadline, "no MP4 and thumbnail"
        time.sleep(0.1)
        recorder.tick()
    [info] = recorder.recordings(NAME)
    directory = MemoryDirectory()
    directory.add(NAME)  # offline
    try:
        async with (
            serve(tmp_path / "hls", directory, recordings=recorder) as served,
            chromium(tmp_path / "profile") as page,
        ):
            await page.open(f"{served.base}/{NAME}")
            await page.wait_for(
                "document.querySelector('.recordings img') && "
                "document.querySelector('.recordings img').naturalWidth > 0",
                GUARD,
            )
            assert await page.evaluate("document.querySelector('.player').hidden") is True
            await page.evaluate("document.querySelector('.recordings a[data-playlist]').click()")
            await page.wait_for("!document.querySelector('.player').hidden", GUARD)
            reached = await watch_playback(page, 3.0)
            assert reached >= 3.0
            playing = await page.evaluate("document.getElementById('channel').dataset.playing")
            assert playing == f"/recordings/{NAME}/{info.id}/index.m3u8"
            duration = await page.evaluate("document.querySelector('video').duration")
            assert abs(duration - info.duration_ms / 1000) < 0.5  # a VOD: its whole length
            await page.screenshot(ARTIFACTS / "web-recording.png")
            assert not [c for c in page.console if "exception" in c or "Security Policy" in c]
    finally:
        recorder.close()
        hls.close()
