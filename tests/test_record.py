"""[record]: every broadcast kept as a VOD (HLS with EXT-X-PLAYLIST-TYPE:VOD, and an MP4),
listed in the API and on the channel page, bounded by keep_days and max_bytes, removed by
`rtmpd recordings remove` and the admin API, and surviving a full disk and a SIGKILL.

FFmpeg (the ffmpeg and ffprobe commands, in child processes) decodes what was recorded."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from rtmpd.hls import HlsConfig, HlsService
from rtmpd.hls import recorder as recorder_module
from rtmpd.hls import recording as rec
from rtmpd.hls.recorder import Recorder
from rtmpd.hls.recording import RecordConfig, RecordingInfo

from rtmpd.config import Config, from_dict
from tests.support.app import start_server
from tests.support.hls import FakeClock, feed, media, shift
from tests.support.hostile import Publisher, Stream, lines, shifted, small_tags, until
from tests.support.publisher import run_publisher
from tests.test_faults import RtmpdProcess, SmallDisk

START = "NetStream.Publish.Start"
RTMPD = shutil.which("rtmpd", path=str(Path(sys.executable).parent)) or "rtmpd"
ROOT = Path(__file__).resolve().parent.parent


# -- what FFmpeg makes of it --------------------------------------------------------------------


def probe(path: Path) -> float:
    """The duration ffprobe reads."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "json", str(path)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return float(json.loads(out.stdout)["format"]["duration"])


def decode_errors(path: Path) -> str:
    """What `ffmpeg -v error` says decoding every frame of `path` ("" when nothing)."""
    out = subprocess.run(
        ["ffmpeg", "-v", "error", "-nostdin", "-i", str(path), "-f", "null", "-"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return out.stderr.strip()


def faststart(path: Path) -> bool:
    """The moov box comes before the media (mdat)."""
    data = path.read_bytes()
    top, offset = [], 0
    while offset + 8 <= len(data):
        size = int.from_bytes(data[offset : offset + 4], "big")
        top.append(data[offset + 4 : offset + 8])
        if size < 8:
            break
        offset += size
    return b"moov" in top and top.index(b"moov") < top.index(b"mdat")


def checked(folder: Path, published: float, tolerance: float = 0.3) -> RecordingInfo:
    """The recording in `folder` is a VOD and an MP4 FFmpeg decodes, `published` s long."""
    info = RecordingInfo.from_json((folder / rec.SIDECAR).read_bytes())
    text = (folder / rec.PLAYLIST).read_text()
    assert "#EXT-X-PLAYLIST-TYPE:VOD" in text and text.endswith("#EXT-X-ENDLIST\n")
    listed = sum(float(d) for d in re.findall(r"#EXTINF:([\d.]+),", text))
    assert abs(listed - info.duration_ms / 1000) < 0.01
    assert abs(listed - published) <= tolerance, (listed, published)
    for path in (folder / rec.PLAYLIST, folder / rec.MP4):
        assert decode_errors(path) == "", path
        assert abs(probe(path) - listed) <= 0.15, path
    assert info.mp4 and faststart(folder / rec.MP4)
    assert info.thumbnail and (folder / rec.THUMB).read_bytes()[:2] == b"\xff\xd8"
    return info


async def finished(recorder: Recorder, name: str, count: int = 1) -> list[RecordingInfo]:
    """Wait for `count` recordings of `name`, ended and their MP4 made (or refused)."""

    def done() -> bool:
        recorder.tick()  # the server's tick does it too; tests of a Recorder alone need it
        found = recorder.recordings(name)
        return len(found) == count and all(
            not r.recording and (r.mp4 or r.mp4_error) for r in found
        )

    await until(done, 60)
    return recorder.recordings(name)


def folder_of(recorder: Recorder, info: RecordingInfo) -> Path:
    return recorder.root / info.name / info.id


def on_disk(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


# -- the configuration and the pure parts -------------------------------------------------------


def test_the_example_file_documents_record_with_its_defaults() -> None:
    data = tomllib.loads((ROOT / "config.example.toml").read_text())
    assert from_dict(data, ROOT).record == Config(base_dir=ROOT).record
    assert set(data["record"]) == set(RecordConfig.__struct_fields__)
    assert from_dict({"record": {"path": "r"}}, ROOT).record.path == ROOT / "r"


def test_a_playlist_cut_mid_entry_keeps_its_whole_entries() -> None:
    text = rec.event_header(2, False) + "#EXTINF:1.000,\n00001.ts\n#EXTINF:1.000,\n00002.ts\n"
    assert [s.uri for s in rec.parse_entries(text)] == ["00001.ts", "00002.ts"]
    assert [s.uri for s in rec.parse_entries(text + "#EXTINF:1.0")] == ["00001.ts", "00002.ts"]
    assert [s.uri for s in rec.parse_entries(text[:-4])] == ["00001.ts"]  # "00002" never ended


def test_room_is_made_oldest_first_and_never_from_a_live_recording() -> None:
    old = RecordingInfo("a", "20260101-000000", 1.0, 2.0, bytes=100, state=rec.ENDED)
    newer = RecordingInfo("b", "20260102-000000", 5.0, 6.0, bytes=100, state=rec.ENDED)
    live = RecordingInfo("c", "20260103-000000", 9.0, bytes=500)
    everything = [newer, live, old]
    assert rec.to_make_room(everything, 700, 50, 800) == []
    assert rec.to_make_room(everything, 700, 150, 800) == [old]
    assert rec.to_make_room(everything, 700, 250, 800) == [old, newer]
    assert rec.to_make_room(everything, 700, 400, 800) is None  # only the live one is left
    assert rec.expired(everything, 6.0 + 86400 * 2, keep_days=1) == [newer, old]
    assert rec.expired(everything, 4.0 + 86400, keep_days=1) == [old]
    assert rec.expired(everything, 1e12, keep_days=0) == []
    assert rec.new_id(0.0, ["19700101-000000", "19700101-000000-2"]) == "19700101-000000-3"


# -- a broadcast, end to end --------------------------------------------------------------------


async def test_a_broadcast_is_kept_as_a_vod_and_an_mp4(tmp_path: Path) -> None:
    """FFmpeg publishes (PyAV, a child process); the recording is listed in the API and on the
    channel page, its VOD playlist and its MP4 decode end to end with the published duration,
    its files are served with ranges; `rtmpd recordings` lists and removes it."""
    server = await start_server(tmp_path, record={"enabled": True}, hls={"grace": 1.0})
    assert server.recorder is not None
    try:
        key = await server.auth.store.add_user("benw")
        url = f"rtmp://127.0.0.1:{server.rtmp.port}/app/{key}"
        result = await run_publisher(url, seconds=4, width=320, height=240, gop=25)
        assert result.returncode == 0, result.stderr
        [info] = await finished(server.recorder, "benw")
        folder = folder_of(server.recorder, info)
        info = checked(folder, 4.0)
        assert info.segments >= 3 and info.discontinuities == 0 and info.lost == 0
        base = f"http://127.0.0.1:{server.http_port}"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/api/streams/benw/recordings") as response:
                assert response.status == 200
                [listed] = (await response.json())["recordings"]
            assert listed["id"] == info.id and listed["duration_seconds"] == info.duration_ms / 1000
            assert listed["bytes"] == info.bytes and listed["recording"] is False
            async with http.get(base + listed["playlist_url"]) as response:
                assert response.status == 200
                assert response.content_type == "application/vnd.apple.mpegurl"
                assert "#EXT-X-PLAYLIST-TYPE:VOD" in await response.text()
            headers = {"Range": "bytes=0-99"}
            async with http.get(base + listed["mp4_url"], headers=headers) as response:
                assert response.status == 206 and response.content_type == "video/mp4"
                assert (await response.read()) == (folder / rec.MP4).read_bytes()[:100]
            async with http.get(base + listed["thumbnail_url"]) as response:
                assert response.status == 200 and response.content_type == "image/jpeg"
            async with http.get(f"{base}/benw") as response:
                page = await response.text()
            assert "Past broadcasts" in page and listed["playlist_url"] in page
            assert listed["mp4_url"] in page
            for bad in (
                "/recordings/benw/../x/index.m3u8",
                f"/recordings/benw/{info.id}/recording.json",
                "/recordings/benw/20990101-000000/index.m3u8",
            ):
                async with http.get(base + bad) as response:
                    assert response.status == 404, bad

        config = tmp_path / "rtmpd.toml"
        config.write_text(f'[record]\nenabled = true\npath = "{server.recorder.root}"\n')
        listing = cli(config, "list", "benw")
        assert listing.returncode == 0 and info.id in listing.stdout, listing.stderr
        assert cli(config, "remove", "benw", "20990101-000000").returncode == 1
        removed = cli(config, "remove", "benw", info.id)
        assert removed.returncode == 0, removed.stderr
        assert not folder.exists()
        server.recorder.tick(time.time() + recorder_module.RETENTION_SECONDS)
        assert server.recorder.recordings("benw") == [] and server.recorder.total == 0
    finally:
        await server.stop()


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RTMPD, "recordings", "-c", str(config), *args], capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip


async def test_takeover_and_reconnect_within_the_grace_are_one_recording(tmp_path: Path) -> None:
    """A publish, a takeover of it, a reconnect within [hls] grace: one recording of all three
    (a discontinuity at each seam); a publish after the grace is a second one. The admin API
    lists both and removes one."""
    server = await start_server(tmp_path, record={"enabled": True}, hls={"grace": 3.0})
    assert server.recorder is not None and server.accounts is not None
    try:
        key = await server.auth.store.add_user("benw")
        part = list(small_tags(2.0))
        first = Publisher(server.rtmp.port, key)
        assert (await first.start()).code == START
        first.send_tags(part)
        await until(lambda: bool(server.recorder and server.recorder.recordings("benw")))
        await until(lambda: server.recorder is not None and
                    server.recorder.recordings("benw")[0].segments >= 1)  # fmt: skip
        token = await server.accounts.add_token("record-test")
        base = f"http://127.0.0.1:{server.http_port}/api/admin/recordings"
        auth = {"Authorization": f"Bearer {token}"}
        recording = server.recorder.recordings("benw")[0]
        async with (
            aiohttp.ClientSession(headers=auth) as http,
            http.delete(f"{base}/benw/{recording.id}") as response,
        ):
            assert response.status == 409  # being recorded
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{server.http_port}/api/streams/benw/recordings") as r,
        ):
            assert (await r.json())["recordings"] == []  # not a past broadcast yet
        second = Publisher(server.rtmp.port, key)  # takes over
        assert (await second.start()).code == START
        await first.wait_closed(10)
        second.send_tags(shifted(part, 5000))
        await asyncio.sleep(0.5)
        await second.close()
        await asyncio.sleep(0.5)
        third = Publisher(server.rtmp.port, key)  # a reconnect within the grace
        assert (await third.start()).code == START
        third.send_tags(part)
        await third.close()
        [info] = await finished(server.recorder, "benw")
        info = checked(folder_of(server.recorder, info), 6.0, tolerance=0.5)
        assert info.discontinuities == 2 and info.lost == 0

        fourth = Publisher(server.rtmp.port, key)  # after the grace: a new broadcast
        assert (await fourth.start()).code == START
        fourth.send_tags(part)
        await fourth.close()
        later, earlier = await finished(server.recorder, "benw", 2)
        assert earlier.id == info.id and later.started_at > info.ended_at  # type: ignore[operator]

        async with aiohttp.ClientSession(headers=auth) as http:
            async with http.get(f"{base}/benw") as response:
                ids = [r["id"] for r in (await response.json())["recordings"]]
            assert ids == [later.id, earlier.id]
            async with http.delete(f"{base}/benw/{earlier.id}") as response:
                assert response.status == 204
            async with http.delete(f"{base}/benw/{earlier.id}") as response:
                assert response.status == 404
            async with http.get(base) as response:
                assert [r["id"] for r in (await response.json())["recordings"]] == [later.id]
        await until(lambda: not (server.recorder.root / "benw" / earlier.id).exists())  # type: ignore[union-attr]
    finally:
        await server.stop()


# -- the bounds ---------------------------------------------------------------------------------


@pytest.fixture
def hls_and_clock(tmp_path: Path) -> Iterator[tuple[HlsConfig, FakeClock]]:
    yield HlsConfig(path=tmp_path / "live", fragment=1.0, playlist_length=4.0), FakeClock()


def broadcast(hls: HlsService, recorder: Recorder, clock: FakeClock, seconds: float = 3) -> None:
    """One publish of `seconds` of media; its broadcast ends (the grace is 0)."""
    packager = hls.open_stream("benw")
    feed(packager, media(seconds=seconds, width=320, height=240))
    packager.close()
    clock.advance(1)
    recorder.tick()


async def test_retention_by_keep_days(
    tmp_path: Path, hls_and_clock: tuple[HlsConfig, FakeClock]
) -> None:  # noqa: E501
    config, clock = hls_and_clock
    recorder = Recorder(RecordConfig(True, tmp_path / "rec", keep_days=2), grace=0, clock=clock)
    recorder.start()
    hls = HlsService(config, clock=clock, recorder=recorder)
    try:
        broadcast(hls, recorder, clock)
        [old] = await finished(recorder, "benw")
        clock.advance(86400)
        broadcast(hls, recorder, clock)
        newer, _ = await finished(recorder, "benw", 2)
        clock.advance(86400 + 1)
        recorder.tick()
        assert recorder.recordings("benw") == [newer]
        await until(lambda: not list(recorder.root.glob("*/.*.removing")))  # gone in a thread
        assert not folder_of(recorder, old).exists() and recorder.total == newer.bytes
        assert 0 <= recorder.total - on_disk(recorder.root) < recorder_module.SIDECAR_BYTES
    finally:
        recorder.close()
    again = Recorder(RecordConfig(True, tmp_path / "rec", keep_days=0.5), grace=0, clock=clock)
    again.start()  # retention at start too
    assert again.recordings() == [] and not folder_of(again, newer).exists()
    again.close()


async def test_max_bytes_is_a_hard_bound(
    tmp_path: Path, hls_and_clock: tuple[HlsConfig, FakeClock]
) -> None:  # noqa: E501
    """The oldest recording goes to make room; a recording that cannot fit stops (the live
    stream goes on); the disk never holds more than max_bytes."""
    config, clock = hls_and_clock
    measure = Recorder(RecordConfig(True, tmp_path / "rec"), grace=0, clock=clock)
    measure.start()
    hls = HlsService(config, clock=clock, recorder=measure)
    broadcast(hls, measure, clock)
    [first] = await finished(measure, "benw")
    measure.close()
    limit = first.bytes * 3 // 2
    recorder = Recorder(RecordConfig(True, tmp_path / "rec", max_bytes=limit), grace=0,
                        clock=clock)  # fmt: skip
    recorder.start()
    assert recorder.recordings() == [first]
    hls = HlsService(config, clock=clock, recorder=recorder)
    sizes: list[int] = []
    original = recorder._grow

    def watched(*args: object) -> None:
        original(*args)  # type: ignore[arg-type]
        sizes.append(on_disk(recorder.root))

    recorder._grow = watched  # type: ignore[method-assign]
    try:
        clock.advance(10)
        broadcast(hls, recorder, clock)
        [second] = await finished(recorder, "benw")
        assert second.id != first.id and not folder_of(recorder, first).exists()
        assert second.mp4 and max(sizes) <= limit and on_disk(recorder.root) <= limit
        checked(folder_of(recorder, second), 3.0)
        recorder.close()
        small = Recorder(RecordConfig(True, tmp_path / "small", max_bytes=first.bytes // 4),
                         grace=0, clock=clock)  # fmt: skip
        small.start()
        hls = HlsService(config, clock=clock, recorder=small)
        clock.advance(10)
        broadcast(hls, small, clock)
        [cut] = await finished(small, "benw")
        assert cut.stopped is not None and 0 < cut.segments < second.segments
        assert on_disk(small.root) <= first.bytes // 4
        assert hls.stream_info("benw") is not None  # the live stream was never touched
        small.close()
    finally:
        recorder.close()


async def test_workers_list_each_others_recordings_and_share_max_bytes(
    tmp_path: Path, hls_and_clock: tuple[HlsConfig, FakeClock]
) -> None:  # noqa: E501
    """With workers, two recorders on one folder: each lists the other's recordings (from the
    sidecars), and max_bytes holds for the folder: the second makes room by removing the
    first's finished recording, which the first then forgets; a restarted worker takes back
    only its own."""
    config, clock = hls_and_clock
    root = tmp_path / "rec"
    one = Recorder(RecordConfig(True, root), grace=0, clock=clock, node="n.w1", shared=True)
    one.start()
    hls_one = HlsService(config, clock=clock, recorder=one)
    broadcast(hls_one, one, clock)
    [first] = await finished(one, "benw")
    assert first.node == "n.w1" and first.mp4
    limit = first.bytes * 3 // 2
    two = Recorder(RecordConfig(True, root, max_bytes=limit), grace=0, clock=clock, node="n.w2",
                   shared=True)  # fmt: skip
    two.start(claim=lambda info: info.node == "n.w2")
    assert two.recordings("benw") == [first] and two.total == 0  # listed, not taken over
    live_two = HlsConfig(path=tmp_path / "live2", fragment=1.0, playlist_length=4.0)
    hls_two = HlsService(live_two, clock=clock, recorder=two)
    try:
        clock.advance(10)
        broadcast(hls_two, two, clock)
        [second] = await finished(two, "benw")  # the first one went to make room
        assert second.node == "n.w2" and second.mp4
        assert not folder_of(one, first).exists() and on_disk(root) <= limit
        one.tick(clock() + recorder_module.RETENTION_SECONDS)
        assert one.recordings("benw") == [second] and one.total == 0
        again = Recorder(RecordConfig(True, root), grace=0, clock=clock, node="n.w1", shared=True)
        again.start(claim=lambda info: info.node == "n.w1")  # worker 1 restarted: none of its own
        assert again.total == 0 and again.recordings("benw") == [second]
        again.close()
        assert one.remove("benw", second.id)  # the admin API is worker 1's: it removes any
        assert not folder_of(two, second).exists() and one.recordings("benw") == []
        two.tick(clock() + recorder_module.RETENTION_SECONDS)
        assert two.recordings("benw") == [] and two.total == 0
    finally:
        one.close()
        two.close()


# -- a full disk, a SIGKILL ----------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SmallDisk]:
    disk = SmallDisk(tmp_path / "disk", monkeypatch)  # test_faults's, in a folder of its own
    yield disk
    disk.close()


async def test_a_full_disk_keeps_live_going_and_the_recording_notes_its_gap(
    tmp_path: Path, small_disk: SmallDisk, caplog: pytest.LogCaptureFixture
) -> None:
    """ENOSPC mid-broadcast on a 4 MiB tmpfs holding both the HLS folder and the recordings:
    the publisher stays, live HLS resumes, the recording has an EXT-X-DISCONTINUITY where
    media was lost and decodes (VOD and MP4) once space is back."""
    assert small_disk.mounted, "a real tmpfs is needed (root)"
    caplog.set_level(logging.INFO)
    server = await start_server(
        tmp_path,
        hls={"path": str(small_disk.folder / "hls"), "playlist_length": 60.0, "grace": 0.5},
        record={"enabled": True, "path": str(small_disk.folder / "rec")},
    )
    assert server.recorder is not None
    try:
        key = await server.auth.store.add_user("benw")
        publisher = Publisher(server.rtmp.port, key)
        assert (await publisher.start()).code == START
        tags = list(small_tags(9.0, width=320, height=240))
        before = [t for t in tags if t.timestamp < 3000 or t.is_sequence_header]
        during = [t for t in tags if 3000 <= t.timestamp < 6000 and not t.is_sequence_header]
        after = [t for t in tags if t.timestamp >= 6000 and not t.is_sequence_header]
        publisher.send_tags(before)
        await until(lambda: server.recorder is not None and bool(server.recorder.recordings())
                    and server.recorder.recordings()[0].segments >= 2)  # fmt: skip
        small_disk.fill()
        publisher.send_tags(during)
        await asyncio.sleep(1.0)
        assert not publisher.closed.is_set()
        small_disk.free()
        publisher.send_tags(after)
        stream = Stream(server, "benw")  # live HLS goes on past the outage
        await until(lambda: "#EXT-X-DISCONTINUITY" in stream.text() and stream.segments() >= 4)
        await publisher.close()
        [info] = await finished(server.recorder, "benw")
        folder = folder_of(server.recorder, info)
        text = (folder / rec.PLAYLIST).read_text()
        assert info.discontinuities >= 1 and "#EXT-X-DISCONTINUITY" in text
        listed = info.duration_ms / 1000
        assert 3.0 <= listed < 8.5  # a part of the middle third is lost, and only that
        checked(folder, listed, tolerance=0.01)
        print(f"\nrecorded {listed:.3f} s of 9 s, {info.lost} segment(s) lost by the recorder, "
              f"{info.discontinuities} discontinuity(ies)")  # fmt: skip
        assert any("cannot write" in line for line in lines(caplog, logging.ERROR))
    finally:
        await server.stop()


async def test_sigkill_mid_broadcast_then_restart_closes_the_recording(tmp_path: Path) -> None:
    """Killed while recording: the next start closes the recording as a VOD of the segments
    on disk and makes its MP4; FFmpeg decodes both."""
    config = tmp_path / "rtmpd.toml"
    config.write_text(
        '[rtmp]\nlisten = "127.0.0.1:0"\n[http]\nlisten = "127.0.0.1:0"\n'
        '[hls]\npath = "hls"\nfragment = 1.0\n[database]\npath = "db.sqlite3"\n'
        '[record]\nenabled = true\npath = "rec"\n'
    )
    added = subprocess.run([RTMPD, "users", "-c", str(config), "add", "benw"],
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert added.returncode == 0, added.stderr
    first = RtmpdProcess(config)
    await first.start()
    publisher = Publisher(first.rtmp_port, added.stdout.strip())
    assert (await publisher.start()).code == START
    publisher.send_tags(list(small_tags(4.5)))
    names = tmp_path / "rec" / "benw"

    def recorded(count: int) -> bool:
        playlists = list(names.glob("*/index.m3u8"))
        return bool(playlists) and playlists[0].read_text().count("#EXTINF") >= count

    await until(lambda: recorded(3))
    assert await first.stop(signal.SIGKILL) == -signal.SIGKILL
    await publisher.close()
    [folder] = list(names.iterdir())
    assert RecordingInfo.from_json((folder / rec.SIDECAR).read_bytes()).recording
    segments = (folder / rec.PLAYLIST).read_text().count("#EXTINF")

    second = RtmpdProcess(config)
    await second.start()
    try:

        def closed() -> bool:
            info = RecordingInfo.from_json((folder / rec.SIDECAR).read_bytes())
            return info.mp4 or info.mp4_error is not None

        await until(closed, 60)
        info = RecordingInfo.from_json((folder / rec.SIDECAR).read_bytes())
        assert info.segments == segments and info.mp4_error is None
        checked(folder, info.duration_ms / 1000, tolerance=0.01)
    finally:
        assert await second.stop(signal.SIGTERM) == 0
    output = "".join(first.stderr + second.stderr)
    assert "closed after an interrupted run" in output and "Traceback" not in output
    assert os.listdir(folder.parent) == [folder.name]


def test_fmp4_segments_and_their_init_segments_are_recorded(
    tmp_path: Path, hls_and_clock: tuple[HlsConfig, FakeClock]
) -> None:
    """[hls] format = "fmp4": the init segment of each run is recorded with its segments, and
    the MP4 follows a takeover's new run."""
    _, clock = hls_and_clock
    config = HlsConfig(path=tmp_path / "live", fragment=1.0, playlist_length=4.0, format="fmp4")
    recorder = Recorder(RecordConfig(True, tmp_path / "rec"), grace=0, clock=clock)
    recorder.start()
    hls = HlsService(config, clock=clock, recorder=recorder)
    events = media(seconds=3, width=320, height=240)
    try:
        feed(hls.open_stream("benw"), events)
        last = hls.open_stream("benw")  # a takeover: a new run, a new init segment
        feed(last, shift(events, 5000))
        last.close()
        recorder.tick()
        [info] = recorder.recordings("benw")
        folder = folder_of(recorder, info)
        text = (folder / rec.PLAYLIST).read_text()
        assert text.count("#EXT-X-MAP:") == 2 and len(list(folder.glob("init*.mp4"))) == 2
        deadline = time.monotonic() + 60
        while not recorder.recordings("benw")[0].mp4 and time.monotonic() < deadline:
            time.sleep(0.1)
            recorder.tick()
        checked(folder, 6.0)
    finally:
        recorder.close()


async def test_recordings_on_another_file_system_are_copies_and_survive_it_filling(
    tmp_path: Path, small_disk: SmallDisk, hls_and_clock: tuple[HlsConfig, FakeClock]
) -> None:
    """The recordings on a 4 MiB tmpfs of their own, HLS elsewhere: segments are copied (no
    hard link across file systems); while that tmpfs is full the recording loses segments
    (counted) and HLS loses none; the VOD notes the gap with a discontinuity and decodes."""
    assert small_disk.mounted, "a real tmpfs is needed (root)"
    config, clock = hls_and_clock
    recorder = Recorder(RecordConfig(True, small_disk.folder / "rec"), grace=0, clock=clock)
    recorder.start()
    hls = HlsService(config, clock=clock, recorder=recorder)
    events = list(media(seconds=9, width=320, height=240))
    headers = [e for e in events if e[0].endswith("_config")]
    frames = [e for e in events if not e[0].endswith("_config")]
    try:
        packager = hls.open_stream("benw")
        feed(packager, headers + [e for e in frames if e[1] < 3000])
        small_disk.fill()
        feed(packager, [e for e in frames if 3000 <= e[1] < 6000])
        small_disk.free()
        feed(packager, [e for e in frames if e[1] >= 6000])
        packager.close()
        assert "#EXT-X-DISCONTINUITY" not in hls.playlist_path("benw").read_text()
        [info] = await finished(recorder, "benw")
        folder = folder_of(recorder, info)
        assert info.lost >= 1 and info.discontinuities == 1
        assert all(p.stat().st_nlink == 1 for p in folder.glob("*.ts"))  # copies
        text = (folder / rec.PLAYLIST).read_text()
        assert text.count("#EXT-X-DISCONTINUITY") == 1
        checked(folder, info.duration_ms / 1000, tolerance=0.01)
        assert 3.0 <= info.duration_ms / 1000 <= 7.5
    finally:
        recorder.close()


async def test_newer_codecs_are_recorded_and_remuxed(tmp_path: Path) -> None:
    """AV1 and Opus (fMP4 segments, as [hls] format auto makes them): the MP4 is a stream copy
    of both tracks (a decoder name is no encoder: the streams are copied opaque)."""
    server = await start_server(tmp_path, record={"enabled": True}, hls={"grace": 0.5})
    assert server.recorder is not None
    try:
        key = await server.auth.store.add_user("benw")
        url = f"rtmp://127.0.0.1:{server.rtmp.port}/app/{key}"
        result = await run_publisher(
            url, seconds=3.0, fps=10, gop=10, width=160, height=120, sample_rate=48000,
            video_codec="libsvtav1", audio_codec="libopus",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        [info] = await finished(server.recorder, "benw")
        folder = folder_of(server.recorder, info)
        assert info.format == "fmp4"
        checked(folder, 3.0)
        streams = subprocess.run(
            ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name", "-of", "csv=p=0",
             str(folder / rec.MP4)], capture_output=True, text=True, timeout=60, check=True,
        ).stdout.split()  # fmt: skip
        assert sorted(streams) == ["av1", "opus"]
    finally:
        await server.stop()
