"""The whole server end to end: FFmpeg's RTMP client (PyAV, in a child process) publishes with a
stream key; HLS appears under the public name; the key appears nowhere public."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import aiohttp
import av
import pytest

from rtmpd.app import Rtmpd
from tests.support.app import HeldPublisher, media_tags, start_server
from tests.support.m3u8_validator import validate as validate_playlist
from tests.support.publisher import run_publisher


@pytest.fixture
async def server(tmp_path: Path):
    srv = await start_server(tmp_path)
    yield srv
    await srv.stop()


def rtmp_url(srv: Rtmpd, key: str, app: str = "app") -> str:
    return f"rtmp://127.0.0.1:{srv.rtmp.port}/{app}/{key}"


async def http_get(srv: Rtmpd, path: str) -> tuple[int, bytes, dict[str, str]]:
    url = f"http://127.0.0.1:{srv.http_port}{path}"
    async with aiohttp.ClientSession() as client, client.get(url) as resp:
        return resp.status, await resp.read(), dict(resp.headers)


async def wait_until(predicate, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.05)


def all_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*")]


async def test_publish_with_a_key_plays_under_the_public_name(
    server: Rtmpd, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    key = await server.auth.store.add_user("benw")
    result = await run_publisher(rtmp_url(server, key) + "?token=x", seconds=4)
    assert result.returncode == 0, result.stderr

    async def ended() -> bool:
        channel = await server.auth.channel("benw")
        return channel is not None and channel.live_since is None

    await wait_until(ended)
    status, body, headers = await http_get(server, "/live/benw/index.m3u8")
    assert status == 200
    assert headers["Content-Type"] == "application/vnd.apple.mpegurl"
    playlist = body.decode()
    validate_playlist(playlist)
    assert playlist.rstrip().endswith("#EXT-X-ENDLIST")
    segments = [line for line in playlist.splitlines() if line.endswith(".ts")]
    assert segments
    for segment in segments:
        status, data, headers = await http_get(server, f"/live/benw/{segment}")
        assert status == 200 and headers["Content-Type"] == "video/mp2t"
        path = server.config.hls_path / "benw" / segment
        with av.open(str(path)) as container:
            frames = list(container.decode(video=0))
            assert frames and frames[0].key_frame
    total = sum(
        float(line.split(":")[1].rstrip(","))
        for line in playlist.splitlines()
        if line.startswith("#EXTINF")
    )
    assert 3.5 < total <= 4.5

    # The key is nowhere public: file names, HTTP answers, logs.
    names = [p.name for p in all_files(server.config.hls_path)]
    assert not any(key in name or key[:8] in name for name in names)
    for path in ("/", "/benw", "/api/streams", "/api/streams/benw", "/metrics"):
        status, body, _ = await http_get(server, path)
        assert key.encode() not in body and key[:8].encode() not in body
    assert key not in caplog.text and key[:8] not in caplog.text
    assert "benw" in caplog.text


async def test_unknown_key_is_refused_and_writes_nothing(server: Rtmpd) -> None:
    await server.auth.store.add_user("benw")
    result = await run_publisher(rtmp_url(server, "not-a-key"), seconds=1)
    assert result.returncode != 0
    assert all_files(server.config.hls_path) == []
    # Publishing with someone's public name as the key is just an unknown key.
    result = await run_publisher(rtmp_url(server, "benw"), seconds=1)
    assert result.returncode != 0
    assert all_files(server.config.hls_path) == []
    status, body, _ = await http_get(server, "/metrics")
    assert b'rtmpd_publish_attempts_total{outcome="denied"} 2.0' in body


async def test_refusals_carry_the_recipe_status_codes(server: Rtmpd) -> None:
    key = await server.auth.store.add_user("benw")
    unknown = HeldPublisher(server.rtmp.port, "nope")
    status = await unknown.start()
    assert (status.code, status.description) == ("NetStream.Publish.BadName", "unknown stream key")
    await unknown.wait_closed(5)
    await server.auth.store.ban("benw")
    banned = HeldPublisher(server.rtmp.port, key)
    status = await banned.start()
    assert (status.code, status.description) == ("NetStream.Publish.Denied", "inactive user")
    await banned.wait_closed(5)
    wrong_app = HeldPublisher(server.rtmp.port, key, app="other")
    status = await wrong_app.start()
    assert status.level == "error"
    await wrong_app.wait_closed(5)


async def test_reconnect_takes_over_and_the_playlist_continues(server: Rtmpd) -> None:
    key = await server.auth.store.add_user("benw")
    tags = media_tags(seconds=3)
    first = HeldPublisher(server.rtmp.port, key)
    assert (await first.start()).code == "NetStream.Publish.Start"
    first.send_tags(tags)

    async def listed() -> bool:
        path = server.hls.playlist_path("benw")
        return path.exists() and ".ts" in path.read_text()

    await wait_until(listed)
    second = HeldPublisher(server.rtmp.port, key)
    assert (await second.start()).code == "NetStream.Publish.Start"
    await first.wait_closed(5)  # the half-open old connection is closed by the server
    second.send_tags(tags)
    await second.close()

    async def finished() -> bool:
        return "#EXT-X-ENDLIST" in server.hls.playlist_path("benw").read_text()

    await wait_until(finished)
    playlist = server.hls.playlist_path("benw").read_text()
    validate_playlist(playlist)
    assert "#EXT-X-DISCONTINUITY" in playlist
    channel = await server.auth.channel("benw")
    assert channel is not None and channel.live_since is None
    await first.close()


async def test_ban_while_live_disconnects_within_two_seconds(server: Rtmpd) -> None:
    key = await server.auth.store.add_user("benw")
    publisher = HeldPublisher(server.rtmp.port, key)
    assert (await publisher.start()).code == "NetStream.Publish.Start"
    publisher.send_tags(media_tags(seconds=1))
    await server.auth.store.ban("benw")
    await publisher.wait_closed(2.5)
    await publisher.close()


async def test_stream_time_past_the_extended_timestamp_threshold(server: Rtmpd) -> None:
    key = await server.auth.store.add_user("late")
    offset = 0xFFFFFF + 5_000  # 4.66 hours and a bit: every timestamp is extended
    result = await run_publisher(rtmp_url(server, key), seconds=3, offset_ms=offset)
    assert result.returncode == 0, result.stderr

    async def finished() -> bool:
        path = server.hls.playlist_path("late")
        return path.exists() and "#EXT-X-ENDLIST" in path.read_text()

    await wait_until(finished)
    playlist = server.hls.playlist_path("late").read_text()
    validate_playlist(playlist)
    first = next(line for line in playlist.splitlines() if line.endswith(".ts"))
    with av.open(str(server.hls.playlist_path("late").parent / first)) as container:
        packet = next(p for p in container.demux(video=0) if p.pts is not None)
        assert packet.pts * packet.time_base > 4.6 * 3600


async def test_live_channel_shows_on_pages_api_and_thumbnail(server: Rtmpd) -> None:
    key = await server.auth.store.add_user("benw")
    publisher = HeldPublisher(server.rtmp.port, key)
    assert (await publisher.start()).code == "NetStream.Publish.Start"
    publisher.send_tags(media_tags(seconds=3, width=320, height=240))

    async def has_stats() -> bool:
        status, body, _ = await http_get(server, "/api/streams/benw")
        return status == 200 and b'"width": 320' in body

    await wait_until(has_stats)
    status, body, _ = await http_get(server, "/api/streams")
    streams = json.loads(body)["streams"]
    (stream,) = streams
    assert stream["name"] == "benw" and stream["live"] is True
    assert stream["playlist_url"] == "/live/benw/index.m3u8"
    assert stream["video"]["codec"].startswith("avc1.") and stream["video"]["height"] == 240
    assert stream["audio"]["codec"] == "mp4a.40.2" and stream["audio"]["channels"] == 2
    status, page, _ = await http_get(server, "/")
    assert status == 200 and b"/benw" in page and b"/thumb/benw.jpg" in page
    status, jpeg, headers = await http_get(server, "/thumb/benw.jpg")
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    assert jpeg[:2] == b"\xff\xd8"
    status, page, _ = await http_get(server, "/benw")
    assert status == 200 and b"<video" in page
    status, _, _ = await http_get(server, "/nobody")
    assert status == 404
    await publisher.close()


async def test_nginx_rtmp_on_publish_callbacks_drive_decisions(tmp_path: Path) -> None:
    """The recipe's Django views, played by a small aiohttp app: 302 to the public name."""
    from aiohttp import web

    calls: list[dict[str, str]] = []

    async def on_publish(request: web.Request) -> web.Response:
        form = dict(await request.post())
        calls.append(form)
        if form["name"] == "J42ninLbjl2E2V8ePqy7":
            raise web.HTTPFound("benw")
        raise web.HTTPNotFound()

    async def on_publish_done(request: web.Request) -> web.Response:
        calls.append(dict(await request.post()))
        return web.Response(text="OK")

    hook = web.Application()
    hook.router.add_post("/on_publish", on_publish)
    hook.router.add_post("/on_publish_done", on_publish_done)
    runner = web.AppRunner(hook)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    srv = await start_server(
        tmp_path,
        auth={
            "on_publish": f"http://127.0.0.1:{port}/on_publish",
            "on_publish_done": f"http://127.0.0.1:{port}/on_publish_done",
        },
    )
    try:
        result = await run_publisher(rtmp_url(srv, "J42ninLbjl2E2V8ePqy7"), seconds=2)
        assert result.returncode == 0, result.stderr
        denied = await run_publisher(rtmp_url(srv, "wrong"), seconds=1)
        assert denied.returncode != 0

        async def done() -> bool:
            return any(c.get("call") == "publish_done" for c in calls)

        await wait_until(done)
        assert (srv.config.hls_path / "benw" / "index.m3u8").exists()
        assert not (srv.config.hls_path / "J42ninLbjl2E2V8ePqy7").exists()
        publish = calls[0]
        assert publish["call"] == "publish" and publish["app"] == "app"
        assert publish["name"] == "J42ninLbjl2E2V8ePqy7" and publish["addr"] == "127.0.0.1"
        finished = next(c for c in calls if c.get("call") == "publish_done")
        assert finished["name"] == "J42ninLbjl2E2V8ePqy7"  # nginx-rtmp sends the original name
    finally:
        await srv.stop()
        await runner.cleanup()
