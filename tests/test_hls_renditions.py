"""Multitrack video renditions in rtmpd.hls: the pure decisions (the multivariant playlist, the
bandwidth measure, the follower's cuts and its queue) and the packager fed FFmpeg's multitrack
FLV in process (aligned segments, a rendition missing keyframes, the bounds, LL-HLS rendition
reports). Over the network and in players: tests/test_multitrack.py."""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import av.logging
import pytest
from rtmpd.hls import Codec, HlsConfig, HlsService
from rtmpd.hls.renditions import (
    QUEUE_FRAMES,
    FollowCuts,
    FollowerQueue,
    Variant,
    nominal_rate,
    render_multivariant,
    rendition_report,
    segment_bandwidth,
)
from rtmpd.hls.segmenter import Action, Track

from tests.support.exmedia import real_tags
from tests.support.hls import FakeClock, feed, media
from tests.support.m3u8_validator import PlaylistHistory, parse, parse_multivariant
from tests.support.media import TAG_VIDEO

V, A = Track.VIDEO, Track.AUDIO
#: 10 fps, a keyframe a second; track 1 half the size (and, in GOP2, a keyframe every 2 s).
MEDIA: dict[str, Any] = {"seconds": 4.2, "fps": 10, "gop": 10, "width": 128, "height": 72,
                         "sample_rate": 48000}  # fmt: skip


@dataclass
class Decoded:
    video_frames: int = 0
    audio_frames: int = 0
    video_size: tuple[int, int] | None = None
    first_keyframe: bool | None = None  # the first video packet is a keyframe
    warnings: list[str] = field(default_factory=list)


def decode_fmp4(data: bytes) -> Decoded:
    """An init segment and a segment decoded by FFmpeg: frames, picture size, warnings."""
    out = Decoded()
    level = av.logging.get_level()
    av.logging.set_level(av.logging.WARNING)
    try:
        with av.logging.Capture(local=False) as logs, av.open(io.BytesIO(data)) as container:
            for packet in container.demux():
                if packet.stream.type == "video" and packet.size and out.first_keyframe is None:
                    out.first_keyframe = packet.is_keyframe
                for frame in packet.decode():
                    if isinstance(frame, av.VideoFrame):
                        out.video_frames += 1
                        out.video_size = out.video_size or (frame.width, frame.height)
                    elif isinstance(frame, av.AudioFrame):
                        out.audio_frames += 1
    finally:
        av.logging.set_level(level)
    out.warnings = [text for lvl, _, text in logs if lvl <= av.logging.WARNING]
    return out


# -- the multivariant playlist ----------------------------------------------------------------


def test_multivariant_lists_every_rendition_highest_first() -> None:
    text = render_multivariant([
        Variant("v1.m3u8", 300_000, 250_000, "avc1.42C00B,mp4a.40.2", 320, 180, 30.0),
        Variant("v0.m3u8", 2_500_000, 2_000_000, "avc1.64001F,mp4a.40.2", 1280, 720, 29.97),
    ])  # fmt: skip
    assert text == (
        "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-INDEPENDENT-SEGMENTS\n"
        '#EXT-X-STREAM-INF:BANDWIDTH=2500000,AVERAGE-BANDWIDTH=2000000,CODECS="avc1.64001F,'
        'mp4a.40.2",RESOLUTION=1280x720,FRAME-RATE=29.970\nv0.m3u8\n'
        '#EXT-X-STREAM-INF:BANDWIDTH=300000,AVERAGE-BANDWIDTH=250000,CODECS="avc1.42C00B,'
        'mp4a.40.2",RESOLUTION=320x180,FRAME-RATE=30.000\nv1.m3u8\n'
    )
    assert [v["URI"] for v in parse_multivariant(text)] == ["v0.m3u8", "v1.m3u8"]


def test_frame_rate_is_the_nominal_one_near_the_measure() -> None:
    assert nominal_rate(29.995) == 30.0 and nominal_rate(30.161) == 30.0
    assert nominal_rate(29.96) == 30000 / 1001 and nominal_rate(13.7) == 13.7
    text = render_multivariant([Variant("v0.m3u8", 1000, None, "", 2, 2, 59.5)])
    assert "FRAME-RATE=59.940" in text


def test_multivariant_leaves_out_what_is_not_known() -> None:
    text = render_multivariant([Variant("v0.m3u8", 1000, None, "", None, None, None)])
    assert parse_multivariant(text) == [{"BANDWIDTH": "1000", "URI": "v0.m3u8"}]


def test_bandwidth_is_the_peak_segment_and_the_mean() -> None:
    # 100 kB in 1 s, 300 kB in 2 s (1.2 Mb/s, the peak), 50 kB in 1 s; a 0 ms entry ignored.
    got = segment_bandwidth([(100_000, 1000), (300_000, 2000), (50_000, 1000), (9, 0)])
    assert got == (1_200_000, 900_000)
    assert segment_bandwidth([]) is None


def test_rendition_report_names_the_last_part_when_there_is_one() -> None:
    assert (
        rendition_report("v1.m3u8", 7, 3)
        == '#EXT-X-RENDITION-REPORT:URI="v1.m3u8",LAST-MSN=7,LAST-PART=3'
    )
    assert rendition_report("v1.m3u8", 7, -1) == '#EXT-X-RENDITION-REPORT:URI="v1.m3u8",LAST-MSN=7'


# -- a follower's cuts ---------------------------------------------------------------------------


def follower() -> FollowCuts:
    cuts = FollowCuts()
    cuts.configure(V, changed=True)
    cuts.configure(A, changed=True)
    return cuts


def test_follower_cuts_where_the_leader_cut() -> None:
    cuts = follower()
    assert cuts.frame(V, 0, True, 10) is Action.DROP  # no cut of the leader yet
    cuts.leader_cut(0, False)
    assert cuts.frame(V, 0, True, 10) is Action.CUT
    assert cuts.closed_duration is None and cuts.start == 0
    assert cuts.frame(A, 20, False, 5) is Action.WRITE
    assert cuts.frame(V, 1000, True, 10) is Action.WRITE  # its own keyframe: no cut of its own
    cuts.leader_cut(2000, True)
    assert cuts.frame(V, 1900, False, 10) is Action.WRITE
    assert cuts.frame(V, 2000, True, 10) is Action.CUT
    assert (cuts.closed_duration, cuts.start, cuts.discontinuity) == (2000, 2000, True)
    assert cuts.finish() == 1 and cuts.missed == 0


def test_follower_without_a_keyframe_at_the_cut_still_cuts_there() -> None:
    """The cut is at the leader's timestamp (numbering and durations stay aligned); the first
    audio frame after it starts the segment and video waits for its next keyframe."""
    cuts = follower()
    cuts.leader_cut(0, False)
    assert cuts.frame(V, 0, True, 10) is Action.CUT
    cuts.leader_cut(1000, False)
    assert cuts.frame(V, 1000, False, 10) is Action.DROP  # no keyframe: not decodable alone
    assert cuts.missed == 1
    assert cuts.frame(A, 990, False, 5) is Action.WRITE  # before the cut: the old segment
    assert cuts.frame(A, 1010, False, 5) is Action.CUT
    assert (cuts.closed_duration, cuts.start) == (1000, 1000)
    assert cuts.frame(V, 1100, False, 10) is Action.DROP
    assert cuts.frame(V, 1200, True, 10) is Action.WRITE  # video goes on at its keyframe
    assert cuts.frame(V, 1300, False, 10) is Action.WRITE
    # No audio at all: its next keyframe starts the segment, at the cut's timestamp.
    cuts = FollowCuts()
    cuts.configure(V, changed=True)
    cuts.leader_cut(0, False)
    cuts.frame(V, 0, True, 10)
    cuts.leader_cut(1000, False)
    assert cuts.frame(V, 1000, False, 10) is Action.DROP
    assert cuts.frame(V, 1500, True, 10) is Action.CUT
    assert (cuts.closed_duration, cuts.start) == (1000, 1000)


def started(audio: bool = True) -> FollowCuts:
    """A follower whose first segment started at 0, with track 0's audio or video only."""
    cuts = follower() if audio else FollowCuts()
    cuts.configure(V, changed=True)
    cuts.leader_cut(0, False)
    assert cuts.frame(V, 0, True, 10) is Action.CUT
    return cuts


def test_follower_passing_several_cuts_at_once_keeps_one_segment_per_cut() -> None:
    """Its frames stopped across two of the leader's cuts: the open segment ends at the first,
    the one it has no media for is a gap (with the leader's discontinuity), and the new
    segment starts at the newest in a new run (its timeline began at the gap)."""
    cuts = started()
    cuts.leader_cut(1000, True)
    cuts.leader_cut(2000, False)
    assert cuts.frame(V, 2000, True, 10) is Action.CUT
    assert (cuts.closed_duration, cuts.start, cuts.discontinuity) == (1000, 2000, False)
    assert cuts.gaps == ((1000, 1000, True),) and cuts.new_run
    cuts.leader_cut(3000, False)
    assert cuts.frame(V, 3000, True, 10) is Action.CUT
    assert cuts.gaps == () and not cuts.new_run and cuts.closed_duration == 1000


def test_follower_without_keyframes_across_cuts_and_no_audio_keeps_every_cut() -> None:
    cuts = started(audio=False)
    cuts.leader_cut(1000, False)
    assert cuts.frame(V, 1000, False, 10) is Action.DROP
    cuts.leader_cut(2000, False)
    assert cuts.frame(V, 2000, False, 10) is Action.DROP
    assert cuts.frame(V, 2500, True, 10) is Action.CUT
    assert (cuts.closed_duration, cuts.start, cuts.gaps) == (1000, 2000, ((1000, 1000, False),))
    assert cuts.missed == 2


def test_follower_that_never_reaches_the_leaders_last_cuts_ends_with_gaps() -> None:
    cuts = started(audio=False)
    cuts.leader_cut(1000, False)
    cuts.leader_cut(2000, True)
    assert cuts.frame(V, 900, False, 10) is Action.WRITE  # then nothing more
    cuts.leader_end(2500)
    assert cuts.finish() == 1000
    assert cuts.gaps == ((1000, 1000, False), (2000, 500, True))


def test_follower_audio_cuts_each_passed_cut_while_its_video_stalls() -> None:
    """Audio (track 0's, in every rendition) starts each segment its video has no frame for:
    segments with no new picture, one per cut; video goes on at its next keyframe."""
    cuts = started()
    for cut in (1000, 2000):
        cuts.leader_cut(cut, False)
        assert cuts.frame(A, cut + 10, False, 5) is Action.CUT
        assert (cuts.start, cuts.closed_duration, cuts.gaps) == (cut, 1000, ())
    assert cuts.frame(V, 2100, False, 10) is Action.DROP
    assert cuts.frame(V, 2200, True, 10) is Action.WRITE


def test_follower_new_settings_wait_for_the_leaders_new_timeline() -> None:
    """A rendition's new sequence header: its video waits for a cut where the leader starts a
    new timeline (a new run for the new settings); cuts before that stay in the old run,
    with the leader's discontinuity flag (none), started by audio."""
    cuts = started()
    cuts.configure(V, changed=True)
    assert cuts.frame(V, 500, True, 10) is Action.DROP  # new settings, old run
    cuts.leader_cut(1000, False)  # decided before the leader was asked for a new timeline
    assert cuts.frame(V, 1000, True, 10) is Action.DROP
    assert cuts.frame(A, 1010, False, 5) is Action.CUT
    assert not cuts.discontinuity and not cuts.new_run and cuts.missed == 0
    assert cuts.frame(V, 1100, True, 10) is Action.DROP
    cuts.leader_cut(2000, True)
    assert cuts.frame(V, 2000, True, 10) is Action.CUT
    assert cuts.discontinuity and cuts.new_run
    assert cuts.frame(V, 2100, False, 10) is Action.WRITE


def test_follower_queue_holds_frames_until_the_leader_is_there() -> None:
    queue = FollowerQueue()
    assert queue.add(1, 0, 0, True, b"a") == []  # the leader has no video yet
    assert [f[1] for f in queue.advance(0)] == [0]
    assert queue.add(1, 40, 0, False, b"b") == []  # ahead of the leader
    assert queue.add(1, 80, 0, False, b"c") == []
    assert [f[1] for f in queue.advance(40)] == [40]
    assert [f[1] for f in queue.add(1, 20, 0, False, b"d")] == []  # behind 80, in order
    assert [f[1] for f in queue.advance(100)] == [80, 20]
    for n in range(1, QUEUE_FRAMES + 2):  # the leader stalled: bounded all the same
        released = queue.add(1, 100 + n, 0, False, b"x")
    assert len(released) == 1 and len(queue.drain()) == QUEUE_FRAMES


def test_follower_queue_hands_over_one_tracks_frames_before_its_new_header() -> None:
    queue = FollowerQueue()
    queue.advance(0)
    assert queue.add(1, 40, 0, False, b"a") == [] and queue.add(2, 40, 0, False, b"b") == []
    assert queue.add(1, 80, 0, False, b"c") == []
    assert [(f[0], f[1]) for f in queue.take(1)] == [(1, 40), (1, 80)]
    assert queue.take(1) == [] and [(f[0], f[1]) for f in queue.drain()] == [(2, 40)]


# -- the packager, in process ------------------------------------------------------------------


def service(tmp_path: Path, **config: Any) -> HlsService:
    settings = {"path": tmp_path / "hls", "fragment": 1.0, "playlist_length": 60.0, "format":
                "fmp4", **config}  # fmt: skip
    return HlsService(HlsConfig(**settings), clock=FakeClock())


def playlist(hls: HlsService, file: str) -> Any:
    return parse((hls.segment_dir("benw") / file).read_text())


@pytest.mark.parametrize("fmt", ["fmp4", "ts"])
def test_renditions_are_aligned_and_each_decodes_at_its_size(tmp_path: Path, fmt: str) -> None:
    hls = service(tmp_path, format=fmt)
    packager = hls.open_stream("benw")
    feed(packager, media(**MEDIA, renditions=((64, 36),)))
    packager.close()
    folder = hls.segment_dir("benw")
    variants = parse_multivariant((folder / "index.m3u8").read_text())
    assert {(v["URI"], v["RESOLUTION"]) for v in variants} == {
        ("v0.m3u8", "128x72"),
        ("v1.m3u8", "64x36"),
    }
    for v in variants:
        assert v["CODECS"].startswith("avc1.") and v["CODECS"].endswith(",mp4a.40.2")
        assert int(v["BANDWIDTH"]) >= int(v["AVERAGE-BANDWIDTH"]) > 0
        assert v["FRAME-RATE"] == "10.000"
    v0, v1 = playlist(hls, "v0.m3u8"), playlist(hls, "v1.m3u8")
    assert len(v0.segments) == 5 and v0.endlist and v1.endlist
    assert [s.sequence for s in v0.segments] == [s.sequence for s in v1.segments]
    assert [s.duration for s in v0.segments[:-1]] == [s.duration for s in v1.segments[:-1]]
    assert abs(v0.segments[-1].duration - v1.segments[-1].duration) <= 0.1  # a frame
    assert all(s.uri.startswith("v1-") for s in v1.segments)
    for rendition, size in ((v0, (128, 72)), (v1, (64, 36))):
        map_uri = rendition.segments[0].map_uri
        init = (folder / map_uri).read_bytes() if fmt == "fmp4" and map_uri else b""
        assert fmt == "ts" or init
        assert all(s.uri.endswith(".m4s" if fmt == "fmp4" else ".ts") for s in rendition.segments)
        frames = []
        for segment in rendition.segments:
            decoded = decode_fmp4(init + (folder / segment.uri).read_bytes())
            assert decoded.video_size == size and not decoded.warnings
            assert decoded.audio_frames > 0 and decoded.first_keyframe  # track 0's audio
            frames.append(decoded.video_frames)
        assert frames == [10, 10, 10, 10, 2]
    info = hls.stream_info("benw")
    assert info is not None and info.width == 128
    assert [(r.track, r.width, r.height) for r in info.renditions] == [(1, 64, 36)]


def test_a_rendition_missing_keyframes_stays_aligned(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Track 1 has a keyframe every 2 s, track 0 every second: at every other cut track 1 cuts
    all the same, and its segment starts with its next keyframe (still decodable)."""
    hls = service(tmp_path)
    packager = hls.open_stream("benw")
    feed(packager, media(**MEDIA, renditions=((64, 36, 20),)))
    packager.close()
    v0, v1 = playlist(hls, "v0.m3u8"), playlist(hls, "v1.m3u8")
    assert [s.sequence for s in v0.segments] == [s.sequence for s in v1.segments]
    assert [s.duration for s in v0.segments[:-1]] == [s.duration for s in v1.segments[:-1]]
    folder = hls.segment_dir("benw")
    init = (folder / v1.segments[0].map_uri).read_bytes()
    frames = []
    for segment in v1.segments:
        decoded = decode_fmp4(init + (folder / segment.uri).read_bytes())
        assert decoded.audio_frames > 0  # track 0's audio all through
        assert decoded.first_keyframe in (True, None)  # never a segment starting mid-GOP
        frames.append(decoded.video_frames)
    assert frames[0] == 10 and frames[1] == 0 and frames[2] == 10  # 1 s without a keyframe
    assert "video track 1 has no keyframe where track 0 starts a segment" in caplog.text


def test_bounds_of_a_multitrack_publish(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Past max_renditions, after track 0's first frame, an unusable header, two frames at one
    timestamp (a track id twice in a message): each named once, the rest goes on."""
    hls = service(tmp_path, max_renditions=2)
    packager = hls.open_stream("benw")
    events = list(media(**MEDIA, renditions=((64, 36), (32, 18))))
    head = [e for e in events if e[0].endswith("config")]
    body = [e for e in events if not e[0].endswith("config")]
    feed(packager, head)
    packager.track_config(0, 5, b"\x01garbage", Codec.H264)  # no: track 0 is not a rendition
    packager.track_config(9, 0, b"\x01\x02", Codec.H264)  # past max_renditions: refused
    first = next(i for i, e in enumerate(body) if e[0] == "video")
    feed(packager, body[: first + 1])
    packager.track_config(7, body[first][1], b"\x01", Codec.H264)  # late
    for event in body[first + 1 :]:
        feed(packager, [event])
        if event[0] == "track_video" and event[2] == 1:
            feed(packager, [event])  # the same frame again
    packager.close()
    assert packager.violation is None
    variants = parse_multivariant((hls.segment_dir("benw") / "index.m3u8").read_text())
    assert [v["URI"] for v in variants] == ["v0.m3u8", "v1.m3u8"]
    assert not (hls.segment_dir("benw") / "v2.m3u8").exists()
    text = caplog.text
    assert "video track 2 is not packaged: [hls] max_renditions is 2" in text
    assert "video track 7 started after track 0's first frame" in text
    assert text.count("video track 1 sent two frames with the same timestamp") == 1
    # Decodable all the same: the duplicates never reached the rendition.
    folder = hls.segment_dir("benw")
    v1 = playlist(hls, "v1.m3u8")
    init = (folder / v1.segments[0].map_uri).read_bytes()
    assert decode_fmp4(init + (folder / v1.segments[1].uri).read_bytes()).video_frames == 10


def test_an_unusable_rendition_header_drops_that_rendition(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    hls = service(tmp_path)
    packager = hls.open_stream("benw")
    events = [e for e in media(**MEDIA, renditions=((64, 36),))
              if e[0] != "track_config"]  # fmt: skip
    feed(packager, [("track_config", 0, 1, b"\x01\x42", Codec.H264), *events])
    packager.close()
    assert packager.violation is None
    assert parse(hls.playlist_path("benw").read_text()).endlist  # a single stream after all
    assert "ignoring an unusable H.264 sequence header" in caplog.text


def test_flat_layout_packages_track_0_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    hls = service(tmp_path, nested=False)
    packager = hls.open_stream("benw")
    feed(packager, media(**MEDIA, renditions=((64, 36),)))
    packager.close()
    assert parse(hls.playlist_path("benw").read_text()).endlist
    assert "multitrack video needs the nested layout" in caplog.text


def test_low_latency_rendition_reports(tmp_path: Path) -> None:
    """Every rendition's LL-HLS playlist reports the other's last segment and part; blocking
    reloads and parts are per rendition (keys "<name>/v<track>")."""
    hls = service(tmp_path, low_latency=True)
    packager = hls.open_stream("benw")
    events = media(**MEDIA, renditions=((64, 36),))
    cut = next(i for i, e in enumerate(events) if e[1] >= 2550)
    feed(packager, events[:cut])
    assert hls.live_playlist("benw") is None  # index.m3u8 is the multivariant file
    views = {t: hls.live_playlist(f"benw/v{t}") for t in (0, 1)}
    assert views[0] is not None and views[1] is not None
    histories = {t: PlaylistHistory() for t in (0, 1)}
    for track, other in ((0, 1), (1, 0)):
        got = histories[track].check(views[track].render().decode())
        msn, part = views[other].last
        assert got.reports == [{"URI": f"v{other}.m3u8", "LAST-MSN": str(msn),
                                "LAST-PART": str(part)}]  # fmt: skip
        assert msn == 2 and part >= 1
        hint = got.preload_hint
        assert hint is not None and hint.startswith(f"v{track}-p")
        assert hls.hinted_part(f"benw/v{track}", hint) is not None
        assert hls.hinted_part(f"benw/v{other}", hint) is None
        listed = got.open_parts[0].uri
        assert hls.part(f"benw/v{track}", listed) is not None
    # Both renditions have the same segments and the same parts in them.
    v0, v1 = histories[0].last, histories[1].last
    assert [(s.sequence, s.duration) for s in v0.segments] == [
        (s.sequence, s.duration) for s in v1.segments]  # fmt: skip
    assert [p.duration for p in v0.open_parts] == [p.duration for p in v1.open_parts]
    feed(packager, events[cut:])
    packager.close()
    ended = views[0].render().decode()
    assert "#EXT-X-ENDLIST" in ended and "RENDITION-REPORT" not in ended


def test_a_single_track_publish_after_a_multitrack_one(tmp_path: Path) -> None:
    """The name goes on as one media playlist again: the renditions' files go after a playlist
    length, the numbering continues with a discontinuity."""
    hls = service(tmp_path)
    packager = hls.open_stream("benw")
    feed(packager, media(**MEDIA, renditions=((64, 36),)))
    packager.close()
    folder = hls.segment_dir("benw")
    assert (folder / "v1.m3u8").exists()
    packager = hls.open_stream("benw")
    feed(packager, [(e[0], e[1] + 10_000, *e[2:]) for e in media(**MEDIA)])
    packager.close()
    single = parse((folder / "index.m3u8").read_text())
    assert single.segments[-1].sequence == 9 and any(s.discontinuity for s in single.segments)
    clock = hls._clock
    assert isinstance(clock, FakeClock)
    clock.advance(61)
    hls.tick()
    assert not (folder / "v1.m3u8").exists()
    assert not [p for p in folder.iterdir() if p.name.startswith("v1-")]


def test_max_renditions_is_checked() -> None:
    with pytest.raises(ValueError, match="max_renditions"):
        HlsConfig(max_renditions=0)
    logging.getLogger(__name__).debug("max_renditions checked")


def test_a_multitrack_republish_goes_on_aligned(tmp_path: Path) -> None:
    """A reconnect (or takeover) with the same tracks: the renditions go on under the same
    media sequence numbers and discontinuity count as track 0, and the cleanup of the last
    publish's renditions leaves the playlists the new one writes."""
    hls = service(tmp_path)
    events = media(**MEDIA, renditions=((64, 36),))
    for offset in (0, 10_000):
        packager = hls.open_stream("benw")
        feed(packager, [(e[0], e[1] + offset, *e[2:]) for e in events])
        packager.close()
    clock = hls._clock
    assert isinstance(clock, FakeClock)
    clock.advance(61)  # past a playlist length, within the grace
    hls.tick()
    v0, v1 = playlist(hls, "v0.m3u8"), playlist(hls, "v1.m3u8")
    second = v0.segments[5:]
    assert [s.sequence for s in second] == [s.sequence for s in v1.segments] == list(range(5, 10))
    assert second[0].discontinuity and v1.segments[0].discontinuity
    count = v0.discontinuity_sequence + sum(s.discontinuity for s in v0.segments[:6])
    assert count == v1.discontinuity_sequence + 1  # the same discontinuity count at seq 5
    folder = hls.segment_dir("benw")
    assert all((folder / s.uri).is_file() for s in v1.segments)


def test_a_restart_goes_on_from_track_0s_rendition(tmp_path: Path) -> None:
    """index.m3u8 is the multivariant playlist: a new run of the server resumes the name's
    numbering from v0.m3u8, and the old renditions' files go after a playlist length."""
    events = media(**MEDIA, renditions=((64, 36),))
    hls = service(tmp_path)
    packager = hls.open_stream("benw")
    feed(packager, events)
    packager.close()
    old = {p.name for p in hls.segment_dir("benw").iterdir() if p.name.startswith("v1-")}
    hls = service(tmp_path)  # the next run
    packager = hls.open_stream("benw")
    feed(packager, [(e[0], e[1] + 10_000, *e[2:]) for e in events])
    packager.close()
    v0, v1 = playlist(hls, "v0.m3u8"), playlist(hls, "v1.m3u8")
    assert [s.sequence for s in v1.segments] == list(range(5, 10))
    assert [s.sequence for s in v0.segments][-5:] == list(range(5, 10))
    clock = hls._clock
    assert isinstance(clock, FakeClock)
    clock.advance(61)
    hls.tick()
    left = {p.name for p in hls.segment_dir("benw").iterdir()}
    assert old and not old & left and "v1.m3u8" in left


def test_every_rendition_counts_in_the_names_disk_bound(tmp_path: Path) -> None:
    """max_stream_bytes holds for the name's files, every rendition's included: a bound the
    single track fits in stops the multitrack publish (the whole of it, with its reason)."""
    single = service(tmp_path / "single")
    packager = single.open_stream("benw")
    feed(packager, media(**MEDIA))
    packager.close()
    used = single.quota.total
    bound = {"max_stream_bytes": round(used * 1.2), "max_segment_bytes": round(used * 1.2)}
    hls = service(tmp_path / "single-fits", **bound)
    packager = hls.open_stream("benw")
    feed(packager, media(**MEDIA))
    packager.close()
    assert packager.violation is None
    hls = service(tmp_path / "multitrack", **bound)
    packager = hls.open_stream("benw")
    feed(packager, media(**MEDIA, renditions=((128, 72),)))  # track 1 as large as track 0
    assert packager.violation is not None and packager.violation.bound.value == "max_stream_bytes"
    v0, v1 = playlist(hls, "v0.m3u8"), playlist(hls, "v1.m3u8")
    assert v0.endlist and v1.endlist and len(v0.segments) < 5


def test_a_rendition_the_format_cannot_carry_is_left_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """format = "ts" and an AV1 track 1: that rendition is named and left out (not the whole
    publish, as an AV1 track 0 would be); track 0 goes on, a single stream again."""
    [config] = [
        t for t in real_tags("libsvtav1", "aac") if t.kind == TAG_VIDEO and t.body[0] & 0x0F == 0
    ]
    av1c = config.body[5:]  # after the ex header and the av01 FourCC
    hls = service(tmp_path, format="ts")
    packager = hls.open_stream("benw")
    feed(packager, [("track_config", 0, 1, av1c, Codec.AV1), *media(**MEDIA)])
    packager.close()
    assert packager.violation is None
    assert parse(hls.playlist_path("benw").read_text()).endlist  # index.m3u8: a media playlist
    assert "video track 1 is not packaged: MPEG-TS cannot carry AV1 video" in caplog.text


# -- renditions stay aligned: new settings, stalls --------------------------------------------


def aligned(hls: HlsService) -> tuple[Any, Any]:
    """v0 and v1 list the same media sequence numbers, durations (the last one within a frame)
    and discontinuities, under the same EXT-X-DISCONTINUITY-SEQUENCE."""
    v0, v1 = playlist(hls, "v0.m3u8"), playlist(hls, "v1.m3u8")
    assert [s.sequence for s in v0.segments] == [s.sequence for s in v1.segments]
    assert [s.duration for s in v0.segments[:-1]] == [s.duration for s in v1.segments[:-1]]
    assert [s.discontinuity for s in v0.segments] == [s.discontinuity for s in v1.segments]
    assert v0.discontinuity_sequence == v1.discontinuity_sequence
    return v0, v1


def segment_media(hls: HlsService, segment: Any) -> Decoded:
    folder = hls.segment_dir("benw")
    init = (folder / segment.map_uri).read_bytes() if segment.map_uri else b""
    return decode_fmp4(init + (folder / segment.uri).read_bytes())


@pytest.mark.parametrize("playlist_length", [60.0, 2.0])
def test_a_rendition_with_new_settings_keeps_track_0s_discontinuities(
    tmp_path: Path, playlist_length: float
) -> None:
    """Track 1 sends a new sequence header (another size) at 2 s: its new settings start where
    track 0 starts a new timeline (asked for at its next cut, 3 s), so both renditions have
    their discontinuity there and the same discontinuity sequence once it leaves the window;
    the second before it is track 1's in the old run, with no new picture."""
    hls = service(tmp_path, playlist_length=playlist_length)
    spec = {**MEDIA, "seconds": 7.2}
    before, after = media(**spec, renditions=((64, 36),)), media(**spec, renditions=((96, 54),))
    new_frames = {e[1]: e for e in after if e[0] == "track_video" and e[1] >= 2000}
    new_config: Any = next(e for e in after if e[0] == "track_config")
    events: list[Any] = []
    for event in before:
        if event[0] == "track_video" and event[1] >= 2000:
            if new_config is not None:  # before its first frame of the new settings
                events.append(("track_config", event[1], *new_config[2:]))
                new_config = None
            event = new_frames[event[1]]
        events.append(event)
    packager = hls.open_stream("benw")
    feed(packager, events)
    packager.close()
    v0, v1 = aligned(hls)
    if playlist_length == 2.0:
        assert v0.discontinuity_sequence == 1 and not any(s.discontinuity for s in v0.segments)
        return
    assert [s.discontinuity for s in v0.segments] == [False] * 3 + [True] + [False] * 4
    sizes = [segment_media(hls, s).video_size for s in v1.segments]
    assert sizes == [(64, 36), (64, 36), None] + [(96, 54)] * 5
    assert all(segment_media(hls, s).audio_frames > 0 for s in v1.segments)


@pytest.mark.parametrize(("audio", "fmt"), [(True, "fmp4"), (False, "fmp4"), (False, "ts")])
def test_a_rendition_whose_frames_stop_across_cuts_keeps_every_segment(
    tmp_path: Path, audio: bool, fmt: str
) -> None:
    """Track 1's frames stop from 1.5 s to 3.5 s (and start again at its keyframe at 4 s):
    it still has a segment for each of track 0's. With track 0's audio those are segments of
    audio and no new picture; a video-only publish lists them as EXT-X-GAP (RFC 8216bis
    4.4.4.7: no media there; players take that time from another rendition)."""
    hls = service(tmp_path, format=fmt)
    events = [e for e in media(**{**MEDIA, "seconds": 6.2, "audio": audio}, renditions=((64, 36),))
              if not (e[0] == "track_video" and 1500 <= e[1] < 3500)]  # fmt: skip
    packager = hls.open_stream("benw")
    feed(packager, events)
    packager.close()
    v0, v1 = aligned(hls)
    assert len(v1.segments) == 7
    assert [s.gap for s in v0.segments] == [False] * 7
    assert [s.gap for s in v1.segments] == [False, False] + [not audio] * 2 + [False] * 3
    frames = [None if s.gap else segment_media(hls, s).video_frames for s in v1.segments]
    assert frames == [10, 5] + ([0, 0] if audio else [None, None]) + [10, 10, 2]


@pytest.mark.parametrize("fmt", ["fmp4", "ts"])
def test_a_video_only_rendition_that_stops_before_the_end_keeps_every_segment(
    tmp_path: Path, fmt: str
) -> None:
    """Track 1's frames stop at 2.5 s for good: its playlist still ends with a segment for
    each of track 0's, the ones it has no media for listed as gaps."""
    hls = service(tmp_path, format=fmt)
    events = [e for e in media(**{**MEDIA, "audio": False}, renditions=((64, 36),))
              if not (e[0] == "track_video" and e[1] >= 2500)]  # fmt: skip
    packager = hls.open_stream("benw")
    feed(packager, events)
    packager.close()
    v0, v1 = playlist(hls, "v0.m3u8"), playlist(hls, "v1.m3u8")
    assert [s.sequence for s in v0.segments] == [s.sequence for s in v1.segments]
    assert [s.duration for s in v0.segments] == [s.duration for s in v1.segments]
    assert [s.gap for s in v1.segments] == [False, False, False, True, True]
    frames = [segment_media(hls, s).video_frames for s in v1.segments[:3]]
    assert frames == [10, 10, 5]


def test_a_stalled_rendition_keeps_its_ll_hls_parts_within_the_part_target(
    tmp_path: Path,
) -> None:
    """LL-HLS: while track 1's video stalls, track 0's audio goes on cutting its parts (none
    outgrows PART-TARGET, which the validator checks), and both renditions' playlists move on
    segment by segment under the same media sequence numbers."""
    hls = service(tmp_path, low_latency=True)
    events = [e for e in media(**{**MEDIA, "seconds": 6.2}, renditions=((64, 36),))
              if not (e[0] == "track_video" and 1500 <= e[1] < 3500)]  # fmt: skip
    packager = hls.open_stream("benw")
    histories = {t: PlaylistHistory() for t in (0, 1)}
    start = 0
    for end in (1700, 2600, 3600, 4600):
        feed(packager, [e for e in events if start <= e[1] < end])
        start = end
        views = [hls.live_playlist(f"benw/v{t}") for t in (0, 1)]
        got = [histories[t].check(view.render().decode()) for t, view in enumerate(views) if view]
        assert len(got) == 2
        assert [s.sequence for s in got[0].segments] == [s.sequence for s in got[1].segments]
        assert got[0].segments[-1].sequence == end // 1000 - 1
    packager.close()
