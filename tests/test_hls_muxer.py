"""The per-segment MPEG-TS muxer on its own."""

from __future__ import annotations

from pathlib import Path

import pytest
from rtmpd.hls.muxer import SegmentMuxer, audio_template, video_template

from tests.support.hls import decode_segment, media, shift

EVENTS = media(seconds=4)
AVCC = next(e[2] for e in EVENTS if e[0] == "video_config")
ASC = next(e[2] for e in EVENTS if e[0] == "audio_config")


def test_templates_carry_the_sequence_headers() -> None:
    assert video_template(AVCC).stream.codec_context.extradata == AVCC
    assert audio_template(ASC).stream.codec_context.extradata == ASC


def test_writes_as_it_goes_even_when_a_declared_track_is_silent(tmp_path: Path) -> None:
    path = tmp_path / "a.ts"
    muxer = SegmentMuxer(path, video_template(AVCC), audio_template(ASC))
    video = [e for e in EVENTS if e[0] == "video"]
    payload = 0
    for event in video + shift(video, 4000):  # 8 s of video, no audio at all
        muxer.video(event[1], event[1] + event[2], event[3], event[4])
        payload += len(event[4])
    on_disk = path.stat().st_size
    assert on_disk > payload // 2  # not held back in FFmpeg's interleaving queue
    assert muxer.close() == path.stat().st_size > payload
    decoded = decode_segment(path)
    assert decoded.errors == [] and decoded.video_frames == 2 * len(video)


def test_repeated_and_late_timestamps_are_nudged(tmp_path: Path) -> None:
    path = tmp_path / "a.ts"
    muxer = SegmentMuxer(path, video_template(AVCC), audio_template(ASC))
    video = [e for e in EVENTS if e[0] == "video"][:25]
    audio = [e for e in EVENTS if e[0] == "audio"][:40]
    for event in video:
        muxer.video(event[1], event[1] + event[2], event[3], event[4])
    for event in audio:
        muxer.audio(500, event[2])  # every frame stamped the same
    muxer.close()
    decoded = decode_segment(path)
    assert decoded.errors == [] and decoded.video_frames == 25 and decoded.audio_frames == 40
    assert decoded.audio_pts == sorted(set(decoded.audio_pts))


def test_a_track_missing_from_the_segment_is_ignored(tmp_path: Path) -> None:
    muxer = SegmentMuxer(tmp_path / "a.ts", None, audio_template(ASC))
    muxer.video(0, 0, True, b"\x00\x00\x00\x01\x65")  # the track appeared after the start
    for event in [e for e in EVENTS if e[0] == "audio"][:10]:
        muxer.audio(event[1], event[2])
    muxer.close()
    assert decode_segment(tmp_path / "a.ts").video_frames == 0


def test_open_errors_surface_at_construction(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        SegmentMuxer(tmp_path / "missing" / "a.ts", video_template(AVCC), None)
    with pytest.raises(ValueError):
        SegmentMuxer(tmp_path / "a.ts", None, None)


def test_abort_removes_the_partial_file(tmp_path: Path) -> None:
    path = tmp_path / "a.ts"
    muxer = SegmentMuxer(path, video_template(AVCC), audio_template(ASC))
    event = next(e for e in EVENTS if e[0] == "video")
    muxer.video(event[1], event[1], True, event[4])
    muxer.abort()
    assert not path.exists()
