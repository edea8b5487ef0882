"""The LL-HLS playlist on its own: parts, hints, blocking answers, delta updates, and the
validator's LL-HLS rules (which every LL playlist written in the tests goes through)."""

from __future__ import annotations

import pytest
from rtmpd.hls.llhls import LivePlaylist, Part
from rtmpd.hls.parts import PartCutter, decide_part_target
from rtmpd.hls.playlist import PlaylistWindow

from tests.support.m3u8_validator import PlaylistError, PlaylistHistory, validate

T0 = 1_700_000_000.0


class Stream:
    """Feeds a LivePlaylist as the name's state does: 200 ms parts, 2 s segments."""

    def __init__(
        self, *, part_ms: int = 200, parts_per_segment: int = 10, window_s: int = 12
    ) -> None:
        self.window = PlaylistWindow(window_s * 1000, fragment_ms=2000, target_duration=2)
        self.live = LivePlaylist(self.window, decide_part_target(part_ms, part_ms))
        self.part_ms = part_ms
        self.per_segment = parts_per_segment
        self.count = 0
        self.history = PlaylistHistory(playlist_length=float(window_s))

    def part(self) -> None:
        msn = self.window.next_sequence
        index = self.count % self.per_segment
        pdt = T0 + self.count * self.part_ms / 1000 - index * self.part_ms / 1000
        self.count += 1
        part = Part(f"p{self.count}.m4s", self.part_ms, independent=index == 0)
        self.live.part(part, msn, pdt, False, "init.mp4", f"p{self.count + 1}.m4s")
        if index == self.per_segment - 1:
            segment, _ = self.window.add(
                f"{msn}.m4s", self.part_ms * self.per_segment, program_date_time=pdt,
                map_uri="init.mp4",
            )  # fmt: skip
            self.live.listed(segment)
        self.history.check(self.live.render().decode())


def test_parts_hints_and_server_control() -> None:
    stream = Stream()
    for _ in range(55):  # five segments and half of the sixth
        stream.part()
    text = stream.live.render().decode()
    assert "#EXT-X-VERSION:9" in text
    assert "#EXT-X-PART-INF:PART-TARGET=0.205" in text
    assert ("#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=12,"
            "PART-HOLD-BACK=0.615,HOLD-BACK=6") in text  # fmt: skip
    assert text.rstrip().endswith('#EXT-X-PRELOAD-HINT:TYPE=PART,URI="p56.m4s"')
    assert '#EXT-X-PART:DURATION=0.2,URI="p51.m4s",INDEPENDENT=YES' in text
    playlist = validate(text)
    assert len(playlist.open_parts) == 5 and playlist.segments[-1].parts
    assert not playlist.segments[0].parts  # older than three target durations: no parts


def test_blocking_answers() -> None:
    stream = Stream()
    for _ in range(12):  # segment 0 complete, two parts of segment 1
        stream.part()
    live = stream.live
    assert live.last == (1, 1)
    assert live.has(0, None) and live.has(1, 1) and not live.has(1, 2) and not live.has(1, None)
    assert not live.has(2, 0)
    assert not live.too_far(1, 4) and live.too_far(1, 5)  # three parts past the last
    assert not live.too_far(2, 0) and live.too_far(2, 3)
    assert not live.too_far(2, None) and live.too_far(3, None)  # two segments past the last
    live.end()
    assert live.has(9, 9) and not live.too_far(9, 9)  # directives ignored after ENDLIST
    assert "PRELOAD-HINT" not in live.render().decode()


def test_each_version_is_rendered_once() -> None:
    stream = Stream()
    stream.part()
    first = stream.live.render()
    assert stream.live.render() is first
    stream.part()
    assert stream.live.render() is not first


def test_delta_updates_skip_only_what_is_older_than_can_skip_until() -> None:
    stream = Stream(window_s=30)
    for _ in range(165):  # 16 segments and a half
        stream.part()
    full = validate(stream.live.render().decode())
    delta = validate(stream.live.render(skip=True).decode(), skip_requested=True)
    assert delta.skipped > 0
    assert delta.first_sequence == full.segments[delta.skipped].sequence
    remaining = delta.duration + sum(p.duration for p in delta.open_parts)
    assert remaining >= 12  # CAN-SKIP-UNTIL
    with pytest.raises(PlaylistError, match="did not ask"):
        validate(stream.live.render(skip=True).decode())


def test_the_part_cutter_makes_whole_frame_parts() -> None:
    cutter = PartCutter(200)
    starts = [t for t in range(0, 2000, 33) if cutter.frame(t, t == 0)]
    durations = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert set(durations) == {198, 231} or set(durations) <= {198, 199, 231, 232}
    assert decide_part_target(198, 200) == 203 and decide_part_target(231, 200) == 236


def test_audio_standing_in_for_overdue_video_keeps_parts_within_their_length() -> None:
    cutter = PartCutter(200)
    cutter.segment_start(0, True)
    assert not cutter.stand_in(170, 21)  # with one more frame: 191 ms, still within
    assert cutter.stand_in(181, 21)  # 202 ms: a new part at this frame, not independent
    assert (cutter.start, cutter.independent) == (181, False)


@pytest.mark.parametrize(
    ("old", "new", "rule"),
    [
        ('#EXT-X-PART:DURATION=0.2,URI="a.m4s"', '#EXT-X-PART:DURATION=0.3,URI="a.m4s"',
         "longer than PART-TARGET"),
        ('#EXT-X-PART:DURATION=0.2,URI="p2.m4s"', '#EXT-X-PART:DURATION=0.1,URI="p2.m4s"',
         "shorter than 85%"),
        ("PART-HOLD-BACK=0.615", "PART-HOLD-BACK=0.4", "PART-HOLD-BACK"),
        ("CAN-SKIP-UNTIL=12", "CAN-SKIP-UNTIL=6", "CAN-SKIP-UNTIL"),
        ('#EXT-X-PRELOAD-HINT:TYPE=PART,URI="p13.m4s"', "", "hints the next part"),
    ],
)  # fmt: skip
def test_the_validator_catches(old: str, new: str, rule: str) -> None:
    stream = Stream()
    for _ in range(12):
        stream.part()
    text = stream.live.render().decode()
    text = text.replace('URI="p12.m4s"', 'URI="a.m4s"') if "a.m4s" in old else text
    assert old in text or old.replace("a.m4s", "p12.m4s") in text
    broken = text.replace(old, new).replace("\n\n", "\n")
    with pytest.raises(PlaylistError, match=rule):
        validate(broken)
