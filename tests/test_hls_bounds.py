"""The packager's bounds against a streamer with a valid key, in process (real media, real
files, a settable clock): segments broken off over and over, the disk a name and the folder
may hold, media far ahead of real time, and cleanup that follows the wall clock. Each attack
is ended at its bound while an honest name beside it goes on; every playlist version written
passes the validator."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rtmpd.hls import Bound, HlsConfig, HlsService
from rtmpd.hls.segmenter import BREAK_BURST

from tests.support.hls import Event, FakeClock, Recorder, feed, feed_in_time, media, shift

Factory = Callable[..., tuple[HlsService, Recorder, FakeClock]]
SMALL = {"seconds": 4, "width": 64, "height": 48, "audio": False}  # 25 fps, 1 s GOP


@pytest.fixture
def make_service(tmp_path: Path) -> Iterator[Factory]:
    recorders: list[Recorder] = []

    def make(**overrides: object) -> tuple[HlsService, Recorder, FakeClock]:
        settings: dict[str, Any] = {"fragment": 1.0, "playlist_length": 3.0, **overrides}
        config = HlsConfig(tmp_path / "hls", **settings)
        clock = FakeClock()
        recorder = Recorder(playlist_length=config.playlist_length)
        service = HlsService(config, clock=clock, on_segment=recorder)
        recorder.service = service
        recorders.append(recorder)
        return service, recorder, clock

    yield make
    for recorder in recorders:  # every playlist version written passed the validator
        assert recorder.failures == []


def files(service: HlsService, name: str) -> list[Path]:
    folder = service.segment_dir(name)
    return sorted(folder.iterdir()) if folder.exists() else []


def keyframe_events(times: list[int]) -> list[Event]:
    """The first keyframe of the small media again and again at `times`, each a keyframe."""
    events = media(**SMALL)
    config = next(e for e in events if e[0] == "video_config")
    key = next(e for e in events if e[0] == "video" and e[3])
    return [config] + [("video", t, 0, True, key[4]) for t in times]


class Honest:
    """A publish beside the attack, fed a second of media at a time (40 s at most)."""

    def __init__(self, service: HlsService, recorder: Recorder, name: str = "honest") -> None:
        self.name = name
        self.recorder = recorder
        self.packager = service.open_stream(name)
        self.events = [e for k in range(10) for e in shift(media(**SMALL), 4000 * k)]
        self.sent = 0  # seconds

    def second(self) -> None:
        low, high = self.sent * 1000, self.sent * 1000 + 1000
        feed(self.packager, [e for e in self.events if low <= e[1] < high])
        self.sent += 1

    def listed(self) -> int:
        """Segments listed so far."""
        return sum(e.name == self.name for e in self.recorder.events)

    def goes_on(self) -> None:
        """Two more seconds list a new segment: the playlist stays fresh."""
        before = self.listed()
        self.second()
        self.second()
        assert self.packager.violation is None and self.listed() > before


@pytest.mark.parametrize(
    "times",
    [[10**9 - 200 * i for i in range(500)], [i * 86_400_000 for i in range(500)]],
    ids=["back-200ms-a-frame", "forward-a-day-a-frame"],
)
def test_a_jump_every_frame_is_ended_after_a_few_segments(
    make_service: Factory, times: list[int]
) -> None:
    """Each jump was a segment and a discontinuity: 5,619 segments in 30 s, 8,116 listed."""
    service, recorder, _ = make_service()
    honest = Honest(service, recorder)
    honest.second()
    attacker = service.open_stream("jumpy")
    feed(attacker, keyframe_events(times))
    assert attacker.violation is not None and attacker.violation.bound is Bound.BREAKS
    assert "timestamps jump" in attacker.violation.description
    playlist = recorder.check("jumpy")
    assert playlist.endlist and len(playlist.segments) == BREAK_BURST + 1
    assert len(files(service, "jumpy")) == BREAK_BURST + 2  # and the playlist
    honest.goes_on()


def test_a_new_sequence_header_every_frame_is_ended(make_service: Factory) -> None:
    service, recorder, _ = make_service()
    attacker = service.open_stream("headers")
    small, other = media(**SMALL), media(**{**SMALL, "width": 48, "height": 32})
    configs = [next(e for e in m if e[0] == "video_config")[2] for m in (small, other)]
    key = next(e for e in small if e[0] == "video" and e[3])[4]
    for i in range(200):
        attacker.video_config(i * 40, configs[i % 2])
        attacker.video(i * 40, 0, True, key)
    assert attacker.violation is not None and attacker.violation.bound is Bound.BREAKS
    assert "sequence headers" in attacker.violation.description
    assert len(recorder.check("headers").segments) == BREAK_BURST + 1


def test_honest_breaks_are_not_violations(make_service: Factory) -> None:
    """A resolution change, a timestamp jump each way and a republish: all packaged."""
    service, recorder, _ = make_service(playlist_length=30.0)
    first = service.open_stream("benw")
    small = media(**SMALL)
    feed(first, small)
    feed(first, shift(media(**{**SMALL, "width": 48, "height": 32}), 4000))  # new size
    feed(first, shift(small, 60_000))  # forward
    feed(first, shift(small, 2000))  # back
    first.close()
    again = service.open_stream("benw")
    feed(again, shift(small, 70_000))
    again.close()
    assert first.violation is None and again.violation is None
    playlist = recorder.check("benw")
    assert [s.discontinuity for s in playlist.segments].count(True) == 4
    assert abs(playlist.duration - 20.0) < 0.2


# -- the disk a name and the folder may hold -----------------------------------------------------


def disk_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def padded(events: list[Event] | tuple[Event, ...], size: int) -> list[Event]:
    """The same media with every video frame made `size` bytes by a filler NAL unit."""
    out: list[Event] = []
    for e in events:
        if e[0] == "video":
            extra = size - len(e[4]) - 5
            data = e[4] + (extra + 1).to_bytes(4, "big") + b"\x0c" + b"\xff" * extra
            e = (*e[:4], data)
        out.append(e)
    return out


def long_media(seconds: int, frame_bytes: int = 0) -> list[Event]:
    events = [e for k in range(seconds // 4) for e in shift(media(**SMALL), 4000 * k)]
    return padded(events, frame_bytes) if frame_bytes else events


def test_a_name_past_its_disk_bound_is_ended(make_service: Factory) -> None:
    """103 Mb/s in real time kept 783 MB. Here 4 Mb/s against a 1 MB bound: ended once its
    files (listed, waiting for cleanup, being written) pass it; an honest stream goes on."""
    bound, frame = 1_000_000, 20_000
    service, recorder, clock = make_service(max_stream_bytes=bound, max_segment_bytes=bound)
    honest = Honest(service, recorder)
    attacker = service.open_stream("loud")
    folder = service.segment_dir("loud")
    most = 0
    for event in long_media(12, frame):
        clock.now = max(clock.now, 1_700_000_000.0 + event[1] / 1000)
        getattr(attacker, event[0])(*event[1:])
        service.tick()
        most = max(most, disk_bytes(folder))
        if attacker.violation is not None:
            break
    assert attacker.violation is not None and attacker.violation.bound is Bound.STREAM_BYTES
    assert "more than 0.95 MiB" in attacker.violation.description
    assert "max_stream_bytes" in attacker.violation.description
    assert bound < most <= bound + 3 * frame  # the frame that crossed, FFmpeg's queue
    assert recorder.check("loud").endlist
    assert disk_bytes(service.config.path) <= service.quota.total  # every byte counted
    honest.goes_on()


def test_the_folder_past_its_bound_removes_ended_streams_then_ends_the_largest(
    make_service: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    """Three names under a 1.2 MB folder: one ended (in its grace), a loud live one, a
    quiet one. Past the bound the ended one's files go first; then the loud one is ended;
    the quiet one, never the largest, goes on."""
    frame = 10_000
    service, recorder, clock = make_service(max_total_bytes=1_200_000, max_segment_bytes=500_000)
    ended = service.open_stream("ended")
    feed_in_time(ended, long_media(4, frame), clock)
    ended.close()
    held = service.quota.total
    assert 900_000 < held < 1_200_000
    quiet = Honest(service, recorder, "quiet")
    loud = service.open_stream("loud")
    for event in long_media(12, frame):
        clock.now = max(clock.now, 1_700_000_010.0 + event[1] / 1000)
        getattr(loud, event[0])(*event[1:])
        if event[1] % 1000 == 0 and event[0] == "video":
            quiet.second()
        if loud.violation is not None:
            break
    assert not service.segment_dir("ended").exists()  # its grace cut short
    assert any("early: the HLS folder is full" in r.getMessage() for r in caplog.records)
    assert loud.violation is not None and loud.violation.bound is Bound.TOTAL_BYTES
    assert "max_total_bytes" in loud.violation.description
    assert disk_bytes(service.config.path) <= 1_200_000 + 3 * frame
    quiet.goes_on()
    assert disk_bytes(service.config.path) <= service.quota.total


def test_files_from_an_earlier_run_are_counted(make_service: Factory, tmp_path: Path) -> None:
    service, _, clock = make_service()
    crashed = service.open_stream("benw")
    feed_in_time(crashed, long_media(8), clock)  # never closed: the server was killed
    on_disk = disk_bytes(service.config.path)
    again, _, _ = make_service()
    assert again.quota.total == 0
    again.open_stream("benw")  # resumes the playlist; the files it does not list wait
    assert again.quota.total == on_disk - sum(
        p.stat().st_size for p in service.segment_dir("benw").glob(".*")
    )  # the temp file of the segment being written is not ours to resume


# -- media far ahead of real time ----------------------------------------------------------------


def test_media_far_faster_than_real_time_is_ended(make_service: Factory) -> None:
    """Sent as fast as it goes, once the burst is used up; an honest stream goes on."""
    service, recorder, _ = make_service(max_speed=2.0, speed_burst=5.0)
    honest = Honest(service, recorder)
    attacker = service.open_stream("fast")
    feed(attacker, long_media(40))  # the clock stands still: infinitely fast
    assert attacker.violation is not None and attacker.violation.bound is Bound.SPEED
    assert "faster than real time" in attacker.violation.description
    assert recorder.check("fast").endlist
    assert 5.0 < listed_seconds(recorder, "fast") <= 5.0 + 1.0  # the burst, and a segment
    honest.goes_on()


@pytest.mark.parametrize("speed", [1.0, 1.9])
def test_real_time_and_catching_up_are_not_ended(make_service: Factory, speed: float) -> None:
    """Under max_speed for ever, and a stall followed by what was held back at once."""
    service, recorder, clock = make_service(max_speed=2.0, speed_burst=5.0)
    packager = service.open_stream("benw")
    events = long_media(40)
    stall = [e for e in events if e[1] < 20_000]
    feed_in_time(packager, stall, clock, speed)
    clock.advance(4.5)  # the network stalls, then 4.5 s of media arrive at once
    feed(packager, [e for e in events if 20_000 <= e[1] < 24_500])
    feed_in_time(packager, [e for e in events if e[1] >= 24_500], clock, speed)
    assert packager.violation is None
    packager.close()
    assert abs(listed_seconds(recorder, "benw") - 40.0) < 0.1


def listed_seconds(recorder: Recorder, name: str) -> float:
    """Media in every segment ever listed for `name`."""
    return sum(s.duration for s in recorder.histories[name].seen.values())


def ts_files(service: HlsService, name: str) -> int:
    return len(list(service.segment_dir(name).glob("*.ts")))


@pytest.mark.parametrize("speed", [1.0, 4.0])
def test_cleanup_waits_in_wall_time(make_service: Factory, speed: float) -> None:
    """A stream sent 4 times faster than real time kept 4 times the files (cleanup waited
    the media-time delay in wall seconds); now it keeps what a real-time stream keeps."""
    service, _, clock = make_service(max_speed=8.0)
    packager = service.open_stream("benw")
    most = 0
    start = clock.now
    for event in long_media(24):
        clock.now = max(clock.now, start + event[1] / 1000 / speed)
        getattr(packager, event[0])(*event[1:])
        service.tick()
        most = max(most, ts_files(service, "benw"))
    assert packager.violation is None
    # 3 listed, 5 s of them waiting (RFC 8216 6.2.2: 1 s and the 4 s playlist), the one
    # being written: 9, at any speed.
    print("MOST", speed, most)
    assert most <= 9
