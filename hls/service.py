"""The HLS service: all HLS output under one folder, one playlist per public name.

`HlsService` keeps the names: a `NameState` (rtmpd.hls.name_state) per name, which opens a
`StreamPackager` (rtmpd.hls.packager) per publish and lists its segments. The service resumes
playlists an earlier run left on disk, forgets a name once its files went (keeping only the
counters), and removes files when they are due (segments that left the window, streams past
their grace). The event loop calls everything here synchronously.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from pathlib import Path

from .cleanup import CleanupQueue, Removal
from .config import HlsConfig
from .model import SegmentWritten, StreamInfo
from .name_state import NameContext, NameState
from .packager import StreamPackager
from .playlist import PlaylistWindow
from .storage import TEMP_SUFFIX, Layout, check_name, make_dirs, unlink_quietly


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
        self._log = log or logging.getLogger("rtmpd.hls")
        self._states: dict[str, NameState] = {}
        self._retired: dict[str, PlaylistWindow] = {}  # counters of names whose files went
        self._cleanup = CleanupQueue()
        self._length_ms = round(config.playlist_length * 1000)
        self._fragment_ms = round(config.fragment * 1000)
        self._context = NameContext(
            config=config,
            layout=self.layout,
            clock=clock,
            log=self._log,
            cleanup=self._cleanup,
            on_segment=on_segment,
        )
        try:
            make_dirs(self.layout.root)
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
            state = self._states[name] = NameState(name, self._new_window(name), self._context)
        return state.open_publish()

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
        return None if state is None else state.stream_info()

    def playing(self, name: str) -> bool:
        """A publish of `name` is open and its playlist lists something: viewers can play it."""
        state = self._states.get(name)
        return state is not None and state.packager is not None and bool(state.window.segments)

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

    # -- internals --------------------------------------------------------------------------

    def _new_window(self, name: str) -> PlaylistWindow:
        window = self._retired.pop(name, None)
        if window is None:
            window = self._window_on_disk(name)
        if window is None:
            window = PlaylistWindow(self._length_ms, fragment_ms=self._fragment_ms)
        return window

    def _window_on_disk(self, name: str) -> PlaylistWindow | None:
        """Resume a playlist left by an earlier run of the server: clients may be polling it.
        Files on disk that it does not list are removed after a playlist length."""
        try:
            text = self.layout.playlist_path(name).read_text(encoding="utf-8", errors="replace")
            window = PlaylistWindow.restore(text, self._length_ms, self._fragment_ms)
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

    def _remove_stream(self, state: NameState) -> None:
        count = self.layout.remove_stream(state.name)
        self._retired[state.name] = state.window.successor()
        del self._states[state.name]
        self._log.info("HLS %s: removed %d file(s) after the grace period", state.name, count)
