"""Segmenter decisions on synthetic frame sequences (pure: no media, no disk)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rtmpd.hls.segmenter import BREAK_BURST, Action, CutReason, Segmenter, Track

V, A = Track.VIDEO, Track.AUDIO
Frame = tuple[Track, int, bool, int]  # track, dts, keyframe, size


def stream(
    seconds: float,
    *,
    fps: int = 25,
    gop_s: float = 1.0,
    audio: bool = True,
    video: bool = True,
    start: int = 0,
    size: int = 1000,
) -> list[Frame]:
    """Interleaved frames in timestamp order, audio first on ties (as FLV muxers write)."""
    frames: list[tuple[int, int, Frame]] = []
    if video:
        per_gop = round(gop_s * fps)
        for i in range(int(seconds * fps)):
            ts = start + i * 1000 // fps
            frames.append((ts, 1, (V, ts, i % per_gop == 0, size)))
    if audio:
        for i in range(int(seconds * 44100 / 1024)):
            ts = start + i * 1024 * 1000 // 44100
            frames.append((ts, 0, (A, ts, False, 200)))
    return [f for _, _, f in sorted(frames)]


class Run:
    """Feeds frames and records the segments the segmenter makes."""

    def __init__(self, seg: Segmenter) -> None:
        self.seg = seg
        self.segments: list[dict[str, Any]] = []  # start, reason, disc, duration, frames
        self.actions: list[Action] = []

    def feed(self, frames: list[Frame]) -> Run:
        for track, dts, key, size in frames:
            action = self.seg.frame(track, dts, key, size)
            self.actions.append(action)
            closing = action in (Action.CUT, Action.CLOSE, Action.STOP) and self.segments
            if closing and self.seg.closed_duration is not None:
                assert self.segments[-1]["duration"] is None
                self.segments[-1]["duration"] = self.seg.closed_duration
            if action is Action.CUT:
                first = (track, dts, key)
                self.segments.append(
                    dict(
                        start=dts,
                        reason=self.seg.reason,
                        disc=self.seg.discontinuity,
                        duration=None,
                        first=first,
                        frames=1,
                    )  # fmt: skip
                )
            elif action is Action.WRITE:
                assert self.segments and self.segments[-1]["duration"] is None
                self.segments[-1]["frames"] += 1
        return self

    def finish(self) -> Run:
        duration = self.seg.finish()
        if duration is not None:
            self.segments[-1]["duration"] = duration
        return self

    @property
    def durations(self) -> list[int]:
        return [s["duration"] for s in self.segments]

    @property
    def reasons(self) -> list[CutReason]:
        return [s["reason"] for s in self.segments]


def make(fragment: int = 2000, max_fragment: int = 20000, max_bytes: int = 1 << 30) -> Segmenter:
    seg = Segmenter(fragment, max_fragment, max_bytes)
    seg.configure(V, changed=True)
    seg.configure(A, changed=True)
    return seg


def test_steady_stream_cuts_on_keyframes_after_fragment() -> None:
    run = Run(make(2000)).feed(stream(10, gop_s=1.0)).finish()
    assert [s["start"] for s in run.segments] == [0, 2000, 4000, 6000, 8000]
    assert run.durations == [2000] * 5
    assert run.reasons == [CutReason.START] + [CutReason.FRAGMENT] * 4
    assert all(s["first"][0] is V and s["first"][2] for s in run.segments)
    assert not any(s["disc"] for s in run.segments)


def test_cut_waits_for_the_next_keyframe_after_fragment() -> None:
    # GOP of 1.6 s, fragment 2 s: cuts land on every second keyframe.
    run = Run(make(2000)).feed(stream(10, gop_s=1.6)).finish()
    assert [s["start"] for s in run.segments] == [0, 3200, 6400, 9600]
    assert sum(run.durations) == 10000


def test_media_before_the_first_keyframe_is_dropped() -> None:
    frames = [(A, 0, False, 10), (V, 0, False, 10), (A, 23, False, 10), (V, 40, True, 10)]
    run = Run(make()).feed(frames)
    assert run.actions == [Action.DROP, Action.DROP, Action.DROP, Action.CUT]
    assert run.segments[0]["start"] == 40


def test_long_gop_is_cut_at_max_fragment() -> None:
    run = Run(make(2000, max_fragment=6000)).feed(stream(20, gop_s=10.0, audio=False)).finish()
    assert [s["start"] for s in run.segments] == [0, 6000, 10000, 16000]
    assert run.reasons == [
        CutReason.START, CutReason.MAX_FRAGMENT, CutReason.FRAGMENT, CutReason.MAX_FRAGMENT,
    ]  # fmt: skip
    assert run.segments[1]["first"][2] is False  # forced: not on a keyframe
    assert sum(run.durations) == 20000


def test_long_gop_without_max_fragment_pressure_gives_long_segments() -> None:
    run = Run(make(2000, max_fragment=60000)).feed(stream(30, gop_s=10.0)).finish()
    assert [s["start"] for s in run.segments] == [0, 10000, 20000]


def test_forward_gap_cuts_with_discontinuity() -> None:
    first = stream(3, gop_s=1.0)
    second = stream(3, gop_s=1.0, start=100_000)
    run = Run(make(2000, max_fragment=20000)).feed(first + second).finish()
    assert [s["start"] for s in run.segments] == [0, 2000, 100_000, 102_000]
    assert [s["disc"] for s in run.segments] == [False, False, True, False]
    assert run.segments[2]["reason"] is CutReason.JUMP_FORWARD
    # The segment before the gap ends where its media ends, not where the gap ends.
    assert run.durations[1] == 1000
    assert sum(run.durations) == 6000


def test_backward_jump_cuts_with_discontinuity() -> None:
    run = Run(make()).feed(stream(5, start=50_000) + stream(3, start=0)).finish()
    starts = [s["start"] for s in run.segments]
    assert starts == [50_000, 52_000, 54_000, 0, 2000]
    assert run.segments[3]["disc"] and run.segments[3]["reason"] is CutReason.JUMP_BACK
    assert run.durations[2] == 1000


def test_jump_on_a_non_keyframe_closes_and_waits_for_a_keyframe() -> None:
    seg = make()
    run = Run(seg).feed(stream(3, audio=False))
    jump = [(V, 90_000, False, 10), (V, 90_040, False, 10), (V, 90_080, True, 10)]
    run.feed(jump)
    assert run.actions[-3:] == [Action.CLOSE, Action.DROP, Action.CUT]
    assert run.segments[-1]["start"] == 90_080 and run.segments[-1]["disc"]


def test_small_backward_jitter_is_tolerated() -> None:
    frames = stream(3, audio=False)
    frames.insert(30, (A, frames[29][1] - 30, False, 10))  # audio 30 ms behind video
    seg = make()
    run = Run(seg).feed(frames + [(A, frames[-1][1] - 20, False, 10)]).finish()
    assert not any(s["disc"] for s in run.segments)


def test_audio_only_starts_at_the_first_frame_and_cuts_on_time() -> None:
    seg = Segmenter(2000, 20000, 1 << 30)
    seg.configure(A, changed=True)
    frames = stream(9, video=False, start=5)
    run = Run(seg).feed(frames).finish()
    assert run.segments[0]["start"] == 5
    assert all(s["first"][0] is A for s in run.segments)
    assert all(2000 <= d < 2030 for d in run.durations[:-1])
    assert len(run.segments) == 5
    assert sum(run.durations) == frames[-1][1] + (frames[-1][1] - frames[-2][1]) - 5


def test_video_only() -> None:
    seg = Segmenter(2000, 20000, 1 << 30)
    seg.configure(V, changed=True)
    run = Run(seg).feed(stream(6, audio=False)).finish()
    assert run.durations == [2000, 2000, 2000]
    # Audio without an audio config is not part of the stream.
    assert seg.frame(A, 6100, False, 10) is Action.DROP


def test_video_sequence_header_change_starts_a_new_segment_at_the_next_keyframe() -> None:
    seg = make(2000)
    run = Run(seg).feed(stream(2.5, gop_s=1.0))
    seg.configure(V, changed=True)
    later = stream(3, gop_s=1.0, start=2500)
    run.feed(later).finish()
    # 2500 is a keyframe of the new configuration: cut right there, with a discontinuity.
    assert [s["start"] for s in run.segments] == [0, 2000, 2500, 4500]
    assert run.segments[2]["reason"] is CutReason.CONFIG and run.segments[2]["disc"]
    assert not run.segments[3]["disc"]


def test_frames_of_a_changed_track_are_dropped_until_the_cut() -> None:
    seg = make(2000)
    Run(seg).feed(stream(1.5, gop_s=1.0))
    seg.configure(A, changed=True)
    assert seg.frame(A, 1500, False, 10) is Action.DROP  # new audio config: old muxer can't
    assert seg.frame(V, 1520, False, 10) is Action.WRITE  # video goes on into the old segment
    assert seg.frame(V, 2000, True, 10) is Action.CUT
    assert seg.reason is CutReason.CONFIG and seg.discontinuity
    assert seg.frame(A, 2010, False, 10) is Action.WRITE


def test_a_repeated_identical_sequence_header_changes_nothing() -> None:
    seg = make(2000)
    run = Run(seg).feed(stream(1, gop_s=0.5))
    seg.configure(V, changed=False)
    run.feed(stream(1, gop_s=0.5, start=1000)).finish()
    assert [s["start"] for s in run.segments] == [0]


def test_a_track_appearing_late_starts_a_new_segment() -> None:
    seg = Segmenter(2000, 20000, 1 << 30)
    seg.configure(V, changed=True)
    run = Run(seg).feed(stream(1.2, audio=False))
    seg.configure(A, changed=True)  # first audio config after video started
    assert seg.frame(A, 1200, False, 10) is Action.DROP
    run.feed(stream(2, start=2000)).finish()
    assert run.segments[-1]["reason"] is CutReason.CONFIG


def test_audio_only_stream_gaining_video_switches_to_keyframe_cuts() -> None:
    seg = Segmenter(2000, 20000, 1 << 30)
    seg.configure(A, changed=True)
    run = Run(seg).feed(stream(1, video=False))
    seg.configure(V, changed=True)
    assert seg.frame(V, 1010, False, 10) is Action.DROP
    assert seg.frame(A, 1020, False, 10) is Action.WRITE
    assert seg.frame(V, 1050, True, 10) is Action.CUT
    assert seg.discontinuity
    run.finish()


def test_size_cap_cuts_segments() -> None:
    # 200 ms segments: a tenth of the fragment (shorter ones over and over stop the stream).
    run = Run(make(2000, max_bytes=16_000)).feed(stream(2, audio=False, size=3000)).finish()
    assert all(s["frames"] == 5 for s in run.segments[:-1])
    assert run.reasons[1] is CutReason.SIZE
    assert not any(s["disc"] for s in run.segments)
    assert sum(run.durations) == 2000


# -- breaks over and over: the publish is stopped, honest breaks are not ----------------------


def every_frame(dts: list[int], size: int = 10) -> list[Frame]:
    return [(V, t, True, size) for t in dts]


@pytest.mark.parametrize(
    ("times", "reason"),
    [
        ([10**9 - 200 * i for i in range(50)], CutReason.JUMP_BACK),
        ([i * 86_400_000 for i in range(50)], CutReason.JUMP_FORWARD),
    ],
    ids=["back-200ms-a-frame", "forward-a-day-a-frame"],
)
def test_a_jump_every_frame_stops_after_a_few(times: list[int], reason: CutReason) -> None:
    """Each jump made a segment (and a discontinuity) of one frame, for ever."""
    seg = make()
    run = Run(seg).feed(every_frame(times))
    stop = run.actions.index(Action.STOP)
    assert stop == BREAK_BURST + 1  # the first frame opens; then BREAK_BURST breaks pass
    assert seg.stopped is reason and not seg.open
    assert set(run.actions[stop + 1 :]) == {Action.DROP}
    assert run.durations == [1] * (BREAK_BURST + 1)  # every segment closed, none left open
    assert seg.finish() is None


def test_a_new_sequence_header_every_frame_stops_after_a_few() -> None:
    seg = make()
    actions = [seg.frame(V, 0, True, 10)]
    for i in range(1, 50):
        seg.configure(V, changed=True)
        actions.append(seg.frame(V, i * 40, True, 10))
    assert actions.index(Action.STOP) == BREAK_BURST + 1
    assert seg.stopped is CutReason.CONFIG


def test_size_cuts_with_time_standing_still_stop_after_a_few() -> None:
    """Every timestamp 0: only the size cap cut, segments of 1 ms, 64 MiB each."""
    seg = make(max_bytes=10_000)
    run = Run(seg).feed(every_frame([0] * 100, size=4000))
    assert run.actions.index(Action.STOP) == 2 * (BREAK_BURST + 1)  # 2 frames a segment
    assert seg.stopped is CutReason.SIZE


def test_honest_breaks_never_stop() -> None:
    """A jump, a new header or a short size cut now and then, each after a fragment or more
    of media, goes on for ever; so do size cuts of a tenth of a fragment or longer (a high
    bitrate for the size cap) and a burst of BREAK_BURST breaks."""
    seg = make(2000, max_bytes=1 << 30)
    run = Run(seg)
    start = 0
    for i in range(40):  # a break every 2 s of media, alternating kinds
        run.feed(stream(2, audio=False, start=start))
        if i % 2:
            seg.configure(V, changed=True)
            start += 2000
        else:
            start += 2000 - 50_000 if start > 50_000 else 2000 + 50_000
    burst = every_frame([start + 50_000 * k for k in range(BREAK_BURST)])
    run.feed(burst).finish()
    assert Action.STOP not in run.actions and seg.stopped is None
    sizes = Run(make(2000, max_bytes=5 * 1000)).feed(stream(20, audio=False, size=1000))
    assert Action.STOP not in sizes.actions  # 200 ms segments: a tenth of the fragment


def test_finish_without_a_segment() -> None:
    seg = make()
    assert seg.finish() is None
    assert seg.frame(V, 0, False, 10) is Action.DROP
    assert seg.finish() is None


def test_stream_times_past_the_24_bit_and_33_bit_ranges() -> None:
    start = (1 << 33) // 90 - 3000  # 3 s before the 90 kHz wrap
    run = Run(make(2000)).feed(stream(8, start=start)).finish()
    assert [s["start"] - start for s in run.segments] == [0, 2000, 4000, 6000]
    assert not any(s["disc"] for s in run.segments)


def test_mark_discontinuity_applies_to_the_next_segment() -> None:
    seg = make()
    seg.mark_discontinuity()
    run = Run(seg).feed(stream(5)).finish()
    assert [s["disc"] for s in run.segments] == [True, False, False]


@pytest.mark.parametrize("args", [(0, 1000, 10), (2000, 1000, 10), (1000, 2000, 0)])
def test_bad_parameters_are_refused(args: tuple[int, int, int]) -> None:
    with pytest.raises(ValueError):
        Segmenter(*args)


@settings(max_examples=150, deadline=None, database=None)
@given(
    steps=st.lists(
        st.tuples(st.sampled_from([V, A]), st.integers(0, 120), st.booleans()), max_size=300
    )
)
def test_durations_cover_the_media_on_a_continuous_timeline(
    steps: list[tuple[Track, int, bool]],
) -> None:
    seg = make(1000, max_fragment=5000, max_bytes=5000)
    run = Run(seg)
    ts = 0
    frames = []
    for track, step, key in steps:
        ts += step
        frames.append((track, ts, key and track is V, 100))
    run.feed(frames).finish()
    assert all(d is not None and d > 0 for d in run.durations)
    assert not any(s["disc"] for s in run.segments)
    for s in run.segments:
        if s["reason"] in (CutReason.START, CutReason.FRAGMENT):
            assert s["first"][0] is V and s["first"][2]
    if run.segments:
        # Consecutive segments tile the timeline exactly; the last one ends after the media.
        starts = [s["start"] for s in run.segments]
        for a, b, d in zip(starts, starts[1:], run.durations, strict=False):
            assert b - a == d
