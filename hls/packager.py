"""The HLS service: one `StreamPackager` per publish, one playlist per public name.

Glue between the pure parts (segmenter, playlist window) and the I/O parts (muxer, storage).
The event loop calls everything here synchronously; disk work per packet is the muxer's
buffered write, per segment a rename and one small playlist rewrite.

Bad input never raises out of the media methods: an unusable sequence header is logged once
and ignored (the previous valid one stays in force; with none, that track's frames are
dropped), a payload FFmpeg rejects is dropped. A disk error (ENOSPC, EACCES, ...) is logged
once per outage: the segment being written is lost, the stream goes on, and writing resumes
at the next segment that can be opened, with a discontinuity.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Collection
from pathlib import Path

import av

from .codecs import AacConfig, AvcConfig, parse_asc, parse_avcc
from .model import HlsConfig, Keyframe, SegmentWritten, StreamInfo
from .muxer import SegmentMuxer, Template, audio_template, video_template
from .playlist import PlaylistWindow
from .segmenter import Action, Segmenter, Track
from .storage import TEMP_SUFFIX, Layout, check_name, unlink_quietly, write_atomic

_STATS_SEGMENTS = 3  # bitrates and fps are measured over this many recent segments
_PDT_MAX_DRIFT = 30.0  # re-anchor program date-time when stream time and wall clock part more
_MEDIA_ERRORS = (OSError, ValueError, av.FFmpegError)
_WRITE, _DROP, _CUT, _CLOSE = Action.WRITE, Action.DROP, Action.CUT, Action.CLOSE
_VIDEO, _AUDIO = Track.VIDEO, Track.AUDIO


class _Segment:
    """The segment being written."""

    __slots__ = (
        "file", "path", "temp", "muxer", "start", "pdt", "discontinuity",
        "vbytes", "abytes", "vframes", "vfirst", "vlast",
    )  # fmt: skip

    def __init__(self, file: str, path: Path, start: int, pdt: float, disc: bool) -> None:
        self.file = file
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


class _NameState:
    """What outlives a single publish of a public name: the playlist and its counters."""

    __slots__ = (
        "name", "window", "packager", "info", "generation", "last_name_ms", "listed",
        "playlist_failed",
    )  # fmt: skip

    def __init__(self, name: str, window: PlaylistWindow) -> None:
        self.name = name
        self.window = window
        self.packager: StreamPackager | None = None
        self.info: StreamPackager | None = None  # the current or last publish, for stream_info
        self.generation = 0
        self.last_name_ms = 0
        self.listed: set[str] = set()
        self.playlist_failed = False


class HlsService:
    """All HLS output under one folder. Not thread-safe: call from the event loop."""

    def __init__(
        self,
        config: HlsConfig,
        *,
        clock: Callable[[], float] = time.time,
        on_segment: Callable[[SegmentWritten], None] | None = None,
        log: logging.Logger | None = None,
    ) -> None:
        self.config = config
        self.layout = Layout(config.path, config.nested)
        self._clock = clock
        self._on_segment = on_segment
        self._log = log or logging.getLogger("rtmpd.hls")
        self._states: dict[str, _NameState] = {}
        self._retired: dict[str, PlaylistWindow] = {}  # counters of names whose files went
        self._heap: list[tuple[float, int, str, str, int]] = []
        self._counter = itertools.count()
        try:
            self.layout.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self._log.error("HLS folder %s is not usable: %s", self.layout.root, exc)

    # -- public API -------------------------------------------------------------------------

    def startup_cleanup(self, live_names: Collection[str] = ()) -> None:
        """Remove leftovers of streams that are not live, and unfinished temp files of any.
        With `cleanup` off, only the temp files go."""
        live = set(live_names) | {n for n, s in self._states.items() if s.packager is not None}
        for name in self.layout.names_on_disk():
            if name not in live and self.config.cleanup:
                count = self.layout.remove_stream(name)
                self._log.info("HLS: removed %d leftover file(s) of %s", count, name)
            else:
                for path in self.layout.stream_files(name):
                    if path.name.endswith(TEMP_SUFFIX):
                        unlink_quietly(path)

    def open_stream(self, name: str) -> StreamPackager:
        """Start packaging a publish under `name`; an open publish of it is taken over."""
        check_name(name)
        state = self._states.get(name)
        if state is None:
            state = self._states[name] = _NameState(name, self._new_window(name))
            state.listed.update(s.uri for s in state.window.segments)
        old = state.packager
        if old is not None:
            self._log.info("HLS %s: taken over by a new publish", name)
            old._detach()
        state.generation += 1
        packager = StreamPackager(self, state)
        state.packager = state.info = packager
        return packager

    def tick(self, now: float | None = None) -> None:
        """Run due cleanup: segments that left the window, streams past their grace."""
        now = self._clock() if now is None else now
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, name, file, generation = heapq.heappop(heap)
            state = self._states.get(name)
            if file:
                if state is None or file not in state.listed:
                    unlink_quietly(self.layout.stream_dir(name) / file)
            elif state is not None and state.generation == generation and state.packager is None:
                self._remove_stream(state)

    def stream_info(self, name: str) -> StreamInfo | None:
        state = self._states.get(name)
        if state is None or state.info is None:
            return None
        return state.info._stream_info(live=state.packager is not None)

    def playlist_path(self, name: str) -> Path:
        """Where the playlist of `name` is (ValueError for a name that could escape the root)."""
        return self.layout.playlist_path(check_name(name))

    def segment_dir(self, name: str) -> Path:
        """The folder holding the segments of `name` (the root itself when not nested)."""
        return self.layout.stream_dir(check_name(name))

    def close(self) -> None:
        """Server shutdown: finish every open stream (segments listed, ENDLIST)."""
        for state in list(self._states.values()):
            if state.packager is not None:
                state.packager.close()

    # -- used by StreamPackager -------------------------------------------------------------

    def _new_window(self, name: str) -> PlaylistWindow:
        window = self._retired.pop(name, None)
        if window is None:
            window = self._window_on_disk(name)
        if window is None:
            window = PlaylistWindow(round(self.config.playlist_length * 1000))
        return window

    def _window_on_disk(self, name: str) -> PlaylistWindow | None:
        """Resume a playlist left by an earlier run of the server: clients may be polling it.
        Files on disk that it does not list are removed after a playlist length."""
        try:
            text = self.layout.playlist_path(name).read_text(encoding="utf-8", errors="replace")
            window = PlaylistWindow.restore(text, round(self.config.playlist_length * 1000))
        except (OSError, ValueError):
            return None
        folder = self.layout.stream_dir(name)
        if not all((folder / s.uri).is_file() for s in window.segments):
            window = window.successor()  # files are missing: keep only the counters
        listed = {s.uri for s in window.segments}
        due = self._clock() + self.config.playlist_length
        for path in self.layout.stream_files(name):
            if self.config.cleanup and path.name.endswith(".ts") and path.name not in listed:
                self._schedule(due, name, path.name)
        return window

    def _schedule(self, due: float, name: str, file: str = "", generation: int = 0) -> None:
        heapq.heappush(self._heap, (due, next(self._counter), name, file, generation))

    def _list_segment(
        self, state: _NameState, seg: _Segment, duration_ms: int, size: int, t0: float
    ) -> None:
        window = state.window
        segment, removed = window.add(
            seg.file, duration_ms, discontinuity=seg.discontinuity, program_date_time=seg.pdt
        )
        state.listed.add(seg.file)
        if removed:
            now = self._clock()
            longest = max(self.config.playlist_length, window.duration_ms / 1000)
            longest += sum(old.duration_ms for old in removed) / 1000
            for old in removed:
                state.listed.discard(old.uri)
                if self.config.cleanup:
                    self._schedule(now + old.duration_ms / 1000 + longest, state.name, old.uri)
        self._write_playlist(state)
        if self._on_segment is not None:
            event = SegmentWritten(
                state.name, segment.sequence, duration_ms / 1000, size, self._clock() - t0
            )
            try:
                self._on_segment(event)
            except Exception:
                self._log.exception("HLS on_segment callback failed")

    def _write_playlist(self, state: _NameState) -> None:
        if not state.window.segments:
            return
        try:
            write_atomic(self.layout.playlist_path(state.name), state.window.render())
        except OSError as exc:
            if not state.playlist_failed:
                self._log.error("HLS %s: cannot write the playlist: %s", state.name, exc)
                state.playlist_failed = True
            return
        state.playlist_failed = False

    def _end_stream(self, state: _NameState, ended: bool) -> None:
        """A publish stopped (`ended`) or was taken over: rewrite its playlist."""
        if ended and self.config.endlist:
            state.window.endlist = True
        self._write_playlist(state)
        if ended and self.config.cleanup:
            due = self._clock() + self.config.effective_grace
            self._schedule(due, state.name, "", state.generation)

    def _remove_stream(self, state: _NameState) -> None:
        count = self.layout.remove_stream(state.name)
        self._retired[state.name] = state.window.successor()
        del self._states[state.name]
        self._log.info("HLS %s: removed %d file(s) after the grace period", state.name, count)


class StreamPackager:
    """Packages one publish. Media methods never raise for bad input (see module doc)."""

    def __init__(self, service: HlsService, state: _NameState) -> None:
        config = service.config
        self.name = state.name
        self._service = service
        self._state = state
        self._clock = service._clock
        self._log = service._log
        self._seg = Segmenter(
            round(config.fragment * 1000),
            round(config.effective_max_fragment * 1000),
            config.max_segment_bytes,
        )
        if state.window.next_sequence > 0:
            self._seg.mark_discontinuity()  # a re-publish or takeover: new timeline
        self._done = False
        self._current: _Segment | None = None
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
        self, timestamp: int, composition_offset: int, keyframe: bool, data: bytes | memoryview
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

    def audio(self, timestamp: int, data: bytes | memoryview) -> None:
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

    # -- internals --------------------------------------------------------------------------

    def _detach(self) -> None:
        """A takeover replaced this publish: list its partial segment, no ENDLIST."""
        self._finish_publish(ended=False)

    def _finish_publish(self, ended: bool) -> None:
        if self._done:
            return
        self._done = True
        duration = self._seg.finish()
        seg = self._current
        self._current = None
        if seg is not None:
            self._finish_segment(seg, duration or 1, self._clock())
        state = self._state
        if state.packager is self:
            state.packager = None
        self._service._end_stream(state, ended)

    def _cut(self, action: Action, timestamp: int) -> None:
        t0 = self._clock()
        seg = self._current
        if seg is not None:
            self._current = None
            self._finish_segment(seg, self._seg.closed_duration or 1, t0)
        if action is _CUT:
            self._start_segment(timestamp, t0)

    def _start_segment(self, timestamp: int, now: float) -> None:
        service, state, layout = self._service, self._state, self._service.layout
        new_timeline = self._seg.discontinuity
        anchor = self._anchor
        if anchor is None or new_timeline:
            anchor = self._anchor = (now, timestamp)
        pdt = anchor[0] + (timestamp - anchor[1]) / 1000
        if abs(pdt - now) > _PDT_MAX_DRIFT:
            self._anchor = (now, timestamp)
            pdt = now
        naming = service.config.naming
        if naming == "system":
            base = max(round(pdt * 1000), state.last_name_ms + 1)
            state.last_name_ms = base
        elif naming == "sequential":
            base = state.window.next_sequence
        else:
            base = timestamp
        fragment = str(base)
        path = layout.segment_path(self.name, fragment)
        for n in itertools.count(1):
            if not (os.path.lexists(path) or os.path.lexists(Layout.temp_path(path))):
                break
            fragment = f"{base}_{n}"
            path = layout.segment_path(self.name, fragment)
        file = layout.segment_file(self.name, fragment)
        seg = _Segment(file, path, timestamp, pdt, new_timeline or self._gap)
        self._current = seg
        try:
            layout.ensure_dir(self.name)
            seg.muxer = SegmentMuxer(seg.temp, self._vtemplate, self._atemplate)
        except OSError as exc:
            self._disk_error(exc)
        except (ValueError, av.FFmpegError) as exc:
            self._warn("open", "cannot start a segment (%s); media is lost", exc)

    def _finish_segment(self, seg: _Segment, duration_ms: int, t0: float) -> None:
        self._stats.append((duration_ms, seg.vbytes, seg.abytes, seg.vframes))
        muxer = seg.muxer
        if muxer is None:
            self._gap = True
            return
        try:
            size = muxer.close()
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
        self._service._list_segment(self._state, seg, duration_ms, size, t0)

    def _mux_failed(self, seg: _Segment, exc: Exception) -> None:
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

    def _stream_info(self, live: bool) -> StreamInfo:
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
