"""How far a name's media runs ahead of real time ([hls] max_speed, speed_burst).

A bucket of media seconds: each finished segment pours its duration in, the wall clock drains
`max_speed` seconds per second (never below empty); past `speed_burst` the publish is a
violation. An honest encoder sends in real time, so its bucket stays about empty; when it
catches up (a stalled network delivering at once, an encoder that reconnects and sends its
buffer) the burst takes it. A publisher sending faster than real time (FFmpeg without -re, a
replay pushed as fast as it goes) fills it: one stream kept 6.6 GB in 20 s, since every bound
in media time (the playlist window, cleanup) then lets more files through per wall second.

Pure: the caller passes the time in. One bucket per public name, so a reconnect does not
start a new burst (the bucket drains while the name is quiet).
"""

from __future__ import annotations


class Pace:
    """Media seconds ahead of `max_speed` x real time, for one name."""

    __slots__ = ("max_speed", "burst", "level", "_last")

    def __init__(self, max_speed: float, burst: float, now: float) -> None:
        self.max_speed = max_speed
        self.burst = burst  # seconds of media
        self.level = 0.0  # seconds of media ahead
        self._last = now

    def media(self, duration_ms: int, now: float) -> bool:
        """A segment of `duration_ms` finished at wall time `now`; False once the media is
        more than the burst ahead."""
        drained = self.max_speed * max(now - self._last, 0.0)
        self._last = max(now, self._last)
        self.level = max(self.level + duration_ms / 1000 - drained, 0.0)
        return self.level <= self.burst

    def describe(self) -> str:
        return (
            f"stream ended: its media arrives faster than real time ({self.level:.0f} s of it "
            f"ahead, more than the {self.burst:g} s allowed at over {self.max_speed:g} times "
            f"real time: [hls] speed_burst, max_speed); send it in real time (FFmpeg: -re)"
        )
