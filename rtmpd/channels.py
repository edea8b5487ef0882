"""The web layer's view of channels, built from auth (who exists, who is live) and hls (codecs,
bitrates, keyframes). Lives in the composition root so that web, auth and hls stay unaware of
each other.

A stream another node holds (the database's live records, `AuthService.remote`) is live here
too once it has a playlist there; its HLS requests are sent to that node (`elsewhere`). Its
codecs and size are what that node wrote into the live record when its first segment was
out (`details`; bitrates are left out, they would be stale), and its thumbnail is fetched
from that node's /thumb/ (in a worker thread, cached like a local one).

With rtmpd workers (rtmpd.worker), each worker is such a node, but its siblings share the
HLS folder and the public URL: a sibling's stream is served here from the files, and what only
its owner has in memory (LL-HLS playlists and parts) is asked of the owner (`sibling`).
"""

from __future__ import annotations

import dataclasses
import http.client
import json
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote, urlsplit

from rtmpd.auth.service import AuthService
from rtmpd.hls import HlsService, Keyframe, keyframe_to_jpeg
from rtmpd.web.directory import Channel, RenditionStats, StreamStats

from .worker import Worker

#: Seconds another node may take to send a thumbnail (a sibling: rtmpd.worker's).
REMOTE_THUMBNAIL_TIMEOUT = 5.0
#: The largest thumbnail taken from another node or a sibling.
MAX_REMOTE_THUMBNAIL = 1 << 20
#: Facts of a stream that go stale (left out of what other nodes are told).
_CHANGING = frozenset(("video_kbps", "audio_kbps"))
_FIELDS = frozenset(f.name for f in dataclasses.fields(StreamStats))


class ChannelDirectory:
    """Implements `rtmpd.web.directory.Directory`."""

    def __init__(self, auth: AuthService, hls: HlsService, *, worker: Worker | None = None) -> None:
        self._auth = auth
        self._hls = hls
        self._worker = worker
        #: The other workers of this node: node name -> private HTTP socket.
        self._siblings = worker.siblings if worker is not None else {}
        # Keyframes snapshotted on the event loop; thumbnails decode them in a worker thread.
        self._keyframes: dict[str, Keyframe] = {}

    async def channel(self, name: str) -> Channel | None:
        """A channel is live once a publish of it has a playlist to play, not before (a
        publish nothing of which can be packaged never is)."""
        found = await self._auth.channel(name)
        if found is None:
            return None
        live = found.live_since is not None and found.active and self._hls.playing(found.name)
        remote = None if live or not found.active else self._auth.remote(found.name)
        if remote is not None and remote.url is not None:
            return Channel(found.name, True, remote.since)
        return Channel(found.name, live, found.live_since if live else None)

    async def live_channels(self) -> list[Channel]:
        channels = await self._auth.live_channels()
        live = [
            Channel(c.name, True, c.live_since)
            for c in channels
            if c.live_since is not None and self._hls.playing(c.name)
        ]
        for channel in live:
            self._snapshot(channel.name)
        here = {c.name for c in live}
        live += [Channel(r.name, True, r.since) for r in self._auth.remote_live()
                 if r.url is not None and r.name not in here]  # fmt: skip
        return sorted(live, key=lambda c: c.name)

    def elsewhere(self, name: str) -> str | None:
        """The HTTP base URL of the node that serves `name` when that is not this one."""
        if self._hls.playing(name):
            return None
        remote = self._auth.remote(name)
        if remote is None or remote.node in self._siblings:
            return None
        return remote.url

    def sibling(self, name: str) -> str | None:
        """The private HTTP socket of the worker of this node that holds `name`, if another."""
        if self._hls.playing(name):
            return None
        remote = self._auth.remote(name)
        return None if remote is None else self._siblings.get(remote.node)

    def _sibling_node(self, name: str) -> str | None:
        remote = self._auth.remote(name)
        return remote.node if remote is not None and remote.node in self._siblings else None

    def shared_stats(self, names: Iterable[str]) -> dict[str, object]:
        """The facts of this worker's streams `names`, for its siblings' API and pages."""
        out: dict[str, object] = {}
        for name in names:
            if (stats := self._local_stats(name)) is not None:
                out[name] = dataclasses.asdict(stats)
        return out

    def stats(self, name: str) -> StreamStats | None:
        if self._worker is not None and (node := self._sibling_node(name)) is not None:
            return _stats_from(self._worker.sibling_streams(node).get(name))
        if self._hls.playing(name):
            return self._local_stats(name)
        remote = self._auth.remote(name)
        if remote is None or remote.details is None:
            return None
        try:
            return _stats_from(json.loads(remote.details))
        except ValueError:
            return None

    def details(self, name: str) -> str | None:
        """What the other nodes are told of this node's stream `name` (JSON), or None."""
        stats = self._local_stats(name)
        if stats is None:
            return None
        facts = {k: v for k, v in dataclasses.asdict(stats).items() if k not in _CHANGING}
        facts["renditions"] = [{**r, "video_kbps": None} for r in facts.get("renditions", ())]
        return json.dumps(facts, separators=(",", ":"))

    def _local_stats(self, name: str) -> StreamStats | None:
        info = self._hls.stream_info(name)
        if info is None or not info.live:
            return None
        if info.keyframe is not None:
            self._keyframes[name] = info.keyframe
        return StreamStats(
            video_codec=info.video_codec,
            width=info.width,
            height=info.height,
            fps=info.fps,
            video_kbps=info.video_kbps,
            audio_codec=info.audio_codec,
            sample_rate=info.sample_rate,
            channels=info.channels,
            audio_kbps=info.audio_kbps,
            video_name=info.video_name,
            audio_name=info.audio_name,
            renditions=tuple(
                RenditionStats(
                    r.track,
                    f"v{r.track}.m3u8",
                    r.video_codec,
                    r.video_name,
                    r.width,
                    r.height,
                    r.fps,
                    r.video_kbps,
                )
                for r in ((info, *info.renditions) if info.renditions else ())
            ),  # fmt: skip
        )

    def thumbnail(self, name: str) -> Callable[[], bytes | None] | None:
        """On the loop: snapshot the latest keyframe; the returned render decodes it in a
        worker thread. (Snapshotting only from the pages and the API left a thumbnail asked
        for first with nothing to decode: 404 while the stream was live.)"""
        if self._worker is not None and (node := self._sibling_node(name)) is not None:
            conn = self._worker.sibling_connection(node)
            return None if conn is None else lambda: fetch_thumbnail(conn, "", name)
        if (url := self.elsewhere(name)) is not None:
            return lambda: remote_thumbnail(url, name)
        self._snapshot(name)
        keyframe = self._keyframes.get(name)
        if keyframe is None:
            return None

        def render() -> bytes | None:
            try:
                jpeg: bytes = keyframe_to_jpeg(
                    keyframe.avcc, keyframe.data, decoder_name=keyframe.decoder
                )
            except ValueError:
                return None
            return jpeg

        return render

    def _snapshot(self, name: str) -> None:
        info = self._hls.stream_info(name)
        if info is not None and info.keyframe is not None:
            self._keyframes[name] = info.keyframe
        elif info is None or not info.live:
            self._keyframes.pop(name, None)


def _stats_from(found: Any) -> StreamStats | None:
    """StreamStats from what a sibling or another node wrote; None for anything else."""
    if not isinstance(found, dict):
        return None
    values = {k: v for k, v in found.items() if k in _FIELDS}
    try:
        values["renditions"] = tuple(
            RenditionStats(**r) for r in values.get("renditions", ()) if isinstance(r, dict)
        )
        return StreamStats(**values)
    except TypeError:
        return None


def remote_thumbnail(base: str, name: str) -> bytes | None:
    """Blocking (a worker thread): the JPEG of `name` from the node at HTTP base `base`."""
    parts = urlsplit(base)
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    if parts.hostname is None:
        return None
    conn = kind(parts.hostname, parts.port, timeout=REMOTE_THUMBNAIL_TIMEOUT)
    return fetch_thumbnail(conn, parts.path.rstrip("/"), name)


def fetch_thumbnail(conn: http.client.HTTPConnection, prefix: str, name: str) -> bytes | None:
    """Blocking (a worker thread): the JPEG of `name` that another node or a sibling worker
    serves at `prefix`/thumb/, or None when it has none, does not answer in time or answers
    anything but a JPEG."""
    try:
        conn.request("GET", f"{prefix}/thumb/{quote(name)}.jpg")
        response = conn.getresponse()
        if response.status != 200:
            return None
        jpeg = response.read(MAX_REMOTE_THUMBNAIL + 1)
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()
    if len(jpeg) > MAX_REMOTE_THUMBNAIL or jpeg[:2] != b"\xff\xd8":
        return None
    return jpeg
