"""NetConnection and NetStream commands on the server side, and the replies they write.

connect, releaseStream, FCPublish, createStream, publish, play, FCUnpublish, closeStream and
deleteStream each have a handler below; replies and notifications a peer sends (`_QUIET`) are
ignored, and any other command is answered with `_error` (NetConnection.Call.Failed). Every
state change goes through the tables in `rtmpd.rtmp.states`, so a command the current state does not
allow raises ProtocolError, which the session turns into a ProtocolViolation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import limits
from . import messages as msgs
from .chunk import ChunkWriter, Message
from .config import SessionConfig
from .errors import ProtocolError
from .events import Connect, PlayRequest, PublishEnd, PublishRequest
from .messages import (
    ChunkStreamId,
    Command,
    MessageType,
    PeerBandwidthLimit,
    encode_command,
    status_info,
)
from .states import ACTIVE_STATES, ConnState, StateMachine, Stream, StreamState

#: Commands that peers send as replies or notifications and that need no answer.
_QUIET = frozenset(("_result", "_error", "onStatus", "onBWDone", "receiveAudio", "receiveVideo"))


class CommandHandler(StateMachine):
    """Answers commands and writes every outgoing message; the base of ServerSession."""

    def __init__(self, config: SessionConfig, now: float) -> None:
        super().__init__(now)
        self.config = config
        self._writer = ChunkWriter()
        self._out: list[bytes] = []
        self._next_stream_id = 1
        self.object_encoding = 0

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

    # --- commands -----------------------------------------------------------------------------

    def _command(self, msg: Message, cmd: Command) -> None:
        name = cmd.name
        if self._conn is ConnState.AWAIT_CONNECT:
            if name != "connect":
                raise ProtocolError(f"{name[:64]!r} before connect")  # bounded log line
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
        self._streams[new_id] = Stream(new_id)
        self._send_command(0, "_result", cmd.transaction_id, None, float(new_id))

    def _stream_arg(self, stream_id: int, what: str) -> Stream:
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
        if not name or too_long or len(query.encode()) > limits.MAX_QUERY_BYTES:
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

    def _unpublish(self, stream: Stream, trigger: str, reason: str) -> None:
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
            if stream.name == name and stream.state in ACTIVE_STATES:
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


_HANDLERS: dict[str, Callable[[CommandHandler, int, Command], None]] = {
    "connect": CommandHandler._on_connect_again,
    "releaseStream": CommandHandler._on_release_stream,
    "FCPublish": CommandHandler._on_fc_publish,
    "createStream": CommandHandler._on_create_stream,
    "publish": CommandHandler._on_publish,
    "play": CommandHandler._on_play,
    "FCUnpublish": CommandHandler._on_fc_unpublish,
    "closeStream": CommandHandler._on_close_stream,
    "deleteStream": CommandHandler._on_delete_stream,
}
