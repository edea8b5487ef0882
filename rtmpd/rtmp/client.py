"""A sans-I/O RTMP publishing client: the other end of ServerSession.

Used by the tests (driven against a ServerSession without sockets) and by the benchmark load
generator. Calls queue what they can: `connect`, `create_stream` and `publish` may all be made
before the handshake is done, and `publish` waits for createStream's stream id. Media goes out
as given (timestamps are unbounded ints, sent modulo 2**32). For many publishers sending the
same media, cut each frame once with `rtmpd.rtmp.chunk.serialize_message` (fmt 0 header, so it
needs no per-connection context) and hand it to `send_serialized`: no per-client copy.

Enhanced RTMP: `caps_ex` is announced in connect (capsEx; CapsEx.RECONNECT says the client
honours reconnect requests), and a server's NetConnection.Connect.ReconnectRequest becomes a
ReconnectRequest event (what to do about it, reconnecting at the next keyframe, is the
caller's: this object is one connection).

Playing: `play` once a stream exists; what the server sends then (audio, video, data) comes
out as MediaMessage events.

Anything malformed from the server raises ProtocolError out of `receive_data`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from . import limits
from .amf_values import EcmaArray
from .chunk import ChunkReader, ChunkWriter, Message, SerializedMessage
from .errors import ProtocolError
from .handshake import ClientHandshake
from .messages import (
    RECONNECT_REQUEST,
    ChunkStreamId,
    MessageType,
    UserControlEvent,
    acknowledgement,
    encode_command,
    encode_data,
    parse_command,
    parse_u32,
    parse_user_control,
    ping_response,
    set_chunk_size,
)

_Buf = bytes | bytearray | memoryview


@dataclass(frozen=True, slots=True)
class Connected:
    properties: Any
    info: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ConnectFailed:
    info: Any


@dataclass(frozen=True, slots=True)
class StreamCreated:
    stream_id: int


@dataclass(frozen=True, slots=True)
class Status:
    """An onStatus from the server (publish start, rejection, ...)."""

    stream_id: int
    level: str
    code: str
    description: str
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CommandResult:
    """_result or _error for a call other than connect/createStream."""

    method: str
    transaction_id: float
    ok: bool
    args: list[Any]


@dataclass(frozen=True, slots=True)
class ServerCommand:
    """Any other command the server sent (onFCPublish, ...)."""

    stream_id: int
    name: str
    transaction_id: float
    args: list[Any]


@dataclass(frozen=True, slots=True)
class ReconnectRequest:
    """The server asks us to reconnect (enhanced RTMP v2): to `tc_url` when given, else to the
    tcUrl of this connection; keep publishing here up to the next keyframe first."""

    tc_url: str
    description: str


@dataclass(frozen=True, slots=True)
class MediaMessage:
    """Audio, video or data the server sent us (playing): the message as it came."""

    stream_id: int
    msg_type: int
    timestamp: int
    payload: bytes | bytearray | memoryview


ClientEvent = (
    Connected | ConnectFailed | StreamCreated | Status | CommandResult | ServerCommand
    | ReconnectRequest | MediaMessage
)  # fmt: skip

_Pending = tuple[int, int, int, int, _Buf]


class ClientSession:
    def __init__(
        self,
        *,
        chunk_size: int = limits.SERVER_CHUNK_SIZE,
        now_ms: int = 0,
        digest: bool = False,
        flashver: str = "FMLE/3.0 (compatible; rtmpd)",
        caps_ex: int = 0,
    ) -> None:
        self._handshake = ClientHandshake(now_ms=now_ms, digest=digest)
        self._reader = ChunkReader()
        self._writer = ChunkWriter()
        self._out: list[bytes] = [self._handshake.data_to_send()]
        self._queued: list[_Pending] | None = []  # None once the handshake is done
        self._events: deque[ClientEvent] = deque()
        self._calls: dict[float, str] = {}
        self._next_tid = 1
        self._chunk_size = chunk_size
        self._flashver = flashver
        self._caps_ex = caps_ex
        self._publish_queued: tuple[str, str, bool] | None = None
        self._play_queued: str | None = None
        self.stream_id: int | None = None
        self.stream_name = ""
        self.connected = False
        self.publishing = False
        self.bytes_received = 0
        self._peer_window = 0
        self._last_ack = 0

    # --- outgoing -----------------------------------------------------------------------------

    @property
    def handshake_done(self) -> bool:
        return self._queued is None

    @property
    def chunk_size(self) -> int:
        """The chunk size our messages are (or will be, after the handshake) cut with."""
        return self._chunk_size

    def _emit(self, csid: int, msg_type: int, stream_id: int, ts: int, payload: _Buf) -> None:
        self._out.append(self._writer.write(csid, msg_type, stream_id, ts, payload))
        if msg_type == MessageType.SET_CHUNK_SIZE:
            self._writer.set_chunk_size(parse_u32(payload, "Set Chunk Size"))

    def send_message(
        self, csid: int, msg_type: int, stream_id: int, timestamp: int, payload: _Buf
    ) -> None:
        """Any message; queued until the handshake is done."""
        if self._queued is not None:
            self._queued.append((csid, msg_type, stream_id, timestamp, payload))
        else:
            self._emit(csid, msg_type, stream_id, timestamp, payload)

    def call(
        self, name: str, *args: Any, stream_id: int = 0, transaction_id: float | None = None
    ) -> float:
        """Send command `name` (command object None, then `args`); returns its transaction id."""
        if transaction_id is None:
            transaction_id = float(self._next_tid)
            self._next_tid += 1
        if transaction_id:
            self._calls[transaction_id] = name
        payload = encode_command(name, transaction_id, None, *args)
        self.send_message(ChunkStreamId.COMMAND, MessageType.COMMAND_AMF0, stream_id, 0, payload)
        return transaction_id

    def connect(self, app: str, tc_url: str, **properties: Any) -> None:
        obj: dict[str, Any] = {
            "app": app,
            "type": "nonprivate",
            "flashVer": self._flashver,
            "tcUrl": tc_url,
        }
        if self._caps_ex:
            obj["capsEx"] = float(self._caps_ex)
        obj.update(properties)
        tid = float(self._next_tid)
        self._next_tid += 1
        self._calls[tid] = "connect"
        payload = encode_command("connect", tid, obj)
        self.send_message(ChunkStreamId.COMMAND, MessageType.COMMAND_AMF0, 0, 0, payload)

    def create_stream(self) -> None:
        self.call("createStream")

    def publish(self, name: str, publish_type: str = "live", *, fc_publish: bool = True) -> None:
        """releaseStream + FCPublish (as FFmpeg and OBS do) and publish, once a stream exists."""
        self.stream_name = name
        if self.stream_id is None:
            self._publish_queued = (name, publish_type, fc_publish)
            return
        if fc_publish:
            self.call("releaseStream", name)
            self.call("FCPublish", name)
        self.call("publish", name, publish_type, stream_id=self.stream_id, transaction_id=0)

    def play(self, name: str) -> None:
        if self.stream_id is None:
            self._play_queued = name
            return
        self.call("play", name, stream_id=self.stream_id, transaction_id=0)

    def _stream(self) -> int:
        if self.stream_id is None:
            raise RuntimeError("no stream yet: wait for StreamCreated")
        return self.stream_id

    def send_metadata(self, values: dict[str, Any], timestamp: int = 0) -> None:
        payload = encode_data("@setDataFrame", "onMetaData", EcmaArray(values))
        self.send_message(
            ChunkStreamId.DATA, MessageType.DATA_AMF0, self._stream(), timestamp, payload
        )

    def send_audio(self, timestamp: int, payload: _Buf) -> None:
        self.send_message(
            ChunkStreamId.AUDIO, MessageType.AUDIO, self._stream(), timestamp, payload
        )

    def send_video(self, timestamp: int, payload: _Buf) -> None:
        self.send_message(
            ChunkStreamId.VIDEO, MessageType.VIDEO, self._stream(), timestamp, payload
        )

    def send_serialized(self, msg: SerializedMessage) -> None:
        """Send a message cut by `serialize_message` as-is (no copy)."""
        if self._queued is not None:
            raise RuntimeError("handshake not done")
        self._writer.note_sent(msg)
        self._out.append(msg.data)

    def set_chunk_size(self, size: int) -> None:
        """Announce a new outgoing chunk size and use it from the next message on."""
        self._chunk_size = size
        self.send_message(
            ChunkStreamId.CONTROL, MessageType.SET_CHUNK_SIZE, 0, 0, set_chunk_size(size)
        )

    def delete_stream(self) -> None:
        """FCUnpublish + deleteStream, as FFmpeg does when it stops publishing."""
        stream_id = self._stream()
        if self.stream_name:
            self.call("FCUnpublish", self.stream_name)
        self.call("deleteStream", float(stream_id), transaction_id=0)
        self.stream_id = None
        self.publishing = False

    def data_to_send(self) -> bytes:
        out = self._out
        if not out:
            return b""
        self._out = []
        return out[0] if len(out) == 1 else b"".join(out)

    # --- incoming -----------------------------------------------------------------------------

    def next_event(self) -> ClientEvent | None:
        return self._events.popleft() if self._events else None

    def receive_data(self, data: _Buf) -> None:
        if not data:
            return
        self.bytes_received += len(data)
        if self._queued is not None:
            hs = self._handshake
            hs.receive_data(bytes(data))
            self._out.append(hs.data_to_send())
            if not hs.complete:
                return
            queued, self._queued = self._queued, None
            self._emit(
                ChunkStreamId.CONTROL,
                MessageType.SET_CHUNK_SIZE,
                0,
                0,
                set_chunk_size(self._chunk_size),
            )
            for item in queued:
                self._emit(*item)
            data = hs.take_remainder()
        view = memoryview(data)
        for off in range(0, len(view), limits.RECV_SLICE):
            self._reader.feed(view[off : off + limits.RECV_SLICE])
            while (msg := self._reader.next_message()) is not None:
                self._dispatch(msg)
        window = self._peer_window
        if window and self.bytes_received - self._last_ack >= window:
            self._last_ack = self.bytes_received
            self._emit(
                ChunkStreamId.CONTROL,
                MessageType.ACKNOWLEDGEMENT,
                0,
                0,
                acknowledgement(self.bytes_received),
            )

    def _dispatch(self, msg: Message) -> None:
        t = msg.msg_type
        if t == MessageType.VIDEO or t == MessageType.AUDIO or t == MessageType.DATA_AMF0:
            self._events.append(MediaMessage(msg.stream_id, t, msg.timestamp, msg.payload))
        elif t == MessageType.COMMAND_AMF0 or t == MessageType.COMMAND_AMF3:
            self._command(msg)
        elif t == MessageType.WINDOW_ACK_SIZE:
            self._peer_window = parse_u32(msg.payload, "Window Acknowledgement Size")
        elif t == MessageType.USER_CONTROL:
            uc = parse_user_control(msg.payload)
            if uc.event == UserControlEvent.PING_REQUEST:
                self._emit(
                    ChunkStreamId.CONTROL, MessageType.USER_CONTROL, 0, 0, ping_response(uc.value)
                )

    def _command(self, msg: Message) -> None:
        cmd = parse_command(msg.payload, amf3=msg.msg_type == MessageType.COMMAND_AMF3)
        args = cmd.args
        if cmd.name in ("_result", "_error"):
            ok = cmd.name == "_result"
            method = self._calls.pop(cmd.transaction_id, "")
            if method == "connect":
                info = args[0] if args and isinstance(args[0], dict) else {}
                if ok:
                    self.connected = True
                    self._events.append(Connected(cmd.command_object, info))
                else:
                    self._events.append(ConnectFailed(info))
            elif method == "createStream" and ok:
                stream_id = args[0] if args else None
                if not isinstance(stream_id, float) or not stream_id.is_integer():
                    raise ProtocolError("createStream result without a stream id")
                self.stream_id = int(args[0])
                self._events.append(StreamCreated(self.stream_id))
                if self._publish_queued is not None:
                    name, kind, fc = self._publish_queued
                    self._publish_queued = None
                    self.publish(name, kind, fc_publish=fc)
                if self._play_queued is not None:
                    name, self._play_queued = self._play_queued, None
                    self.play(name)
            else:
                self._events.append(CommandResult(method, cmd.transaction_id, ok, args))
        elif cmd.name == "onStatus":
            info = args[0] if args and isinstance(args[0], dict) else {}

            def text(key: str) -> str:
                value = info.get(key)
                return value if isinstance(value, str) else ""

            if text("code") == RECONNECT_REQUEST and msg.stream_id == 0:
                self._events.append(ReconnectRequest(text("tcUrl"), text("description")))
                return
            status = Status(msg.stream_id, text("level"), text("code"), text("description"), info)
            if status.code == "NetStream.Publish.Start":
                self.publishing = True
            self._events.append(status)
        else:
            self._events.append(ServerCommand(msg.stream_id, cmd.name, cmd.transaction_id, args))
