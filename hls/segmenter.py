"""Where segments start and end: a pure state machine over (track, timestamp, keyframe, size).

No I/O and no clock: the packager feeds every frame and obeys the returned `Action`. Rules:

- nothing is written until a start point: the first video keyframe, or for audio-only streams
  the first audio frame;
- a segment is cut on a start point once `fragment` ms have passed, and on any frame once
  `max_fragment` ms have passed (keyframes not coming) or the size cap would be exceeded;
- once the playlist's target duration is known (`set_target`), a segment is also cut on any
  frame when the next one would make it round above the target (RFC 8216 4.3.3.1: an EXTINF
  rounded to the nearest integer never exceeds EXT-X-TARGETDURATION, which never changes);
- a timestamp going backwards on a track (beyond a small jitter tolerance) or forwards past the
  stream clock by more than `max_fragment` ends the segment; the next one starts at the next
  start point with a discontinuity;
- a new or changed sequence header ends the segment at the next start point, with a
  discontinuity (the muxer needs new extradata); until then frames of that track are dropped,
  the other track keeps going into the old segment;
- those breaks (a jump, a new header, and a size cut after less than a tenth of a fragment)
  may not come over and over: each adds one to a level that every fragment of media takes one
  off, and past BREAK_BURST the segmenter stops (`Action.STOP`, `stopped` says why) and the
  publish is ended as a violation. A timestamp jump or a new header every frame made a segment
  per frame (thousands a minute); honest streams break a few times at most (an encoder
  restart, a resolution change), and then a fragment or more goes by.

Why stop and not merge: a segment cannot hold two timelines or two codec configurations that
players decode, and a size cut is the bound on a file; dropping frames instead would leave a
publish that says it is live and shows nothing, where an error tells the streamer why.
"""

from __future__ import annotations

from enum import IntEnum

# Small backward steps on a track (sloppy encoders) are tolerated; the muxer nudges the DTS.
BACKWARD_TOLERANCE_MS = 100
# A track's frame interval is only trusted up to this when estimating a segment's end.
_MAX_INTERVAL_MS = 1000
#: Breaks allowed in a row (with no fragment of media between them) before the segmenter stops.
BREAK_BURST = 4
#: A size cut after less than this part of a fragment counts as a break (the bitrate is
#: hundreds of Mb/s, or the timestamps do not advance).
SHORT_SIZE_CUT = 10


class Track(IntEnum):
    """FLV tag types, so the values match what the RTMP core sees."""

    AUDIO = 8
    VIDEO = 9


class Action(IntEnum):
    DROP = 0  # discard this frame
    WRITE = 1  # write this frame into the open segment
    CUT = 2  # finish the open segment (if any), start a new one, write this frame into it
    CLOSE = 3  # finish the open segment, discard this frame (a new one starts later)
    STOP = 4  # finish the open segment, discard this frame and all after: breaks too often


class CutReason(IntEnum):
    START = 0  # first segment of the stream (or after a gap)
    FRAGMENT = 1  # keyframe after `fragment`
    MAX_FRAGMENT = 2  # forced: no keyframe within `max_fragment`, or the target would be passed
    SIZE = 3  # forced: size cap
    JUMP_BACK = 4
    JUMP_FORWARD = 5
    CONFIG = 6  # sequence header changed or a track appeared
    END = 7  # publish ended


_BREAKS = {
    CutReason.JUMP_BACK: "its timestamps jump backwards over and over",
    CutReason.JUMP_FORWARD: "its timestamps jump forwards over and over",
    CutReason.CONFIG: "its sequence headers (codec settings) change over and over",
    CutReason.SIZE: "it fills segments of [hls] max_segment_bytes in less than a tenth of a "
    "fragment over and over (a bitrate far too high, or timestamps that do not advance)",
}


def describe_break(reason: CutReason) -> str:
    """What the publisher is told when the segmenter stopped for breaks of this kind."""
    what = _BREAKS.get(reason, "it breaks its segments off over and over")
    return f"stream ended: {what}, and each time HLS must start a new segment; fix the encoder"


class Segmenter:
    """Decides cuts; after a CUT, CLOSE or STOP, `closed_duration` is the finished segment's
    length in ms (None if no segment was open) and `discontinuity` tells whether the new segment
    starts a new timeline. After a STOP, `stopped` is the reason of the break that was one too
    many, and every frame is dropped."""

    __slots__ = (
        "fragment", "max_fragment", "max_bytes", "has_video", "has_audio", "open",
        "start", "bytes", "reason", "discontinuity", "closed_duration", "stopped",
        "_pending_disc", "_pending_config", "_pending_reason", "_resync", "_last", "_interval",
        "_clock", "_limit", "_near", "_breaks",
    )  # fmt: skip

    #: Segments without media before the new one: only a rendition's have any
    #: (rtmpd.hls.renditions.FollowCuts).
    gaps: tuple[tuple[int, int, bool], ...] = ()

    def __init__(self, fragment_ms: int, max_fragment_ms: int, max_bytes: int) -> None:
        if fragment_ms <= 0 or max_fragment_ms < fragment_ms or max_bytes <= 0:
            raise ValueError("need 0 < fragment <= max_fragment and max_bytes > 0")
        self.fragment = fragment_ms
        self.max_fragment = max_fragment_ms
        self.max_bytes = max_bytes
        self.has_video = False
        self.has_audio = False
        self.open = False
        self.start = 0  # first DTS of the open segment
        self.bytes = 0  # payload bytes in the open segment
        self.reason = CutReason.START
        self.discontinuity = False
        self.closed_duration: int | None = None
        self.stopped: CutReason | None = None
        self._pending_disc = False
        self._pending_config = False
        self._pending_reason = CutReason.START  # why the next segment will start from scratch
        self._resync: set[Track] = set()
        self._last: dict[Track, int] = {}
        self._interval: dict[Track, int] = {}
        self._clock: int | None = None  # highest DTS seen on the current timeline
        self._limit = 1 << 62  # a segment must stay shorter than this (ms), once a target is set
        self._near = 1 << 62  # from here on, check the next frame against _limit
        self._breaks = 0.0  # recent breaks, less a fragment of media each

    @property
    def new_run(self) -> bool:
        """The new segment needs a new muxer: where it starts a new timeline."""
        return self.discontinuity

    def set_target(self, target_seconds: int) -> None:
        """The playlist's target duration: segments stay under target + 0.5 s from now on."""
        self._limit = target_seconds * 1000 + 500
        self._near = self._limit - _MAX_INTERVAL_MS

    def mark_discontinuity(self) -> None:
        """The next segment starts a new timeline (re-publish, lost segments)."""
        self._pending_disc = True

    def configure(self, track: Track, changed: bool) -> None:
        """A track got a (new) sequence header. `changed` is False for a repeat of the same."""
        had = self.has_video if track is Track.VIDEO else self.has_audio
        if track is Track.VIDEO:
            self.has_video = True
        else:
            self.has_audio = True
        if self.open and (changed or not had):
            self._pending_config = True
            self._resync.add(track)

    def frame(self, track: Track, dts: int, keyframe: bool, size: int) -> Action:
        if self.stopped is not None:
            return Action.DROP
        if track is Track.VIDEO:
            if not self.has_video:
                return Action.DROP
            start_point = keyframe
        else:
            if not self.has_audio:
                return Action.DROP
            start_point = not self.has_video
        if not self.open:
            if not start_point:
                return Action.DROP
            self.closed_duration = None
            self._begin(dts, size, track, self._pending_reason)
            self._pending_reason = CutReason.START
            return Action.CUT

        last = self._last.get(track)
        if last is not None and dts < last - BACKWARD_TOLERANCE_MS:
            return self._jump(track, dts, size, start_point, CutReason.JUMP_BACK)
        if self._clock is not None and dts > self._clock + self.max_fragment:
            return self._jump(track, dts, size, start_point, CutReason.JUMP_FORWARD)

        if self._pending_config:
            if start_point:
                span = dts - self.start if dts > self.start else self._end() - self.start
                self.closed_duration = max(span, 1)
                if self._broke(CutReason.CONFIG):
                    return Action.STOP
                self._pending_disc = True
                self._begin(dts, size, track, CutReason.CONFIG)
                return Action.CUT
            if track in self._resync:
                return Action.DROP
            # The other track goes on into the old segment, within the usual forced cuts.

        elapsed = dts - self.start
        if start_point and elapsed >= self.fragment:
            reason = CutReason.FRAGMENT
        elif elapsed >= self.max_fragment or (
            elapsed >= self._near and elapsed + self._interval.get(track, 0) >= self._limit
        ):
            reason = CutReason.MAX_FRAGMENT
        elif self.bytes + size > self.max_bytes and self.bytes:
            reason = CutReason.SIZE
        else:
            self._advance(track, dts, size)
            return Action.WRITE
        self.closed_duration = max(elapsed, 1)
        if reason is CutReason.SIZE and elapsed * SHORT_SIZE_CUT < self.fragment:
            if self._broke(reason):
                return Action.STOP
        else:
            self._broke(None)
        if self._pending_config:  # a forced cut before the start point: new extradata
            self._pending_disc = True
        self._begin(dts, size, track, reason)
        return Action.CUT

    def finish(self) -> int | None:
        """The publish ended: the open segment's duration in ms (None if none was open)."""
        if not self.open:
            return None
        self.open = False
        return max(self._end() - self.start, 1)

    def elapsed(self) -> int:
        """Media in the open segment so far, in ms (0 if none is open)."""
        return self._end() - self.start if self.open else 0

    def _jump(self, track: Track, dts: int, size: int, start_point: bool, why: CutReason) -> Action:
        self.closed_duration = max(self._end() - self.start, 1)
        if self._broke(why):
            return Action.STOP
        self._pending_disc = True
        self._last.clear()
        self._interval.clear()
        self._clock = None
        if start_point:
            self._begin(dts, size, track, why)
            return Action.CUT
        self.open = False
        self._pending_reason = why
        return Action.CLOSE

    def _broke(self, why: CutReason | None) -> bool:
        """Account for the segment just closed (`closed_duration`), cut by a break (`why`) or
        not (None); True, with the segment closed for good, once breaks come too often."""
        assert self.closed_duration is not None
        level = max(self._breaks - self.closed_duration / self.fragment, 0.0)
        if why is not None:
            level += 1
        self._breaks = level
        if level <= BREAK_BURST:
            return False
        self.open = False
        self.stopped = why
        return True

    def _begin(self, dts: int, size: int, track: Track, reason: CutReason) -> None:
        self.open = True
        self.start = dts
        self.bytes = 0
        self.reason = reason
        self.discontinuity = self._pending_disc
        self._pending_disc = False
        self._pending_config = False
        self._resync.clear()
        self._advance(track, dts, size)

    def _advance(self, track: Track, dts: int, size: int) -> None:
        self.bytes += size
        last = self._last.get(track)
        if last is not None:
            if dts <= last:
                return
            self._interval[track] = min(dts - last, _MAX_INTERVAL_MS)
        self._last[track] = dts
        if self._clock is None or dts > self._clock:
            self._clock = dts

    def _end(self) -> int:
        """Estimated end of the media written so far: last DTS plus one frame interval."""
        if not self._last:
            return self.start
        return max(last + self._interval.get(t, 0) for t, last in self._last.items())
