"""Playlist rendering vectors, the sliding window, and the validator's own rules."""

from __future__ import annotations

import pytest
from rtmpd.hls.playlist import (
    PlaylistWindow,
    Segment,
    decide_target,
    format_date_time,
    format_duration,
    max_segments,
    render,
    rounded_seconds,
)

from tests.support.m3u8_validator import PlaylistError, PlaylistHistory, parse, validate

T0 = 1477168823.630

# The playlist nginx-rtmp wrote in the seed recipe.
NGINX_SEED = """#EXTM3U
#EXT-X-VERSION:3
#EXT-X-MEDIA-SEQUENCE:7614
#EXT-X-TARGETDURATION:6
#EXTINF:5.950,
1477168823630.ts
#EXTINF:5.950,
1477168829573.ts
#EXTINF:5.950,
1477168835527.ts
#EXTINF:5.234,
1477168841472.ts
#EXTINF:5.550,
1477168846713.ts
#EXTINF:5.450,
1477168852242.ts
"""


def test_render_vector() -> None:
    segments = [
        Segment("100.ts", 7, 5950, False, T0),
        Segment("101.ts", 8, 4001, True, T0 + 60),
    ]
    text = render(segments, media_sequence=7, target_duration=6, discontinuity_sequence=2,
                  endlist=True)  # fmt: skip
    assert text == (
        "#EXTM3U\n"
        "#EXT-X-VERSION:3\n"
        "#EXT-X-TARGETDURATION:6\n"
        "#EXT-X-MEDIA-SEQUENCE:7\n"
        "#EXT-X-DISCONTINUITY-SEQUENCE:2\n"
        "#EXT-X-PROGRAM-DATE-TIME:2016-10-22T20:40:23.630Z\n"
        "#EXTINF:5.950,\n"
        "100.ts\n"
        "#EXT-X-DISCONTINUITY\n"
        "#EXT-X-PROGRAM-DATE-TIME:2016-10-22T20:41:23.630Z\n"
        "#EXTINF:4.001,\n"
        "101.ts\n"
        "#EXT-X-ENDLIST\n"
    )


def test_render_matches_nginx_rtmp_output_for_the_same_segments() -> None:
    durations = [5950, 5950, 5950, 5234, 5550, 5450]
    names = [line for line in NGINX_SEED.splitlines() if line.endswith(".ts")]
    segments = [
        Segment(n, 7614 + i, d) for i, (n, d) in enumerate(zip(names, durations, strict=True))
    ]
    ours = render(segments, media_sequence=7614, target_duration=6)
    # Same tags and values; only the order of the two header tags differs.
    assert sorted(ours.splitlines()) == sorted(NGINX_SEED.splitlines())
    assert parse(ours).uris == names


@pytest.mark.parametrize(
    ("ms", "text", "target"),
    [(5950, "5.950", 6), (5000, "5.000", 5), (5001, "5.001", 5), (1, "0.001", 1),
     (12345, "12.345", 12), (999, "0.999", 1), (6499, "6.499", 6), (6500, "6.500", 7)],
)  # fmt: skip
def test_durations(ms: int, text: str, target: int) -> None:
    """RFC 8216 4.3.3.1 compares the EXTINF rounded to the nearest integer with the target."""
    assert format_duration(ms) == text
    assert rounded_seconds(ms) == target


def test_the_target_comes_from_the_first_segment_and_the_fragment() -> None:
    assert decide_target(6000, 5000) == 6  # 2 s keyframes, 5 s fragment: 6 s segments
    assert decide_target(8333, 5000) == 8  # OBS's 250 frames at 30 fps
    assert decide_target(1200, 5000) == 5  # a short first segment: still the fragment
    assert decide_target(4999, 5000) == 5


@pytest.mark.parametrize(
    ("unix", "text"),
    [(T0, "2016-10-22T20:40:23.630Z"), (0.0, "1970-01-01T00:00:00.000Z"),
     (1700000000.9996, "2023-11-14T22:13:21.000Z")],
)  # fmt: skip
def test_date_times(unix: float, text: str) -> None:
    assert format_date_time(unix) == text


def fill(
    window: PlaylistWindow, durations: list[int], disc: frozenset[int] = frozenset()
) -> list[list[str]]:
    removed_all = []
    t = T0
    if window.target_duration is None:
        window.target_duration = decide_target(durations[0], durations[0])
    for i, d in enumerate(durations):
        _, removed = window.add(f"{i}.ts", d, discontinuity=i in disc, program_date_time=t)
        t += d / 1000
        removed_all.append([s.uri for s in removed])
    return removed_all


def test_window_keeps_playlist_length_and_media_sequence_advances() -> None:
    window = PlaylistWindow(30_000, fragment_ms=5000)
    removed = fill(window, [5000] * 12)
    assert [s.uri for s in window.segments] == [f"{i}.ts" for i in range(6, 12)]
    assert window.media_sequence == 6 and window.next_sequence == 12
    assert removed[6] == ["0.ts"] and removed[5] == []
    validate(window.render(), playlist_length=30)


def test_window_never_below_three_target_durations() -> None:
    window = PlaylistWindow(6000, fragment_ms=1000)  # shorter than 3 x 5 s
    fill(window, [5000] * 8)
    assert window.duration_ms >= 15_000
    assert len(window.segments) == 3


def test_window_is_bounded_by_count_as_well() -> None:
    """Segments of a millisecond (every timestamp 0, a jump every frame) never cover the
    playlist length: the count bound lets them go, oldest first, the counters running on."""
    window = PlaylistWindow(30_000, fragment_ms=5000, target_duration=5)
    most = max_segments(30_000, 5000)
    assert most == 16
    removed = fill(window, [1] * 1000)
    assert len(window.segments) == most
    assert [s.uri for s in window.segments] == [f"{i}.ts" for i in range(1000 - most, 1000)]
    assert [uri for step in removed for uri in step] == [f"{i}.ts" for i in range(1000 - most)]
    assert window.media_sequence == 1000 - most
    # An honest window of 5 s segments stays far from it.
    honest = PlaylistWindow(30_000, fragment_ms=5000)
    fill(honest, [5000] * 100)
    assert len(honest.segments) == 6


def test_the_target_is_decided_before_listing_and_then_kept() -> None:
    window = PlaylistWindow(10_000, fragment_ms=1000)
    with pytest.raises(ValueError, match="target"):
        window.add("0.ts", 2000)
    window.target_duration = decide_target(2000, 2000)
    history = PlaylistHistory(playlist_length=10)
    t = T0
    for i, d in enumerate([2000, 2400, 1600] + [2000] * 20):
        window.add(f"{i}.ts", d, program_date_time=t)
        t += d / 1000
        history.check(window.render())
    assert {v.target_duration for v in history.versions} == {2}


def test_a_new_life_of_the_name_decides_its_target_anew() -> None:
    # A fuzzed 51 s segment's playlist:
    window = PlaylistWindow(10_000, fragment_ms=1000, target_duration=51)
    fill(window, [51_000])
    after = window.successor()
    assert after.target_duration is None and after.next_sequence == window.next_sequence
    restored = PlaylistWindow.restore(window.render(), 10_000, 1000)
    assert restored.target_duration == 51  # the same life, resumed from disk: kept


def test_discontinuity_sequence_counts_tags_that_left() -> None:
    window = PlaylistWindow(10_000, fragment_ms=1000, target_duration=4)
    history = PlaylistHistory(playlist_length=10)
    t = T0
    for i in range(12):
        window.add(f"{i}.ts", 4000, discontinuity=i in (2, 3, 9), program_date_time=t)
        t += 4
        text = window.render()
        history.check(text)
        if window.media_sequence <= 2:
            assert "DISCONTINUITY-SEQUENCE" not in text
    assert window.discontinuity_sequence == 2
    assert "#EXT-X-DISCONTINUITY-SEQUENCE:2\n" in window.render()


def test_endlist_is_cleared_by_a_new_segment() -> None:
    window = PlaylistWindow(30_000, fragment_ms=1000)
    fill(window, [4000, 4000])
    window.endlist = True
    assert window.render().endswith("#EXT-X-ENDLIST\n")
    window.add("9.ts", 4000, discontinuity=True, program_date_time=T0 + 100)
    assert "ENDLIST" not in window.render()


def test_window_refuses_empty_segments() -> None:
    with pytest.raises(ValueError):
        PlaylistWindow(30_000, fragment_ms=1000, target_duration=4).add("x.ts", 0)


# -- the validator catches what it should ---------------------------------------------------

GOOD = render(
    [Segment("0.ts", 0, 4000, False, T0), Segment("1.ts", 1, 4000, False, T0 + 4)],
    media_sequence=0,
    target_duration=4,
)


def test_validator_accepts_a_good_playlist() -> None:
    playlist = validate(GOOD, playlist_length=30)
    assert playlist.uris == ["0.ts", "1.ts"] and playlist.duration == 8.0


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("#EXTM3U\n", "#EXTM3\n"),
        ("#EXTINF:4.000,", "#EXTINF:4.00,"),
        ("#EXTINF:4.000,", "#EXTINF:4.000"),
        ("#EXT-X-TARGETDURATION:4", "#EXT-X-TARGETDURATION:3"),
        ("#EXT-X-VERSION:3", "#EXT-X-VERSION:4"),
        ("1.ts", "0.ts"),
        ("1.ts", "http://example.com/1.ts"),
        ("23.630Z", "23.63Z"),
        ("20:40:27.630Z", "20:40:29.630Z"),  # not contiguous with the segment before
        ("#EXT-X-MEDIA-SEQUENCE:0\n", ""),
        ("1.ts\n", "1.ts\n#EXT-X-FOO\n"),
        ("#EXT-X-MEDIA-SEQUENCE:0\n", "#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-DISCONTINUITY-SEQUENCE:0\n"),
    ],
)
def test_validator_rejects(old: str, new: str) -> None:
    assert old in GOOD
    with pytest.raises(PlaylistError):
        validate(GOOD.replace(old, new, 1))


def test_validator_rejects_an_oversized_window() -> None:
    window = PlaylistWindow(60_000, fragment_ms=1000)
    fill(window, [4000] * 12)
    with pytest.raises(PlaylistError, match="window"):
        validate(window.render(), playlist_length=30)


def versions(*lists: tuple[int, list[tuple[str, int, bool]]]) -> list[str]:
    texts = []
    for first, items in lists:
        segments = []
        t = T0 + first * 4
        for i, (uri, ms, disc) in enumerate(items):
            segments.append(Segment(uri, first + i, ms, disc, t))
            t += ms / 1000
        target = max(rounded_seconds(ms) for _, ms, _ in items)
        dseq = 1 if first >= 2 else 0  # segment 1 carries a discontinuity tag
        texts.append(render(segments, media_sequence=first, target_duration=target,
                            discontinuity_sequence=dseq))  # fmt: skip
    return texts


def check_all(texts: list[str]) -> None:
    history = PlaylistHistory()
    for text in texts:
        history.check(text)


S = [(f"{i}.ts", 4000, i == 1) for i in range(10)]


def test_history_accepts_a_sliding_window() -> None:
    check_all(versions((0, S[0:4]), (1, S[1:5]), (2, S[2:6])))


@pytest.mark.parametrize(
    "bad",
    [
        [(2, S[2:6]), (1, S[1:5])],  # media sequence backwards
        [(0, S[0:4]), (1, [("x.ts", 4000, True)] + S[2:5])],  # sequence 1 changed meaning
        [(0, S[0:5]), (1, S[1:3])],  # segments vanished from the end
        [(0, S[0:4]), (3, S[3:5])],  # window below three target durations
    ],
)
def test_history_rejects(bad: list[tuple[int, list[tuple[str, int, bool]]]]) -> None:
    with pytest.raises(PlaylistError):
        check_all(versions(*bad))


def test_history_rejects_a_changed_target_duration() -> None:
    long = [("0.ts", 9000, False)] + S[1:4]
    for texts in (versions((0, long), (1, S[1:5])), versions((1, S[1:5]), (1, long[:1] + S[2:5]))):
        with pytest.raises(PlaylistError, match="TARGETDURATION"):
            check_all(texts)
