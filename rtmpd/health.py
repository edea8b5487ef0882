"""Stream health for the admin dashboard: what one publish's media says about its encoder.

Fed from numbers the server has anyway: the Video events' keyframe flags and timestamps
(rtmpd.publish, on the hot path: a counter and a subtraction per frame), the bytes the
connection received, and the packager's segment events (duration, lag). Sampled once per
second by the composition root's tick into a ring of the last ten minutes; warnings say what
a streamer can change in their encoder.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass

from rtmpd.web.admin import HealthSample

#: Seconds of samples kept (one per second): the dashboard's ten minutes.
HISTORY_SECONDS = 600
#: A keyframe interval this much longer than the fragment makes segments longer than it.
_SLACK = 0.1
#: Seconds of samples the bitrate and frame-rate warnings look at.
_RECENT = 60
#: A gap this long (ms) between two video frames, or a step back, is a new timeline (the
#: packager starts one too): no keyframe interval is measured across it.
_JUMP_MS = 10_000


@dataclass(slots=True)
class _Counts:
    frames: int = 0
    bytes_total: int = 0
    at: float = 0.0


class PublishHealth:
    """The health of one publish; `video()` per video frame, `segment()` per listed segment,
    `sample()` once per second."""

    __slots__ = ("fragment", "samples", "keyframe_interval", "segment_lag", "segment_duration",
                 "_frames", "_last_keyframe", "_last_frame", "_last", "_started")  # fmt: skip

    def __init__(self, fragment: float, now: float) -> None:
        self.fragment = fragment
        self.samples: deque[HealthSample] = deque(maxlen=HISTORY_SECONDS)
        #: Seconds between the last two keyframes (media time); None before the second one.
        self.keyframe_interval: float | None = None
        self.segment_lag: float | None = None
        self.segment_duration: float | None = None
        self._frames = 0
        self._last_keyframe: int | None = None  # its timestamp, ms
        self._last_frame: int | None = None
        self._last = _Counts(at=now)
        self._started = now

    def video(self, timestamp: int, keyframe: bool) -> float | None:
        """One video frame; on a keyframe after the first, the interval it closes (s)."""
        self._frames += 1
        previous, self._last_frame = self._last_frame, timestamp
        if previous is not None and not 0 <= timestamp - previous <= _JUMP_MS:
            self._last_keyframe = None  # a new timeline
        if not keyframe:
            return None
        last, self._last_keyframe = self._last_keyframe, timestamp
        if last is None or timestamp <= last:
            return None
        interval = (timestamp - last) / 1000
        self.keyframe_interval = interval
        return interval

    def gop_too_long(self, interval: float) -> bool:
        """Whether keyframes this far apart make segments longer than the fragment."""
        return interval > self.fragment + _SLACK

    def segment(self, duration: float, lag: float) -> None:
        self.segment_duration = duration
        self.segment_lag = max(lag, 0.0)

    def sample(self, now: float, bytes_total: int) -> HealthSample:
        """Close the second that ended at `now`: bitrate and frame rate since the last one."""
        last = self._last
        elapsed = now - last.at
        if elapsed <= 0:
            elapsed = 1.0
        kbps = max(bytes_total - last.bytes_total, 0) * 8 / 1000 / elapsed
        fps = (self._frames - last.frames) / elapsed
        self._last = _Counts(self._frames, bytes_total, now)
        sample = HealthSample(
            t=now,
            kbps=round(kbps, 1),
            fps=round(fps, 2),
            keyframe_interval=self.keyframe_interval,
            segment_lag=None if self.segment_lag is None else round(self.segment_lag, 3),
        )
        self.samples.append(sample)
        return sample

    def latest(self) -> HealthSample | None:
        return self.samples[-1] if self.samples else None

    def warnings(self) -> list[str]:
        """What the streamer can fix, in their words (OBS's settings), worst first."""
        found: list[str] = []
        interval = self.keyframe_interval
        if interval is not None and self.gop_too_long(interval):
            advice = 2.0 if self.fragment >= 2 else self.fragment
            found.append(
                f"keyframe interval {interval:.1f} s: set {advice:g} s in OBS "
                f"for {self.fragment:g} s segments"
            )
        recent = list(self.samples)[-_RECENT:][1:]  # the first second holds the connect burst
        if len(recent) >= 10:
            rates = [s.kbps for s in recent]
            typical, peak = statistics.median(rates), max(rates)
            if peak > 2 * typical and peak - typical > 1000:
                found.append(
                    f"bitrate spikes to {_mbps(peak)} Mb/s (typically {_mbps(typical)} Mb/s): "
                    "set Rate Control to CBR in OBS"
                )
            frames = [s.fps for s in recent]
            usual, low = statistics.median(frames), min(frames)
            if usual >= 10 and low < 0.75 * usual:
                found.append(
                    f"frame rate drops to {low:.0f} fps (usually {usual:.0f}): the encoder or "
                    "the upload cannot keep up; lower the resolution or the bitrate"
                )
        return found


def _mbps(kbps: float) -> str:
    return f"{kbps / 1000:.1f}".removesuffix(".0")
