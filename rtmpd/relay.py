"""One broadcast's media as it came, relayed to RTMP players and push destinations.

The publish sink hands every tapped message (`RawMedia`: the FLV tag body as the publisher
sent it, legacy or enhanced) to the broadcast's `Fanout`, which keeps what a newcomer needs
(the latest header of each kind, the metadata, the messages since the last keyframe: a GOP
cache, so a player starts at once, as nginx-rtmp's wait_key and SRS's gop_cache do) and offers
each message to every output. A message is cut into chunks once per (stream id, chunk size),
which every player and destination shares.

Nothing here waits: an output that cannot take a message now drops it and every message up to
the next keyframe (counted), so a slow player or destination costs itself frames and nobody
else anything. Headers are never dropped (they are small and everything after needs them).

Timestamps are the broadcast's: a takeover or a reconnect within the grace continues where the
previous publish left off, so players and destinations see one timeline.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from rtmpd.rtmp.amf_values import EcmaArray
from rtmpd.rtmp.chunk import SerializedMessage, serialize_message
from rtmpd.rtmp.events import RawKind, RawMedia
from rtmpd.rtmp.messages import ChunkStreamId, MessageType, encode_data
from rtmpd.rtmp_contract import Player

log = logging.getLogger("rtmpd.relay")

#: Bytes of messages since the last keyframe kept for players joining; a longer GOP is not
#: kept (joiners then wait for the next keyframe).
GOP_CACHE_BYTES = 4 * 1024 * 1024
#: Bytes queued for one player (its socket buffer not counted) before it drops to the next
#: keyframe; above the GOP cache, which a joiner gets at once.
PLAY_QUEUE_BYTES = 6 * 1024 * 1024

_VIDEO = MessageType.VIDEO.value
_AUDIO = MessageType.AUDIO.value
_KEYFRAME = RawKind.KEYFRAME.value
_HEADER = RawKind.HEADER.value
_CSID = {_VIDEO: ChunkStreamId.VIDEO.value, _AUDIO: ChunkStreamId.AUDIO.value}


class Relayed:
    """One message on the broadcast's timeline, cut into chunks on demand (once per stream id
    and chunk size: every player and destination shares the bytes)."""

    __slots__ = ("msg_type", "timestamp", "payload", "kind", "key", "_cut")

    def __init__(self, msg_type: int, timestamp: int, payload: Any, kind: int, key: int) -> None:
        self.msg_type = msg_type
        self.timestamp = timestamp
        self.payload = payload
        self.kind = kind
        self.key = key
        self._cut: dict[tuple[int, int], SerializedMessage] = {}

    def __len__(self) -> int:
        return len(self.payload)

    def cut(
        self, stream_id: int, chunk_size: int, timestamp: int | None = None
    ) -> SerializedMessage:
        """The message as chunks for `stream_id` (at `timestamp`, else its own)."""
        if timestamp is not None and timestamp != self.timestamp:
            csid = _CSID.get(self.msg_type, ChunkStreamId.DATA.value)
            return serialize_message(csid, self.msg_type, stream_id, timestamp, self.payload,
                                     chunk_size)  # fmt: skip
        cached = self._cut.get((stream_id, chunk_size))
        if cached is None:
            csid = _CSID.get(self.msg_type, ChunkStreamId.DATA.value)
            cached = serialize_message(csid, self.msg_type, stream_id, self.timestamp,
                                       self.payload, chunk_size)  # fmt: skip
            self._cut[(stream_id, chunk_size)] = cached
        return cached


class Output(Protocol):
    """A player or a push destination, as the fanout feeds it."""

    def offer(self, item: Relayed) -> None:
        """A message of the broadcast; take it now or drop it (never wait)."""

    def metadata(self, values: dict[str, Any]) -> None:
        """The publisher's onMetaData."""

    def finish(self) -> None:
        """The broadcast is over."""


class Fanout:
    """What one broadcast's outputs share: the current publish, the timeline, the headers,
    the metadata and the GOP cache."""

    def __init__(self, name: str, *, on_drop: Callable[[str, int], None] | None = None) -> None:
        self.name = name
        self.outputs: set[Output] = set()
        self.headers: dict[int, Relayed] = {}
        self.meta: dict[str, Any] | None = None
        self.gop: list[Relayed] = []
        self.gop_bytes = 0
        self.has_video = False
        self.on_drop = on_drop
        self._source: object | None = None
        self._offset = 0
        self._rebase = False
        self._last = -1  # the latest timestamp out, -1 before the first

    # -- the publish side -------------------------------------------------------------------

    def attach(self, source: object) -> None:
        """`source` (a publish) feeds the broadcast from now on; an earlier one is ignored
        from here (a takeover), and its timeline is continued."""
        self._source = source
        self._rebase = self._last >= 0
        self.gop.clear()
        self.gop_bytes = 0

    def detach(self, source: object) -> None:
        if self._source is source:
            self._source = None

    def message(self, source: object, event: RawMedia) -> None:
        if source is not self._source:
            return  # a publish taken over still sends for a moment
        ts = event.timestamp
        if self._rebase:
            self._rebase = False
            self._offset = self._last + 1 - ts
        out = ts + self._offset
        if out < 0:
            out = 0
        if out > self._last:
            self._last = out
        kind = event.kind
        item = Relayed(event.msg_type, out, event.payload, kind, event.key)
        if kind == _HEADER:
            self.headers[event.key] = item
            if event.msg_type == _VIDEO:
                self.has_video = True
        elif kind == _KEYFRAME and event.msg_type == _VIDEO:
            self.gop = [item]
            self.gop_bytes = len(item)
        elif self.gop:
            self.gop.append(item)
            self.gop_bytes += len(item)
            if self.gop_bytes > GOP_CACHE_BYTES:
                self.gop = []
                self.gop_bytes = 0
        for output in tuple(self.outputs):
            output.offer(item)

    def metadata(self, source: object, values: dict[str, Any]) -> None:
        if source is not self._source:
            return
        self.meta = values
        for output in tuple(self.outputs):
            output.metadata(values)

    def startable(self, item: Relayed) -> bool:
        """Whether an output may (re)start at `item`: a video keyframe, or any audio frame of
        a broadcast without video."""
        if item.kind == _KEYFRAME:
            return item.msg_type == _VIDEO or not self.has_video
        return item.msg_type == _AUDIO and not self.has_video and item.kind != _HEADER

    def dropped(self, what: str, count: int = 1) -> None:
        if self.on_drop is not None:
            self.on_drop(what, count)

    def finish(self) -> None:
        """The broadcast is over: every output is told, and forgotten."""
        outputs, self.outputs = self.outputs, set()
        for output in outputs:
            try:
                output.finish()
            except Exception:
                log.exception("%s: ending an output failed", self.name)


class PlayerOutput:
    """One RTMP player: gets the headers, the metadata and the GOP cache when it starts,
    then the live messages; past PLAY_QUEUE_BYTES queued it drops to the next keyframe.
    Implements `rtmpd.rtmp_contract.PlaySink` and `Output`."""

    __slots__ = ("fanout", "player", "dropped", "_waiting", "_on_end")

    def __init__(
        self, fanout: Fanout, player: Player, on_end: Callable[[str], None] | None = None
    ) -> None:
        self.fanout = fanout
        self.player = player
        self.dropped = 0
        self._waiting = True  # for a point to start at
        self._on_end = on_end

    def start(self) -> None:
        fanout = self.fanout
        if fanout.meta is not None:
            self.metadata(fanout.meta)
        player = self.player
        start = fanout.gop[0].timestamp if fanout.gop else None
        for header in fanout.headers.values():  # stamped with where the player starts
            player.send(header.cut(player.stream_id, player.chunk_size, start))
        for item in fanout.gop:
            player.send(item.cut(player.stream_id, player.chunk_size))
        self._waiting = not fanout.gop
        fanout.outputs.add(self)

    def end(self, reason: str) -> None:
        self.fanout.outputs.discard(self)
        if self._on_end is not None:
            self._on_end(reason)

    def offer(self, item: Relayed) -> None:
        player = self.player
        if item.kind != _HEADER:
            if self._waiting:
                if not self.fanout.startable(item):
                    self._drop()
                    return
                self._waiting = False
            if player.buffered > PLAY_QUEUE_BYTES:
                self._waiting = True
                self._drop()
                return
        player.send(item.cut(player.stream_id, player.chunk_size))

    def _drop(self) -> None:
        self.dropped += 1
        self.fanout.dropped("play")

    def metadata(self, values: dict[str, Any]) -> None:
        self.player.send_data(encode_data("onMetaData", EcmaArray(values)))

    def finish(self) -> None:
        self.player.finish("the stream ended")
