"""One public name across its publishes: what a `StreamPackager` talks to as its owner.

A name outlives each publish of it (re-publish, takeover, the grace before its files go), so it
keeps what must go on: the playlist window and its counters, which files the playlist lists,
the names of new segment files per `naming`, the cleanup a publish leaves behind, the bytes
its files take (rtmpd.hls.quota) and how far its media is ahead of real time
(rtmpd.hls.pace), so that a reconnect starts none of these afresh. It is the `PackagerOwner`
of its publishes (rtmpd.hls.packager) and never sees the service.

Cleanup waits in wall-clock seconds, and the delay RFC 8216 6.2.2 gives (the segment's
duration and the playlist's) is in media seconds: it is scaled by the speed the media came in
at, from the segment's first packet to the one that pushed it out of the window. The same
delay for a stream in real time (or slower); a stream sent N times faster than real time no
longer keeps N times as many files (one reached 6.6 GB in 20 s).
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .cleanup import CleanupQueue
from .config import HlsConfig, Naming
from .live_parts import LiveListener, NameLive
from .model import SegmentWritten, StreamInfo
from .pace import Pace
from .packager import FinishedPart, FinishedSegment, StreamPackager
from .playlist import PlaylistWindow, Segment, decide_target, rounded_seconds
from .quota import DiskQuota
from .recorder import RecordListener
from .storage import Layout, write_atomic


@dataclass(frozen=True, slots=True)
class NameContext:
    """What all names of one service share: settings, the folder, the clock, the log, the
    cleanup queue, the segment callback, the disk bounds and what to do at the folder's."""

    config: HlsConfig
    layout: Layout
    clock: Callable[[], float]
    log: logging.Logger
    cleanup: CleanupQueue
    on_segment: Callable[[SegmentWritten], None] | None
    quota: DiskQuota
    make_room: Callable[[], None]
    live: LiveListener | None = None  # told about LL-HLS parts and segments
    recorder: RecordListener | None = None  # told about publishes and segments ([record])


class NameState:
    """The playlist of one name and its current publish; implements `PackagerOwner`."""

    __slots__ = (
        "name", "window", "listed", "packager", "generation", "usage", "pace", "live", "_context",
        "_files", "_playlist_bytes", "_last_publish", "_last_name_ms", "_last_sequence_name",
        "_playlist_failed", "_overlong_warned",
    )  # fmt: skip

    def __init__(self, name: str, window: PlaylistWindow, context: NameContext) -> None:
        self.name = name
        self.window = window
        # Files the playlist lists, and the init segments those need.
        self.listed = {s.uri for s in window.segments} | {
            s.map_uri for s in window.segments if s.map_uri is not None
        }
        self.packager: StreamPackager | None = None  # the open publish
        self.generation = 0  # counts publishes: a stream cleanup is for the one it followed
        self.usage = context.quota.usage()  # bytes of its files on disk
        config = context.config
        self.pace = Pace(config.max_speed, config.speed_burst, context.clock())
        self.live: NameLive | None = None
        if config.low_latency:
            prefix = "" if config.nested else f"{name}-"
            part_ms = round(config.part_duration * 1000)
            self.live = NameLive(name, window, part_ms, prefix, context.live, context.clock())
        self._context = context
        # Its segment files on disk, listed or waiting for cleanup: (bytes, wall seconds of
        # the first packet; 0.0 when unknown: from an earlier run).
        self._files: dict[str, tuple[int, float]] = {}
        self._playlist_bytes = 0
        if window.segments:  # resumed from disk: its files are there already
            folder = context.layout.stream_dir(name)
            for uri in self.listed:
                self.hold(uri, _size(folder / uri))
            self._playlist_bytes = _size(context.layout.playlist_path(name))
            self.usage.add(self._playlist_bytes)
        self._last_publish: StreamPackager | None = None  # the open or last one, for its info
        self._last_name_ms = 0
        self._last_sequence_name = -1
        self._playlist_failed = False
        self._overlong_warned = False

    def open_publish(self) -> StreamPackager:
        """Start a publish under this name; an open one is taken over (detached)."""
        context = self._context
        old = self.packager
        if old is not None:
            context.log.info("HLS %s: taken over by a new publish", self.name)
            old.detach()
        self.generation += 1
        packager = StreamPackager(
            self.name,
            self,
            context.config,
            clock=context.clock,
            log=context.log,
            new_timeline=self.window.next_sequence > 0,  # it continues an earlier playlist
            usage=self.usage,
            pace=self.pace,
        )
        self.packager = self._last_publish = packager
        if context.recorder is not None:
            context.recorder.publish_started(self.name)
        return packager

    def hold(self, uri: str, size: int) -> None:
        """A segment file of this name found on disk (a leftover of an earlier run)."""
        self._files[uri] = (size, 0.0)
        self.usage.add(size)

    def forget(self, uri: str) -> None:
        """The segment file `uri` was removed."""
        size, _ = self._files.pop(uri, (0, 0.0))
        self.usage.add(-size)

    def stream_info(self) -> StreamInfo | None:
        """About the open publish, else the last one; None before the first."""
        last = self._last_publish
        return None if last is None else last.stream_info(live=self.packager is not None)

    # -- PackagerOwner ----------------------------------------------------------------------

    @property
    def lists_fmp4(self) -> bool:
        return any(s.map_uri is not None for s in self.window.segments)

    @property
    def target_duration(self) -> int | None:
        return self.window.target_duration

    def segment_path(self, timestamp: int, program_date_time: float, ext: str = "ts") -> Path:
        """Named per `naming`; a name already taken on disk gets "_<n>" appended."""
        context = self._context
        naming = context.config.naming
        if naming == Naming.SYSTEM:
            base = max(round(program_date_time * 1000), self._last_name_ms + 1)
            self._last_name_ms = base
        elif naming == Naming.SEQUENTIAL:
            # Named before the one in front is listed (its last bytes are still in the muxer).
            base = max(self.window.next_sequence, self._last_sequence_name + 1)
            self._last_sequence_name = base
        else:
            base = timestamp
        layout = context.layout
        path = layout.segment_path(self.name, str(base), ext)
        for n in itertools.count(1):
            init = path.with_suffix(".mp4")  # an fMP4 run's init segment takes this name
            taken = (path, Layout.temp_path(path), init, Layout.temp_path(init))
            if not any(os.path.lexists(p) for p in taken):
                break
            path = layout.segment_path(self.name, f"{base}_{n}", ext)
        return path

    def init_written(self, path: Path, data: bytes) -> str:
        """Write an fMP4 init segment; it is listed (kept) while a listed segment needs it."""
        uri = path.name
        try:
            write_atomic(path, data)
        except OSError as exc:
            self._context.log.error("HLS %s: cannot write the init segment: %s", self.name, exc)
            return uri
        self.listed.add(uri)
        self._files[uri] = (len(data), self._context.clock())
        self.usage.add(len(data))
        return uri

    def part_finished(self, part: FinishedPart) -> None:
        if self.live is not None:
            self.live.part(part)

    def segment_finished(self, segment: FinishedSegment) -> None:
        """List the segment, schedule removal of the ones that left the window (clients may
        still fetch them for a while), rewrite the playlist, then tell `on_segment`."""
        context, window = self._context, self.window
        config = context.config
        uri = segment.path.name
        duration_ms = segment.duration_ms
        if window.target_duration is None:
            window.target_duration = decide_target(duration_ms, round(config.fragment * 1000))
        elif rounded_seconds(duration_ms) > window.target_duration and not self._overlong_warned:
            self._overlong_warned = True  # the segmenter prevents it; a sign of a bug if seen
            context.log.warning("HLS %s: a %d ms segment is longer than the target of %d s",
                                self.name, duration_ms, window.target_duration)  # fmt: skip
        entry, removed = window.add(
            uri,
            duration_ms,
            discontinuity=segment.discontinuity,
            program_date_time=segment.program_date_time,
            map_uri=segment.map_uri,
            gap=segment.gap,
        )
        if not segment.gap:
            self.listed.add(uri)
            self._files[uri] = (segment.size, segment.opened_at)  # its bytes are counted already
        if removed:
            now = context.clock()
            # The longest playlist that listed them: the one before this removal. (It covers
            # the playlist length, unless they left by the count bound: segments of a few ms.)
            longest = window.duration_ms + sum(old.duration_ms for old in removed)
            journey = longest  # media from the start of the oldest one to now
            for old in removed:
                self.listed.discard(old.uri)
                if config.cleanup:
                    delay = self._cleanup_delay(old.uri, old.duration_ms + longest, journey, now)
                    context.cleanup.schedule_segment(now + delay, self.name, old.uri)
                journey -= old.duration_ms
            self._release_inits(removed, delay_s=longest / 1000)
        self._write_playlist()
        if self.live is not None:
            self.live.listed(entry)
        if context.recorder is not None and window.target_duration is not None:
            context.recorder.segment(self.name, segment, window.target_duration)
        on_segment = context.on_segment
        if on_segment is not None:
            lag = context.clock() - segment.closed_at
            event = SegmentWritten(self.name, entry.sequence, duration_ms / 1000, segment.size, lag)
            try:
                on_segment(event)
            except Exception:
                context.log.exception("HLS on_segment callback failed")

    def make_room(self) -> None:
        self._context.make_room()

    def publish_finished(self, publish: StreamPackager, ended: bool) -> None:
        """Rewrite the playlist (ENDLIST if `ended` and configured); once the grace after an
        ended publish is over, the stream's files go unless it was published again."""
        context = self._context
        config = context.config
        if self.packager is publish:
            self.packager = None
        if ended and config.endlist:
            self.window.endlist = True
        self._write_playlist()
        if ended and self.live is not None:
            self.live.end(config.endlist)
        if context.recorder is not None:
            context.recorder.publish_finished(self.name, ended)
        if ended and config.cleanup:
            due = context.clock() + config.effective_grace
            context.cleanup.schedule_stream(due, self.name, self.generation)

    def abandoned(self) -> bool:
        """Its publish ended with the process that packaged it (a killed rtmpd worker): as
        for a publish that ended, the playlist gets ENDLIST (players stop waiting for more)
        and its files their grace. False if a publish of it is open (or ENDLIST is off)."""
        config = self._context.config
        if self.packager is not None or not config.endlist:
            return False
        self.window.endlist = True
        self._write_playlist()
        if self.live is not None:
            self.live.end(True)
        if config.cleanup:
            due = self._context.clock() + config.effective_grace
            self._context.cleanup.schedule_stream(due, self.name, self.generation)
        return True

    # -- internals --------------------------------------------------------------------------

    def _release_inits(self, removed: list[Segment], delay_s: float) -> None:
        """Init segments no listed segment needs any more go like the segments did."""
        context = self._context
        needed = {s.map_uri for s in self.window.segments}
        for map_uri in {s.map_uri for s in removed} - needed:
            if map_uri is not None and map_uri in self.listed:
                self.listed.discard(map_uri)
                if context.config.cleanup:
                    due = context.clock() + delay_s
                    context.cleanup.schedule_segment(due, self.name, map_uri)

    def _cleanup_delay(self, uri: str, media_ms: int, journey_ms: int, now: float) -> float:
        """Wall seconds a segment that left the window stays: `media_ms`, RFC 8216 6.2.2's
        delay in media time, at the speed the media came in over its `journey_ms` (its start
        to the newest segment's end): the same for a stream in real time (or slower), shorter
        for one sent faster."""
        opened = self._files.get(uri, (0, 0.0))[1]
        if not opened or journey_ms <= 0:
            return media_ms / 1000  # from an earlier run: its speed is not known
        return media_ms / 1000 * min(1.0, max(now - opened, 0.0) * 1000 / journey_ms)

    def _write_playlist(self) -> None:
        """Rewrite the playlist once it lists anything; a failure is logged once per outage."""
        if not self.window.segments:
            return
        text = self.window.render()
        try:
            write_atomic(self._context.layout.playlist_path(self.name), text)
        except OSError as exc:
            if not self._playlist_failed:
                self._context.log.error("HLS %s: cannot write the playlist: %s", self.name, exc)
                self._playlist_failed = True
            return
        self._playlist_failed = False
        size = len(text.encode())
        self.usage.add(size - self._playlist_bytes)
        self._playlist_bytes = size


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
