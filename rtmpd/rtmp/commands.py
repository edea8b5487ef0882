"""NetConnection and NetStream commands on the server side, and the replies they write.

`handle` answers one command. Before connect only connect is allowed; after it, COMMANDS maps
connect (a second one is a violation), releaseStream, FCPublish, createStream, publish, play,
FCUnpublish, closeStream and deleteStream to handler functions; replies and notifications a peer
sends (`_QUIET`) are ignored, and any other command is answered with `_error`
(NetConnection.Call.Failed). Handlers get a Context - the state machine, the output, the event
queue and the config - and nothing else of the session. Every state change goes through the
tables in `rtmpd.rtmp.states`, so a command the current state does not allow raises
ProtocolError, which the session turns into a ProtocolViolation.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import exheader, limits
from . import messages as msgs
from .config import SessionConfig
from .errors import ProtocolError
from .events import (
    Connect,
    Event,
    PlayEnd,
    PlayRequest,
    ProtocolWarning,
    PublishEnd,
    PublishRequest,
)
from .exheader import ClientCaps
from .messages import Command, MessageType, PeerBandwidthLimit, status_info
from .output import Output
from .states import (
    ACTIVE_STATES,
    ConnectionState,
    ConnState,
    ConnTrigger,
    Stream,
    StreamState,
    StreamTrigger,
)

#: Commands that peers send as replies or notifications and that need no answer.
_QUIET = frozenset(("_result", "_error", "onStatus", "onBWDone", "receiveAudio", "receiveVideo"))


class Peer:
    """What the peer said of itself in connect, for the session to act on later (whether it
    takes reconnect requests)."""

    __slots__ = ("caps", "tc_url")

    def __init__(self) -> None:
        self.caps = ClientCaps()
        self.tc_url = ""


@dataclass(frozen=True, slots=True)
class Context:
    """What a command handler may touch: the session's state machine, output, event queue,
    config and what the peer said in connect (the same objects the session holds)."""

    cstate: ConnectionState
    output: Output
    events: deque[Event]
    config: SessionConfig
    peer: Peer

    def end_session(self, reason: str) -> None:
        """Close the session; every publish that was running gets its PublishEnd(reason),
        every play its PlayEnd(reason)."""
        streams = self.cstate.streams.values()
        playing = {s.stream_id for s in streams if s.state is StreamState.PLAYING}
        for stream_id in self.cstate.close():
            ended = PlayEnd if stream_id in playing else PublishEnd
            self.events.append(ended(stream_id, reason))


Handler = Callable[[Context, int, Command], None]


def handle(ctx: Context, stream_id: int, cmd: Command) -> None:
    """Answer `cmd`, which arrived on message stream `stream_id`."""
    name = cmd.name
    if ctx.cstate.conn is ConnState.AWAIT_CONNECT:
        if name != "connect":
            raise ProtocolError(f"{name[:64]!r} before connect")  # bounded log line
        _connect(ctx, cmd)
        return
    handler = COMMANDS.get(name)
    if handler is not None:
        handler(ctx, stream_id, cmd)
    elif name in _QUIET:
        return
    else:
        info = status_info("error", "NetConnection.Call.Failed", "Unknown command")
        ctx.output.command(stream_id, "_error", cmd.transaction_id, None, info)


def _connect(ctx: Context, cmd: Command) -> None:
    obj = cmd.command_object
    if not isinstance(obj, dict):
        raise ProtocolError("connect without a command object")
    app = obj.get("app")
    if not isinstance(app, str):
        raise ProtocolError("connect without an app name")
    cfg = ctx.config
    if len(app.encode()) > cfg.max_name_bytes:
        raise ProtocolError("app name too long")
    encoding = obj.get("objectEncoding", 0)
    encoding = int(encoding) if isinstance(encoding, int | float) and encoding == 3 else 0
    ctx.cstate.conn_to(ConnTrigger.CONNECT)

    def text(key: str) -> str:
        value = obj.get(key)
        return value if isinstance(value, str) else ""

    caps = exheader.parse_client_caps(obj)
    ctx.peer.caps = caps
    ctx.peer.tc_url = text("tcUrl")
    ctx.events.append(
        Connect(
            app,
            text("tcUrl"),
            text("flashVer"),
            text("swfUrl"),
            text("pageUrl"),
            encoding,
            dict(obj),
            caps,
        )
    )
    out = ctx.output
    out.control(msgs.window_ack_size(cfg.window_ack_size), MessageType.WINDOW_ACK_SIZE)
    out.control(
        msgs.set_peer_bandwidth(cfg.peer_bandwidth, PeerBandwidthLimit.DYNAMIC),
        MessageType.SET_PEER_BANDWIDTH,
    )
    out.set_chunk_size(cfg.chunk_size)
    props: dict[str, Any] = {"fmsVer": "FMS/3,5,7,7009", "capabilities": 31.0, "mode": 1.0}
    if caps.enhanced:  # what rtmpd takes, to a client that asked in enhanced RTMP's words
        props.update(exheader.server_caps())
    info = status_info(
        "status",
        "NetConnection.Connect.Success",
        "Connection succeeded.",
        objectEncoding=float(encoding),
    )
    out.command(0, "_result", cmd.transaction_id, props, info)


def _connect_again(ctx: Context, stream_id: int, cmd: Command) -> None:
    raise ProtocolError("second connect on one connection")


def _release_stream(ctx: Context, stream_id: int, cmd: Command) -> None:
    ctx.output.command(stream_id, "_result", cmd.transaction_id, None)


def _fc_publish(ctx: Context, stream_id: int, cmd: Command) -> None:
    info = {"code": "NetStream.Publish.Start", "description": "FCPublish"}
    ctx.output.command(stream_id, "onFCPublish", 0, None, info)
    ctx.output.command(stream_id, "_result", cmd.transaction_id, None)


def _create_stream(ctx: Context, stream_id: int, cmd: Command) -> None:
    if len(ctx.cstate.streams) >= ctx.config.max_streams:
        info = status_info("error", "NetConnection.Call.Failed", "Too many streams")
        ctx.output.command(0, "_error", cmd.transaction_id, None, info)
        return
    stream = ctx.cstate.create_stream()
    ctx.output.command(0, "_result", cmd.transaction_id, None, float(stream.stream_id))


def _stream_arg(ctx: Context, stream_id: int, what: str) -> Stream:
    stream = ctx.cstate.streams.get(stream_id)
    if stream is None:
        raise ProtocolError(f"{what} on stream {stream_id}, which was not created")
    return stream


def _publish(ctx: Context, stream_id: int, cmd: Command) -> None:
    stream = _stream_arg(ctx, stream_id, "publish")
    raw = cmd.args[0] if cmd.args else None
    kind = cmd.args[1] if len(cmd.args) > 1 and isinstance(cmd.args[1], str) else "live"
    if not isinstance(raw, str):
        raise ProtocolError("publish without a stream name")
    name, _, query = raw.partition("?")
    too_long = len(name.encode()) > ctx.config.max_name_bytes
    if not name or too_long or len(query.encode()) > limits.MAX_QUERY_BYTES:
        ctx.output.status(stream_id, "error", "NetStream.Publish.BadName", "Invalid name")
        raise ProtocolError("publish name empty or too long")
    ctx.cstate.stream_to(stream, StreamTrigger.PUBLISH, peer=True)
    stream.name = name
    ctx.events.append(PublishRequest(stream_id, name, query, kind))


def _play(ctx: Context, stream_id: int, cmd: Command) -> None:
    """The caller answers (ServerSession.accept_play / reject_play): who may play what is
    its business, not the protocol's."""
    stream = _stream_arg(ctx, stream_id, "play")
    raw = cmd.args[0] if cmd.args else None
    if not isinstance(raw, str) or len(raw.encode()) > ctx.config.max_name_bytes:
        raise ProtocolError("play without a valid stream name")
    name, _, query = raw.partition("?")

    def number(at: int, default: float) -> float:
        value = cmd.args[at] if len(cmd.args) > at else None
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return float(value) if ok and abs(value) < 2**53 else default  # type: ignore[arg-type]

    reset = len(cmd.args) > 3 and cmd.args[3] is True
    ctx.cstate.stream_to(stream, StreamTrigger.PLAY, peer=True)
    ctx.events.append(PlayRequest(stream_id, name, query[: limits.MAX_QUERY_BYTES],
                                  number(1, -2.0), number(2, -1.0), reset))  # fmt: skip


def _unpublish(ctx: Context, stream: Stream, trigger: StreamTrigger, reason: str) -> None:
    was_publishing = stream.state is StreamState.PUBLISHING
    was_playing = stream.state is StreamState.PLAYING
    ctx.cstate.stream_to(stream, trigger, peer=True)
    if was_playing:
        ctx.events.append(PlayEnd(stream.stream_id, reason))
    if was_publishing:
        ctx.events.append(PublishEnd(stream.stream_id, reason))
        if trigger is StreamTrigger.UNPUBLISH:
            ctx.output.status(stream.stream_id, "status", "NetStream.Unpublish.Success", "Stopped")


def _fc_unpublish(ctx: Context, stream_id: int, cmd: Command) -> None:
    name = cmd.args[0] if cmd.args and isinstance(cmd.args[0], str) else ""
    name = name.partition("?")[0]
    for stream in list(ctx.cstate.streams.values()):
        if stream.name == name and stream.state in ACTIVE_STATES:
            _unpublish(ctx, stream, StreamTrigger.UNPUBLISH, "FCUnpublish")
    info = {"code": "NetStream.Unpublish.Success", "description": "FCUnpublish"}
    ctx.output.command(stream_id, "onFCUnpublish", 0, None, info)


def _close_stream(ctx: Context, stream_id: int, cmd: Command) -> None:
    stream = ctx.cstate.streams.get(stream_id)
    if stream is not None:
        _unpublish(ctx, stream, StreamTrigger.UNPUBLISH, "closeStream")


def _delete_stream(ctx: Context, stream_id: int, cmd: Command) -> None:
    """deleteStream(id) as FFmpeg and OBS send it; GStreamer's rtmp2sink sends no id (null or
    nothing) and the stream's name instead, so a stream is also found by its name. Only a
    deleteStream naming neither is worth a warning; a stream that is already gone is not."""
    target = next((a for a in cmd.args if isinstance(a, int | float) and not isinstance(a, bool)),
                  None)  # fmt: skip
    if target is not None:
        # Any float can arrive here (inf, nan, 1.5): only whole numbers name a stream.
        whole = isinstance(target, int) or target.is_integer()
        stream = ctx.cstate.streams.get(int(target)) if whole else None
        if stream is not None:
            _unpublish(ctx, stream, StreamTrigger.DELETE, "deleteStream")
        return
    name = next((a for a in cmd.args if isinstance(a, str)), None)
    if name is None:
        ctx.events.append(ProtocolWarning("deleteStream without a stream id or name; ignored"))
        return
    name = name.partition("?")[0]
    for stream in list(ctx.cstate.streams.values()):
        if name and stream.name == name:
            _unpublish(ctx, stream, StreamTrigger.DELETE, "deleteStream")


#: The handler of each command after connect.
COMMANDS: dict[str, Handler] = {
    "connect": _connect_again,
    "releaseStream": _release_stream,
    "FCPublish": _fc_publish,
    "createStream": _create_stream,
    "publish": _publish,
    "play": _play,
    "FCUnpublish": _fc_unpublish,
    "closeStream": _close_stream,
    "deleteStream": _delete_stream,
}
