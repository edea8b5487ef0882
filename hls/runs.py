"""How a publish's segments get written and listed, one run of segments at a time: a PyAV
MPEG-TS muxer split into files (rtmpd.hls.muxer) or an fMP4 run of fragments
(rtmpd.hls.fmp4run, cut into LL-HLS parts by rtmpd.hls.parts).

Apart from the packager (rtmpd.hls.packager), which decides where segments and runs start
and end: this holds the running muxer and the segments cut but not yet all written
(`pending`), tells the owner each finished part with where its segment stands, and lists each
segment whose bytes are all written, in the order they were cut: renamed into place and told
to the owner, or, lost to the disk, a discontinuity at the next one (fMP4: EXT-X-GAP), with
the outage logged once.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable

import av

from .fmp4run import Fmp4Run
from .muxer import SegmentOutput, TsMuxer
from .owner import FinishedPart, FinishedSegment, OpenSegment, PackagerOwner
from .parts import JITTER_MS, PartCutter
from .storage import FILE_MODE
from .tracks import AudioSetup, VideoSetup, fmp4_run

MEDIA_ERRORS = (ValueError, av.FFmpegError)


class Runs:
    """The running muxer of one publish (at most one of `ts` and `fmp4`) and its pending
    segments. `warn(key, message, *args)` logs an input problem once per publish; `listed()`
    is called after each segment the owner lists."""

    __slots__ = ("ts", "fmp4", "map_uri", "pending", "_finished", "_cutter", "_owner", "_name",
                 "_log", "_low_latency", "_warn", "_listed", "_vlast", "_vstep", "_alast",
                 "_astep", "_lost_serial", "_gap", "_stand_in")  # fmt: skip

    def __init__(
        self,
        name: str,
        owner: PackagerOwner,
        part_ms: int,
        low_latency: bool,
        log: logging.Logger,
        warn: Callable[..., None],
        listed: Callable[[], None],
        *,
        stand_in: bool = False,
    ) -> None:
        self.ts: TsMuxer | None = None
        self.fmp4: Fmp4Run | None = None
        self.map_uri: str | None = None  # the fMP4 run's init segment
        self.pending: deque[OpenSegment] = deque()  # cut, their bytes not all written yet
        self._finished: deque[SegmentOutput] = deque()  # the running muxer's finished outputs
        self._cutter = PartCutter(part_ms)
        self._vlast: int | None = None  # the fMP4 run's newest video frame
        self._vstep = part_ms  # and the interval before it
        self._alast: int | None = None  # the same for audio
        self._astep = 0
        self._owner = owner
        self._name = name
        self._log = log
        self._low_latency = low_latency
        self._warn = warn
        self._listed = listed
        #: A rendition's: its audio cuts LL-HLS parts while its video is overdue.
        self._stand_in = stand_in
        self._lost_serial = -1  # serial of the newest segment lost to a disk error, or -1
        self._gap = False  # a segment was lost: the next listed one starts a discontinuity

    @property
    def running(self) -> bool:
        return self.ts is not None or self.fmp4 is not None

    def open_end(self) -> int | None:
        """Where the fMP4 run's last part ends, if one is running."""
        return self.fmp4.open_end() if self.fmp4 is not None else None

    def start(self, seg: OpenSegment, video: VideoSetup | None, audio: AudioSetup | None) -> None:
        """A new run, starting with `seg`: fMP4 for an .m4s segment, else MPEG-TS."""
        if seg.path.suffix == ".m4s":
            self._start_fmp4(seg, video, audio)
            return
        try:
            vtemplate = video.template if video is not None else None
            atemplate = audio.template if audio is not None else None
            self.ts = TsMuxer(vtemplate, atemplate, seg.output)
        except MEDIA_ERRORS as exc:
            self._lost(seg, exc)
            return
        self._finished = self.ts.splitter.finished

    def video(self, timestamp: int, offset: int, keyframe: bool, setup: VideoSetup, data: bytes,
              cut: SegmentOutput | None) -> bool:  # fmt: skip
        """Write a video frame (`cut`: the new segment's output, when it starts one within
        the run); False when no muxer is running."""
        run = self.fmp4
        if run is not None:
            if cut is not None:
                self._cutter.segment_start(timestamp, keyframe)
                new_part = False
            else:
                new_part = self._cutter.frame(timestamp, keyframe)
            last = self._vlast
            if last is not None and timestamp > last:
                self._vstep = timestamp - last
            self._vlast = timestamp
            run.video(timestamp, offset, keyframe, setup.sample(data), new_part, cut)
            self._after_fmp4_write(run)
            return True
        return self._ts_write(True, timestamp, timestamp + offset, keyframe, data, cut)

    def audio(self, timestamp: int, setup: AudioSetup, data: bytes,
              cut: SegmentOutput | None) -> bool:  # fmt: skip
        """Write an audio frame, as `video` does."""
        run = self.fmp4
        if run is not None:
            drives = run.video_track is None  # audio cuts the parts of audio-only streams
            last = self._alast
            if last is not None and timestamp > last:
                self._astep = timestamp - last
            self._alast = timestamp
            if cut is not None:
                self._cutter.segment_start(timestamp, drives)
                new_part = False
            elif drives:
                new_part = self._cutter.frame(timestamp, True)
            elif self._stand_in and self._video_overdue(timestamp):  # a rendition's, stalled
                new_part = self._cutter.stand_in(timestamp, self._astep)
            else:
                new_part = False
            run.audio(timestamp, data, new_part, cut, setup.samples(data))
            self._after_fmp4_write(run)
            return True
        return self._ts_write(False, timestamp, timestamp, False, data, cut)

    def end(self, end_ms: int | None = None) -> None:
        """End the running muxer; `end_ms`, when known, is where the last segment ends."""
        run = self.fmp4
        if run is not None:
            self.fmp4 = None
            run.close(end_ms)
            if run.parts:
                self._tell_parts(run)
            self.collect()
            return
        muxer = self.ts
        if muxer is None:
            return
        self.ts = None
        try:
            muxer.close()
        except MEDIA_ERRORS as exc:
            self._warn("close", "cannot finish muxing (%s)", exc)
        self.collect()

    def collect(self) -> None:
        """List the segments whose bytes are all written, in order."""
        finished, pending = self._finished, self.pending
        while pending:
            seg = pending[0]
            if not seg.gap:  # a gap has no bytes: it is done once those before it are
                if not finished:
                    return
                output = finished.popleft()
                assert seg.output is output, "outputs finish in the order they were cut"
            pending.popleft()
            self._list(seg)

    def disk_error(self, exc: OSError, serial: int) -> None:
        """Logged once per outage: from the first lost segment to one written after it."""
        outage = self._lost_serial >= 0
        self._lost_serial = max(self._lost_serial, serial)
        if not outage:
            self._log.error(
                "HLS %s: cannot write segments (%s); lost until it works", self._name, exc
            )

    # -- internals --------------------------------------------------------------------------

    def _list(self, seg: OpenSegment) -> None:
        """List a segment whose bytes are all written (or note it lost)."""
        if seg.gap:
            self._list_gap(seg)
            return
        output = seg.output
        lost = output.error is not None or not output.size
        if seg.map_uri is not None and (output.error is not None or seg.parts) and lost:
            self._list_gap(seg)  # fMP4: listed, so the numbering of its parts stays true
            return
        if output.error is not None:
            self._gap = True
            return
        if not output.size:
            return  # cut at a packet never written: nothing was in it
        try:
            os.chmod(output.temp, FILE_MODE)
            os.replace(output.temp, seg.path)
        except OSError as exc:
            self.disk_error(exc, seg.serial)
            output.discard()
            self._gap = True
            return
        discontinuity = seg.new_timeline or self._gap
        self._gap = False
        if 0 <= self._lost_serial < seg.serial:  # opened after the outage began: it is over
            self._lost_serial = -1
            self._log.info("HLS %s: writing segments again", self._name)
        self._owner.segment_finished(
            FinishedSegment(
                seg.path,
                seg.duration_ms,
                output.size,
                discontinuity,
                seg.pdt,
                seg.closed_at,
                seg.opened_at,
                seg.map_uri,
            )
        )
        self._listed()

    def _list_gap(self, seg: OpenSegment) -> None:
        """A segment with no media: a rendition's gap, or an fMP4 segment lost to a disk error
        (listed as EXT-X-GAP, so the media sequence numbers its LL-HLS parts were announced
        under stay true)."""
        self._owner.segment_finished(
            FinishedSegment(
                seg.path,
                seg.duration_ms,
                0,
                seg.new_timeline,
                seg.pdt,
                seg.closed_at,
                seg.opened_at,
                seg.map_uri,
                gap=True,
            )  # fmt: skip
        )
        self._listed()

    def _start_fmp4(self, seg: OpenSegment, video: VideoSetup | None,
                    audio: AudioSetup | None) -> None:  # fmt: skip
        self._cutter.reset()
        self._vlast = None
        try:
            run = fmp4_run(video, audio, seg.output, keep_parts=self._low_latency)
        except ValueError as exc:
            self._lost(seg, exc)
            return
        self.fmp4 = run
        self._finished = run.finished
        self.map_uri = seg.map_uri = self._owner.init_written(
            seg.path.with_suffix(".mp4"), run.init
        )

    def _video_overdue(self, timestamp: int) -> bool:
        """No video frame where the next one was due: audio goes on cutting LL-HLS parts (not
        independent ones), so that none outgrows PART-TARGET."""
        last = self._vlast
        return last is None or timestamp > last + self._vstep + JITTER_MS

    def _lost(self, seg: OpenSegment, exc: Exception) -> None:
        """No muxer could be started for `seg`: it is listed as lost."""
        self._warn("open", "cannot start muxing (%s); media is lost", exc)
        self.ts = None
        self._finished = deque([seg.output])
        seg.output.error = OSError(str(exc))
        self.collect()

    def _ts_write(self, video: bool, dts: int, pts: int, keyframe: bool, data: bytes,
                  cut: SegmentOutput | None) -> bool:  # fmt: skip
        muxer = self.ts
        if muxer is None:
            return False
        try:
            if video:
                muxer.video(dts, pts, keyframe, data, cut)
            else:
                muxer.audio(dts, data, cut)
        except MEDIA_ERRORS as exc:
            self._warn("packet", "dropping packets FFmpeg rejects (%s)", exc)
        if self._finished:
            self.collect()
        return True

    def _after_fmp4_write(self, run: Fmp4Run) -> None:
        if run.parts:
            self._tell_parts(run)
        if self._finished:
            self.collect()

    def _tell_parts(self, run: Fmp4Run) -> None:
        """Tell the owner about each finished part, with where its segment stands."""
        parts, pending = run.parts, self.pending
        while parts:
            part = parts.popleft()
            ahead = next((i for i, seg in enumerate(pending) if seg.output is part.output), -1)
            if ahead < 0:
                continue  # its segment is gone (cannot happen: parts come before their listing)
            seg = pending[ahead]
            seg.parts += 1
            self._owner.part_finished(FinishedPart(
                part.data, part.duration_ms, part.independent, part.full, ahead, seg.pdt,
                seg.new_timeline, seg.map_uri))  # fmt: skip
