"""fMP4 boxes and runs on their own: what FFmpeg decodes from them."""

from __future__ import annotations

from pathlib import Path

import av
import av.logging
from rtmpd.hls.codecs import parse_asc, parse_avcc
from rtmpd.hls.fmp4 import Track
from rtmpd.hls.fmp4run import Fmp4Run
from rtmpd.hls.muxer import SegmentOutput

from tests.support.hls import media

EVENTS = media(seconds=3.0, fps=30, gop=30)
AVCC = bytes(next(e[2] for e in EVENTS if e[0] == "video_config"))
ASC = bytes(next(e[2] for e in EVENTS if e[0] == "audio_config"))


def tracks() -> tuple[Track, Track]:
    avc, aac = parse_avcc(AVCC), parse_asc(ASC)
    assert avc.width and avc.height
    video = Track(1, "avc1", 90_000, AVCC, avc.width, avc.height)
    return video, Track(2, "mp4a", aac.sample_rate, ASC, channels=aac.channels or 2)


def decode(path: Path) -> tuple[int, int, list[str]]:
    level = av.logging.get_level()
    av.logging.set_level(av.logging.WARNING)
    video = audio = 0
    try:
        with av.logging.Capture(local=False) as logs, av.open(str(path)) as container:
            for frame in container.decode(*container.streams):
                video += isinstance(frame, av.VideoFrame)
                audio += isinstance(frame, av.AudioFrame)
    finally:
        av.logging.set_level(level)
    return video, audio, [text for level, _, text in logs if level <= av.logging.WARNING]


def test_a_run_makes_parts_and_segments_that_decode(tmp_path: Path) -> None:
    """200 ms parts (every sixth frame at 30 fps), a segment per second: each segment is its
    parts back to back, and the init segment plus any segment decodes with no warning."""
    video, audio = tracks()
    outputs = [SegmentOutput(tmp_path / "s0.m4s", lambda exc: None)]
    run = Fmp4Run(video, audio, 1024, outputs[0])
    frames = 0
    for event in EVENTS:
        if event[0] == "video":
            _, ts, cto, key, data = event
            segment = None
            if key and ts > 100:
                segment = SegmentOutput(tmp_path / f"s{len(outputs)}.m4s", lambda exc: None)
                outputs.append(segment)
            new_part = frames % 6 == 0
            run.video(ts, cto, key, bytes(data), new_part, segment)
            frames += 1
        elif event[0] == "audio":
            run.audio(event[1], bytes(event[2]), False, None)
    run.close()
    assert list(run.finished) == outputs and len(outputs) == 3
    parts = list(run.parts)
    for output in outputs:
        mine = b"".join(p.data for p in parts if p.output is output)
        assert output.temp.read_bytes() == mine
        assert parts[[p.output for p in parts].index(output)].independent
    (tmp_path / "init.mp4").write_bytes(run.init)
    total_video = total_audio = 0
    for output in outputs:
        whole = tmp_path / f"{output.temp.stem}.mp4"
        whole.write_bytes(run.init + output.temp.read_bytes())
        v, a, warnings = decode(whole)
        assert warnings == [] and v > 0 and a > 0
        total_video += v
        total_audio += a
    assert total_video == sum(1 for e in EVENTS if e[0] == "video")
    first_video = next(i for i, e in enumerate(EVENTS) if e[0] == "video")
    assert total_audio == sum(1 for e in EVENTS[first_video:] if e[0] == "audio")
    assert all(abs(p.duration_ms - 200) <= 2 for p in parts[:4])
