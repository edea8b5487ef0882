"""Multitrack video end to end: FFmpeg's flv muxer (PyAV) writes two H.264 encodes of the same
pictures as enhanced RTMP multitrack video (track 0 legacy, track 1 a Multitrack OneTrack
message, as OBS's multitrack video sends them) with AAC; rtmpd's own client publishes those
tags to a whole rtmpd with LL-HLS on, held open while the live checks run (one publish for the
module): the multivariant playlist, each rendition's LL-HLS playlist with a report of the other,
a blocking reload and the hinted part per rendition, the API and the thumbnail (track 0's).
Then the publish ends and FFmpeg's HLS client decodes each rendition back over HTTP at its
size, the segments aligned across renditions."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import av
import pytest
import pytest_asyncio

from rtmpd.app import Rtmpd
from tests.support.app import HeldPublisher, start_server
from tests.support.exmedia import multitrack
from tests.support.m3u8_validator import parse, parse_multivariant
from tests.support.media import TAG_AUDIO, TAG_VIDEO, FlvTag, make_flv, read_flv_tags
from tests.support.player import play
from tests.support.publisher import run_publisher

pytestmark = pytest.mark.asyncio(loop_scope="module")

SIZES = {0: (192, 108), 1: (96, 54)}
HELD_MS = 3500  # sent before the live checks; the rest after them
GUARD = 30.0  # a hang guard, not a speed requirement


@dataclass
class Live:
    server: Rtmpd
    publisher: HeldPublisher
    tags: list[FlvTag]
    base: str

    async def get(self, path: str) -> tuple[int, bytes, dict[str, str]]:
        async with aiohttp.ClientSession() as http, http.get(self.base + path) as response:
            return response.status, await response.read(), dict(response.headers)

    async def text(self, path: str) -> str:
        status, body, _ = await self.get(path)
        assert status == 200, (path, status, body)
        return body.decode()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def live(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Live]:
    flv = make_flv(seconds=6.0, fps=10, gop=10, width=192, height=108, sample_rate=48000,
                   renditions=[list(SIZES[1])])  # fmt: skip
    tags = [t for t in read_flv_tags(flv) if t.kind in (TAG_AUDIO, TAG_VIDEO)]
    assert any(t.body[0] & 0x8F == 0x86 for t in tags)  # FFmpeg wrote multitrack video
    hls = {"fragment": 1.0, "playlist_length": 60.0, "low_latency": True}
    server = await start_server(tmp_path_factory.mktemp("multitrack"), hls=hls)
    try:
        key = await server.auth.store.add_user("benw")
        publisher = HeldPublisher(server.rtmp.port, key)
        status = await publisher.start()
        assert status.code == "NetStream.Publish.Start"
        publisher.send_tags([t for t in tags if t.timestamp < HELD_MS])
        async with asyncio.timeout(GUARD):
            while (view := server.hls.live_playlist("benw/v1")) is None or view.last[0] < 3:
                await asyncio.sleep(0.02)
        base = f"http://127.0.0.1:{server.http_port}"
        yield Live(server, publisher, [t for t in tags if t.timestamp >= HELD_MS], base)
        await publisher.close()
    finally:
        await server.stop()


async def test_multivariant_playlist_over_the_renditions(live: Live) -> None:
    variants = parse_multivariant(await live.text("/live/benw/index.m3u8"))
    assert [(v["URI"], v["RESOLUTION"]) for v in variants] == [("v0.m3u8", "192x108"),
                                                               ("v1.m3u8", "96x54")]  # fmt: skip
    for v in variants:
        assert v["CODECS"].startswith("avc1.42") and v["CODECS"].endswith(",mp4a.40.2")
        assert v["FRAME-RATE"] == "10.000"
        assert int(v["BANDWIDTH"]) >= int(v["AVERAGE-BANDWIDTH"]) > 0
    assert int(variants[0]["BANDWIDTH"]) > int(variants[1]["BANDWIDTH"])  # measured


async def test_each_rendition_reports_the_other_and_blocks_on_its_own_parts(live: Live) -> None:
    playlists = {t: parse(await live.text(f"/live/benw/v{t}.m3u8")) for t in (0, 1)}
    for track, other in ((0, 1), (1, 0)):
        mine = playlists[track]
        assert mine.low_latency and mine.preload_hint is not None
        assert mine.preload_hint.startswith(f"v{track}-p")
        assert [r["URI"] for r in mine.reports] == [f"v{other}.m3u8"]
        theirs = playlists[other]
        last = theirs.segments[-1].sequence + (1 if theirs.open_parts else 0)
        assert int(mine.reports[0]["LAST-MSN"]) == last
        assert int(mine.reports[0]["LAST-PART"]) == len(theirs.open_parts) - 1
    v0, v1 = playlists[0], playlists[1]
    assert [(s.sequence, s.duration) for s in v0.segments] == [
        (s.sequence, s.duration) for s in v1.segments]  # fmt: skip
    # A blocking reload of rendition 1 for its next part, and the hinted part itself, are
    # answered once the publisher sends it; the rendition's parts are its own.
    msn, parts = v1.segments[-1].sequence + 1, len(v1.open_parts)
    hinted = v1.preload_hint
    assert hinted is not None
    reload = asyncio.create_task(live.text(f"/live/benw/v1.m3u8?_HLS_msn={msn}&_HLS_part={parts}"))
    part = asyncio.create_task(live.get(f"/live/benw/{hinted}"))
    await asyncio.sleep(0.1)
    live.publisher.send_tags([t for t in live.tags if t.timestamp < HELD_MS + 500])
    async with asyncio.timeout(GUARD):
        answered = parse(await reload)
        status, data, headers = await part
    assert len(answered.open_parts) > parts or answered.segments[-1].sequence >= msn
    assert hinted in [p.uri for p in answered.open_parts] + [
        p.uri for s in answered.segments for p in s.parts]  # fmt: skip
    assert status == 200 and data[4:8] == b"moof" and "max-age" in headers["Cache-Control"]
    status, _, _ = await live.get(f"/live/benw/v0-{hinted.removeprefix('v1-')}")
    assert status == 404  # not a part of rendition 0
    live.tags = [t for t in live.tags if t.timestamp >= HELD_MS + 500]


async def test_api_and_thumbnail(live: Live) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(live.base + "/api/streams/benw") as response:
            info = await response.json()
        async with http.get(live.base + "/thumb/benw.jpg") as response:
            assert response.status == 200
            jpeg = await response.read()
    assert [(r["track"], r["playlist_url"], r["width"], r["height"], r["name"])
            for r in info["renditions"]] == [
        (0, "/live/benw/v0.m3u8", 192, 108, "H.264"), (1, "/live/benw/v1.m3u8", 96, 54, "H.264"),
    ]  # fmt: skip
    assert all(r["kbps"] > 0 and r["codec"].startswith("avc1.") for r in info["renditions"])
    assert info["renditions"][0]["kbps"] > info["renditions"][1]["kbps"]
    assert (info["video"]["width"], info["video"]["height"]) == SIZES[0]
    status, page, _ = await live.get("/benw")
    assert status == 200
    assert b'<ul class="renditions" data-field="renditions">' in page  # shown, not hidden
    assert "<li>192×108 H.264".encode() in page and "<li>96×54 H.264".encode() in page
    with av.open(io.BytesIO(jpeg)) as image:
        frame = next(image.decode(video=0))
        assert (frame.width, frame.height) == SIZES[0]  # track 0's keyframe


async def test_renditions_decode_back_aligned(live: Live) -> None:
    live.publisher.send_tags(live.tags)
    await live.publisher.close()
    folder: Path = live.server.hls.segment_dir("benw")
    async with asyncio.timeout(GUARD):
        while not all("#EXT-X-ENDLIST" in _read(folder / f"v{t}.m3u8") for t in (0, 1)):
            await asyncio.sleep(0.02)
    v0, v1 = (parse((folder / f"v{t}.m3u8").read_text()) for t in (0, 1))
    assert len(v0.segments) == 6
    assert [s.sequence for s in v0.segments] == [s.sequence for s in v1.segments]
    for a, b in zip(v0.segments, v1.segments, strict=True):
        assert abs(a.duration - b.duration) <= 0.1  # within a frame (the last one's end)
        assert a.program_date_time == b.program_date_time
    for track, size in SIZES.items():
        played = await play(f"{live.base}/live/benw/v{track}.m3u8")
        assert played.size == list(size) and played.codecs == ["h264", "aac"]
        assert played.video >= 55 and played.audio > 200 and not played.warnings


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


async def test_hostile_multitrack_publish(live: Live, caplog: pytest.LogCaptureFixture) -> None:
    """Six video tracks (max_renditions is 4), a track id twice in one ManyTracks message, a
    VP8 track: each named once in the log, the publish goes on with the renditions it can."""
    key = await live.server.auth.store.add_user("mall")
    publisher = HeldPublisher(live.server.rtmp.port, key)
    await publisher.start()
    flv = make_flv(seconds=3.0, fps=10, gop=10, width=96, height=54, sample_rate=48000,
                   renditions=[[48, 28]])  # fmt: skip
    tags = [t for t in read_flv_tags(flv) if t.kind in (TAG_AUDIO, TAG_VIDEO)]
    out: list[FlvTag] = []
    for tag in tags:
        body = tag.body
        if body[0] & 0x8F != 0x86:  # not multitrack video
            out.append(tag)
            if tag.kind == TAG_VIDEO and body[1] == 0:  # a VP8 track's header, refused
                out.append(FlvTag(TAG_VIDEO, 0, multitrack(0x96, 0, 0, [(b"vp08", 6, b"\0")])))
            continue
        data = body[7:]
        for track in (1, 2, 3, 4, 5):  # copies of track 1 under other ids
            out.append(FlvTag(TAG_VIDEO, tag.timestamp, body[:6] + bytes([track]) + data))
        if body[1] & 0x0F == 3:  # coded frames: track 1 twice in one ManyTracks message
            out.append(
                FlvTag(
                    TAG_VIDEO,
                    tag.timestamp,
                    multitrack(body[0], 1, 3, [(b"avc1", 1, data), (b"avc1", 1, data)]),
                )
            )
    publisher.send_tags(out)
    folder: Path = live.server.hls.segment_dir("mall")
    async with asyncio.timeout(GUARD):
        while len(_read(folder / "index.m3u8").splitlines()) < 11:  # 4 variants
            await asyncio.sleep(0.02)
    variants = parse_multivariant((folder / "index.m3u8").read_text())
    assert sorted(v["URI"] for v in variants) == ["v0.m3u8", "v1.m3u8", "v2.m3u8", "v3.m3u8"]
    assert not publisher.closed.is_set()
    await publisher.close()
    text = caplog.text
    assert "video track 4 is not packaged: [hls] max_renditions is 4" in text
    assert "video track 5 is not packaged: [hls] max_renditions is 4" in text
    assert "video track 6 (VP8 (refused: not supported by rtmpd)) is not packaged" in text
    assert text.count("video track 1 sent two frames with the same timestamp") == 1
    assert "Traceback" not in text


async def test_ffmpegs_own_rtmp_client_publishes_multitrack(live: Live) -> None:
    """FFmpeg's RTMP client (PyAV, a child process) sends the multitrack FLV itself."""
    key = await live.server.auth.store.add_user("ffmt")
    url = f"rtmp://127.0.0.1:{live.server.rtmp.port}/app/{key}"
    result = await run_publisher(url, seconds=3.0, fps=10, gop=10, width=160, height=90,
                                 sample_rate=48000, renditions=[[80, 46]])  # fmt: skip
    assert result.returncode == 0, result.stderr
    folder: Path = live.server.hls.segment_dir("ffmt")
    async with asyncio.timeout(GUARD):
        while not all("#EXT-X-ENDLIST" in _read(folder / f"v{t}.m3u8") for t in (0, 1)):
            await asyncio.sleep(0.02)
    variants = parse_multivariant((folder / "index.m3u8").read_text())
    assert [v["RESOLUTION"] for v in variants] == ["160x90", "80x46"]
    played = await play(f"{live.base}/live/ffmt/v1.m3u8")
    assert played.size == [80, 46] and played.video >= 25 and not played.warnings
