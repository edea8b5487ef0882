"""A few-second run of the benchmark harness against a real rtmpd, and its pure parts.

Not a benchmark: nothing here is timed. It checks that the harness produces complete result
records with no errors, so the real runs (python -m bench.run ...) do not break silently.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import aiohttp
import pytest

from bench.hlswatch import HlsWatcher, parse_playlist, segment_lags
from bench.loadgen import LoadGenerator, PreparedMedia, PublisherRecord, read_flv
from bench.media import MediaSpec, ensure_media
from bench.run import hot_spots
from bench.servers import RtmpdServer, cpu_seconds, rss_bytes

TINY = MediaSpec(320, 240, 15, 2.0, 300_000, gop_seconds=1.0, preset="ultrafast")


@pytest.fixture(scope="module")
def tiny_flv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_media(TINY, tmp_path_factory.mktemp("media"), quiet=True)


def test_media_has_keyframes_on_the_gop_and_both_codecs(tiny_flv: Path) -> None:
    tags = read_flv(tiny_flv.read_bytes())
    keyframes = [t.timestamp for t in tags if t.is_keyframe]
    assert len(keyframes) >= 2  # 2 s at a 1 s GOP (x264 may end on one more)
    assert 990 <= keyframes[1] - keyframes[0] <= 1010
    assert {t.kind for t in tags if t.is_header} == {8, 9, 18}


def test_media_is_cut_once_and_shared_between_loops(tiny_flv: Path) -> None:
    media = PreparedMedia(tiny_flv)
    first, again = media.loop(0), media.loop(0)
    assert first.data is again.data
    second = media.loop(1)
    assert second.ts[0] == first.ts[0] + media.period_ms
    assert len(second.data) == len(first.data)


async def test_two_publishers_against_rtmpd(tiny_flv: Path) -> None:
    server = RtmpdServer(fragment=1.0)
    server.start()
    try:
        streams = server.make_streams(2)
        assert all(len(key) >= 16 and key != name for key, name in streams)
        assert server.hls_dir is not None
        watcher = HlsWatcher(server.hls_dir)
        watcher.start()
        gen = LoadGenerator(
            "127.0.0.1", server.rtmp_port, streams, PreparedMedia(tiny_flv), mode="flat", settle=0
        )
        result = await gen.run(timeout=30)
        summary = result.summary()
        assert summary["errors"] == []
        assert summary["published"] == 2
        assert summary["connect_to_publish_ms"]["max"] > 0
        assert all(r.bytes_sent > 100_000 for r in result.records)
        assert cpu_seconds(server.pid) > 0  # start-up alone takes CPU ticks
        assert rss_bytes(server.pid) > 0
        for _ in range(50):  # the last segments are listed when the publishes end
            if all(st.endlist for st in watcher.streams.values()) and len(watcher.streams) == 2:
                break
            await asyncio.sleep(0.1)
        watcher.stop()
        assert sorted(watcher.streams) == [name for _, name in streams]
        listed = sum(s.duration for st in watcher.streams.values() for s in st.segments.values())
        assert 3.0 <= listed <= 4.5  # 2 x ~2 s of media
    finally:
        server.stop()


def test_refused_key_is_an_error_in_the_record(tiny_flv: Path) -> None:
    server = RtmpdServer()
    server.start()
    try:
        gen = LoadGenerator(
            "127.0.0.1",
            server.rtmp_port,
            [("not-a-key-of-anyone", "ghost")],
            PreparedMedia(tiny_flv),
            mode="flat",
            settle=0,
        )
        result = asyncio.run(gen.run(timeout=20))
        assert result.summary()["published"] == 0
        assert len(result.errors) == 1
        assert "not-a-key" not in result.errors[0]
    finally:
        server.stop()


def test_parse_playlist() -> None:
    seq, items, endlist = parse_playlist(
        "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:7\n#EXT-X-TARGETDURATION:6\n"
        "#EXTINF:6.000,\na.ts\n#EXT-X-DISCONTINUITY\n#EXTINF:4.5,\nb.ts\n#EXT-X-ENDLIST\n"
    )
    assert (seq, items, endlist) == (7, [(6.0, "a.ts"), (4.5, "b.ts")], True)


def test_segment_lag_matches_closing_keyframes(tmp_path: Path) -> None:
    from bench.hlswatch import Listed, StreamSegments

    watcher = HlsWatcher(tmp_path)
    st = watcher.streams["a"] = StreamSegments("a", first_seq=0)
    st.segments[0] = Listed(0, 6.0, "0.ts", 106.1)  # closed by the keyframe at 6021 ms
    st.segments[2] = Listed(2, 6.0, "2.ts", 120.0)
    rec = PublisherRecord(0, "a", media_ms_sent=20_000)
    rec.keyframes = [(21 + 2000 * i, 100.0 + 2 * i) for i in range(10)]
    report = segment_lags(watcher, [rec], late=0.05).summary()
    assert report["segments_matched"] == 1
    assert report["lag_ms_p50"] == pytest.approx(100.0, abs=0.5)
    assert report["late_segments"] == 1
    assert report["missing_segments"] == 1  # sequence 1 never listed


def test_hot_spots_from_collapsed_stacks(tmp_path: Path) -> None:
    raw = tmp_path / "p.txt"
    raw.write_text("main (x.py:1);f (x.py:5) 3\nmain (x.py:1);g (y.py:9) 1\n")
    spots = hot_spots(raw)
    assert spots[0] == ("f (x.py)", 75.0, 75.0)
    assert ("main (x.py)" in {s[0] for s in spots}) is False  # never a leaf


LL_PLAYLIST = """#EXTM3U
#EXT-X-TARGETDURATION:1
#EXT-X-PART-INF:PART-TARGET=0.205
#EXT-X-MEDIA-SEQUENCE:3
#EXT-X-PART:DURATION=0.2,URI="p_0.m4s",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.3,URI="p_1.m4s"
#EXTINF:0.500,
3.m4s
#EXT-X-PART:DURATION=0.2,URI="p_2.m4s",INDEPENDENT=YES
#EXT-X-PRELOAD-HINT:TYPE=PART,URI="p_3.m4s"
"""


def test_ll_playlist_parts_and_where_they_end() -> None:
    from bench.llclient import Answer, PartLags, PartTimeline, parse_ll

    playlist = parse_ll(LL_PLAYLIST)
    assert playlist.part_target == 0.205
    assert playlist.segments == [(3, 500, [200, 300])]
    assert playlist.open_parts == [200]
    assert playlist.next_position() == (4, 1)
    assert playlist.part_uris[(4, 0)] == "p_2.m4s"
    timeline = PartTimeline()
    assert timeline.update(playlist) == [(3, 0), (3, 1), (4, 0)]
    assert timeline.end_ms(4, 0) is None  # segments 0-2 were never seen
    for msn in range(3):
        timeline.segment_ms[msn] = 1000
    assert timeline.end_ms(3, 1) == 3500 and timeline.end_ms(4, 0) == 3700
    assert timeline.update(playlist) == []  # nothing new the second time
    # Video frames every 100 ms from 40 ms (the first keyframe): the part ending at 3700 ms
    # was completed by the frame at 3740 ms; its last frame is the one at 3640 ms.
    frames = [(40 + 100 * i, 1000.0 + 0.1 * i) for i in range(60)]
    lags = PartLags(frames, base_ms=40)
    got = lags.lags(Answer(4, 0, 3700, 1003.75, True))
    assert got is not None
    assert got[0] == pytest.approx(0.15) and got[1] == pytest.approx(0.05)
    assert lags.lags(Answer(4, 0, 3750, 1003.75, True)) is None  # no frame there


async def test_blocking_reload_follower_against_rtmpd_low_latency(tiny_flv: Path) -> None:
    from bench.llclient import PartLags, follow

    server = RtmpdServer(fragment=1.0, hls={"low_latency": True, "part_duration": 0.2})
    server.start()
    try:
        streams = server.make_streams(1)
        gen = LoadGenerator("127.0.0.1", server.rtmp_port, streams, PreparedMedia(tiny_flv),
                            seconds=4, frames=True)  # fmt: skip
        publishing = asyncio.create_task(gen.run(timeout=30))
        answers: list = []
        errors: dict[str, int] = {}
        url = f"http://127.0.0.1:{server.http_port}/live/{streams[0][1]}/index.m3u8"
        async with aiohttp.ClientSession() as http:
            await follow(http, url, asyncio.get_running_loop().time() + 3.5, answers, errors,
                         fetch_parts=True)  # fmt: skip
        result = await publishing
    finally:
        server.stop()
    assert errors == {}
    record = result.records[0]
    assert len(record.frames) >= 45  # 15 fps for 4 s, every video frame's send time
    lags = PartLags(record.frames, record.keyframes[0][0])
    matched = [pair for a in answers if (pair := lags.lags(a)) is not None]
    assert len(answers) >= 5 and len(matched) == len(answers)
    assert all(a.asked for a in answers[:3])
    assert all(0 < last < 5 and cut < last for last, cut in matched)  # a guard, not a target


def test_ffmpeg_fmp4_measurement_reads_the_fragments(tiny_flv: Path) -> None:
    from bench.ffmpeg_fmp4 import measure

    result = measure(tiny_flv, 1.5, cpu_seconds=0.5)
    for feed in ("as_rtmp", "with_durations"):
        got = result[feed]
        for kind in ("video", "audio"):
            assert got[kind]["samples_in"] == got[kind]["samples_out"] > 10
        assert got["fragments"] == got["samples"]  # one fragment per frame
        assert got["parts"] >= 3 and 0 <= got["parts_cuttable"] <= got["parts"]
    ours = result["rtmpd_writer"]
    assert ours["parts"] >= result["as_rtmp"]["parts"]  # ours also closes the last part
    assert ours["part_in_io_ms_after_its_end_frame"]["max"] == 0  # done on the end frame
    assert all(v > 0 for v in result["cpu_us_per_packet"].values())


def test_rtmpd_server_config_takes_hls_keys(tmp_path: Path) -> None:
    server = RtmpdServer(fragment=2.0, hls={"low_latency": True, "format": "fmp4"},
                         hlsjs_file=tmp_path / "hls.min.js")  # fmt: skip
    try:
        text = server.config.read_text()
        assert "low_latency = true\n" in text and 'format = "fmp4"\n' in text
        assert f'hlsjs_file = "{tmp_path / "hls.min.js"}"' in text
        import tomllib

        assert tomllib.loads(text)["hls"]["fragment"] == 2.0
    finally:
        server.stop()


@pytest.mark.browser
def test_latency_bench_reads_the_players_latency(tiny_flv: Path) -> None:
    from bench.latency import build_parser, hlsjs_path, measure

    assert hlsjs_path().is_file(), "hls.js is missing: run tests/setup_browser.sh"
    args = build_parser().parse_args(
        ["--fragment", "1", "--warm", "1", "--seconds", "3", "--flv", str(tiny_flv)]
    )
    row = asyncio.run(measure(args))
    assert row["samples"] >= 2 and row["hlsjs_low_latency"] is True
    assert row["pdt_latency_s"]["p50"] > 0 and row["hls_latency_s"]["p50"] > 0  # read, not judged


async def test_quality_checks_read_rtmpd_output(tiny_flv: Path, tmp_path: Path) -> None:
    """bench.quality's checks on a few seconds of rtmpd's HLS: the TS checker and FFmpeg (and
    VLC or mpv where installed) find the clean stream they find in the real runs."""
    from bench.quality import examine

    server = RtmpdServer(fragment=1.0)
    server.start()
    try:
        streams = server.make_streams(1)
        name = streams[0][1]
        assert server.hls_dir is not None
        gen = LoadGenerator(
            "127.0.0.1", server.rtmp_port, streams, PreparedMedia(tiny_flv), mode="flat",
            settle=0, seconds=6.0,
        )  # fmt: skip
        assert (await gen.run(timeout=30)).summary()["published"] == 1
        playlist = server.hls_dir / name / "index.m3u8"
        for _ in range(50):
            if playlist.exists() and "#EXT-X-ENDLIST" in playlist.read_text():
                break
            await asyncio.sleep(0.1)
        copy = tmp_path / "copy"
        shutil.copytree(server.hls_dir / name, copy)
    finally:
        server.stop()
    out = examine("tiny", server, copy, [(copy / "index.m3u8").read_text()])
    assert out.segments >= 4
    assert (out.cc_errors, out.late_pes, out.target_changes) == (0, 0, 0)
    assert (out.ffmpeg_warnings, out.ffmpeg_corrupt) == (0, 0)
    assert out.video_frames >= 80  # 6 s at 15 fps, less what the last cut leaves out
    assert out.pcr_lead_ms.startswith("700")
    assert all(count == 0 for count in out.players.values())


async def test_restream_bench_phase_with_stalled_peers(tiny_flv: Path) -> None:
    import argparse

    from bench.restream import phase

    args = argparse.Namespace(destinations=1, players=2, steady=1.0, hold=2.0, warm=1.0,
                              workers=1)  # fmt: skip
    row = await phase("stalled", args, PreparedMedia(tiny_flv), fanout=True, stalled=True)
    assert row["publish_errors"] == 0 and row["window_s"] > 0
    assert row["player_lag_p99_ms"] is not None and row["workers"] == 1
    assert row["destination_messages"][0] > 0 and row["player_messages_min"] > 0
    assert row["rss_max_mib"] > 0 and row["cpu_share_of_core"] > 0
