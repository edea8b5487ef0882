"""The server side of one RTMP connection, sans-I/O.

How the state machine works (in the manner of h11's _state.py): the connection and each
message stream it creates have a state, and every transition is a row in a table below,
keyed by (state, trigger). A trigger is something the peer did (connect, publish, FCUnpublish,
deleteStream, ...) or something our user decided (accept, reject). A peer trigger with no row
is a protocol violation: the session queues a ProtocolViolation event and closes. A local
trigger with no row (accepting a publish the peer already withdrew, say) changes nothing and
returns False, because the socket layer decides asynchronously and may simply be late.
Side effects (replies, events) live in the handlers, next to the one call to `_stream_to` or
`_conn_to` that makes the transition, so the table stays the single source of legality.

Connection: HANDSHAKE -> AWAIT_CONNECT -> CONNECTED -> CLOSED (CLOSED from anywhere).
Streams: IDLE (created) -> PUBLISH_PENDING (PublishRequest emitted) -> PUBLISHING (accepted)
-> IDLE again on FCUnpublish/closeStream, or DELETED on deleteStream. A publish the peer ends
while we are still deciding becomes WITHDRAWN; accepting it then ends it at once, so the rule
"every accepted publish gets exactly one PublishEnd" holds without the caller tracking races.
A session that closes for any reason (violation, timeout, reject, close()) ends every publish
that is running.

Media (audio, video, metadata) is turned into events only for streams that are PUBLISHING or
PUBLISH_PENDING: the latter so that a client that pipelines its sequence headers right after
`publish` loses nothing (the events queue up behind the PublishRequest; the caller holds them
until it decides, or drops them on reject). Media for any other stream id is ignored and
counted in `ignored_media` - harmless and bounded by the connect-to-publish timeout.

Timers, with time passed in: the handshake must finish within `handshake_timeout`; from the
handshake (and again from connect, and whenever no publish is active or pending) a publish
must be requested within `publish_timeout`; a publishing stream must send audio or video at
least every `idle_timeout`. Any ProtocolError raised while parsing becomes a ProtocolViolation
event; receive_data never raises it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import Enum, auto
from typing import Any

from . import amf0, flv, limits
from . import messages as msgs
from .chunk import ChunkReader, ChunkWriter, Message
from .errors import ProtocolError
from .events import (
    Audio,
    AudioConfig,
    Connect,
    Event,
    Metadata,
    PlayRequest,
    ProtocolViolation,
    PublishEnd,
    PublishRequest,
    TimedOut,
    Video,
    VideoConfig,
)
from .handshake import ServerHandshake
from .messages import (
    ChunkStreamId,
    Command,
    MessageType,
    PeerBandwidthLimit,
    UserControlEvent,
    encode_command,
    parse_command,
    parse_data,
    parse_u32,
    parse_user_control,
    status_info,
)

MAX_QUERY_BYTES = 4096
_Buf = bytes | bytearray | memoryview


@dataclass(frozen=True, slots=True)
class SessionConfig:
    handshake_timeout: float = limits.HANDSHAKE_TIMEOUT
    publish_timeout: float = limits.CONNECT_TO_PUBLISH_TIMEOUT
    idle_timeout: float = limits.PUBLISH_IDLE_TIMEOUT
    chunk_size: int = limits.SERVER_CHUNK_SIZE
    window_ack_size: int = limits.WINDOW_ACK_SIZE
    peer_bandwidth: int = limits.PEER_BANDWIDTH
    allow_play: bool = False
    max_name_bytes: int = limits.MAX_NAME_BYTES
    max_streams: int = limits.MAX_STREAMS_PER_CONNECTION


class ConnState(Enum):
    HANDSHAKE = auto()
    AWAIT_CONNECT = auto()
    CONNECTED = auto()
    CLOSED = auto()


class StreamState(Enum):
    IDLE = auto()
    PUBLISH_PENDING = auto()
    PUBLISHING = auto()
    WITHDRAWN = auto()
    PLAY_REQUESTED = auto()
    DELETED = auto()


_C = ConnState
_S = StreamState

CONN_TRANSITIONS: dict[tuple[ConnState, str], ConnState] = {
    (_C.HANDSHAKE, "handshake_done"): _C.AWAIT_CONNECT,
    (_C.AWAIT_CONNECT, "connect"): _C.CONNECTED,
    (_C.HANDSHAKE, "close"): _C.CLOSED,
    (_C.AWAIT_CONNECT, "close"): _C.CLOSED,
    (_C.CONNECTED, "close"): _C.CLOSED,
}

STREAM_TRANSITIONS: dict[tuple[StreamState, str], StreamState] = {
    (_S.IDLE, "publish"): _S.PUBLISH_PENDING,
    (_S.IDLE, "play"): _S.PLAY_REQUESTED,
    (_S.IDLE, "delete"): _S.DELETED,
    (_S.IDLE, "unpublish"): _S.IDLE,
    (_S.PUBLISH_PENDING, "accept"): _S.PUBLISHING,
    (_S.PUBLISH_PENDING, "reject"): _S.DELETED,
    (_S.PUBLISH_PENDING, "unpublish"): _S.WITHDRAWN,
    (_S.PUBLISH_PENDING, "delete"): _S.WITHDRAWN,
    (_S.WITHDRAWN, "accept"): _S.DELETED,
    (_S.WITHDRAWN, "reject"): _S.DELETED,
    (_S.WITHDRAWN, "delete"): _S.WITHDRAWN,
    (_S.WITHDRAWN, "unpublish"): _S.WITHDRAWN,
    (_S.PUBLISHING, "unpublish"): _S.IDLE,
    (_S.PUBLISHING, "delete"): _S.DELETED,
    (_S.PLAY_REQUESTED, "delete"): _S.DELETED,
    (_S.PLAY_REQUESTED, "unpublish"): _S.PLAY_REQUESTED,
}

#: States in which the stream counts as "a publish is happening" for the timers.
_ACTIVE = frozenset((_S.PUBLISH_PENDING, _S.PUBLISHING, _S.WITHDRAWN))
#: States whose media becomes events.
_MEDIA_STATES = frozenset((_S.PUBLISH_PENDING, _S.PUBLISHING))
#: Commands that peers send as replies or notifications and that need no answer.
_QUIET = frozenset(("_result", "_error", "onStatus", "onBWDone", "receiveAudio", "receiveVideo"))


class _Stream:
    __slots__ = ("stream_id", "state", "name")

    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id
        self.state = StreamState.IDLE
        self.name = ""


class ServerSession:
    """One connection's protocol state: bytes and time in, events and bytes out."""

    def __init__(self, config: SessionConfig = SessionConfig(), now: float = 0.0) -> None:
        self.config = config
        self._conn = ConnState.HANDSHAKE
        self._handshake = ServerHandshake(now_ms=int(now * 1000) & 0xFFFFFFFF)
        self._reader = ChunkReader()
        self._writer = ChunkWriter()
        self._events: deque[Event] = deque()
        self._out: list[bytes] = []
        self._streams: dict[int, _Stream] = {}
        self._next_stream_id = 1
        self._now = now
        self._started = now
        self._waiting_since: float | None = None  # since when we wait for a publish request
        self._last_media = now
        self._publishing = 0  # streams in PUBLISHING
        self._bytes_received = 0
        self._last_ack = 0
        self._peer_window = 0
        self.object_encoding = 0
        #: Audio/video/data messages dropped because their stream was not publishing.
        self.ignored_media = 0

    # --- public API -------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._conn is ConnState.CLOSED

    @property
    def state(self) -> ConnState:
        return self._conn

    @property
    def bytes_received(self) -> int:
        """Every byte fed so far, handshake included (not wrapped)."""
        return self._bytes_received

    def stream_state(self, stream_id: int) -> StreamState | None:
        stream = self._streams.get(stream_id)
        return stream.state if stream is not None else None

    def receive_data(self, data: bytes | bytearray | memoryview, now: float) -> None:
        """Feed bytes read from the socket. Never raises for anything the peer sends."""
        if self._conn is ConnState.CLOSED or not data:
            return
        self._now = now
        self._bytes_received += len(data)
        try:
            if self._conn is ConnState.HANDSHAKE:
                hs = self._handshake
                hs.receive_data(bytes(data))
                out = hs.data_to_send()
                if out:
                    self._out.append(out)
                if not hs.complete:
                    return
                self._conn_to("handshake_done")
                self._waiting_since = now
                data = hs.take_remainder()
            self._feed(data)
            self._maybe_ack()
        except ProtocolError as exc:
            self._fail(ProtocolViolation(str(exc) or type(exc).__name__))

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def data_to_send(self) -> bytes:
        out = self._out
        if not out:
            return b""
        self._out = []
        return out[0] if len(out) == 1 else b"".join(out)

    def accept_publish(self, stream_id: int) -> bool:
        """Start the publish: StreamBegin + onStatus NetStream.Publish.Start. False (and
        nothing sent) if the publish is no longer pending; a publish the peer withdrew in the
        meantime is ended at once with a PublishEnd event."""
        stream = self._streams.get(stream_id)
        if self.closed or stream is None:
            return False
        before = stream.state
        if not self._stream_to(stream, "accept"):
            return False
        if before is StreamState.WITHDRAWN:
            self._events.append(PublishEnd(stream_id, "unpublished before accept"))
            return True
        self._publishing += 1
        self._last_media = self._now
        self._send_control(msgs.stream_begin(stream_id))
        self._send_status(stream_id, "status", "NetStream.Publish.Start", "Publishing")
        return True

    def reject_publish(self, stream_id: int, code: str, description: str) -> bool:
        """Refuse the publish with onStatus (level error, `code`, `description`), then close."""
        stream = self._streams.get(stream_id)
        if self.closed or stream is None or not self._stream_to(stream, "reject"):
            return False
        self._send_status(stream_id, "error", code, description)
        self._end_all("closed")
        # Media the peer pipelined behind `publish` is no one's business now.
        self._events = deque(e for e in self._events if getattr(e, "stream_id", None) != stream_id)
        self._close()
        return True

    def get_timer(self) -> float | None:
        """When handle_timer must next be called, or None."""
        if self._conn is ConnState.CLOSED:
            return None
        if self._conn is ConnState.HANDSHAKE:
            return self._started + self.config.handshake_timeout
        deadline: float | None = None
        if self._waiting_since is not None:
            deadline = self._waiting_since + self.config.publish_timeout
        if self._publishing:
            idle = self._last_media + self.config.idle_timeout
            deadline = idle if deadline is None else min(deadline, idle)
        return deadline

    def handle_timer(self, now: float) -> None:
        self._now = now
        deadline = self.get_timer()
        if deadline is None or now < deadline:
            return
        cfg = self.config
        if self._conn is ConnState.HANDSHAKE:
            reason = f"no handshake within {cfg.handshake_timeout:g} s"
        elif self._waiting_since is not None and now >= self._waiting_since + cfg.publish_timeout:
            reason = f"no publish within {cfg.publish_timeout:g} s"
        else:
            reason = f"no media for {cfg.idle_timeout:g} s"
        self._fail(TimedOut(reason))

    def close(self) -> None:
        """Close from our side; publishes still running get their PublishEnd("closed")."""
        if not self.closed:
            self._end_all("closed")
            self._close()

    # --- transitions --------------------------------------------------------------------------

    def _conn_to(self, trigger: str) -> None:
        new = CONN_TRANSITIONS.get((self._conn, trigger))
        if new is None:
            raise ProtocolError(f"{trigger} not allowed in state {self._conn.name}")
        self._conn = new

    def _stream_to(self, stream: _Stream, trigger: str, *, peer: bool = False) -> bool:
        new = STREAM_TRANSITIONS.get((stream.state, trigger))
        if new is None:
            if peer:
                raise ProtocolError(
                    f"{trigger} on stream {stream.stream_id} in state {stream.state.name}"
                )
            return False
        if stream.state is StreamState.PUBLISHING and new is not StreamState.PUBLISHING:
            self._publishing -= 1
        stream.state = new
        if new is StreamState.DELETED:
            del self._streams[stream.stream_id]
        if any(s.state in _ACTIVE for s in self._streams.values()):
            self._waiting_since = None
        elif self._waiting_since is None:
            self._waiting_since = self._now
        return True

    def _close(self) -> None:
        if self._conn is not ConnState.CLOSED:
            self._conn_to("close")

    def _fail(self, event: ProtocolViolation | TimedOut) -> None:
        if self.closed:
            return
        self._events.append(event)
        self._end_all("protocol violation" if isinstance(event, ProtocolViolation) else "timeout")
        self._close()

    def _end_all(self, reason: str) -> None:
        for stream in list(self._streams.values()):
            if stream.state is StreamState.PUBLISHING:
                self._events.append(PublishEnd(stream.stream_id, reason))
                stream.state = StreamState.IDLE
        self._publishing = 0

    # --- output -------------------------------------------------------------------------------

    def _send(self, csid: int, msg_type: int, stream_id: int, payload: bytes) -> None:
        self._out.append(self._writer.write(csid, msg_type, stream_id, 0, payload))

    def _send_control(self, payload: bytes, msg_type: int = MessageType.USER_CONTROL) -> None:
        self._send(ChunkStreamId.CONTROL, msg_type, 0, payload)

    def _send_command(self, stream_id: int, name: str, tid: float, *args: Any) -> None:
        self._send(
            ChunkStreamId.COMMAND,
            MessageType.COMMAND_AMF0,
            stream_id,
            encode_command(name, tid, *args),
        )

    def _send_status(self, stream_id: int, level: str, code: str, description: str) -> None:
        self._send_command(stream_id, "onStatus", 0, None, status_info(level, code, description))

    def _maybe_ack(self) -> None:
        window = self._peer_window
        if window and self._bytes_received - self._last_ack >= window:
            self._last_ack = self._bytes_received
            self._send_control(
                msgs.acknowledgement(self._bytes_received), MessageType.ACKNOWLEDGEMENT
            )

    # --- input --------------------------------------------------------------------------------

    def _feed(self, data: bytes | bytearray | memoryview) -> None:
        reader = self._reader
        view = memoryview(data)
        for off in range(0, len(view), limits.RECV_SLICE):
            reader.feed(view[off : off + limits.RECV_SLICE])
            while (msg := reader.next_message()) is not None:
                self._dispatch(msg)
                if self._conn is ConnState.CLOSED:
                    return

    def _dispatch(self, msg: Message) -> None:
        t = msg.msg_type
        if t == MessageType.VIDEO or t == MessageType.AUDIO:
            self._media(t, msg.stream_id, msg.timestamp, msg.payload)
        elif t == MessageType.COMMAND_AMF0 or t == MessageType.COMMAND_AMF3:
            self._command(msg, parse_command(msg.payload, amf3=t == MessageType.COMMAND_AMF3))
        elif t == MessageType.DATA_AMF0 or t == MessageType.DATA_AMF3:
            self._data(msg.stream_id, msg.payload, amf3=t == MessageType.DATA_AMF3)
        elif t == MessageType.USER_CONTROL:
            uc = parse_user_control(msg.payload)
            if uc.event == UserControlEvent.PING_REQUEST:
                self._send_control(msgs.ping_response(uc.value))
        elif t == MessageType.WINDOW_ACK_SIZE:
            self._peer_window = parse_u32(msg.payload, "Window Acknowledgement Size")
        elif t == MessageType.AGGREGATE:
            self._aggregate(msg)
        # Acknowledgement, Set Peer Bandwidth and shared objects need nothing from us.

    def _stream_for_media(self, stream_id: int) -> bool:
        stream = self._streams.get(stream_id)
        if stream is None or stream.state not in _MEDIA_STATES:
            self.ignored_media += 1
            return False
        return True

    def _media(self, msg_type: int, stream_id: int, ts: int, payload: _Buf) -> None:
        if not self._stream_for_media(stream_id):
            return
        if not len(payload):
            return  # some encoders send empty audio/video messages; nothing to do
        self._last_media = self._now
        b0 = payload[0]
        n = len(payload)
        # Fast paths for what nearly every message is (AVC NAL units, raw AAC); same results as
        # the general flv parsers below, without the intermediate tag object.
        if msg_type == MessageType.VIDEO:
            if b0 & 0x8F == 0x07 and n >= 5 and payload[1] == 1 and b0 >> 4 != 5:
                cts = (payload[2] << 16) | (payload[3] << 8) | payload[4]
                if cts & 0x800000:
                    cts -= 0x1000000
                view = memoryview(payload)[5:]
                self._events.append(Video(stream_id, ts, 7, b0 >> 4 == 1, cts, view))
                return
            tag = flv.parse_video(payload)
            if tag.is_config:
                if tag.codec_id == flv.VideoCodec.AVC:
                    flv.parse_avc_config(tag.data)
                elif len(tag.data) > limits.MAX_CONFIG_SIZE:
                    raise flv.InvalidConfig("video configuration too large")
                self._events.append(VideoConfig(stream_id, ts, tag.codec_id, bytes(tag.data)))
            elif tag.is_frame:
                keyframe = tag.frame_type == flv.VideoFrameType.KEY
                self._events.append(
                    Video(stream_id, ts, tag.codec_id, keyframe, tag.composition_offset, tag.data)
                )
        else:
            if b0 >> 4 == flv.SoundFormat.AAC and n >= 2 and payload[1] == 1:
                self._events.append(
                    Audio(stream_id, ts, 10, flv.SOUND_RATES[(b0 >> 2) & 3], 16 if b0 & 2 else 8,
                          2 if b0 & 1 else 1, memoryview(payload)[2:])
                )  # fmt: skip
                return
            a = flv.parse_audio(payload)
            if a.packet_type == flv.AacPacketType.SEQUENCE_HEADER:
                flv.parse_aac_config(a.data)
                self._events.append(AudioConfig(stream_id, ts, a.sound_format, bytes(a.data)))
            elif a.packet_type is None or a.packet_type == flv.AacPacketType.RAW:
                self._events.append(
                    Audio(
                        stream_id,
                        ts,
                        a.sound_format,
                        a.sound_rate,
                        a.sound_size,
                        a.channels,
                        a.data,
                    )
                )

    def _data(self, stream_id: int, payload: _Buf, *, amf3: bool) -> None:
        if not self._stream_for_media(stream_id):
            return
        values = parse_data(payload, amf3=amf3)
        if values and values[0] == "@setDataFrame":
            values = values[1:]
        if len(values) >= 2 and values[0] == "onMetaData":
            meta = values[1]
            if isinstance(meta, amf0.TypedObject):
                meta = meta.properties
            if isinstance(meta, dict):
                self._events.append(Metadata(stream_id, dict(meta)))

    def _aggregate(self, msg: Message) -> None:
        """An aggregate message holds FLV tags (11-byte header, body, 4-byte back pointer);
        their timestamps are relative to the first one, which maps to the message's."""
        data = memoryview(msg.payload)
        n = len(data)
        pos = 0
        base: int | None = None
        while pos < n:
            if pos + 11 > n:
                raise ProtocolError("truncated aggregate message")
            kind = data[pos] & 0x1F
            size = (data[pos + 1] << 16) | (data[pos + 2] << 8) | data[pos + 3]
            ts = (data[pos + 4] << 16) | (data[pos + 5] << 8) | data[pos + 6] | data[pos + 7] << 24
            end = pos + 11 + size
            if end > n:
                raise ProtocolError("aggregate sub-message overruns the message")
            if base is None:
                base = ts
            body = data[pos + 11 : end]
            when = msg.timestamp + ts - base
            if kind in (MessageType.AUDIO, MessageType.VIDEO):
                self._media(kind, msg.stream_id, when, body)
            elif kind == MessageType.DATA_AMF0:
                self._data(msg.stream_id, body, amf3=False)
            pos = end + 4

    # --- commands -----------------------------------------------------------------------------

    def _command(self, msg: Message, cmd: Command) -> None:
        name = cmd.name
        if self._conn is ConnState.AWAIT_CONNECT:
            if name != "connect":
                raise ProtocolError(f"{name!r} before connect")
            self._on_connect(cmd)
            return
        handler = _HANDLERS.get(name)
        if handler is not None:
            handler(self, msg.stream_id, cmd)
        elif name in _QUIET:
            return
        else:
            info = status_info("error", "NetConnection.Call.Failed", "Unknown command")
            self._send_command(msg.stream_id, "_error", cmd.transaction_id, None, info)

    def _on_connect(self, cmd: Command) -> None:
        obj = cmd.command_object
        if not isinstance(obj, dict):
            raise ProtocolError("connect without a command object")
        app = obj.get("app")
        if not isinstance(app, str):
            raise ProtocolError("connect without an app name")
        if len(app.encode()) > self.config.max_name_bytes:
            raise ProtocolError("app name too long")
        encoding = obj.get("objectEncoding", 0)
        encoding = int(encoding) if isinstance(encoding, int | float) and encoding == 3 else 0
        self.object_encoding = encoding
        self._conn_to("connect")
        self._waiting_since = self._now

        def text(key: str) -> str:
            value = obj.get(key)
            return value if isinstance(value, str) else ""

        self._events.append(
            Connect(
                app,
                text("tcUrl"),
                text("flashVer"),
                text("swfUrl"),
                text("pageUrl"),
                encoding,
                dict(obj),
            )
        )
        cfg = self.config
        self._send_control(msgs.window_ack_size(cfg.window_ack_size), MessageType.WINDOW_ACK_SIZE)
        self._send_control(
            msgs.set_peer_bandwidth(cfg.peer_bandwidth, PeerBandwidthLimit.DYNAMIC),
            MessageType.SET_PEER_BANDWIDTH,
        )
        self._send_control(msgs.set_chunk_size(cfg.chunk_size), MessageType.SET_CHUNK_SIZE)
        self._writer.set_chunk_size(cfg.chunk_size)
        props = {"fmsVer": "FMS/3,5,7,7009", "capabilities": 31.0, "mode": 1.0}
        info = status_info(
            "status",
            "NetConnection.Connect.Success",
            "Connection succeeded.",
            objectEncoding=float(encoding),
        )
        self._send_command(0, "_result", cmd.transaction_id, props, info)

    def _on_connect_again(self, stream_id: int, cmd: Command) -> None:
        raise ProtocolError("second connect on one connection")

    def _on_release_stream(self, stream_id: int, cmd: Command) -> None:
        self._send_command(stream_id, "_result", cmd.transaction_id, None)

    def _on_fc_publish(self, stream_id: int, cmd: Command) -> None:
        info = {"code": "NetStream.Publish.Start", "description": "FCPublish"}
        self._send_command(stream_id, "onFCPublish", 0, None, info)
        self._send_command(stream_id, "_result", cmd.transaction_id, None)

    def _on_create_stream(self, stream_id: int, cmd: Command) -> None:
        if len(self._streams) >= self.config.max_streams:
            info = status_info("error", "NetConnection.Call.Failed", "Too many streams")
            self._send_command(0, "_error", cmd.transaction_id, None, info)
            return
        new_id = self._next_stream_id
        self._next_stream_id += 1
        self._streams[new_id] = _Stream(new_id)
        self._send_command(0, "_result", cmd.transaction_id, None, float(new_id))

    def _stream_arg(self, stream_id: int, what: str) -> _Stream:
        stream = self._streams.get(stream_id)
        if stream is None:
            raise ProtocolError(f"{what} on stream {stream_id}, which was not created")
        return stream

    def _on_publish(self, stream_id: int, cmd: Command) -> None:
        stream = self._stream_arg(stream_id, "publish")
        raw = cmd.args[0] if cmd.args else None
        kind = cmd.args[1] if len(cmd.args) > 1 and isinstance(cmd.args[1], str) else "live"
        if not isinstance(raw, str):
            raise ProtocolError("publish without a stream name")
        name, _, query = raw.partition("?")
        too_long = len(name.encode()) > self.config.max_name_bytes
        if not name or too_long or len(query.encode()) > MAX_QUERY_BYTES:
            self._send_status(stream_id, "error", "NetStream.Publish.BadName", "Invalid name")
            raise ProtocolError("publish name empty or too long")
        self._stream_to(stream, "publish", peer=True)
        stream.name = name
        self._events.append(PublishRequest(stream_id, name, query, kind))

    def _on_play(self, stream_id: int, cmd: Command) -> None:
        stream = self._stream_arg(stream_id, "play")
        raw = cmd.args[0] if cmd.args else None
        if not isinstance(raw, str) or len(raw.encode()) > self.config.max_name_bytes:
            raise ProtocolError("play without a valid stream name")
        self._stream_to(stream, "play", peer=True)
        self._events.append(PlayRequest(stream_id, raw))
        if not self.config.allow_play:
            self._send_status(stream_id, "error", "NetStream.Play.Failed", "Playback is off")
            self._end_all("closed")
            self._close()

    def _unpublish(self, stream: _Stream, trigger: str, reason: str) -> None:
        was_publishing = stream.state is StreamState.PUBLISHING
        self._stream_to(stream, trigger, peer=True)
        if was_publishing:
            self._events.append(PublishEnd(stream.stream_id, reason))
            if trigger == "unpublish":
                self._send_status(
                    stream.stream_id, "status", "NetStream.Unpublish.Success", "Stopped"
                )

    def _on_fc_unpublish(self, stream_id: int, cmd: Command) -> None:
        name = cmd.args[0] if cmd.args and isinstance(cmd.args[0], str) else ""
        name = name.partition("?")[0]
        for stream in list(self._streams.values()):
            if stream.name == name and stream.state in _ACTIVE:
                self._unpublish(stream, "unpublish", "FCUnpublish")
        info = {"code": "NetStream.Unpublish.Success", "description": "FCUnpublish"}
        self._send_command(stream_id, "onFCUnpublish", 0, None, info)

    def _on_close_stream(self, stream_id: int, cmd: Command) -> None:
        stream = self._streams.get(stream_id)
        if stream is not None:
            self._unpublish(stream, "unpublish", "closeStream")

    def _on_delete_stream(self, stream_id: int, cmd: Command) -> None:
        target = cmd.args[0] if cmd.args else None
        if isinstance(target, bool) or not isinstance(target, int | float):
            raise ProtocolError("deleteStream without a stream id")
        # Any float can arrive here (inf, nan, 1.5): only whole numbers name a stream.
        whole = isinstance(target, int) or target.is_integer()
        stream = self._streams.get(int(target)) if whole else None
        if stream is not None:
            self._unpublish(stream, "delete", "deleteStream")


_HANDLERS = {
    "connect": ServerSession._on_connect_again,
    "releaseStream": ServerSession._on_release_stream,
    "FCPublish": ServerSession._on_fc_publish,
    "createStream": ServerSession._on_create_stream,
    "publish": ServerSession._on_publish,
    "play": ServerSession._on_play,
    "FCUnpublish": ServerSession._on_fc_unpublish,
    "closeStream": ServerSession._on_close_stream,
    "deleteStream": ServerSession._on_delete_stream,
}
