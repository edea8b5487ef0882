"""The renditions of one multitrack publish: track 0's packager leads, one follower packager per
other video track (rtmpd.hls.renditions has the rules: which tracks, aligned cuts, a missing
keyframe). The leader tells this object about its cuts, its video clock, its audio and its end;
this object hands each follower its frames once the leader's cuts up to them are known, and
track 0's audio. Each follower packages into its own rendition state (rtmpd.hls.name_state).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from .model import Codec, StreamInfo
from .owner import PackagerOwner
from .packager import StreamPackager
from .renditions import FollowCuts, FollowerQueue

#: Opens the rendition state of video track `track` (or None: refused) for a publish's
#: follower; given by the name's state.
OpenRendition = Callable[[int], PackagerOwner | None]
#: Forgets the rendition state of `track` again (its header turned out unusable).
DropRendition = Callable[[int], None]
#: Makes a follower packager into a rendition state, cutting with the given FollowCuts.
MakeFollower = Callable[[PackagerOwner, FollowCuts], StreamPackager]


class TrackSet:
    """Implements `rtmpd.hls.renditions.Renditions` for one publish."""

    __slots__ = ("name", "fixed", "followers", "_leader", "_configs", "_open", "_drop", "_make",
                 "_max", "_log", "_queue", "_warned", "_last")  # fmt: skip

    def __init__(self, leader: StreamPackager, open_rendition: OpenRendition,
                 drop_rendition: DropRendition, make: MakeFollower, max_renditions: int,
                 log: logging.Logger) -> None:  # fmt: skip
        self.name = leader.name
        self._leader = leader
        self.fixed = False
        self.followers: dict[int, tuple[StreamPackager, FollowCuts]] = {}
        self._configs: dict[int, tuple[int, bytes, Codec]] = {}  # before the set is fixed
        self._open = open_rendition
        self._drop = drop_rendition
        self._make = make
        self._max = max_renditions
        self._log = log
        self._queue = FollowerQueue()
        self._warned: set[str] = set()
        self._last: dict[int, int] = {}  # the newest timestamp per follower track

    # -- from the publish -----------------------------------------------------------------------

    def config(self, track: int, timestamp: int, record: bytes, codec: Codec) -> None:
        """A video sequence header of track `track` (not 0)."""
        if not self.fixed:
            if track not in self._configs and 1 + len(self._configs) >= self._max:
                self._warn(
                    f"max {track}",
                    "video track %d is not packaged: [hls] "
                    "max_renditions is %d (track 0 included); dropped",
                    track,
                    self._max,
                )
                return
            self._configs[track] = (timestamp, record, codec)
            return
        follower = self.followers.get(track)
        if follower is None:
            self._late(track)
            return
        # Its frames before the header are of the old settings: they go first, even ahead of
        # the leader (a cut not known yet may find them in the segment before it).
        self._deliver(self._queue.take(track))
        follower[0].video_config(timestamp, record, codec)

    def video(self, track: int, timestamp: int, offset: int, keyframe: bool, data: bytes) -> None:
        """A frame of video track `track` (not 0): held until the leader's cuts reach it."""
        if self.fixed and track not in self.followers:
            self._late(track)
            return
        if not self.fixed and track not in self._configs:
            self._headless(track)
            return
        last = self._last.get(track)
        if last is not None and timestamp == last:
            self._warn(
                f"dup {track}",
                "video track %d sent two frames with the same timestamp "
                "(a track id used twice in one message?); the second is dropped",
                track,
            )
            return
        self._last[track] = timestamp
        self._deliver(self._queue.add(track, timestamp, offset, keyframe, data))

    # -- from the leader --------------------------------------------------------------------------

    def fix(self) -> None:
        """Track 0's first video frame: the renditions are the tracks configured by now."""
        self.fixed = True
        for track, (timestamp, record, codec) in sorted(self._configs.items()):
            owner = self._open(track)
            if owner is None:
                continue
            cuts = FollowCuts()
            follower = self._make(owner, cuts)
            follower.video_config(timestamp, record, codec)
            if follower.violation is not None or not follower.has_tracks:
                # Unusable here (named by the follower's log): not a rendition after all.
                self._warn(f"bad {track}", "video track %d is not packaged: %s", track,
                           follower.violation.description if follower.violation is not None
                           else "its sequence header is unusable")  # fmt: skip
                follower.detach()
                self._drop(track)
                continue
            audio = self._leader.audio_setup
            if audio is not None:  # track 0's audio, in every rendition
                follower.audio_config(timestamp, audio.config, audio.codec)
            follower.leader = self._leader  # from now on its bounds end the whole publish
            self.followers[track] = (follower, cuts)
        self._configs.clear()
        if self.followers:
            tracks = ", ".join(str(t) for t in (0, *self.followers))
            self._log.info("HLS %s: multitrack video, renditions of tracks %s", self.name, tracks)

    def cut(self, timestamp: int, discontinuity: bool) -> None:
        for _, cuts in self.followers.values():
            cuts.leader_cut(timestamp, discontinuity)

    def advance(self, timestamp: int) -> None:
        self._deliver(self._queue.advance(timestamp))

    def audio_config(self, timestamp: int, record: bytes, codec: Codec) -> None:
        for follower, _ in self.followers.values():
            follower.audio_config(timestamp, record, codec)

    def audio(self, timestamp: int, data: bytes) -> None:
        for follower, _ in self.followers.values():
            follower.audio(timestamp, data)

    def framed_audio(self, timestamp: int, data: bytes, codec: Codec) -> None:
        for follower, _ in self.followers.values():
            follower.framed_audio(timestamp, data, codec)

    def finish(self, ended: bool, end_ms: int | None) -> None:
        """The leader's publish finished (`ended`, else taken over) with a segment ending at
        `end_ms`: so do the followers, with a segment for each of the leader's."""
        self._deliver(self._queue.drain())
        for follower, cuts in self.followers.values():
            cuts.leader_end(end_ms)
            if ended:
                follower.close()
            else:
                follower.detach()

    def infos(self, live: bool) -> tuple[StreamInfo, ...]:
        return tuple(f.stream_info(live, track) for track, (f, _) in self.followers.items())

    def missed(self) -> dict[int, int]:
        """Cuts at which each follower had no keyframe."""
        return {track: cuts.missed for track, (_, cuts) in self.followers.items()}

    # -- internals ------------------------------------------------------------------------------

    def _deliver(self, frames: list[tuple[int, int, int, bool, bytes]]) -> None:
        followers = self.followers
        for track, timestamp, offset, keyframe, data in frames:
            entry = followers.get(track)
            if entry is None:
                continue
            follower, cuts = entry
            missed = cuts.missed
            follower.video(timestamp, offset, keyframe, data)
            if cuts.missed != missed:
                self._warn(
                    f"key {track}",
                    "video track %d has no keyframe where track 0 "
                    "starts a segment (at %d ms); its frames are dropped until its next "
                    "keyframe, so its segments stay aligned (send the same keyframe "
                    "interval on every track)",
                    track,
                    timestamp,
                )

    def _headless(self, track: int) -> None:
        if f"max {track}" not in self._warned:  # else named as past max_renditions
            self._warn(f"headless {track}", "video track %d is not packaged: no sequence "
                       "header came before its frames; dropped", track)  # fmt: skip

    def _late(self, track: int) -> None:
        if f"max {track}" in self._warned or f"headless {track}" in self._warned:
            return  # named already
        self._warn(
            f"late {track}",
            "video track %d started after track 0's first frame: "
            "the renditions are fixed by then; dropped",
            track,
        )

    def _warn(self, key: str, message: str, *args: object) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self._log.warning("HLS %s: " + message, self.name, *args)
