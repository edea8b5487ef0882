"""Packaging one publish: a `StreamPackager` cuts it (segmenter) and writes it through its
`Runs` (rtmpd.hls.runs: one PyAV MPEG-TS muxer per run of segments, or one fMP4 run of
fragments with LL-HLS parts), which hands each finished segment (and, with LL-HLS, each part)
to its `PackagerOwner` (rtmpd.hls.owner), the public name it goes out under, which outlives
the publish: it names the files, lists them and decides the playlist's target duration
(rtmpd.hls.name_state). Disk work per packet is the splitter's buffered write, per segment a
rename and, in the owner, one playlist rewrite. A multitrack publish's other video tracks go
to its renditions (rtmpd.hls.renditions' `LeadTracks`).

Which muxer a run gets: `[hls] format`; with "auto" MPEG-TS where every track's setup
(rtmpd.hls.tracks) fits it, fMP4 otherwise, and fMP4 while the name's playlist lists fMP4
segments; with "ts" a track it cannot carry stops the publish (Bound.FORMAT), named.

A run of segments shares one muxer, so continuity counters and PCR go on across its files; it
ends (and the next segment starts a new muxer) where the playlist says EXT-X-DISCONTINUITY: a
new timeline, new codec parameters, a re-publish (and a rendition's fMP4 run where it is
followed by gaps, so that its last part ends with its segment).

Bad input never raises out of the media methods: an unusable sequence header is logged once
and ignored (the previous valid one stays in force; with none, that track's frames are
dropped), a payload FFmpeg rejects is dropped. A disk error (ENOSPC, EACCES, ...) is logged
once per outage: the segment being written is lost, the stream goes on, and writing resumes
at the next segment that can be opened, with a discontinuity.

Abuse is not bad input: a publish that goes past one of the bounds (the segmenter's breaks
over and over, the disk its name may hold: rtmpd.hls.quota, media far ahead of real time:
rtmpd.hls.pace) is stopped: what was written is listed, ENDLIST, and `violation` tells the
composition root why, which ends the publish with that error (rtmpd.publish). Past the
folder's bound the owner makes room, which may stop this publish or another.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable

from .config import Format, HlsConfig
from .model import CODEC_NAMES, Bound, Codec, Keyframe, StreamInfo, Violation
from .muxer import SegmentOutput
from .owner import OpenSegment, PackagerOwner
from .pace import Pace
from .quota import StreamUsage, describe_stream_bound
from .renditions import FollowCuts, LeadTracks
from .runs import Runs
from .segmenter import Action, Segmenter, Track, describe_break
from .storage import Layout, make_dirs
from .tracks import (
    AudioSetup,
    VideoSetup,
    audio_setup,
    frame_key,
    frame_setup,
    ts_carries,
    video_setup,
)

_STATS_SEGMENTS = 3  # bitrates and fps are measured over this many recent segments
_WRITE, _DROP, _CUT = Action.WRITE, Action.DROP, Action.CUT
_CLOSE, _STOP = Action.CLOSE, Action.STOP
_VIDEO, _AUDIO = Track.VIDEO, Track.AUDIO


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
        usage: StreamUsage,
        pace: Pace,
        follow: FollowCuts | None = None,
    ) -> None:
        self.name = name
        self._owner = owner
        self._clock = clock
        self._log = log
        self._usage = usage  # the name's files on disk, which this publish's writes add to
        self._pace = pace  # how far the name's media is ahead of real time
        self._held_seconds = config.held_seconds
        self._format = config.format
        self._fmp4_only = config.fmp4_only
        self._low_latency = config.low_latency
        part_ms = round(config.part_duration * 1000)
        self._runs = Runs(name, owner, part_ms, config.low_latency, log, self._warn,
                          self._follow_target, stand_in=follow is not None)  # fmt: skip
        self._seg: Segmenter | FollowCuts = follow or Segmenter(
            round(config.fragment * 1000),
            round(config.effective_max_fragment * 1000),
            config.max_segment_bytes,
        )
        #: Multitrack: the other video tracks (on track 0's packager) ...
        self._lead = LeadTracks(owner.open_renditions, self._warn)
        #: ... and, on the renditions', track 0's packager, which their bounds stop.
        self.leader: StreamPackager | None = None
        if new_timeline:
            self._seg.mark_discontinuity()  # a re-publish or takeover
        self._target: int | None = None
        self._follow_target()
        self._done = False
        self._current: OpenSegment | None = None
        self._video: VideoSetup | None = None
        self._audio: AudioSetup | None = None
        self._audio_key = b""  # the frame header bits of MP3 or AC-3 that set `_audio` up
        self._warned: set[str] = set()
        self._serial = 0  # segments opened so far
        self._anchor: tuple[float, int] | None = None  # (wall, stream ms) for date-times
        self._stats: deque[tuple[int, int, int, int]] = deque(maxlen=_STATS_SEGMENTS)
        self._keyframe: Keyframe | None = None
        #: Set when the packager ended this publish at one of its bounds; the composition root
        #: then ends the publish with an error the publisher sees.
        self.violation: Violation | None = None

    @property
    def has_tracks(self) -> bool:
        """Whether any track can be packaged (a usable sequence header arrived)."""
        return self._video is not None or self._audio is not None

    # -- media from the publisher -----------------------------------------------------------

    def video_config(
        self, timestamp: int, record: bytes | memoryview, codec: Codec = Codec.H264
    ) -> None:
        """A video sequence header: the codec's configuration record."""
        if self._done:
            return
        data = bytes(record)
        old = self._video
        if old is not None and data == old.config and codec is old.codec:
            return
        try:
            setup = video_setup(codec, data)
        except ValueError as exc:
            name = CODEC_NAMES[codec]
            self._warn(f"config {codec}", "ignoring an unusable %s sequence header (%s)", name, exc)
            return
        self._video = setup
        self._seg.configure(_VIDEO, changed=True)
        leader = self.leader
        if leader is not None and self._seg.open:
            # A rendition's new settings need a new run: track 0's next cut starts a new
            # timeline for every rendition, so their discontinuities stay aligned.
            leader._seg.mark_discontinuity()
        self._check_format(setup)

    def audio_config(
        self, timestamp: int, record: bytes | memoryview, codec: Codec = Codec.AAC
    ) -> None:
        """An audio sequence header: AudioSpecificConfig, Opus ID header, FLAC STREAMINFO."""
        if self._done:
            return
        data = bytes(record)
        old = self._audio
        if old is not None and data == old.config and codec is old.codec:
            return
        try:
            setup = audio_setup(codec, data)
        except ValueError as exc:
            name = CODEC_NAMES[codec]
            self._warn(f"config {codec}", "ignoring an unusable %s sequence header (%s)", name, exc)
            return
        self._audio, self._audio_key = setup, b""
        self._seg.configure(_AUDIO, changed=True)
        self._check_format(setup)
        tracks = self._lead.renditions
        if tracks is not None:
            tracks.audio_config(timestamp, data, codec)

    def video(
        self,
        timestamp: int,
        composition_offset: int,
        keyframe: bool,
        data: bytes | bytearray | memoryview,
    ) -> None:
        setup = self._video
        if setup is None or self._done:
            if not self._done:
                self._warn("video", "dropping video: no usable video sequence header")
            return
        if type(data) is not bytes:
            data = bytes(data)  # FFmpeg may hold the packet past this call
        size = len(data)
        if not size:
            return
        if keyframe and setup.width is None:  # VP9, some AV1: the size is in the keyframe
            setup = self._video = setup.with_keyframe(data)
        lead = self._lead
        if not lead.started:
            lead.start()
        tracks = lead.renditions
        action = self._seg.frame(_VIDEO, timestamp, keyframe, size)
        cut = None
        if action is not _WRITE:
            if action is _DROP:
                if tracks is not None:
                    tracks.advance(timestamp)
                return
            cut = self._cut(action, timestamp)
        if tracks is not None:
            tracks.advance(timestamp)
        seg = self._current
        if seg is None:  # closed (CLOSE), or the publish was stopped (STOP)
            return
        seg.vbytes += size
        seg.vframes += 1
        if seg.vfirst < 0:
            seg.vfirst = timestamp
        seg.vlast = timestamp
        if keyframe:
            self._keyframe = Keyframe(setup.extradata, data, timestamp, setup.decoder)
        if self._runs.video(timestamp, composition_offset, keyframe, setup, data, cut):
            self._check_room()

    def audio(self, timestamp: int, data: bytes | bytearray | memoryview) -> None:
        """A frame of AAC, Opus or FLAC (raw, as FLV carries it), after its sequence header."""
        setup = self._audio
        if setup is None or self._audio_key or self._done:
            if not self._done:
                self._warn("audio", "dropping audio: no usable audio sequence header")
            return
        if type(data) is not bytes:
            data = bytes(data)
        self._audio_frame(setup, timestamp, data)
        tracks = self._lead.renditions
        if tracks is not None:
            tracks.audio(timestamp, data)

    def mp3(self, timestamp: int, data: bytes | bytearray | memoryview) -> None:
        """An MP3 frame (FLV sound formats 2 and 14): its header configures the track."""
        self.framed_audio(timestamp, data, Codec.MP3)

    def framed_audio(
        self, timestamp: int, data: bytes | bytearray | memoryview, codec: Codec
    ) -> None:
        """A frame of MP3, AC-3 or E-AC-3, whose header configures the track."""
        if self._done:
            return
        key = frame_key(codec, data)
        if not key:
            return
        setup = self._audio
        if setup is None or key != self._audio_key or codec is not setup.codec:
            try:
                new = frame_setup(codec, bytes(data), key)
            except ValueError as exc:
                self._warn(f"frame {codec}", "dropping %s audio FFmpeg cannot take (%s)",
                           CODEC_NAMES[codec], exc)  # fmt: skip
                return
            changed = setup is not None
            self._audio, self._audio_key = new, key
            self._seg.configure(_AUDIO, changed=changed)
            self._check_format(new)
            setup = new
        if type(data) is not bytes:
            data = bytes(data)
        self._audio_frame(setup, timestamp, data)
        tracks = self._lead.renditions
        if tracks is not None:
            tracks.framed_audio(timestamp, data, codec)

    def close(self) -> None:
        """The publish ended: list the partial segment, ENDLIST, cleanup after the grace."""
        self._finish_publish(ended=True)

    def detach(self) -> None:
        """A takeover replaced this publish: list its partial segment, no ENDLIST."""
        self._finish_publish(ended=False)

    def stop(self, violation: Violation) -> None:
        """End this publish at a bound: what is written is listed, ENDLIST, no more media;
        `violation` says why, for the publisher. A rendition's bound ends the whole publish."""
        if self._done:
            return
        if self.leader is not None and not self.leader._done:
            self.leader.stop(violation)
            return
        self.violation = violation
        self._finish_publish(ended=True)

    # -- internals --------------------------------------------------------------------------

    def _audio_frame(
        self, setup: AudioSetup, timestamp: int, data: bytes | bytearray | memoryview
    ) -> None:
        if type(data) is not bytes:
            data = bytes(data)
        size = len(data)
        if not size:
            return
        action = self._seg.frame(_AUDIO, timestamp, False, size)
        cut = None
        if action is not _WRITE:
            if action is _DROP:
                return
            cut = self._cut(action, timestamp)
        seg = self._current
        if seg is None:  # closed (CLOSE), or the publish was stopped (STOP)
            return
        seg.abytes += size
        if self._runs.audio(timestamp, setup, data, cut):
            self._check_room()

    def _finish_publish(self, ended: bool) -> None:
        if self._done:
            return
        self._done = True
        duration = self._seg.finish() or 1
        seg = self._current
        end = None if self._seg.gaps else self._runs.open_end()
        if seg is not None and end is not None and end > seg.start:
            duration = end - seg.start  # where its last part ends: parts add up to EXTINF
        now = self._clock()
        self._close_current(duration, now)
        for gap in self._seg.gaps:  # a rendition's: track 0's last segments it never reached
            self._add_gap(*gap, now)
        end_ms = None if seg is None else seg.start + duration
        self._runs.end(end_ms)
        self._owner.publish_finished(self, ended)
        tracks = self._lead.renditions
        if tracks is not None:
            tracks.finish(ended, end_ms)

    def _cut(self, action: Action, timestamp: int) -> SegmentOutput | None:
        """Close the open segment and, for a CUT, open the next. Returns the output the running
        muxer is to split into at this packet, or None when the packet starts a new run (or
        there is no open segment now: CLOSE, STOP)."""
        now = self._clock()
        closing = self._current
        in_pace = self._close_current(self._seg.closed_duration or 1, now)
        if action is _STOP:
            reason = self._seg.stopped
            assert reason is not None
            self.stop(Violation(Bound.BREAKS, describe_break(reason)))
            return None
        if not in_pace:
            self.stop(Violation(Bound.SPEED, self._pace.describe()))
            return None
        runs = self._runs
        if action is _CLOSE:
            runs.end()
            return None
        cuts = self._seg
        new_timeline, new_run = cuts.discontinuity, cuts.new_run
        if cuts.gaps:  # a rendition's: track 0's segments it has no media for
            for gap in cuts.gaps:
                self._add_gap(*gap, now)
            new_run = new_run or runs.fmp4 is not None  # its last part ends before the gaps
        running = runs.running
        start = cuts.start  # the frame's timestamp, or for a rendition the leader's cut
        seg = self._open_segment(start, now, new_timeline, running and not new_run)
        tracks = self._lead.renditions
        if tracks is not None:
            tracks.cut(start, new_timeline)
        if running and not new_run:
            seg.map_uri = runs.map_uri
            return seg.output
        end = None  # where the last segment ends, when not at this frame: before a gap
        if closing is not None and cuts.gaps:
            end = closing.start + closing.duration_ms
        runs.end(end)
        runs.start(seg, self._video, self._audio)
        return None

    def _close_current(self, duration_ms: int, now: float) -> bool:
        """Cut the open segment here; False when the name's media is now too far ahead of
        real time."""
        seg = self._current
        if seg is None:
            return True
        self._current = None
        seg.duration_ms = duration_ms
        seg.closed_at = now
        self._stats.append((duration_ms, seg.vbytes, seg.abytes, seg.vframes))
        return self._pace.media(duration_ms, now)

    def _open_segment(
        self, timestamp: int, now: float, new_timeline: bool, continues: bool = False
    ) -> OpenSegment:
        """A segment that `continues` the running muxer is of its format."""
        pdt = self._date_time(timestamp, now, new_timeline)
        fmp4 = self._runs.fmp4 is not None if continues else self._wants_fmp4()
        ext = "m4s" if fmp4 else "ts"
        path = self._owner.segment_path(timestamp, pdt, ext)
        serial = self._serial = self._serial + 1

        def failed(exc: OSError) -> None:
            self._runs.disk_error(exc, serial)

        output = SegmentOutput(Layout.temp_path(path), failed, self._usage.add)
        seg = OpenSegment(serial, path, output, timestamp, pdt, new_timeline, now)
        try:
            make_dirs(path.parent)
        except OSError as exc:
            output.error = exc  # lost: nothing will be written to it
            failed(exc)
        self._current = seg
        self._runs.pending.append(seg)
        return seg

    def _date_time(self, timestamp: int, now: float, new_timeline: bool) -> float:
        """Within a run, each date-time is the one before plus its duration: the anchor moves
        to the wall clock only where a new timeline starts."""
        anchor = self._anchor
        if anchor is None or new_timeline:
            leader = self.leader
            if leader is not None and leader._anchor is not None:
                anchor = self._anchor = leader._anchor  # the same date-times as track 0's
            else:
                anchor = self._anchor = (now, timestamp)
        return anchor[0] + (timestamp - anchor[1]) / 1000

    def _add_gap(self, start: int, duration_ms: int, new_timeline: bool, now: float) -> None:
        """A rendition's segment with no media (its video stopped, or had no keyframe, with
        no audio, across track 0's cut): listed as EXT-X-GAP in its turn, so that its media
        sequence numbers stay track 0's."""
        pdt = self._date_time(start, now, new_timeline)
        runs = self._runs
        path = self._owner.segment_path(start, pdt, "m4s" if runs.fmp4 is not None else "ts")
        self._serial += 1
        output = SegmentOutput(Layout.temp_path(path), lambda exc: None)  # never written
        seg = OpenSegment(self._serial, path, output, start, pdt, new_timeline, now)
        seg.gap, seg.duration_ms, seg.closed_at = True, duration_ms, now
        seg.map_uri = runs.map_uri if runs.fmp4 is not None else None
        runs.pending.append(seg)

    def _wants_fmp4(self) -> bool:
        """fMP4 when asked for (or for LL-HLS), or with `auto` for tracks MPEG-TS cannot
        carry (AV1, VP9, Opus, FLAC), and while the name's playlist lists fMP4 segments (an
        EXT-X-MAP holds for every segment after it: MPEG-TS cannot follow)."""
        if self._fmp4_only or self._owner.lists_fmp4:
            return True
        return not (ts_carries(self._video) and ts_carries(self._audio))

    def _check_format(self, setup: VideoSetup | AudioSetup) -> None:
        """With `format = "ts"`, a track MPEG-TS cannot carry ends the publish, named."""
        if self._format is not Format.TS or self._fmp4_only or ts_carries(setup):
            return
        kind = "video" if isinstance(setup, VideoSetup) else "audio"
        self.stop(Violation(Bound.FORMAT, (
            f"MPEG-TS cannot carry {setup.name} {kind} and this server writes MPEG-TS only "
            '([hls] format = "ts"); send H.264 or HEVC video with AAC, MP3, AC-3 or E-AC-3 '
            'audio, or set format = "auto" or "fmp4" on the server')))  # fmt: skip

    def _check_room(self) -> None:
        """After a write: past its name's bound this publish ends; past the folder's, the
        owner makes room (which may end this publish or another)."""
        bound = self._usage.over()
        if bound is Bound.STREAM_BYTES:
            limit = self._usage.quota.max_stream
            fits = limit * 8 / self._held_seconds
            self.stop(Violation(bound, describe_stream_bound(limit, fits)))
        elif bound is not None:
            self._owner.make_room()

    def _follow_target(self) -> None:
        target = self._owner.target_duration
        if target is not None and target != self._target:
            self._target = target
            self._seg.set_target(target)

    def _warn(self, key: str, message: str, *args: object) -> None:
        """Log a given kind of input problem once per publish."""
        if key not in self._warned:
            self._warned.add(key)
            self._log.warning("HLS %s: " + message, self.name, *args)

    # -- multitrack -------------------------------------------------------------------------

    def track_config(self, track: int, timestamp: int, record: bytes | memoryview,
                     codec: Codec) -> None:  # fmt: skip
        """A sequence header of video track `track` (not 0): a rendition, when it comes before
        track 0's first frame (rtmpd.hls.renditions)."""
        if not self._done:
            self._lead.config(track, timestamp, bytes(record), codec)

    @property
    def audio_setup(self) -> AudioSetup | None:
        """The audio track's setup from a sequence header (None for MP3, AC-3, E-AC-3, whose
        frames configure it)."""
        return None if self._audio_key else self._audio

    def track_video(self, track: int, timestamp: int, composition_offset: int, keyframe: bool,
                    data: bytes | bytearray | memoryview) -> None:  # fmt: skip
        """A frame of video track `track` (not 0)."""
        if not self._done:
            if type(data) is not bytes:
                data = bytes(data)
            self._lead.video(track, timestamp, composition_offset, keyframe, data)

    # -- about the publish ------------------------------------------------------------------

    def stream_info(self, live: bool, track: int = 0) -> StreamInfo:
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
        vconf, aconf, tracks = self._video, self._audio, self._lead.renditions
        runs = self._runs
        fmp4 = runs.fmp4 is not None or (runs.ts is None and self._wants_fmp4())
        return StreamInfo(
            name=self.name,
            live=live,
            video_codec=vconf.codec_string(fmp4) if vconf else None,
            audio_codec=aconf.codec_string if aconf else None,
            width=vconf.width if vconf else None,
            height=vconf.height if vconf else None,
            fps=round(fps, 3) if fps else None,
            sample_rate=aconf.sample_rate if aconf else None,
            channels=aconf.channels if aconf else None,
            video_kbps=round(vbytes * 8 / duration, 1) if duration and vconf else None,
            audio_kbps=round(abytes * 8 / duration, 1) if duration and aconf else None,
            keyframe=self._keyframe,
            video_name=vconf.name if vconf else None,
            audio_name=aconf.name if aconf else None,
            fmp4=fmp4,
            track=track,
            renditions=() if tracks is None else tracks.infos(live),
        )
