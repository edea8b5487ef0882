"""The HLS service: all HLS output under one folder, one playlist per public name.

`HlsService` keeps the names: it opens a `StreamPackager` (rtmpd.hls.packager) per publish,
hands a name over on takeover, lists finished segments in the name's playlist window, resumes
playlists an earlier run left on disk, and removes files when they are due (segments that left
the window, streams past their grace). The event loop calls everything here synchronously.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from pathlib import Path

from .cleanup import CleanupQueue, Removal
from .config import HlsConfig
from .model import SegmentWritten, StreamInfo
from .packager import NameState, OpenSegment, StreamPackager
from .playlist import PlaylistWindow
from .storage import TEMP_SUFFIX, Layout, check_name, unlink_quietly


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
        self._states: dict[str, NameState] = {}
        self._retired: dict[str, PlaylistWindow] = {}  # counters of names whose files went
        self._cleanup = CleanupQueue()
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
            state = self._states[name] = NameState(name, self._new_window(name))
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
        for entry in self._cleanup.pop_due(now):
            state = self._states.get(entry.name)
            if entry.removal is Removal.SEGMENT:
                if state is None or entry.file not in state.listed:
                    unlink_quietly(self.layout.stream_dir(entry.name) / entry.file)
            elif (
                state is not None
                and state.generation == entry.generation
                and state.packager is None
            ):
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
                self._cleanup.schedule_segment(due, name, path.name)
        return window

    def _list_segment(
        self, state: NameState, seg: OpenSegment, duration_ms: int, size: int, t0: float
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
                    due = now + old.duration_ms / 1000 + longest
                    self._cleanup.schedule_segment(due, state.name, old.uri)
        state.write_playlist(self.layout, self._log)
        if self._on_segment is not None:
            event = SegmentWritten(
                state.name, segment.sequence, duration_ms / 1000, size, self._clock() - t0
            )
            try:
                self._on_segment(event)
            except Exception:
                self._log.exception("HLS on_segment callback failed")

    def _end_stream(self, state: NameState, ended: bool) -> None:
        """A publish stopped (`ended`) or was taken over: rewrite its playlist."""
        if ended and self.config.endlist:
            state.window.endlist = True
        state.write_playlist(self.layout, self._log)
        if ended and self.config.cleanup:
            due = self._clock() + self.config.effective_grace
            self._cleanup.schedule_stream(due, state.name, state.generation)

    def _remove_stream(self, state: NameState) -> None:
        count = self.layout.remove_stream(state.name)
        self._retired[state.name] = state.window.successor()
        del self._states[state.name]
        self._log.info("HLS %s: removed %d file(s) after the grace period", state.name, count)
