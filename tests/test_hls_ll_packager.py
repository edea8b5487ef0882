"""fMP4 and LL-HLS out of the HLS service: real libx264/AAC/MP3 media through the packager into
init segments, fMP4 segments and parts in memory; every playlist version validated (LL rules
included), every segment and every independent part decoded back by FFmpeg."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from rtmpd.hls import HlsConfig, HlsService
from rtmpd.hls import muxer as muxer_module

from tests.support.hls import FakeClock, decode_fmp4, media, shift
from tests.support.m3u8_validator import MediaPlaylist, PlaylistHistory
from tests.support.media import make_flv, read_flv_tags
from tests.test_hls_packager import FullDisk

SIX = {"seconds": 6.0, "fps": 30, "gop": 30}  # 1 s GOP: a segment per second


@dataclass
class LiveRecorder:
    """The service's `LiveListener`: after each part or segment, the LL playlist is rendered
    and validated (with the history rules: numbering, parts kept across versions)."""

    service: HlsService | None = None
    histories: dict[str, PlaylistHistory] = field(default_factory=dict)
    readies: list[tuple[str, int, int | None]] = field(default_factory=list)
    releases: list[str] = field(default_factory=list)
    failures: list[Exception] = field(default_factory=list)
    parts: dict[str, bytes] = field(default_factory=dict)  # every part, as served then

    def ready(self, name: str, msn: int, part: int | None) -> None:
        self.readies.append((name, msn, part))
        self._check(name)

    def release(self, name: str) -> None:
        self.releases.append(name)
        self._check(name)

    def _check(self, name: str) -> None:
        assert self.service is not None
        playlist = self.service.live_playlist(name)
        if playlist is None:
            return
        try:
            text = playlist.render().decode()
            checked = self.histories.setdefault(name, PlaylistHistory()).check(text)
            for part_entry in checked.open_parts + [q for s in checked.segments for q in s.parts]:
                data = self.service.part(name, part_entry.uri)
                assert data is not None, f"{part_entry.uri} is listed but not served"
                self.parts.setdefault(part_entry.uri, data)
        except Exception as exc:  # noqa: BLE001 - kept for the fixture to report
            self.failures.append(exc)

    def last(self, name: str) -> MediaPlaylist:
        return self.histories[name].last


Factory = Callable[..., tuple[HlsService, LiveRecorder, FakeClock]]


@pytest.fixture
def make_service(tmp_path: Path) -> Iterator[Factory]:
    recorders: list[LiveRecorder] = []

    def make(**overrides: Any) -> tuple[HlsService, LiveRecorder, FakeClock]:
        settings: dict[str, Any] = {"fragment": 1.0, "playlist_length": 4.0, **overrides}
        clock = FakeClock()
        recorder = LiveRecorder()
        service = HlsService(HlsConfig(tmp_path / "hls", **settings), clock=clock, live=recorder)
        recorder.service = service
        recorders.append(recorder)
        return service, recorder, clock

    yield make
    for recorder in recorders:
        assert recorder.failures == []


def feed_paced(packager: Any, events: tuple[Any, ...] | list[Any], clock: FakeClock) -> None:
    """Real time as the packager sees it: the clock follows the media timestamps."""
    start = clock.now
    first = events[0][1]
    for event in events:
        clock.now = max(clock.now, start + (event[1] - first) / 1000)
        getattr(packager, event[0])(*event[1:])


def listed_files(service: HlsService, name: str) -> tuple[str, list[str]]:
    """The init segment and the segments the playlist on disk lists."""
    lines = service.playlist_path(name).read_text().splitlines()
    maps = [line.split('"')[1] for line in lines if line.startswith("#EXT-X-MAP")]
    return maps[0], [line for line in lines if line and not line.startswith("#")]


def test_fmp4_segments_with_an_init_segment_decode_and_add_up(make_service: Factory) -> None:
    service, recorder, clock = make_service(format="fmp4", playlist_length=30.0)
    events = media(**SIX)
    packager = service.open_stream("benw")
    feed_paced(packager, events, clock)
    packager.close()
    text = service.playlist_path("benw").read_text()
    history = PlaylistHistory()
    playlist = history.check(text)
    assert playlist.version == 6 and playlist.endlist and len(playlist.segments) == 6
    assert service.live_playlist("benw") is None and recorder.readies == []  # not LL-HLS
    folder = service.segment_dir("benw")
    init, segments = listed_files(service, "benw")
    video = audio = 0
    for uri in segments:
        assert uri.endswith(".m4s")
        decoded = decode_fmp4((folder / init).read_bytes() + (folder / uri).read_bytes())
        assert decoded.warnings == [] and decoded.video > 0 and decoded.audio > 0
        video += decoded.video
        audio += decoded.audio
    assert video == sum(1 for e in events if e[0] == "video")
    first_video = next(i for i, e in enumerate(events) if e[0] == "video")
    assert audio == sum(1 for e in events[first_video:] if e[0] == "audio")


def test_low_latency_parts_are_the_segments_and_decode_from_each_independent_one(
    make_service: Factory,
) -> None:
    service, recorder, clock = make_service(low_latency=True, part_duration=0.2)
    events = media(**SIX)
    packager = service.open_stream("benw")
    feed_paced(packager, events, clock)
    live = service.live_playlist("benw")
    assert live is not None and live.part_target_ms == 205  # 6 frames at 30 fps, and headroom
    packager.close()
    assert recorder.releases == ["benw"] and recorder.last("benw").endlist
    history = recorder.histories["benw"]
    folder = service.segment_dir("benw")
    init = (folder / listed_files(service, "benw")[0]).read_bytes()
    by_segment: dict[int, list[str]] = {}
    for (msn, _), part in sorted(history.parts.items()):
        by_segment.setdefault(msn, []).append(part.uri)
    assert len(by_segment) == 6 and all(len(uris) == 5 for uris in by_segment.values())
    for msn, uris in by_segment.items():
        segment = history.seen[msn]
        assert (folder / segment.uri).read_bytes() == b"".join(recorder.parts[u] for u in uris)
        for i in range(len(uris)):
            part = history.parts[(msn, i)]
            if part.independent:
                decoded = decode_fmp4(init + b"".join(recorder.parts[u] for u in uris[i:]))
                assert decoded.warnings == [] and decoded.video > 0
    assert [p.independent for p in history.parts.values()].count(True) == 6  # one per GOP
    # Every part woke exactly what waited for it: a ready per part, one per listed segment.
    assert len([r for r in recorder.readies if r[2] is not None]) == 30
    assert [r[1] for r in recorder.readies if r[2] is None] == list(range(6))


def test_hinted_part_is_the_next_one_made(make_service: Factory) -> None:
    service, recorder, clock = make_service(low_latency=True)
    events = media(**SIX)
    packager = service.open_stream("benw")
    hinted: list[tuple[str, tuple[int, int] | None]] = []
    half = len(events) // 2
    feed_paced(packager, events[:half], clock)
    for event in events[half:]:
        live = service.live_playlist("benw")
        assert live is not None
        before = live.next_part_uri
        position = service.hinted_part("benw", before)
        getattr(packager, event[0])(*event[1:])
        if service.part("benw", before) is not None:
            hinted.append((before, position))
    assert hinted and service.part("benw", "nothing.m4s") is None
    history = recorder.histories["benw"]
    made = {part.uri: key for key, part in history.parts.items()}
    for uri, position in hinted:
        assert made[uri] == position  # the hint said which (msn, part) it would be
    packager.close()
    assert service.hinted_part("benw", recorder.last("benw").segments[-1].parts[-1].uri) is None


def test_audio_only_and_mp3_streams_make_parts_cut_on_audio(make_service: Factory) -> None:
    service, recorder, clock = make_service(low_latency=True)
    for name, codec in (("aac", "aac"), ("mp3", "libmp3lame")):
        events: Any = media(seconds=4.0, video=False, audio_codec=codec)
        if codec == "libmp3lame":  # FLV sound format 2: the RTMP session calls mp3() with
            flv = make_flv(seconds=4.0, video=False, audio_codec=codec)  # the bare frames
            events = [("mp3", t.timestamp, t.body[1:]) for t in read_flv_tags(flv) if t.body]
        packager = service.open_stream(name)
        feed_paced(packager, events, clock)
        packager.close()
        history = recorder.histories[name]
        assert len(history.parts) >= 15 and all(p.independent for p in history.parts.values())
        folder = service.segment_dir(name)
        init, segments = listed_files(service, name)
        decoded = decode_fmp4((folder / init).read_bytes() + (folder / segments[1]).read_bytes())
        assert decoded.warnings == [] and decoded.audio > 0 and decoded.video == 0


def test_part_bytes_are_kept_only_while_a_playlist_shows_them(make_service: Factory) -> None:
    service, recorder, clock = make_service(low_latency=True, playlist_length=30.0)
    events = media(**SIX)
    packager = service.open_stream("benw")
    for lap in range(4):  # 24 s of media, a 30 s window: every segment stays listed
        feed_paced(packager, shift(events, lap * 6000), clock)
    history = recorder.histories["benw"]
    first_uri = history.parts[(0, 0)].uri
    assert service.part("benw", first_uri) is None  # long out of every playlist's parts
    shown = recorder.last("benw")
    for part in [q for s in shown.segments for q in s.parts] + shown.open_parts:
        assert service.part("benw", part.uri) is not None
    state = service._states["benw"]  # noqa: SLF001 - the bound is the point here
    assert state.live is not None
    # Three targets of parts shown, one more kept for older versions, and the open segment.
    largest = max(p.stat().st_size for p in service.segment_dir("benw").glob("*.m4s"))
    assert 0 < state.live.kept_bytes < 6 * largest
    packager.close()


def test_a_segment_lost_to_the_disk_is_listed_as_a_gap_and_numbering_goes_on(
    make_service: Factory, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(muxer_module, "open", FullDisk.File, raising=False)
    monkeypatch.setattr(FullDisk, "full", False)
    service, recorder, clock = make_service(low_latency=True, playlist_length=30.0)
    events = media(**SIX)
    third = len(events) // 3
    packager = service.open_stream("benw")
    feed_paced(packager, events[:third], clock)
    FullDisk.full = True
    with caplog.at_level(logging.ERROR, logger="rtmpd.hls"):
        feed_paced(packager, events[third : 2 * third], clock)
    FullDisk.full = False
    feed_paced(packager, events[2 * third :], clock)
    packager.close()
    assert len([r for r in caplog.records if "cannot write" in r.getMessage()]) == 1
    final = recorder.last("benw")
    assert final.version == 9 and [s.sequence for s in final.segments] == list(range(6))
    gaps = [s for s in final.segments if s.gap]
    assert gaps and not any(s.discontinuity for s in final.segments)
    folder = service.segment_dir("benw")
    for segment in final.segments:
        assert (folder / segment.uri).exists() != segment.gap
    disk = PlaylistHistory().check(service.playlist_path("benw").read_text())
    assert disk.version == 8 and [s.gap for s in disk.segments] == [s.gap for s in final.segments]


def test_new_codec_settings_start_a_run_with_a_new_init_segment_and_the_old_one_goes(
    make_service: Factory,
) -> None:
    service, recorder, clock = make_service(low_latency=True, playlist_length=2.0)
    small = media(seconds=4.0, fps=30, gop=30)
    large = media(seconds=6.0, fps=30, gop=30, width=640, height=360)
    packager = service.open_stream("benw")
    feed_paced(packager, small, clock)
    first_init = listed_files(service, "benw")[0]
    feed_paced(packager, shift(large, 4000), clock)
    second_init = listed_files(service, "benw")[0]
    assert second_init != first_init
    folder = service.segment_dir("benw")
    clock.advance(60)
    service.tick()
    assert not (folder / first_init).exists() and (folder / second_init).exists()
    packager.close()
    final = recorder.last("benw")
    assert {s.map_uri for s in final.segments} == {second_init}


def test_flat_layout_names_parts_after_the_stream(make_service: Factory) -> None:
    service, recorder, clock = make_service(low_latency=True, nested=False)
    packager = service.open_stream("benw")
    feed_paced(packager, media(**SIX), clock)
    live = service.live_playlist("benw")
    assert live is not None and live.next_part_uri.startswith("benw-p")
    part = recorder.last("benw").segments[-1].parts[0]
    assert service.part("benw", part.uri) is not None
    packager.close()
    assert all(p.name.startswith("benw") for p in service.segment_dir("benw").iterdir())
