"""The admin dashboard in a real headless Chromium, against a whole rtmpd with a live publish:
sign in with a token, watch the stream's graphs move, rotate a key, kick the stream. Needs
tests/setup_browser.sh; the screenshot lands in test-artifacts/ beside the other browser tests'."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import pytest

from tests.support.app import HeldPublisher, media_tags, start_server
from tests.support.browser.cdp import chromium
from tests.support.media import FlvTag

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
GUARD = 60.0  # seconds before a wait gives up: a hang guard, not a speed requirement
CARD = "document.querySelector('article.stream[data-name=benw]')"
BITRATE = f"{CARD}.querySelector('[data-chart=kbps] svg')"


async def paced(held: HeldPublisher, tags: list[FlvTag]) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    for tag in tags:
        delay = start + tag.timestamp / 1000 - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        held.send_tags([tag])


async def test_sign_in_watch_the_graphs_move_and_kick(tmp_path: Path) -> None:
    server = await start_server(tmp_path)
    held: HeldPublisher | None = None
    sending: asyncio.Task[None] | None = None
    try:
        assert server.accounts is not None
        token = await server.accounts.add_token("ops")
        key = (await server.accounts.add_user("benw")).key
        held = HeldPublisher(server.rtmp.port, key)
        assert (await held.start()).code == "NetStream.Publish.Start"
        # 2 s keyframes against the 1 s fragment: the dashboard should say so
        tags = media_tags(seconds=60.0, fps=15, gop=30, width=320, height=180)
        sending = asyncio.create_task(paced(held, tags))
        base = f"http://127.0.0.1:{server.http_port}"
        async with chromium(tmp_path / "profile") as page:
            await page.open(f"{base}/admin")
            await page.wait_for("!!document.getElementById('token')", GUARD)
            await page.evaluate(
                f"document.getElementById('token').value = {json.dumps(token)};"
                "document.querySelector('form.signin').submit()"
            )
            await page.wait_for("!!document.querySelector('meta[name=csrf-token]')", GUARD)
            await page.wait_for(f"!!{CARD} && Number({BITRATE}.dataset.samples) >= 2", GUARD)
            first = float(await page.evaluate(f"{BITRATE}.dataset.last"))
            points = await page.evaluate(
                f"{BITRATE}.querySelector('polyline').getAttribute('points')"
            )
            await page.wait_for(f"Number({BITRATE}.dataset.last) > {first}", GUARD)  # it moves
            moved = await page.evaluate(
                f"{BITRATE}.querySelector('polyline').getAttribute('points')"
            )
            assert moved != points and len(moved.split()) > len(points.split())
            await page.wait_for(f"!!{CARD}.querySelector('.warnings li')", GUARD)
            warning = await page.evaluate(f"{CARD}.querySelector('.warnings li').textContent")
            assert warning == "keyframe interval 2.0 s: set 1 s in OBS for 1 s segments"
            for chart in ("fps", "keyframe_interval"):
                shown = await page.evaluate(
                    f"{CARD}.querySelector('[data-chart={chart}] [data-field=now]').textContent"
                )
                assert shown != "–", chart
            await page.wait_for("!!document.querySelector('#users tr[data-name=benw]')", GUARD)
            await page.screenshot(ARTIFACTS / "admin-dashboard.png")

            await page.evaluate(f"{CARD}.querySelector('[data-action=kick]').click()")
            await held.wait_closed(GUARD)
            await page.wait_for(f"!{CARD}", GUARD)
            await page.wait_for("!document.getElementById('no-live').hidden", GUARD)
            user = await server.accounts.user("benw")
            assert user.active  # a kick is not a ban

            # a new key from the users table: shown once on the page, and it is the key now
            await page.evaluate(
                "window.confirm = () => true;"
                "document.querySelector('#users tr[data-name=benw] [data-action=rotate]').click()"
            )
            await page.wait_for("!document.getElementById('new-key').hidden", GUARD)
            shown = await page.evaluate("document.querySelector('#new-key code').textContent")
            assert shown != key and len(shown) == 32
            owner = await server.accounts.store.find_by_key(shown)
            assert owner is not None and owner.name == "benw"
            assert not [c for c in page.console if "exception" in c or "Security Policy" in c], (
                page.console
            )
    finally:
        if sending is not None:
            sending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sending
        if held is not None:
            await held.close()
        await server.stop()
