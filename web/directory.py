"""What the HTTP layer needs to know about channels, as a protocol the composition root implements.

rtmpd.web never imports auth or hls: the composition root builds one object satisfying
`Directory` from both (live state from auth, codecs and keyframes from hls) and hands it to
`create_app`. Keeping the surface this small keeps the web layer testable with a plain class.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Channel:
    """A public channel: `live_since` is a Unix timestamp (time.time()) or None when offline."""

    name: str
    live: bool
    live_since: float | None


@dataclass(frozen=True, slots=True)
class RenditionStats:
    """One rendition of a multitrack publish (a video track of its own, with track 0's audio);
    `playlist` is its media playlist's file name beside the multivariant index.m3u8."""

    track: int
    playlist: str
    video_codec: str | None = None
    video_name: str | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    video_kbps: float | None = None


@dataclass(frozen=True, slots=True)
class StreamStats:
    """Codec facts about a live stream; any field may be None while it is not known yet.

    Codecs are RFC 6381 strings as HLS playlists use them ("avc1.64001f", "mp4a.40.2").
    """

    video_codec: str | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    video_kbps: float | None = None
    audio_codec: str | None = None
    sample_rate: int | None = None
    channels: int | None = None
    audio_kbps: float | None = None
    video_name: str | None = None  # the codec for people: "H.264", "HEVC", "AV1", "VP9"
    audio_name: str | None = None  # "AAC", "MP3", "Opus", "FLAC", "AC-3", "E-AC-3"
    #: Multitrack: every rendition, track 0's first (its facts are the video fields above);
    #: empty for a single stream.
    renditions: tuple[RenditionStats, ...] = ()


class Directory(Protocol):
    """Channel lookup for pages, the API and thumbnails."""

    async def channel(self, name: str) -> Channel | None:
        """The channel called `name`, or None when there is no such user (-> 404)."""
        ...

    async def live_channels(self) -> list[Channel]:
        """Channels that are live now, in the order the home page lists them."""
        ...

    def elsewhere(self, name: str) -> str | None:
        """The HTTP base URL ("http://node-b:8080") of the node or worker serving `name`'s
        live stream when that is not this one (its /live/ requests are redirected there), or
        None: served here. Called on the event loop, must be quick."""
        ...

    def stats(self, name: str) -> StreamStats | None:
        """Codec facts of `name`'s live stream, or None; called on the event loop, must be quick."""
        ...

    def thumbnail(self, name: str) -> Callable[[], bytes | None] | None:
        """How to make a JPEG of `name`'s latest keyframe, or None when there is none.

        Called on the event loop, so it can take an immutable snapshot of the live state (a
        Keyframe); the function it returns may be slow (decoding, e.g.
        rtmpd.hls.keyframe_to_jpeg) and runs in a worker thread, at most about once per 10
        seconds per live channel, its result served from memory in between.
        """
        ...
