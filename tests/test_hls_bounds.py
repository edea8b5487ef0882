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

from tests.support.hls import Event, FakeClock, Recorder, feed, media, shift

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
