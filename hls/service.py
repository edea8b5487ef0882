"""The HLS service: all HLS output under one folder, one playlist per public name.

`HlsService` keeps the names: a `NameState` (rtmpd.hls.name_state) per name, which opens a
`StreamPackager` (rtmpd.hls.packager) per publish and lists its segments. The service resumes
playlists an earlier run left on disk, forgets a name once its files went (keeping only the
counters), and removes files when they are due (segments that left the window, streams past
their grace). The event loop calls everything here synchronously.

When the folder holds more than max_total_bytes (rtmpd.hls.quota), the service makes room:
the files of streams that ended go first, the largest first (their playlists say ENDLIST;
only the end of their grace is lost); if that is not enough, the live publish whose name
holds the most is ended (its files go at the next pass). A stream is ended there for no one
else's files but its own, and only if no live stream holds more.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from pathlib import Path

from .cleanup import CleanupQueue, Removal
from .config import HlsConfig
from .live_parts import LiveListener, NameLive
from .llhls import LivePlaylist
from .model import Bound, SegmentWritten, StreamInfo, Violation
from .name_state import NameContext, NameState
from .packager import StreamPackager
from .playlist import PlaylistWindow
from .quota import DiskQuota, SharedBytes, derived_total, describe_total_bound
from .recorder import RecordListener
from .renditions import rendition_playlist
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
        live: LiveListener | None = None,
        recorder: RecordListener | None = None,
        shared: bool = False,
    ) -> None:
        self.config = config
        #: Other processes (rtmpd workers) package other names into the same folder, and take
        #: names over: a name not open here is read from disk again, never removed blindly.
        self.shared = shared
        self.layout = Layout(config.path, config.nested)
        self._clock = clock
        self._log = log or logging.getLogger("rtmpd.hls")
        self._states: dict[str, NameState] = {}
        self._retired: dict[str, PlaylistWindow] = {}  # counters of names whose files went
        self._cleanup = CleanupQueue()
        self._length_ms = round(config.playlist_length * 1000)
        self._fragment_ms = round(config.fragment * 1000)
        try:
            make_dirs(self.layout.root)
        except OSError as exc:
            self._log.error("HLS folder %s is not usable: %s", self.layout.root, exc)
        self.quota = DiskQuota(config.effective_max_stream_bytes, self._max_total())
        self._context = NameContext(
            config=config,
            layout=self.layout,
            clock=clock,
            log=self._log,
            cleanup=self._cleanup,
            on_segment=on_segment,
            quota=self.quota,
            make_room=self._make_room,
            live=live,
            recorder=recorder,
        )

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
        if state is not None and self.shared and state.packager is None:
            # Another worker may have published it since: go on from its playlist.
            fresh = self._state_on_disk(name)
            if fresh is not None:
                state.usage.release()  # the fresh one counts the same files again
                fresh.generation = state.generation
                state = self._states[name] = fresh
        if state is None:
            state = self._states[name] = self._new_state(name)
        return state.open_publish()

    def tick(self, now: float | None = None) -> None:
        """Run due cleanup: segments that left the window, streams past their grace."""
        now = self._clock() if now is None else now
        quota = self.quota
        if quota.shared is not None:  # others may have filled the folder: room from here too
            self._tell_shared(quota.shared)
            if quota.folder_total() > quota.max_total:
                self._make_room()
        for entry in self._cleanup.pop_due(now):
            state = self._states.get(entry.name)
            if entry.removal is Removal.SEGMENT:
                if state is None or not state.keeps(entry.file):
                    unlink_quietly(self.layout.stream_dir(entry.name) / entry.file)
                    if state is not None:
                        state.forget(entry.file)
            elif (
                state is not None
                and state.generation == entry.generation
                and state.packager is None
            ):
                if self.shared and not self._wrote_last(state):
                    del self._states[entry.name]  # another worker publishes it now
                    continue
                self._remove_stream(state)

    def release(self, name: str, packager: StreamPackager) -> None:
        """Another process took `name` over (`shared`): end `packager` without ENDLIST or
        cleanup, and forget the name here, if `packager` is still its open publish."""
        state = self._states.get(name)
        if state is None or state.packager is not packager:
            packager.close()  # taken over here already: nothing left to hand over
            return
        del self._states[name]
        packager.detach()

    def finish_abandoned(self, name: str) -> bool:
        """The publish of `name` in another process sharing the folder (`shared`) ended with
        that process (killed): list ENDLIST in the playlist it left, so players stop waiting,
        and remove its files after the grace unless someone publishes it again. False if a
        publish of it is open here or its playlist is not there."""
        state = self._states.get(name)
        if state is not None and state.packager is not None:
            return False
        fresh = self._state_on_disk(name)
        if fresh is None:
            return False
        if state is not None:
            state.usage.release()  # the fresh one counts the same files again
            fresh.generation = state.generation
        self._states[name] = fresh
        return fresh.abandoned()

    def _wrote_last(self, state: NameState) -> bool:
        """Whether the playlist on disk is the one `state` wrote (not another process's)."""
        try:
            path = self.layout.playlist_path(state.name, state.playlist_file)
            text = path.read_text(encoding="utf-8")
        except OSError:
            return True
        return text == state.window.render()

    def stream_info(self, name: str) -> StreamInfo | None:
        state = self._states.get(name)
        return None if state is None else state.stream_info()

    def playing(self, name: str) -> bool:
        """A publish of `name` is open and its playlist lists something: viewers can play it."""
        state = self._states.get(name)
        return state is not None and state.packager is not None and bool(state.window.segments)

    def live_playlist(self, key: str) -> LivePlaylist | None:
        """The LL-HLS playlist of `key` (with low_latency, once its first part exists): a name,
        or "<name>/v<track>" for a multitrack rendition (whose name's own playlist is then
        the multivariant one, a file)."""
        live = self._live(key)
        return None if live is None else live.playlist

    def part(self, key: str, uri: str) -> bytes | None:
        """The bytes of LL-HLS part `uri` of `key`, while a playlist version shows it."""
        live = self._live(key)
        return None if live is None else live.part_bytes(uri)

    def hinted_part(self, key: str, uri: str) -> tuple[int, int] | None:
        """(msn, part) of `uri` if it is the part the preload hint of `key` names."""
        live = self._live(key)
        return None if live is None else live.hinted(uri)

    def _live(self, key: str) -> NameLive | None:
        name, _, rendition = key.partition("/")
        state = self._states.get(name)
        if state is None:
            return None
        if not rendition:
            return None if state.track is not None else state.live
        track = rendition[1:]
        if rendition[:1] != "v" or not track.isdigit() or len(track) > 3:
            return None
        return state.rendition_live(int(track))

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

    def _new_state(self, name: str) -> NameState:
        window = self._retired.pop(name, None)
        if window is not None:
            return NameState(name, window, self._context)
        state = self._state_on_disk(name)
        if state is None:
            window = PlaylistWindow(self._length_ms, fragment_ms=self._fragment_ms)
            state = NameState(name, window, self._context)
        return state

    def _state_on_disk(self, name: str) -> NameState | None:
        """Resume a playlist left by an earlier run of the server: clients may be polling it.
        Files on disk that it does not list are removed after a playlist length."""
        try:
            text = self.layout.playlist_path(name).read_text(encoding="utf-8", errors="replace")
            if "#EXT-X-STREAM-INF:" in text:  # multitrack: go on from track 0's rendition
                path = self.layout.playlist_path(name, rendition_playlist(0))
                text = path.read_text(encoding="utf-8", errors="replace")
            window = PlaylistWindow.restore(text, self._length_ms, self._fragment_ms)
        except (OSError, ValueError):
            return None
        folder = self.layout.stream_dir(name)
        if not all((folder / s.uri).is_file() for s in window.segments):
            window = window.successor()  # files are missing: keep only the counters
        state = NameState(name, window, self._context)
        due = self._clock() + self.config.playlist_length
        for path in self.layout.stream_files(name):
            leftover = path.name not in state.listed and not path.name.endswith(
                (".m3u8", TEMP_SUFFIX)
            )
            if self.config.cleanup and leftover:
                state.hold(path.name, _size(path))
                self._cleanup.schedule_segment(due, name, path.name)
        return state

    def _remove_stream(self, state: NameState, why: str = "after the grace period") -> None:
        count = self.layout.remove_stream(state.name)
        state.usage.release()
        for live in [state.live, *(r.live for r in state.renditions.values())]:
            if live is not None:
                live.close()
        self._retired[state.name] = state.window.successor()
        del self._states[state.name]
        self._log.info("HLS %s: removed %d file(s) %s", state.name, count, why)

    def _max_total(self) -> int:
        """max_total_bytes, derived from the folder's file system when it is 0."""
        if self.config.max_total_bytes:
            return self.config.max_total_bytes
        ours = sum(
            _size(path) for name in self.layout.names_on_disk()
            for path in self.layout.stream_files(name)
        )  # fmt: skip
        return derived_total(str(self.layout.root), ours)

    def _make_room(self) -> None:
        """The folder holds more than max_total_bytes (see the module doc). Shared with other
        processes, each removes its own ended streams; while others still hold ended ones,
        no live stream is ended; then the one holding the largest live stream ends it."""
        quota = self.quota
        ended = [s for s in self._states.values() if s.packager is None and s.usage.bytes]
        for state in sorted(ended, key=lambda s: s.usage.bytes, reverse=True):
            if quota.folder_total() <= quota.max_total:
                break
            self._remove_stream(state, "early: the HLS folder is full ([hls] max_total_bytes)")
        shared = quota.shared
        if shared is not None:
            self._tell_shared(shared)
        live = [s for s in self._states.values() if s.packager is not None]
        if quota.folder_total() <= quota.max_total or not live:
            return
        largest = max(live, key=lambda s: s.usage.bytes)
        if shared is not None and (
            shared.ended_elsewhere() > 0 or largest.usage.bytes < shared.largest_elsewhere()
        ):
            return  # another process has ended streams to remove, or a larger live one
        assert largest.packager is not None
        largest.packager.stop(Violation(Bound.TOTAL_BYTES, describe_total_bound(quota.max_total)))
        if shared is not None:
            self._tell_shared(shared)

    def _tell_shared(self, shared: SharedBytes) -> None:
        """Tell the other processes this one's largest live stream and its ended streams."""
        live = [s.usage.bytes for s in self._states.values() if s.packager is not None]
        ended = [s.usage.bytes for s in self._states.values() if s.packager is None]
        self.quota.largest = max(live, default=0)
        shared.set_largest(self.quota.largest)
        shared.set_ended(sum(ended))


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
