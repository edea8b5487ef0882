"""One run of fMP4 segments: samples in, one fragment per part out, appended to the segments.

The packager tells each packet whether it starts a new part or a new segment (it holds the
rules: rtmpd.hls.segmenter and rtmpd.hls.parts); a part is built when the next one starts,
because only then is the last frame's duration known. Each finished part is kept (its bytes,
for LL-HLS clients, which fetch parts from memory) and appended to its segment's file, which is
finished, like a TS one, when the next segment starts. Video decode times are the stream's
milliseconds at 90 kHz; audio decode times count samples (AAC 1024 a frame, MP3 1152 or 576,
AC-3 1536, Opus and FLAC as each frame says)
from the first frame, re-anchored on the stream's timestamps only where audio went missing, so
ms rounding never jitters the audio timeline.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from .fmp4 import Sample, Track, TrackRun, fragment, init_segment
from .muxer import SegmentOutput

VIDEO_TIMESCALE = 90_000


@dataclass(frozen=True, slots=True)
class FinishedPart:
    """A part complete in memory (and appended to its segment's file)."""

    output: SegmentOutput  # the segment it belongs to
    data: bytes
    duration_ms: int
    independent: bool  # starts with a keyframe (always, without video)
    full: bool  # ended for its length (not by the end of its segment or run)


class _Pending:
    """The open part: its samples so far, per track."""

    __slots__ = ("video", "audio", "audio_start", "start", "independent", "last_video",
                 "video_gap")  # fmt: skip

    def __init__(self, start: int, independent: bool) -> None:
        self.video: list[tuple[int, int, bool, bytes]] = []  # (dts ms, cto ms, key, data)
        self.audio: list[list[bytes | int]] = []  # [data, duration in samples]
        self.audio_start = 0  # decode time of the first audio frame, in samples
        self.start = start  # ms, of the first frame of the driving track
        self.independent = independent
        self.last_video = -1
        self.video_gap = 33  # ms, the last frame interval seen (for the very last frame)


class Fmp4Run:
    """Builds the fragments of one run into `SegmentOutput`s (a new one for each segment)."""

    def __init__(
        self,
        video: Track | None,
        audio: Track | None,
        audio_frame_samples: int,
        first: SegmentOutput,
        *,
        keep_parts: bool = True,
    ) -> None:
        if video is None and audio is None:
            raise ValueError("a stream needs at least one track")
        self.video_track = video
        self.audio_track = audio
        self.init = init_segment([t for t in (video, audio) if t is not None])
        self.finished: deque[SegmentOutput] = deque()
        self.parts: deque[FinishedPart] = deque()  # finished, for the owner to take
        self._keep_parts = keep_parts  # False: parts only go into the segment files
        self._frame_samples = audio_frame_samples
        self._output = first
        self._pending: _Pending | None = None
        self._sequence = 0
        self._audio_next: int | None = None  # decode time of the next audio frame, in samples

    def video(self, dts: int, cto: int, keyframe: bool, data: bytes,
              new_part: bool, segment: SegmentOutput | None) -> None:  # fmt: skip
        if self.video_track is None:
            return
        pending = self._pending
        if new_part or segment is not None or pending is None:
            self._close_part(dts, segment)
            pending = self._pending = _Pending(dts, keyframe)
        elif dts > pending.last_video >= 0:
            pending.video_gap = dts - pending.last_video
        if dts <= pending.last_video:
            dts = pending.last_video + 1  # a decode time must increase
        pending.last_video = dts
        pending.video.append((dts, cto, keyframe, data))

    def audio(self, ts: int, data: bytes, new_part: bool, segment: SegmentOutput | None,
              samples: int = 0) -> None:  # fmt: skip
        """An audio frame of `samples` (in the track's timescale; 0: the run's frame size)."""
        track = self.audio_track
        if track is None:
            return
        frame = samples or self._frame_samples
        at = ts * track.timescale // 1000
        expected = self._audio_next
        if expected is None or abs(at - expected) > 2 * frame:
            expected = at  # the first frame, or audio went missing: follow the timestamps
        pending = self._pending
        if self.video_track is None:  # audio cuts the parts
            if new_part or segment is not None or pending is None:
                self._close_part(ts, segment)
                pending = self._pending = _Pending(ts, True)
        elif segment is not None or new_part:  # a cut on audio (its video stalled)
            self._close_part(ts, segment)
            pending = self._pending = _Pending(ts, False)
        elif pending is None:
            return  # nothing before the first video part
        if not pending.audio:
            pending.audio_start = expected
        elif expected > self._audio_next:  # type: ignore[operator]
            # A gap inside the part: the frame before it lasts until this one.
            last = pending.audio[-1]
            last[1] = int(last[1]) + expected - self._audio_next  # type: ignore[operator]
        pending.audio.append([data, frame])
        self._audio_next = expected + frame

    def open_end(self) -> int | None:
        """Where the open part of a video run ends if nothing else comes (ms), else None."""
        pending = self._pending
        if self.video_track is None or pending is None or pending.last_video < 0:
            return None
        return pending.last_video + pending.video_gap

    def close(self, end_ms: int | None = None) -> None:
        """The run ends: its last part and segment are finished."""
        self._close_part(end_ms, None, last=True)
        self._output.finish()
        self.finished.append(self._output)

    # -- internals ---------------------------------------------------------------------------

    def _close_part(self, next_start: int | None, segment: SegmentOutput | None,
                    *, last: bool = False) -> None:  # fmt: skip
        pending = self._pending
        self._pending = None
        if pending is not None and (pending.video or pending.audio):
            runs = []
            duration = 0
            if pending.video:
                runs.append(self._video_run(pending, next_start))
                end = next_start if next_start is not None else (
                    pending.last_video + pending.video_gap)  # fmt: skip
                duration = max(end - pending.start, 1)
            if pending.audio:
                runs.append(self._audio_run(pending))
                if not pending.video:
                    assert self.audio_track is not None
                    samples = sum(int(a[1]) for a in pending.audio)
                    duration = max(round(samples * 1000 / self.audio_track.timescale), 1)
            self._sequence += 1
            data = fragment(self._sequence, runs)
            self._output.write(data)
            if self._keep_parts:
                full = segment is None and not last
                part = FinishedPart(self._output, data, duration, pending.independent, full)
                self.parts.append(part)
        if segment is not None and not last:
            self._output.finish()
            self.finished.append(self._output)
            self._output = segment

    def _video_run(self, pending: _Pending, next_start: int | None) -> TrackRun:
        assert self.video_track is not None
        frames = pending.video
        run = TrackRun(self.video_track, frames[0][0] * 90)
        for i, (dts, cto, key, data) in enumerate(frames):
            if i + 1 < len(frames):
                gap = frames[i + 1][0] - dts
            elif next_start is not None and next_start > dts:
                gap = next_start - dts
            else:
                gap = pending.video_gap
            run.samples.append(Sample(gap * 90, len(data), key, cto * 90))
            run.data.append(data)
        return run

    def _audio_run(self, pending: _Pending) -> TrackRun:
        assert self.audio_track is not None
        run = TrackRun(self.audio_track, pending.audio_start)
        for data, duration in pending.audio:
            assert isinstance(data, bytes) and isinstance(duration, int)
            run.samples.append(Sample(duration, len(data)))
            run.data.append(data)
        return run
