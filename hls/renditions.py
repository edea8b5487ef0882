"""Renditions from multitrack video: pure decisions (no I/O, no clock).

An enhanced RTMP publish may send several video tracks (OBS's multitrack video, Twitch's
Enhanced Broadcasting: one encode per size). Each becomes a rendition: its own media playlist
(`v<track>.m3u8`, segments `v<track>-<n>.m4s`), all of them under one multivariant playlist
(`index.m3u8`). Track 0's audio is muxed into every rendition, so each is self-contained.

Which tracks: those whose sequence header came before track 0's first video frame (OBS sends
every track's header first), at most `[hls] max_renditions` of them with track 0. The set is
fixed there, before the first segment or LL-HLS part exists, so `index.m3u8` is never one kind
of playlist and then the other within a publish; a track that starts later is logged and
dropped.

Aligned segments: track 0 (the leader) cuts as a single-track stream does; every other
rendition (a follower, `FollowCuts`) cuts at exactly the leader's cut timestamps, so every
rendition has the same media sequence numbers, EXTINF durations and discontinuities, which is
what lets a player switch at any segment. A follower frame waits (`FollowerQueue`) until the
leader has decided the cuts up to its timestamp. A follower whose video has no keyframe at a
cut still cuts there, on its next keyframe or audio frame, whichever comes first (the cut's
timestamp is the segment's start either way); its video frames are dropped until its next
keyframe, so the segment decodes, with a still picture at its start instead of a broken one,
and the numbering stays aligned. Each such miss is counted (`missed`). Every cut of the
leader's is a segment of every follower: one passed with no media at all (its video stopped,
or had no keyframe, and there is no audio) is a gap (EXT-X-GAP). A follower's new sequence
header never starts a discontinuity of its own (the discontinuity sequence must be the same in
every rendition): its new settings wait for the next cut where the leader starts a new
timeline, which the packager asks the leader for.

The multivariant playlist (`render_multivariant`, RFC 8216bis 4.4.6.2): BANDWIDTH is the peak
segment bit rate of the rendition's listed segments (4.4.6.2: "the peak segment bit rate"),
AVERAGE-BANDWIDTH their mean, RESOLUTION, CODECS (video and the shared audio) and FRAME-RATE
as measured (snapped to the nominal rate it is within 1 % of: 29.97, 30, 25, ...).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Protocol

from .model import Codec, StreamInfo
from .segmenter import Action, Track

#: Follower frames waiting for the leader's cut decisions, at most (then they go on anyway).
QUEUE_FRAMES = 240
#: ... or this far (ms) ahead of the leader's video.
QUEUE_AHEAD_MS = 2000


class Renditions(Protocol):
    """The other video tracks of a multitrack publish, led by track 0's packager
    (rtmpd.hls.multitrack.TrackSet): told about the leader's cuts, video clock, audio and end."""

    fixed: bool

    def config(self, track: int, timestamp: int, record: bytes, codec: Codec) -> None: ...

    def video(
        self, track: int, timestamp: int, offset: int, keyframe: bool, data: bytes
    ) -> None: ...

    def fix(self) -> None: ...

    def cut(self, timestamp: int, discontinuity: bool) -> None: ...

    def advance(self, timestamp: int) -> None: ...

    def audio_config(self, timestamp: int, record: bytes, codec: Codec) -> None: ...

    def audio(self, timestamp: int, data: bytes) -> None: ...

    def framed_audio(self, timestamp: int, data: bytes, codec: Codec) -> None: ...

    def finish(self, ended: bool, end_ms: int | None) -> None: ...

    def infos(self, live: bool) -> tuple[StreamInfo, ...]: ...


class LeadTracks:
    """Track 0's packager's side of the other video tracks: their sequence headers and frames
    go to the renditions (opened at the first header, through `open_renditions`), named once
    by `warn(key, message, *args)` where they cannot (a header after track 0's first frame,
    frames with no header before them, an owner that cannot write renditions)."""

    __slots__ = ("renditions", "started", "_open", "_refused", "_warn")

    def __init__(self, open_renditions: Callable[[], Renditions | None],
                 warn: Callable[..., None]) -> None:  # fmt: skip
        self.renditions: Renditions | None = None
        self.started = False  # track 0's first video frame came: the set is fixed
        self._open = open_renditions
        self._refused = False  # the owner cannot write renditions
        self._warn = warn

    def start(self) -> None:
        """Track 0's first video frame."""
        self.started = True
        if self.renditions is not None:
            self.renditions.fix()

    def config(self, track: int, timestamp: int, record: bytes, codec: Codec) -> None:
        """A sequence header of video track `track` (not 0)."""
        if self.renditions is None:
            if self._refused:
                return
            if self.started:
                self._warn(f"late {track}", "video track %d started after track 0's first "
                           "frame: the renditions are fixed by then; dropped", track)  # fmt: skip
                return
            self.renditions = self._open()
            if self.renditions is None:
                self._refused = True  # asked once: no renditions for this publish
                return
        self.renditions.config(track, timestamp, record, codec)

    def video(self, track: int, timestamp: int, offset: int, keyframe: bool,
              data: bytes) -> None:  # fmt: skip
        """A frame of video track `track` (not 0)."""
        if self.renditions is not None:
            self.renditions.video(track, timestamp, offset, keyframe, data)
        elif not self._refused:
            self._warn(f"headless {track}", "video track %d is not packaged: no sequence "
                       "header came before its frames; dropped", track)  # fmt: skip


def rendition_playlist(track: int) -> str:
    """The media playlist of the rendition of video track `track`."""
    return f"v{track}.m3u8"


def rendition_prefix(track: int) -> str:
    """What the rendition's segment, init and part files start with."""
    return f"v{track}-"


@dataclass(frozen=True, slots=True)
class Variant:
    """One rendition as the multivariant playlist lists it."""

    uri: str
    bandwidth: int  # bits per second, peak segment
    average: int | None  # bits per second over the listed segments
    codecs: str  # "avc1.64001f,mp4a.40.2"
    width: int | None
    height: int | None
    fps: float | None


def segment_bandwidth(segments: Iterable[tuple[int, int]]) -> tuple[int, int] | None:
    """(peak, average) bits per second of (bytes, duration ms) segments; None for none."""
    peak = total_bits = total_ms = 0
    for size, duration_ms in segments:
        if duration_ms <= 0:
            continue
        peak = max(peak, -(-size * 8000 // duration_ms))
        total_bits += size * 8
        total_ms += duration_ms
    if not total_ms:
        return None
    return peak, -(-total_bits * 1000 // total_ms)


#: Frame rates encoders use; a measured one within NOMINAL_TOLERANCE of one is that one (the
#: measure over a few segments wavers by a frame: 29.995, 30.161).
NOMINAL_RATES = (10.0, 12.0, 12.5, 15.0, 20.0, 24000 / 1001, 24.0, 25.0, 30000 / 1001, 30.0,
                 48.0, 50.0, 60000 / 1001, 60.0, 120.0)  # fmt: skip
NOMINAL_TOLERANCE = 0.01


def nominal_rate(fps: float) -> float:
    """The encoder's frame rate for a measured one: the nearest of NOMINAL_RATES within 1 %,
    else the measure."""
    near = min(NOMINAL_RATES, key=lambda rate: abs(rate - fps))
    return near if abs(near - fps) <= NOMINAL_TOLERANCE * near else fps


def render_multivariant(variants: Sequence[Variant]) -> str:
    """The multivariant playlist over `variants`, highest bandwidth first (players start with
    the first one listed unless they measure; hls.js sorts them itself)."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:6", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for v in sorted(variants, key=lambda v: v.bandwidth, reverse=True):
        attrs = [f"BANDWIDTH={v.bandwidth}"]
        if v.average is not None:
            attrs.append(f"AVERAGE-BANDWIDTH={v.average}")
        if v.codecs:
            attrs.append(f'CODECS="{v.codecs}"')
        if v.width and v.height:
            attrs.append(f"RESOLUTION={v.width}x{v.height}")
        if v.fps:
            attrs.append(f"FRAME-RATE={nominal_rate(v.fps):.3f}")
        lines.append("#EXT-X-STREAM-INF:" + ",".join(attrs))
        lines.append(v.uri)
    return "\n".join(lines) + "\n"


def rendition_report(uri: str, last_msn: int, last_part: int) -> str:
    """EXT-X-RENDITION-REPORT for another rendition (RFC 8216bis 4.4.5.4); LAST-PART is left
    out when that rendition has no part of the segment LAST-MSN yet."""
    part = f",LAST-PART={last_part}" if last_part >= 0 else ""
    return f'#EXT-X-RENDITION-REPORT:URI="{uri}",LAST-MSN={last_msn}{part}'


#: A segment a rendition has no media for: (start ms, duration ms, discontinuity).
Gap = tuple[int, int, bool]


class FollowCuts:
    """The segmenter of a follower rendition: it cuts where the leader cut (see the module
    doc), with the `rtmpd.hls.segmenter.Segmenter` interface the packager drives. After a
    CUT, `gaps` are the leader's segments this rendition had no media for (listed as
    EXT-X-GAP before the new one), `discontinuity` is the leader's at the new segment's cut
    and `new_run` whether the new segment needs a new muxer."""

    __slots__ = ("has_video", "has_audio", "open", "start", "discontinuity", "closed_duration",
                 "stopped", "missed", "gaps", "new_run", "_cuts", "_armed", "_need_key",
                 "_await_disc", "_last", "_end")  # fmt: skip

    def __init__(self) -> None:
        self.has_video = False
        self.has_audio = False
        self.open = False
        self.start = 0
        self.discontinuity = False
        self.closed_duration: int | None = None
        self.stopped: None = None  # never: the leader's segmenter bounds breaks
        self.missed = 0  # cuts at which this rendition had no keyframe
        self.gaps: tuple[Gap, ...] = ()
        self.new_run = False
        self._cuts: deque[tuple[int, bool]] = deque()  # the leader's, not reached yet
        self._armed: list[tuple[int, bool]] = []  # cuts passed with no keyframe, oldest first
        self._need_key = True  # video waits for a keyframe
        self._await_disc = False  # new video settings: video waits for a new run
        self._last = 0  # the newest timestamp written
        self._end: int | None = None  # where the leader's last segment ended

    # -- from the leader ----------------------------------------------------------------------

    def leader_cut(self, timestamp: int, discontinuity: bool) -> None:
        """The leader started a segment at `timestamp`."""
        self._cuts.append((timestamp, discontinuity))

    def leader_end(self, timestamp: int | None) -> None:
        """The leader's publish finished; its last segment ended at `timestamp`."""
        self._end = timestamp

    # -- the Segmenter interface --------------------------------------------------------------

    def set_target(self, target_seconds: int) -> None:
        """The leader keeps every segment under the target: nothing to do here."""

    def mark_discontinuity(self) -> None:
        """A re-publish: the leader's first cut carries the discontinuity, for every rendition."""

    def configure(self, track: Track, changed: bool) -> None:
        if track is Track.VIDEO:
            self.has_video = True
            if changed and self.open:
                # New extradata: its frames need a new run, which only starts where the leader
                # starts a new timeline (the packager asks the leader for one at its next cut),
                # so that every rendition's discontinuities stay track 0's.
                self._need_key = self._await_disc = True
        else:
            self.has_audio = True

    def frame(self, track: Track, dts: int, keyframe: bool, size: int) -> Action:
        if track is Track.VIDEO:
            if not self.has_video:
                return Action.DROP
            armed = self._armed
            passed = self._passed(dts)
            if passed:
                cuts = armed + passed
                if keyframe and not self._waits(cuts):
                    self._need_key = False
                    return self._begin(cuts, dts)
                if not self._await_disc:
                    self.missed += 1
                armed.extend(passed)
                self._need_key = True
                return Action.DROP
            if self._need_key:
                if not keyframe or self._waits(armed):
                    return Action.DROP
                self._need_key = False
                if armed:
                    return self._begin(armed, dts)
            return self._write(dts)
        if not self.has_audio:
            return Action.DROP
        armed = self._armed
        if armed and armed[0][0] > dts:
            return self._write(dts)  # behind the video: the old segment's
        due = [cut for cut in armed if cut[0] <= dts]
        cuts = due + self._passed(dts)
        if cuts:
            del armed[: len(due)]
            self._need_key = True  # video goes on at its next keyframe
            return self._begin(cuts, dts)
        return self._write(dts)

    def finish(self) -> int | None:
        """As the Segmenter's; `gaps` are then the leader's segments this rendition never
        reached (the last one lasting to the leader's end)."""
        cuts = self._armed + list(self._cuts)
        self._armed, self._cuts = [], deque()
        end = self._end
        if end is not None and cuts and cuts[-1][0] < end:
            cuts.append((end, False))
            self.gaps = tuple((ts, nxt - ts, d) for (ts, d), (nxt, _) in pairwise(cuts))
        else:
            self.gaps = ()
        if not self.open:
            return None
        self.open = False
        if self.gaps:
            return max(self.gaps[0][0] - self.start, 1)
        return max(self._last - self.start, 1)

    def elapsed(self) -> int:
        return self._last - self.start if self.open else 0

    # -- internals ------------------------------------------------------------------------------

    def _waits(self, cuts: list[tuple[int, bool]]) -> bool:
        """Video with new settings waits for a cut that starts a new run."""
        return self._await_disc and not any(d for _, d in cuts)

    def _passed(self, dts: int) -> list[tuple[int, bool]]:
        """The leader's cuts at or before `dts`, taken off the queue."""
        cuts, passed = self._cuts, []
        while cuts and dts >= cuts[0][0]:
            passed.append(cuts.popleft())
        return passed

    def _write(self, dts: int) -> Action:
        if not self.open:
            return Action.DROP
        self._last = max(self._last, dts)
        return Action.WRITE

    def _begin(self, cuts: list[tuple[int, bool]], dts: int) -> Action:
        """Start a segment at the newest of `cuts`: one segment per cut, so the older ones
        are gaps (this rendition has nothing for them), and the open one ends at the first."""
        timestamp, discontinuity = cuts[-1]
        self.closed_duration = max(cuts[0][0] - self.start, 1) if self.open else None
        self.gaps = tuple((ts, max(nxt - ts, 1), d) for (ts, d), (nxt, _) in pairwise(cuts))
        self.open = True
        self.start = timestamp
        self._last = max(dts, timestamp)
        self.discontinuity = discontinuity
        self.new_run = any(d for _, d in cuts)  # a new timeline here or at a gap
        if self.new_run:
            self._await_disc = False  # the new run takes the new settings
        if self._armed and self._armed[-1][0] <= timestamp:
            self._armed = []
        return Action.CUT


class FollowerQueue:
    """Follower frames held until the leader's video has reached their timestamp (so the cut
    at that timestamp, if any, is known), bounded by QUEUE_FRAMES and QUEUE_AHEAD_MS."""

    __slots__ = ("_frames", "clock")

    def __init__(self) -> None:
        self._frames: deque[tuple[int, int, int, bool, bytes]] = deque()
        self.clock: int | None = None  # the leader's newest video timestamp

    def add(self, track: int, timestamp: int, offset: int, keyframe: bool,
            data: bytes) -> list[tuple[int, int, int, bool, bytes]]:  # fmt: skip
        """Queue a frame; returns the frames that may go now, in order."""
        self._frames.append((track, timestamp, offset, keyframe, data))
        return self._due()

    def advance(self, clock: int) -> list[tuple[int, int, int, bool, bytes]]:
        """The leader's video reached `clock`."""
        self.clock = clock if self.clock is None else max(self.clock, clock)
        return self._due()

    def take(self, track: int) -> list[tuple[int, int, int, bool, bytes]]:
        """The frames of `track` held now (the others stay), in order."""
        frames = self._frames
        mine = [f for f in frames if f[0] == track]
        if mine:
            self._frames = deque(f for f in frames if f[0] != track)
        return mine

    def drain(self) -> list[tuple[int, int, int, bool, bytes]]:
        frames = list(self._frames)
        self._frames.clear()
        return frames

    def _due(self) -> list[tuple[int, int, int, bool, bytes]]:
        frames, clock = self._frames, self.clock
        out = []
        while frames:
            ts = frames[0][1]
            over = len(frames) > QUEUE_FRAMES or (
                clock is not None and frames[-1][1] - clock > QUEUE_AHEAD_MS
            )
            if clock is None and not over:
                break
            if not over and clock is not None and ts > clock:
                break
            out.append(frames.popleft())
        return out
