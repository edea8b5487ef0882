"""A publish's health from its frames, bytes and segments: keyframe intervals (not across a
timestamp jump), the ten-minute ring, and the warnings a streamer can act on."""

from __future__ import annotations

from rtmpd.health import HISTORY_SECONDS, PublishHealth


def feed(health: PublishHealth, seconds: int, fps: int, gop: int, start_ms: int = 0) -> None:
    for i in range(seconds * fps):
        health.video(start_ms + i * 1000 // fps, i % gop == 0)


def test_keyframe_intervals_and_the_obs_default() -> None:
    health = PublishHealth(5.0, now=0.0)
    feed(health, 20, 30, 250)  # OBS's default: a keyframe every 250 frames
    assert health.keyframe_interval is not None and round(health.keyframe_interval, 1) == 8.3
    assert health.gop_too_long(health.keyframe_interval)
    assert health.warnings() == ["keyframe interval 8.3 s: set 2 s in OBS for 5 s segments"]
    good = PublishHealth(5.0, now=0.0)
    feed(good, 10, 30, 60)
    assert good.keyframe_interval == 2.0 and good.warnings() == []


def test_no_interval_is_measured_across_a_timestamp_jump() -> None:
    health = PublishHealth(1.0, now=0.0)
    feed(health, 2, 25, 25)
    feed(health, 2, 25, 25, start_ms=62_000)  # the stream's clock leapt a minute
    assert health.keyframe_interval == 1.0
    feed(health, 2, 25, 25, start_ms=1_000)  # and back
    assert health.keyframe_interval == 1.0 and health.warnings() == []


def test_samples_bitrate_spikes_and_frame_drops() -> None:
    health = PublishHealth(5.0, now=0.0)
    total = 0
    for second in range(1, 40):
        rate = 12_000_000 if second == 30 else 4_000_000  # bits per second
        total += rate // 8
        fps = 12 if second == 35 else 30
        for _ in range(fps):
            health.video(second * 1000, False)
        sample = health.sample(float(second), total)
    assert sample.kbps == 4000.0 and sample.fps == 30.0
    assert health.warnings() == [
        "bitrate spikes to 12 Mb/s (typically 4 Mb/s): set Rate Control to CBR in OBS",
        "frame rate drops to 12 fps (usually 30): the encoder or the upload cannot keep up; "
        "lower the resolution or the bitrate",
    ]
    for second in range(40, 40 + HISTORY_SECONDS + 5):
        health.sample(float(second), total)
    assert len(health.samples) == HISTORY_SECONDS  # ten minutes, then the oldest go
    health.segment(5.2, 0.3)
    assert health.sample(1000.0, total).segment_lag == 0.3 and health.segment_duration == 5.2
