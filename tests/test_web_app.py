"""Pages, the JSON API, thumbnails, viewer counting, metrics and the access log of rtmpd.web."""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from rtmpd.web import Channel, Metrics, StreamStats
from rtmpd.web.thumbnails import ThumbnailCache
from rtmpd.web.viewers import ViewerTracker

from tests.support.web import MemoryDirectory, serve

STATS = StreamStats("avc1.64001f", 1280, 720, 30.0, 2500.0, "mp4a.40.2", 44100, 2, 128.0,
                    video_name="H.264", audio_name="AAC")  # fmt: skip
EVIL = '"><script>alert(1)</script>'
PLAYLIST = b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n"


@pytest.fixture
def hls(tmp_path: Path) -> Path:
    root = tmp_path / "hls"
    for name in ("benw", "off"):
        (root / name).mkdir(parents=True)
        (root / name / "index.m3u8").write_bytes(PLAYLIST)
        (root / name / "1.ts").write_bytes(b"\x47" * 188)
    return root


@pytest.fixture
def directory() -> MemoryDirectory:
    d = MemoryDirectory()
    d.add("benw", live=True, since=time.time() - 3725, stats=STATS, jpeg=b"\xff\xd8jpeg")
    d.add("off")
    return d


# -- pages ------------------------------------------------------------------------------------


async def test_home_lists_live_channels(hls: Path, directory: MemoryDirectory) -> None:
    async with serve(hls, directory) as s, s.get("/") as r:
        assert r.status == 200
        assert r.headers["Content-Type"] == "text/html; charset=utf-8"
        html = await r.text()
    assert '<a href="/benw">' in html
    assert '<img src="/thumb/benw.jpg"' in html
    assert "live for 1 h 02 min" in html
    assert "0 watching" in html
    assert "/off" not in html  # offline channels are not listed
    assert "Nobody is live" not in html


async def test_home_empty_state(hls: Path) -> None:
    d = MemoryDirectory()
    d.add("off")
    async with serve(hls, d) as s, s.get("/") as r:
        html = await r.text()
    assert "Nobody is live right now" in html
    assert "<ul" not in html


async def test_live_channel_page_has_the_player(hls: Path, directory: MemoryDirectory) -> None:
    async with serve(hls, directory, hlsjs_url="https://cdn.example.net/hls.min.js") as s:
        async with s.get("/benw") as r:
            assert r.status == 200
            html = await r.text()
            csp = r.headers["Content-Security-Policy"]
        async with s.get(re.search(r'src="(/static/player\.js\?v=\w+)"', html)[1]) as js:  # type: ignore[index]
            assert js.status == 200
            assert 'canPlayType("application/vnd.apple.mpegurl")' in await js.text()
    assert "<title>benw · rtmpd</title>" in html
    assert 'data-playlist="/live/benw/index.m3u8"' in html
    assert 'data-hlsjs="https://cdn.example.net/hls.min.js"' in html
    assert 'data-live="true"' in html
    assert re.search(r'<div class="player">\s*<video controls muted autoplay playsinline>', html)
    assert '<div class="offline" hidden>' in html
    assert "H.264 1280×720" in html and "AAC 44100 Hz" in html
    assert "script-src 'self' https://cdn.example.net;" in csp
    assert "default-src 'none'" in csp


async def test_offline_channel_page_shows_the_card(hls: Path, directory: MemoryDirectory) -> None:
    async with serve(hls, directory) as s, s.get("/off") as r:
        assert r.status == 200
        html = await r.text()
    assert '<div class="player" hidden>' in html
    assert '<div class="offline">' in html
    assert "<strong>off</strong> is offline." in html
    assert 'data-live="false"' in html


@pytest.mark.parametrize("path", ["/nobody", "/no/such/page", "/favicon.ico", "/benw/"])
async def test_unknown_page_is_the_404_page(
    hls: Path, directory: MemoryDirectory, path: str
) -> None:
    async with serve(hls, directory) as s, s.get(path) as r:
        assert r.status == 404
        assert r.headers["Content-Type"] == "text/html; charset=utf-8"
        html = await r.text()
    assert "<title>Not found · rtmpd</title>" in html
    assert f"<code>{path}</code>" in html
    assert '<a href="/">See who is live</a>' in html


async def test_every_value_is_escaped(hls: Path) -> None:
    d = MemoryDirectory()
    d.add(
        "evil",
        live=True,
        stats=StreamStats(video_codec=EVIL, width=1, height=1, audio_codec=EVIL),
    )
    d.add(EVIL, live=True)  # a directory should never return such a name; escape it anyway
    async with serve(hls, d) as s:
        pages = []
        for path in ("/", "/evil", "/%3Cscript%3E"):
            async with s.get(path) as r:
                pages.append(await r.text())
    for html in pages:
        assert "<script>alert" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[0]
    assert 'href="/%22%3E%3Cscript%3Ealert%281%29%3C/script%3E"' in pages[0]
    assert "&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt; 1×1" in pages[1]
    assert "<code>/&lt;script&gt;</code>" in pages[2]


# -- static -----------------------------------------------------------------------------------


async def test_static_files_and_self_hosted_hlsjs(hls: Path, tmp_path: Path) -> None:
    vendor = tmp_path / "hls.min.js"
    vendor.write_text("window.Hls = function () {};")
    d = MemoryDirectory()
    d.add("benw", live=True)
    async with serve(hls, d, hlsjs_file=vendor) as s:
        async with s.get("/benw") as r:
            html = await r.text()
            csp = r.headers["Content-Security-Policy"]
        url = re.search(r'data-hlsjs="(/static/vendor/hls\.min\.js\?v=\w+)"', html)
        assert url is not None
        assert "script-src 'self';" in csp
        async with s.get(url[1]) as r:
            assert r.status == 200
            assert r.headers["Content-Type"].startswith("text/javascript")
            assert await r.text() == "window.Hls = function () {};"
        async with s.get("/static/style.css") as r:
            assert r.headers["Content-Type"].startswith("text/css")
            etag = r.headers["ETag"]
        async with s.get("/static/style.css", headers={"If-None-Match": etag}) as r:
            assert r.status == 304
        for path in ("/static/nope.css", "/static/vendor/other.js", "/static/404.html"):
            async with s.get(path) as r:
                assert r.status == 404, path


# -- API --------------------------------------------------------------------------------------


async def test_api_stream_shape(hls: Path, directory: MemoryDirectory) -> None:
    since = directory.channels["benw"].live_since
    assert since is not None
    async with serve(hls, directory) as s:
        async with s.get("/api/streams/benw") as r:
            assert r.status == 200
            assert r.headers["Content-Type"] == "application/json; charset=utf-8"
            info = await r.json()
        async with s.get("/api/streams/off") as r:
            off = await r.json()
    assert list(info) == ["name", "live", "live_since", "uptime_seconds", "playlist_url",
                          "video", "audio", "renditions", "viewers"]  # fmt: skip
    assert info["name"] == "benw"
    assert info["live"] is True
    assert datetime.fromisoformat(info["live_since"]).timestamp() == int(since)
    assert info["live_since"].endswith("Z")
    assert 3725 <= info["uptime_seconds"] < 3725 + 60
    assert info["playlist_url"] == "/live/benw/index.m3u8"
    assert info["video"] == {"codec": "avc1.64001f", "name": "H.264", "width": 1280,
                             "height": 720, "fps": 30.0, "kbps": 2500.0}  # fmt: skip
    assert info["audio"] == {"codec": "mp4a.40.2", "name": "AAC", "sample_rate": 44100,
                             "channels": 2, "kbps": 128.0}  # fmt: skip
    assert info["viewers"] == 0 and info["renditions"] == []  # one video track
    assert off == {"name": "off", "live": False, "live_since": None, "uptime_seconds": None,
                   "playlist_url": "/live/off/index.m3u8", "video": None, "audio": None,
                   "renditions": [], "viewers": 0}  # fmt: skip


async def test_api_lists_live_streams_and_404s_unknown(
    hls: Path, directory: MemoryDirectory
) -> None:
    directory.add("second", live=True)
    async with serve(hls, directory, nested=False) as s:
        async with s.get("/api/streams") as r:
            body = await r.json()
        async with s.get("/api/streams/nobody") as r:
            assert r.status == 404
            assert r.headers["Content-Type"] == "application/json; charset=utf-8"
            assert await r.json() == {"error": "Unknown channel"}
        async with s.get("/api/nothing") as r:
            assert r.status == 404
            assert "error" in await r.json()
    assert [x["name"] for x in body["streams"]] == ["benw", "second"]
    assert body["streams"][0]["playlist_url"] == "/live/benw.m3u8"
    assert body["streams"][1]["video"] is None


# -- viewers ----------------------------------------------------------------------------------


async def test_viewers_are_distinct_recent_playlist_clients(
    hls: Path, directory: MemoryDirectory
) -> None:
    async with serve(hls, directory) as s:
        other = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.2", 0)))
        async with other:
            for session, agent in [
                (s.session, "player-a"),
                (s.session, "player-a"),  # the same client again
                (s.session, "player-b"),  # another browser on the same machine
                (other, "player-a"),  # another machine
            ]:
                headers = {"User-Agent": agent}
                async with session.get(s.base + "/live/benw/index.m3u8", headers=headers) as r:
                    assert r.status == 200
            for path in ("/live/benw/1.ts", "/live/off/1.ts", "/live/benw/gone.m3u8"):
                async with other.get(s.base + path, headers={"User-Agent": "x"}) as r:
                    pass  # segments and missing playlists do not count
        async with s.get("/api/streams/benw") as r:
            assert (await r.json())["viewers"] == 3
        async with s.get("/api/streams/off") as r:
            assert (await r.json())["viewers"] == 0
        async with s.get("/benw") as r:
            assert '<span data-field="viewers">3</span> watching' in await r.text()


def test_viewer_window_is_thirty_seconds() -> None:
    now = [1000.0]
    tracker = ViewerTracker(clock=lambda: now[0])
    tracker.seen("benw", "10.0.0.1", "a")
    now[0] += 20
    tracker.seen("benw", "10.0.0.2", "a")
    tracker.seen("other", "10.0.0.2", "a")
    assert (tracker.count("benw"), tracker.total()) == (2, 3)
    now[0] += 15  # the first client is 35 s old now
    assert tracker.count("benw") == 1
    now[0] += 20
    assert (tracker.count("benw"), tracker.total()) == (0, 0)
    assert ViewerTracker.client_id("10.0.0.1", "a") != ViewerTracker.client_id("10.0.0.1", "b")
    assert b"10.0.0.1" not in ViewerTracker.client_id("10.0.0.1", "a")


# -- thumbnails -------------------------------------------------------------------------------


async def test_thumbnails_come_from_memory_rendered_off_loop(
    hls: Path, directory: MemoryDirectory
) -> None:
    async with serve(hls, directory) as s:
        for _ in range(3):
            async with s.get("/thumb/benw.jpg") as r:
                assert r.status == 200
                assert r.headers["Content-Type"] == "image/jpeg"
                assert await r.read() == b"\xff\xd8jpeg"
        for path in ("/thumb/off.jpg", "/thumb/nobody.jpg"):
            async with s.get(path) as r:
                assert r.status == 404
    assert len(directory.thumbnail_threads) == 1  # home page + 3 fetches: one render
    assert directory.thumbnail_threads[0] != threading.main_thread().name


async def test_thumbnail_cache_refreshes_in_the_background() -> None:
    now = [0.0]
    calls: list[str] = []
    gate = threading.Event()

    def render(name: str) -> bytes | None:
        calls.append(name)
        gate.wait(5)
        if len(calls) == 3:
            raise RuntimeError("decoder failed")
        return f"jpeg{len(calls)}".encode()

    cache = ThumbnailCache(lambda name: lambda: render(name), clock=lambda: now[0])
    gate.set()
    first = await asyncio.gather(cache.get("a"), cache.get("a"))
    assert list(first) == [b"jpeg1", b"jpeg1"] and calls == ["a"]  # one render for both
    now[0] = 5.0
    assert await cache.get("a") == b"jpeg1" and calls == ["a"]  # fresh: from memory
    now[0] = 11.0
    gate.clear()
    assert await cache.get("a") == b"jpeg1"  # stale: served at once, refreshed behind
    gate.set()
    while len(calls) < 2 or cache._pending:
        await asyncio.sleep(0.01)
    assert await cache.get("a") == b"jpeg2"
    now[0] = 30.0
    assert await cache.get("a") == b"jpeg2"  # the failing refresh runs behind this answer
    while cache._pending:
        await asyncio.sleep(0.01)
    assert await cache.get("a") is None  # the failure is remembered for max_age, not raised


# -- metrics and access log -------------------------------------------------------------------


async def test_metrics_text_parses(hls: Path, directory: MemoryDirectory) -> None:
    metrics = Metrics()
    metrics.set_live(2)
    metrics.bytes_received(1500)
    metrics.bytes_received(500)
    metrics.segment_written(0.3)
    metrics.segment_written(1.5)
    metrics.publish_attempt("accepted")
    metrics.publish_attempt("accepted")
    metrics.publish_attempt("unknown_key")
    async with serve(hls, directory, metrics=metrics) as s:
        for path in ("/live/benw/index.m3u8", "/live/benw/1.ts", "/live/benw/x.ts", "/nobody"):
            async with s.get(path) as r:
                await r.read()
        async with s.get("/metrics") as r:
            assert r.status == 200
            assert r.headers["Content-Type"].startswith("text/plain")
            text = await r.text()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples["rtmpd_live_publishers", ()] == 2
    assert samples["rtmpd_received_bytes_total", ()] == 2000
    assert samples["rtmpd_hls_segments_written_total", ()] == 2
    assert samples["rtmpd_hls_segment_lag_seconds_count", ()] == 2
    assert samples["rtmpd_hls_segment_lag_seconds_sum", ()] == pytest.approx(1.8)
    assert samples["rtmpd_hls_segment_lag_seconds_bucket", (("le", "0.5"),)] == 1
    assert samples["rtmpd_publish_attempts_total", (("outcome", "accepted"),)] == 2
    assert samples["rtmpd_publish_attempts_total", (("outcome", "unknown_key"),)] == 1
    assert samples["rtmpd_hls_viewers", ()] == 1

    def http(route: str, status: str) -> float:
        return samples["rtmpd_http_requests_total", (("route", route), ("status", status))]

    assert http("hls_playlist", "200") == 1
    assert http("hls_segment", "200") == 1
    assert http("hls_segment", "404") == 1
    assert http("channel", "404") == 1
    assert Metrics().render() != metrics.render()  # each Metrics has its own registry


async def test_access_log_is_common_log_format(
    hls: Path, directory: MemoryDirectory, caplog: pytest.LogCaptureFixture
) -> None:
    logger = logging.getLogger("test.web.access")
    with caplog.at_level(logging.INFO, logger="test.web.access"):
        async with serve(hls, directory, access_log=logger) as s:
            async with s.get("/live/benw/1.ts", headers={"User-Agent": "secret-agent"}) as r:
                await r.read()
            async with s.get("/live/benw/1.ts", headers={"Range": "bytes=0-9"}) as r:
                await r.read()
            async with s.get("/api/streams/benw?x=1") as r:
                body = await r.read()
    lines = [r.getMessage() for r in caplog.records if r.name == "test.web.access"]
    clf = re.compile(
        r'127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "(.*)" (\d+) (\S+)'
    )
    parsed = [clf.fullmatch(line) for line in lines]
    assert all(parsed), lines
    assert [(m[1], m[2], m[3]) for m in parsed if m] == [
        ("GET /live/benw/1.ts HTTP/1.1", "200", "188"),
        ("GET /live/benw/1.ts HTTP/1.1", "206", "10"),
        ("GET /api/streams/benw?x=1 HTTP/1.1", "200", str(len(body))),
    ]
    assert not any("secret-agent" in line for line in lines)


class BrokenDirectory(MemoryDirectory):
    """A directory with a bug: looking a channel up raises."""

    async def channel(self, name: str) -> Channel | None:
        raise RuntimeError("a bug in the directory")


async def test_a_bug_in_a_handler_is_still_logged_with_its_traceback(
    hls: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Routine client errors are counted instead of logged; a real error is not routine."""
    caplog.set_level(logging.WARNING)
    async with serve(hls, BrokenDirectory()) as s, s.get("/api/streams/benw") as r:
        assert r.status == 500
        assert r.headers["Server"] == "rtmpd"
        text = await r.text()
    assert "a bug in the directory" not in text  # the traceback goes to the log only
    errors = [rec for rec in caplog.records if rec.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].name == "rtmpd.http"
    assert errors[0].exc_info is not None and isinstance(errors[0].exc_info[1], RuntimeError)


class _Balance(HTMLParser):
    """Checks that every non-void element is closed in order (a small validity check)."""

    VOID = {"meta", "link", "img", "br", "hr", "input", "source", "track", "wbr"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.seen: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen.append(tag)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(f"unexpected </{tag}>")


async def test_pages_are_well_formed_html(hls: Path, directory: MemoryDirectory) -> None:
    async with serve(hls, directory) as s:
        for path in ("/", "/benw", "/off", "/nobody"):
            async with s.get(path) as r:
                html = await r.text()
            assert html.startswith('<!doctype html>\n<html lang="en">'), path
            checker = _Balance()
            checker.feed(html)
            checker.close()
            assert checker.errors == [] and checker.stack == [], (path, checker.errors)
            assert checker.seen.count("title") == 1 and checker.seen.count("h1") == 1, path
            assert len(html) < 4096, path  # small pages
