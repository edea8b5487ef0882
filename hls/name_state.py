"""One public name across its publishes: what a `StreamPackager` talks to as its owner.

A name outlives each publish of it (re-publish, takeover, the grace before its files go), so it
keeps what must go on: the playlist window and its counters, which files the playlist lists,
the names of new segment files per `naming`, the cleanup a publish leaves behind, the bytes
its files take (rtmpd.hls.quota) and how far its media is ahead of real time
(rtmpd.hls.pace), so that a reconnect starts none of these afresh. It is the `PackagerOwner`
of its publishes (rtmpd.hls.owner, rtmpd.hls.packager) and never sees the service.

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
from .multitrack import TrackSet
from .owner import FinishedPart, FinishedSegment, PackagerOwner
from .pace import Pace
from .packager import StreamPackager
from .playlist import PlaylistWindow, Segment, decide_target, rounded_seconds
from .quota import DiskQuota, StreamUsage
from .recorder import RecordListener
from .renditions import (
    FollowCuts,
    Renditions,
    Variant,
    render_multivariant,
    rendition_playlist,
    rendition_prefix,
    rendition_report,
    segment_bandwidth,
)
from .storage import PLAYLIST, Layout, write_atomic


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
        "_playlist_failed", "_overlong_warned", "track", "playlist_file", "prefix", "parent",
        "renditions", "_variants", "_variants_bytes", "_warned_flat",
    )  # fmt: skip

    def __init__(self, name: str, window: PlaylistWindow, context: NameContext, *,
                 parent: NameState | None = None, track: int | None = None) -> None:  # fmt: skip
        self.name = name
        self.window = window
        #: Multitrack (rtmpd.hls.renditions): None for a single stream, else the video track
        #: whose rendition this is (0 on the name's own state, with `renditions` the others,
        #: which share its file bookkeeping and have it as `parent`).
        self.track = track
        self.parent = parent
        self.renditions: dict[int, NameState] = {}
        self.playlist_file = PLAYLIST if track is None else rendition_playlist(track)
        self.prefix = "" if track is None else rendition_prefix(track)
        # Files the playlist lists, and the init segments those need.
        self.listed = {s.uri for s in window.segments} | {
            s.map_uri for s in window.segments if s.map_uri is not None
        }
        self.packager: StreamPackager | None = None  # the open publish
        self.generation = 0  # counts publishes: a stream cleanup is for the one it followed
        self.usage: StreamUsage = context.quota.usage() if parent is None else parent.usage
        config = context.config
        self.pace = Pace(config.max_speed, config.speed_burst, context.clock())
        self.live: NameLive | None = None
        if config.low_latency:
            prefix = "" if config.nested else f"{name}-"
            part_ms = round(config.part_duration * 1000)
            key = name if track is None else f"{name}/v{track}"
            self.live = NameLive(key, window, part_ms, prefix + self.prefix, context.live,
                                 context.clock())  # fmt: skip
        self._context = context
        # Its segment files on disk, listed or waiting for cleanup: (bytes, wall seconds of
        # the first packet; 0.0 when unknown: from an earlier run).
        self._files: dict[str, tuple[int, float]] = {}
        if parent is not None:
            self.listed, self._files = parent.listed, parent._files
        self._variants = ""  # the multivariant playlist as last written
        self._variants_bytes = 0
        self._warned_flat = False
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
        if self.parent is None:
            self._single()
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

    # -- multitrack ---------------------------------------------------------------------------

    def open_renditions(self) -> Renditions | None:
        context = self._context
        leader = self.packager
        assert leader is not None, "asked by the open publish"
        if not context.config.nested:
            if not self._warned_flat:
                self._warned_flat = True
                context.log.warning(
                    "HLS %s: multitrack video needs the nested layout ([hls] "
                    "nested = true); only track 0 is packaged",
                    self.name,
                )
            return None
        config = context.config

        def make(owner: PackagerOwner, cuts: FollowCuts) -> StreamPackager:
            assert isinstance(owner, NameState)
            follower = StreamPackager(self.name, owner, config, clock=context.clock,
                                      log=context.log, new_timeline=owner.window.next_sequence > 0,
                                      usage=self.usage, pace=owner.pace, follow=cuts)  # fmt: skip
            owner.packager = owner._last_publish = follower
            return follower

        return TrackSet(leader, self._open_rendition, self._drop_rendition, make,
                        config.max_renditions, context.log)  # fmt: skip

    def _open_rendition(self, track: int) -> NameState:
        """At track 0's first frame: the rendition state of video track `track`, its window
        aligned with this one (the same next media sequence number and discontinuity count)."""
        if self.track is None:
            self._set_track(0)
        window = self.window.successor()
        window.target_duration = self.window.target_duration
        state = NameState(self.name, window, self._context, parent=self, track=track)
        self.renditions[track] = state
        if state.live is not None:
            state.live.reports = lambda: self._reports(track)
        return state

    def _drop_rendition(self, track: int) -> None:
        """At track 0's first frame still: nothing of it was written."""
        state = self.renditions.pop(track, None)
        if state is not None and state.live is not None:
            state.live.close()
        if not self.renditions:
            self._set_track(None)

    def _set_track(self, track: int | None) -> None:
        self.track = track
        self.playlist_file = PLAYLIST if track is None else rendition_playlist(track)
        self.prefix = "" if track is None else rendition_prefix(track)
        live = self.live
        if live is not None:
            live.rename(self.name if track is None else f"{self.name}/v{track}", self.prefix)
            live.reports = None if track is None else (lambda: self._reports(0))
            if live.playlist is not None:  # from an earlier publish of the name
                live.playlist.reports = live.reports
        self._playlist_failed = False

    def _single(self) -> None:
        """A new publish starts as a single stream: the renditions of the last one go (their
        files after a playlist length, as segments that left the window)."""
        if self.track is None:
            return
        context = self._context
        due = context.clock() + context.config.playlist_length
        for state in self.renditions.values():
            if state.packager is not None:
                state.packager.detach()
            for segment in state.window.segments:
                for uri in (segment.uri, segment.map_uri):
                    if uri is not None and uri in self.listed:
                        self.listed.discard(uri)
                        if context.config.cleanup:
                            context.cleanup.schedule_segment(due, self.name, uri)
            if state.live is not None:
                state.live.close()
            if context.config.cleanup:  # unless a rendition of that track writes it again
                context.cleanup.schedule_segment(due, self.name, state.playlist_file)
            self.usage.add(-state._playlist_bytes)
        self.renditions.clear()
        if context.config.cleanup:
            context.cleanup.schedule_segment(due, self.name, self.playlist_file)
        self.usage.add(-self._variants_bytes)
        self._variants, self._variants_bytes = "", 0
        self._set_track(None)

    def keeps(self, file: str) -> bool:
        """Whether `file` is listed or is a playlist of the name now (cleanup leaves it)."""
        if file in self.listed or file == self.playlist_file:
            return True
        return any(file == state.playlist_file for state in self.renditions.values())

    def rendition_live(self, track: int) -> NameLive | None:
        if track == 0:
            return self.live if self.track == 0 else None
        state = self.renditions.get(track)
        return None if state is None else state.live

    def _reports(self, track: int) -> list[str]:
        """EXT-X-RENDITION-REPORT lines for every rendition but `track`'s."""
        lines = []
        for other, state in ((0, self), *self.renditions.items()):
            live = state.live
            if other == track or live is None or live.playlist is None:
                continue
            msn, part = live.playlist.last
            if msn >= 0:
                lines.append(rendition_report(state.playlist_file, msn, part))
        return lines

    def _write_variants(self) -> None:
        """The multivariant playlist, once every rendition lists a segment; rewritten when its
        text changes (the bandwidths are measured from the listed segments)."""
        variants = []
        for state in (self, *self.renditions.values()):
            publish = state._last_publish
            measured = segment_bandwidth(
                (state._files.get(s.uri, (0, 0.0))[0], s.duration_ms)
                for s in state.window.segments if not s.gap
            )  # fmt: skip
            if publish is None or measured is None:
                return
            info = publish.stream_info(live=True)
            variants.append(Variant(state.playlist_file, measured[0], measured[1], info.codecs,
                                    info.width, info.height, info.fps))  # fmt: skip
        text = render_multivariant(variants)
        if text == self._variants:
            return
        try:
            write_atomic(self._context.layout.playlist_path(self.name), text)
        except OSError as exc:
            self._context.log.error("HLS %s: cannot write the playlist: %s", self.name, exc)
            return
        self._variants = text
        size = len(text.encode())
        self.usage.add(size - self._variants_bytes)
        self._variants_bytes = size

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
        layout, prefix = context.layout, self.prefix
        path = layout.segment_path(self.name, f"{prefix}{base}", ext)
        for n in itertools.count(1):
            init = path.with_suffix(".mp4")  # an fMP4 run's init segment takes this name
            taken = (path, Layout.temp_path(path), init, Layout.temp_path(init))
            if not any(os.path.lexists(p) for p in taken):
                break
            path = layout.segment_path(self.name, f"{prefix}{base}_{n}", ext)
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
        root = self.parent or self
        if root.track is not None:
            root._write_variants()
        if self.parent is not None:
            return  # a rendition: recordings and segment events are of track 0
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

    def publish_finished(self, publish: object, ended: bool) -> None:
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
        if self.parent is not None:
            return  # a rendition: its files go with the name's
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
            write_atomic(self._context.layout.playlist_path(self.name, self.playlist_file), text)
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
