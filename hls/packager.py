"""Packaging one publish: a `StreamPackager` cuts it (segmenter) and muxes it (PyAV), and hands
each finished segment to its `PackagerOwner`, the public name it goes out under, which outlives
the publish: it names the files and lists them (rtmpd.hls.name_state). Disk work per packet is
the muxer's buffered write, per segment a rename and, in the owner, one playlist rewrite.

Bad input never raises out of the media methods: an unusable sequence header is logged once
and ignored (the previous valid one stays in force; with none, that track's frames are
dropped), a payload FFmpeg rejects is dropped. A disk error (ENOSPC, EACCES, ...) is logged
once per outage: the segment being written is lost, the stream goes on, and writing resumes
at the next segment that can be opened, with a discontinuity.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import av

from .codecs import AacConfig, AvcConfig, parse_asc, parse_avcc
from .config import HlsConfig
from .model import Keyframe, StreamInfo
from .muxer import SegmentMuxer, Template, audio_template, video_template
from .segmenter import Action, Segmenter, Track
from .storage import FILE_MODE, Layout, make_dirs

_STATS_SEGMENTS = 3  # bitrates and fps are measured over this many recent segments
_PDT_MAX_DRIFT = 30.0  # re-anchor program date-time when stream time and wall clock part more
_MEDIA_ERRORS = (OSError, ValueError, av.FFmpegError)
_WRITE, _DROP, _CUT, _CLOSE = Action.WRITE, Action.DROP, Action.CUT, Action.CLOSE
_VIDEO, _AUDIO = Track.VIDEO, Track.AUDIO


@dataclass(frozen=True, slots=True)
class FinishedSegment:
    """A segment complete on disk under its final name, as its owner is told about it."""

    path: Path
    duration_ms: int
    size: int  # bytes
    discontinuity: bool  # a new timeline starts here, or the segment before it was lost
    program_date_time: float  # unix seconds of its first frame
    closed_at: float  # wall seconds when the packet that closed it arrived


class PackagerOwner(Protocol):
    """What a publish needs from the name it goes out under (after gohlslib's
    muxerSegmenterParent): a path for each new segment, and to be told what is finished.
    Listing, the playlist window and cleanup stay with the owner, which outlives the publish."""

    def segment_path(self, timestamp: int, program_date_time: float) -> Path:
        """Where the segment starting at `timestamp` (stream ms) goes; nothing is there yet."""

    def segment_finished(self, segment: FinishedSegment) -> None:
        """List `segment`, complete on disk."""

    def publish_finished(self, publish: StreamPackager, ended: bool) -> None:
        """`publish` stopped (`ended`) or was taken over; its last segment is already listed."""


class OpenSegment:
    """The segment being written."""

    __slots__ = (
        "path", "temp", "muxer", "start", "pdt", "discontinuity",
        "vbytes", "abytes", "vframes", "vfirst", "vlast",
    )  # fmt: skip

    def __init__(self, path: Path, start: int, pdt: float, disc: bool) -> None:
        self.path = path
        self.temp = Layout.temp_path(path)
        self.muxer: SegmentMuxer | None = None
        self.start = start
        self.pdt = pdt
        self.discontinuity = disc
        self.vbytes = 0
        self.abytes = 0
        self.vframes = 0
        self.vfirst = -1
        self.vlast = -1


class StreamPackager:
    """Packages one publish. Media methods never raise for bad input (see module doc)."""

    def __init__(
        self,
        name: str,
        owner: PackagerOwner,
        config: HlsConfig,
        *,
        clock: Callable[[], float],
        log: logging.Logger,
        new_timeline: bool,
    ) -> None:
        self.name = name
        self._owner = owner
        self._clock = clock
        self._log = log
        self._seg = Segmenter(
            round(config.fragment * 1000),
            round(config.effective_max_fragment * 1000),
            config.max_segment_bytes,
        )
        if new_timeline:
            self._seg.mark_discontinuity()  # a re-publish or takeover
        self._done = False
        self._current: OpenSegment | None = None
        self._vtemplate: Template | None = None
        self._atemplate: Template | None = None
        self._vconfig: AvcConfig | None = None
        self._aconfig: AacConfig | None = None
        self._warned: set[str] = set()
        self._disk_failed = False
        self._gap = False  # a segment was lost: the next listed one starts a discontinuity
        self._anchor: tuple[float, int] | None = None  # (wall, stream ms) for date-times
        self._stats: deque[tuple[int, int, int, int]] = deque(maxlen=_STATS_SEGMENTS)
        self._keyframe: Keyframe | None = None

    # -- media from the publisher -----------------------------------------------------------

    def video_config(self, timestamp: int, avcc: bytes | memoryview) -> None:
        if self._done:
            return
        data = bytes(avcc)
        if self._vtemplate is not None and data == self._vtemplate.config:
            return
        try:
            config = parse_avcc(data)
            template = video_template(data)
        except ValueError as exc:
            self._warn("avcc", "ignoring an unusable AVC sequence header (%s)", exc)
            return
        self._vconfig, self._vtemplate = config, template
        self._seg.configure(_VIDEO, changed=True)

    def audio_config(self, timestamp: int, asc: bytes | memoryview) -> None:
        if self._done:
            return
        data = bytes(asc)
        if self._atemplate is not None and data == self._atemplate.config:
            return
        try:
            config = parse_asc(data)
            template = audio_template(data)
        except ValueError as exc:
            self._warn("asc", "ignoring an unusable AAC sequence header (%s)", exc)
            return
        self._aconfig, self._atemplate = config, template
        self._seg.configure(_AUDIO, changed=True)

    def video(
        self,
        timestamp: int,
        composition_offset: int,
        keyframe: bool,
        data: bytes | bytearray | memoryview,
    ) -> None:
        if self._vtemplate is None or self._done:
            if not self._done:
                self._warn("video", "dropping video: no usable AVC sequence header")
            return
        if type(data) is not bytes:
            data = bytes(data)  # FFmpeg may hold the packet past this call
        size = len(data)
        if not size:
            return
        action = self._seg.frame(_VIDEO, timestamp, keyframe, size)
        if action is not _WRITE:
            if action is _DROP:
                return
            self._cut(action, timestamp)
            if action is _CLOSE:
                return
        seg = self._current
        assert seg is not None
        seg.vbytes += size
        seg.vframes += 1
        if seg.vfirst < 0:
            seg.vfirst = timestamp
        seg.vlast = timestamp
        if keyframe:
            self._keyframe = Keyframe(self._vtemplate.config, data, timestamp)
        muxer = seg.muxer
        if muxer is not None:
            try:
                muxer.video(timestamp, timestamp + composition_offset, keyframe, data)
            except _MEDIA_ERRORS as exc:
                self._mux_failed(seg, exc)

    def audio(self, timestamp: int, data: bytes | bytearray | memoryview) -> None:
        if self._atemplate is None or self._done:
            if not self._done:
                self._warn("audio", "dropping audio: no usable AAC sequence header")
            return
        if type(data) is not bytes:
            data = bytes(data)
        size = len(data)
        if not size:
            return
        action = self._seg.frame(_AUDIO, timestamp, False, size)
        if action is not _WRITE:
            if action is _DROP:
                return
            self._cut(action, timestamp)
            if action is _CLOSE:
                return
        seg = self._current
        assert seg is not None
        seg.abytes += size
        muxer = seg.muxer
        if muxer is not None:
            try:
                muxer.audio(timestamp, data)
            except _MEDIA_ERRORS as exc:
                self._mux_failed(seg, exc)

    def close(self) -> None:
        """The publish ended: list the partial segment, ENDLIST, cleanup after the grace."""
        self._finish_publish(ended=True)

    def detach(self) -> None:
        """A takeover replaced this publish: list its partial segment, no ENDLIST."""
        self._finish_publish(ended=False)

    # -- internals --------------------------------------------------------------------------

    def _finish_publish(self, ended: bool) -> None:
        if self._done:
            return
        self._done = True
        duration = self._seg.finish()
        seg = self._current
        self._current = None
        if seg is not None:
            self._finish_segment(seg, duration or 1, self._clock())
        self._owner.publish_finished(self, ended)

    def _cut(self, action: Action, timestamp: int) -> None:
        t0 = self._clock()
        seg = self._current
        if seg is not None:
            self._current = None
            self._finish_segment(seg, self._seg.closed_duration or 1, t0)
        if action is _CUT:
            self._start_segment(timestamp, t0)

    def _start_segment(self, timestamp: int, now: float) -> None:
        new_timeline = self._seg.discontinuity
        anchor = self._anchor
        if anchor is None or new_timeline:
            anchor = self._anchor = (now, timestamp)
        pdt = anchor[0] + (timestamp - anchor[1]) / 1000
        if abs(pdt - now) > _PDT_MAX_DRIFT:
            self._anchor = (now, timestamp)
            pdt = now
        path = self._owner.segment_path(timestamp, pdt)
        seg = OpenSegment(path, timestamp, pdt, new_timeline or self._gap)
        self._current = seg
        try:
            make_dirs(path.parent)
            seg.muxer = SegmentMuxer(seg.temp, self._vtemplate, self._atemplate)
        except OSError as exc:
            self._disk_error(exc)
        except (ValueError, av.FFmpegError) as exc:
            self._warn("open", "cannot start a segment (%s); media is lost", exc)

    def _finish_segment(self, seg: OpenSegment, duration_ms: int, t0: float) -> None:
        self._stats.append((duration_ms, seg.vbytes, seg.abytes, seg.vframes))
        muxer = seg.muxer
        if muxer is None:
            self._gap = True
            return
        try:
            size = muxer.close()
            os.chmod(seg.temp, FILE_MODE)
            os.replace(seg.temp, seg.path)
        except OSError as exc:
            self._disk_error(exc)
            muxer.abort()
            self._gap = True
            return
        except (ValueError, av.FFmpegError) as exc:
            self._warn("close", "cannot finish a segment (%s); it is lost", exc)
            muxer.abort()
            self._gap = True
            return
        self._gap = False
        if self._disk_failed:
            self._disk_failed = False
            self._log.info("HLS %s: writing segments again", self.name)
        finished = FinishedSegment(seg.path, duration_ms, size, seg.discontinuity, seg.pdt, t0)
        self._owner.segment_finished(finished)

    def _mux_failed(self, seg: OpenSegment, exc: Exception) -> None:
        if isinstance(exc, OSError):
            self._disk_error(exc)
            if seg.muxer is not None:
                seg.muxer.abort()
                seg.muxer = None
        else:
            self._warn("packet", "dropping packets FFmpeg rejects (%s)", exc)

    def _disk_error(self, exc: OSError) -> None:
        if not self._disk_failed:
            self._disk_failed = True
            self._log.error(
                "HLS %s: cannot write segments (%s); lost until it works", self.name, exc
            )

    def _warn(self, key: str, message: str, *args: object) -> None:
        """Log a given kind of input problem once per publish."""
        if key not in self._warned:
            self._warned.add(key)
            self._log.warning("HLS %s: " + message, self.name, *args)

    # -- about the publish ------------------------------------------------------------------

    def stream_info(self, live: bool) -> StreamInfo:
        """Codecs, picture, bitrates and fps over the last few segments, the latest keyframe."""
        duration = vbytes = abytes = vframes = 0
        for d, vb, ab, vf in self._stats:
            duration += d
            vbytes += vb
            abytes += ab
            vframes += vf
        fps = vframes * 1000 / duration if duration and vframes else None
        seg = self._current
        if not duration and seg is not None:
            duration = self._seg.elapsed()
            vbytes, abytes = seg.vbytes, seg.abytes
            if seg.vframes > 1 and seg.vlast > seg.vfirst:
                fps = (seg.vframes - 1) * 1000 / (seg.vlast - seg.vfirst)
        vconf, aconf = self._vconfig, self._aconfig
        return StreamInfo(
            name=self.name,
            live=live,
            video_codec=vconf.codec_string if vconf else None,
            audio_codec=aconf.codec_string if aconf else None,
            width=vconf.width if vconf else None,
            height=vconf.height if vconf else None,
            fps=round(fps, 3) if fps else None,
            sample_rate=aconf.sample_rate if aconf else None,
            channels=aconf.channels if aconf else None,
            video_kbps=round(vbytes * 8 / duration, 1) if duration and vconf else None,
            audio_kbps=round(abytes * 8 / duration, 1) if duration and aconf else None,
            keyframe=self._keyframe,
        )
