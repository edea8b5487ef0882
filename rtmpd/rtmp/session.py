"""The server side of one RTMP connection, sans-I/O: bytes and time in, events and bytes out.

The glue of three layers: `rtmpd.rtmp.states` holds the rules (states, transition tables, and why
they are what they are), `rtmpd.rtmp.commands` answers NetConnection/NetStream commands, and this
module feeds bytes through the handshake and the chunk reader, dispatches messages, turns media
into events (the hot path) and runs the timers.

Timers, with time passed in: the handshake must finish within `handshake_timeout`; from the
handshake (and again from connect, and whenever no publish is active or pending) a publish
must be requested within `publish_timeout`; a publishing stream must send audio or video at
least every `idle_timeout`. Any ProtocolError raised while parsing becomes a ProtocolViolation
event; receive_data never raises it.
"""

from __future__ import annotations

from collections import deque

from . import flv, limits
from . import messages as msgs
from .amf_values import TypedObject
from .chunk import ChunkReader, Message
from .commands import CommandHandler
from .config import SessionConfig
from .errors import ProtocolError
from .events import (
    Audio,
    AudioConfig,
    Event,
    Metadata,
    ProtocolViolation,
    PublishEnd,
    TimedOut,
    Video,
    VideoConfig,
)
from .handshake import ServerHandshake
from .messages import (
    MessageType,
    UserControlEvent,
    parse_command,
    parse_data,
    parse_u32,
    parse_user_control,
)
from .states import (
    CONN_TRANSITIONS,
    MEDIA_STATES,
    STREAM_TRANSITIONS,
    ConnState,
    StreamState,
)

__all__ = [
    "CONN_TRANSITIONS",
    "STREAM_TRANSITIONS",
    "ConnState",
    "ServerSession",
    "StreamState",
]

_Buf = bytes | bytearray | memoryview
_DEFAULT_CONFIG = SessionConfig()


class ServerSession(CommandHandler):
    """One connection's protocol state: bytes and time in, events and bytes out."""

    def __init__(self, config: SessionConfig = _DEFAULT_CONFIG, now: float = 0.0) -> None:
        super().__init__(config, now)
        self._handshake = ServerHandshake(now_ms=int(now * 1000) & 0xFFFFFFFF)
        self._reader = ChunkReader()
        self._started = now
        self._last_media = now
        self._bytes_received = 0
        self._last_ack = 0
        self._peer_window = 0
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

    # --- input --------------------------------------------------------------------------------

    def _maybe_ack(self) -> None:
        window = self._peer_window
        if window and self._bytes_received - self._last_ack >= window:
            self._last_ack = self._bytes_received
            self._send_control(
                msgs.acknowledgement(self._bytes_received), MessageType.ACKNOWLEDGEMENT
            )

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
        if stream is None or stream.state not in MEDIA_STATES:
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
                # Only bounded here: a record the packager cannot use costs that track (one
                # log line there), not the publish; some encoders send an empty one first.
                if len(tag.data) > limits.MAX_CONFIG_SIZE:
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
                if len(a.data) > limits.MAX_CONFIG_SIZE:
                    raise flv.InvalidConfig("audio configuration too large")
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
            if isinstance(meta, TypedObject):
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
