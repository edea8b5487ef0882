"""The RTMP listener: the one module that runs the core's `ServerSession` on sockets.

Thin on purpose: bytes read go into the core's `ServerSession`, publish requests go to a
`PublishHandler`, whose `Accept` names the `PublishSink` that the publish's media and end go to,
and what the session wants sent is written back (the handlers, sinks and answers are
rtmpd.rtmp_contract's; binding, PROXY headers and RTMPS settings are rtmpd.sockets').
One `asyncio.Protocol` per connection keeps the hot path (data_received -> session ->
sink.media) free of task switches.
Every failure is contained to its connection: a protocol violation, a timeout or an exception
in the handler closes that connection with one log line and nothing else.

RTMPS is the same server on a second listener: each accepted connection is counted against the
same caps first, then upgraded with `loop.start_tls` (so a failed TLS handshake is one log
line, and its time counts against the handshake timeout), then runs exactly as plain RTMP. The
SSLContext is read per new connection, so `set_tls_context` (a certificate reload) applies to
the next handshake and leaves connections already up as they are.

`drain` asks every publisher on a connection open now to go: those that announced enhanced
RTMP's Reconnect capability get NetConnection.Connect.ReconnectRequest (optionally naming
another node) and reconnect at their next keyframe, taking over their own name; whatever is
still open when the grace runs out is ended, as a stop would.

Players: a play request goes to the `PlayHandler` (who may play what is the composition
root's business); an accepted one gets Play.Start and then whatever its `PlaySink`'s owner
sends through the `Player` (messages cut once for every player). A player's output queue is
its transport's buffer: the owner reads `Player.buffered` and drops instead of queueing more,
and a player that stops reading is dropped after `write_stall_timeout`.

The same glue the other way round (rtmpd opening a connection, running the core's
`ClientSession`) is rtmpd.client_link.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import socket
import ssl
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from rtmpd.rtmp.chunk import SerializedMessage
from rtmpd.rtmp.config import SessionConfig
from rtmpd.rtmp.errors import ProtocolError
from rtmpd.rtmp.events import (
    Connect,
    PlayEnd,
    PlayRequest,
    ProtocolViolation,
    ProtocolWarning,
    PublishEnd,
    PublishRequest,
    TimedOut,
)
from rtmpd.rtmp.messages import ChunkStreamId, MessageType
from rtmpd.rtmp.session import ServerSession

from .proxyproto import ProxyPolicy, plain_host
from .rtmp_contract import (
    MEDIA,
    Accept,
    ConnectionInfo,
    DrainResult,
    MediaEvent,
    PlayAccept,
    PlayHandler,
    PlaySink,
    PublishHandler,
    PublishSink,
    Reject,
)
from .sockets import (
    WRITE_HIGH_WATER,
    NodeCount,
    ProxyGate,
    TlsListener,
    TlsListenError,
    dual_stack_socket,
)

#: Output queued for a peer that does not read; past this it is disconnected.
MAX_WRITE_BUFFER = 4 * 1024 * 1024
#: Seconds a connection we ended with an explanation stays half-open, reading and dropping.
LINGER = 2.0
#: A timer may fire this early (loop clock resolution) and still count as due.
_TIMER_SLACK = 0.005


def redact(key: str) -> str:
    """What a log line may show of a stream key: a fingerprint of its SHA-256 digest (the
    form rtmpd.auth.keys.key_fingerprint logs), never a character of the key, and nothing a
    peer's bytes could use to forge log lines."""
    if not key:
        return "(empty)"
    return "key sha256:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:8]


class Publisher:
    """A connection's `rtmp_contract.Publisher`: one publish request's, made before it is
    decided."""

    __slots__ = ("info", "stream_id", "started", "_conn")

    def __init__(self, info: ConnectionInfo, stream_id: int, conn: _Connection) -> None:
        self.info = info
        self.stream_id = stream_id
        self.started = time.monotonic()
        self._conn = conn

    @property
    def bytes_received(self) -> int:
        """Bytes read on this publisher's connection so far (handshake included)."""
        return self._conn.bytes_received

    def close(self, reason: str) -> None:
        """Disconnect the publisher; a publish it started ends with `reason`."""
        self._conn.shutdown(reason)

    def fail(self, code: str, description: str) -> None:
        """End the publish with an onStatus error the publisher's software shows (OBS, FFmpeg
        print its description), then disconnect. Safe to call from a sink's `media`: it takes
        effect once the current batch of events is handled."""
        self._conn.loop.call_soon(self._conn.fail_publish, self.stream_id, code, description)

    def __repr__(self) -> str:
        return f"<Publisher conn={self.info.conn_id} stream={self.stream_id}>"


class Player:
    """A connection's `rtmp_contract.Player`: one play request's, made before it is decided."""

    __slots__ = ("info", "stream_id", "_conn")

    def __init__(self, info: ConnectionInfo, stream_id: int, conn: _Connection) -> None:
        self.info = info
        self.stream_id = stream_id
        self._conn = conn

    @property
    def chunk_size(self) -> int:
        return self._conn.session.chunk_size

    @property
    def buffered(self) -> int:
        """Bytes written to this player and not yet taken by its socket."""
        transport = self._conn.transport
        return transport.get_write_buffer_size() if transport is not None else 0

    @property
    def closing(self) -> bool:
        return self._conn.closing

    def send(self, msg: SerializedMessage) -> None:
        conn = self._conn
        if not conn.closing:
            conn.session.send_serialized(msg)
            conn._flush()

    def send_data(self, payload: bytes) -> None:
        """A data message (onMetaData) on this player's stream."""
        conn = self._conn
        if not conn.closing:
            conn.session.send_message(ChunkStreamId.DATA, MessageType.DATA_AMF0,
                                      self.stream_id, payload)  # fmt: skip
            conn._flush()

    def finish(self, description: str) -> None:
        """The stream is over: tell the player (FFmpeg stops with end of file), then close.
        Takes effect on the next turn of the loop (safe from inside another's media)."""
        self._conn.loop.call_soon(self._conn.finish_play, self.stream_id, description)

    def close(self, reason: str) -> None:
        self._conn.loop.call_soon(self._conn.shutdown, reason)

    def __repr__(self) -> str:
        return f"<Player conn={self.info.conn_id} stream={self.stream_id}>"


@dataclass(slots=True)
class _Publishing:
    """An accepted publish on a connection: its name for the logs and where it goes."""

    name: str
    media: Callable[[MediaEvent], None]
    sink: PublishSink


class _Connection(asyncio.Protocol):
    """One TCP connection: feeds its session and acts on the events, in order."""

    def __init__(self, server: RtmpServer, conn_id: int, tls: bool = False) -> None:
        self.server = server
        self.conn_id = conn_id
        self.tls = tls
        self.loop = asyncio.get_running_loop()
        self.log = server.log
        self.transport: asyncio.Transport | None = None
        #: Done once the server forgets the connection (what a drain waits for).
        self.gone: asyncio.Future[None] = self.loop.create_future()
        self.peer = "?"
        self.port = 0
        self.where = f"conn {conn_id}"
        self.session = ServerSession(server.session_config, self.loop.time())
        self.info = ConnectionInfo("?", 0, conn_id, "", None, None, None, None)
        self.publishes: dict[int, _Publishing] = {}
        self.plays: dict[int, tuple[str, PlaySink]] = {}
        self.closing = False
        self.close_reason = ""
        self.linger = False  # close gently: the peer must get to read our last words
        self.auth_pending = False
        self.write_paused = False
        self.reading = True
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0
        self.stall: asyncio.TimerHandle | None = None
        self.tls_pending = False
        self.early: list[bytes] = []
        #: Reads a PROXY protocol header first (only when the listener takes them).
        self.proxy_gate: ProxyGate | None = None
        #: The address this connection counts against in the per-address cap, once counted.
        self.counted_ip: str | None = None

    @property
    def bytes_received(self) -> int:
        return int(self.session.bytes_received)

    # -- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peername = transport.get_extra_info("peername")
        if isinstance(peername, tuple):
            self.peer, self.port = plain_host(str(peername[0])), int(peername[1])
        shown = f"[{self.peer}]" if ":" in self.peer else self.peer
        scheme = " rtmps" if self.tls else ""
        self.where = f"conn {self.conn_id}{scheme} {shown}:{self.port}"
        self.info = ConnectionInfo(self.peer, self.port, self.conn_id, "", None, None, None, None)
        policy = self.server.proxy
        required = False
        if policy is not None and not self.tls:
            self.proxy_gate = ProxyGate(policy, self.peer, self._proxy_admit, self._refuse)
            required = self.proxy_gate.required
        # A trusted proxy's connection counts per address once its header names the client.
        refusal = self.server._admit(self, count_ip=not required)
        if refusal:
            self.closing = True
            self.log.warning("%s: refused: %s", self.where, refusal)
            transport.close()
            return
        if required:
            assert self.proxy_gate is not None
            self.proxy_gate.arm()
            return
        if self.tls:
            self.tls_pending = True
            self.server._spawn(self._start_tls(transport))
            return
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        self._after_session()

    async def _start_tls(self, raw: asyncio.Transport) -> None:
        """The TLS handshake, then the connection runs as plain RTMP over the TLS transport."""
        context = self.server.tls_context
        assert context is not None
        try:
            tls = await self.loop.start_tls(
                raw, self, context, server_side=True,
                ssl_handshake_timeout=self.server.session_config.handshake_timeout,
            )  # fmt: skip
        except (OSError, ssl.SSLError, EOFError) as exc:  # ssl.SSLError is an OSError too
            if not self.closing:
                self.closing = True
                self.log.warning("%s: TLS handshake failed: %s", self.where, exc or "closed")
            raw.close()
            self.server._forget(self)
            return
        if tls is None or self.closing:  # shut down while the handshake ran
            if tls is not None:
                tls.close()
            self.server._forget(self)
            return
        self.transport = tls
        self.tls_pending = False
        tls.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        early, self.early = self.early, []
        for data in early:
            self.data_received(data)
        self._after_session()

    def _proxy_admit(self, source: tuple[str, int] | None) -> bool:
        """A trusted proxy's header named the client (or, None, itself): count it in."""
        if source is not None:
            via = f"[{self.peer}]" if ":" in self.peer else self.peer
            self.peer, self.port = plain_host(source[0]), source[1]
            shown = f"[{self.peer}]" if ":" in self.peer else self.peer
            self.where = f"conn {self.conn_id} {shown}:{self.port} via {via}"
            self.info = ConnectionInfo(
                self.peer, self.port, self.conn_id, "", None, None, None, None
            )
        refusal = self.server._admit_ip(self)
        if refusal:
            self._refuse(refusal)
            return False
        assert self.transport is not None
        self.transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        self._after_session()
        return True

    def _refuse(self, reason: str) -> None:
        self.closing = True
        self.log.warning("%s: refused: %s", self.where, reason)
        if self.proxy_gate is not None:
            self.proxy_gate.cancel()
        if self.transport is not None:
            self.transport.close()
        self.server._forget(self)

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        if self.proxy_gate is not None and self.proxy_gate.waiting:
            rest = self.proxy_gate.feed(data)
            if rest:
                self.data_received(rest)
            return
        if self.tls_pending:  # decrypted before start_tls has handed us the TLS transport
            self.early.append(data)
            return
        try:
            self.session.receive_data(data, self.loop.time())
        except ProtocolError as exc:
            self._violation(f"protocol error: {exc}")
            return
        except Exception as exc:  # a core bug must cost one connection, not the server
            self.log.error("%s: internal error: %s: %s", self.where, type(exc).__name__, exc)
            self.log.debug("%s: internal error", self.where, exc_info=True)
            self.shutdown(f"internal error: {type(exc).__name__}")
            return
        self._after_session()

    def eof_received(self) -> bool:
        self.shutdown("disconnected")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.shutdown(f"connection error: {exc}" if exc else "disconnected")
        self.server._forget(self)

    def pause_writing(self) -> None:
        """Stop feeding the session until the peer catches up; give up if it never does."""
        self.write_paused = True
        self._update_reading()
        if self.stall is None and not self.closing:
            self.stall = self.loop.call_later(self.server.write_stall_timeout, self._stalled)

    def _stalled(self) -> None:
        self.stall = None
        self.log.warning("%s: peer does not read; disconnecting", self.where)
        self.shutdown("peer does not read", abort=True)

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.stall is not None:
            self.stall.cancel()
            self.stall = None
        self._update_reading()

    # -- session events ----------------------------------------------------------------

    def _after_session(self) -> None:
        """Drain events (unless a decision is pending), write output, re-arm the timer."""
        session = self.session
        try:
            while not self.closing and not self.auth_pending:
                event = session.next_event()
                if event is None:
                    break
                if isinstance(event, MEDIA):
                    publishing = self.publishes.get(event.stream_id)
                    if publishing is not None:
                        publishing.media(event)
                else:
                    self._control(event)
        except Exception as exc:  # a sink's media (or the session) failed
            self.log.error("%s: handler error: %s: %s", self.where, type(exc).__name__, exc)
            self.log.debug("%s: handler error", self.where, exc_info=True)
            self.shutdown(f"handler error: {type(exc).__name__}")
            return
        self._flush()
        if session.closed and not self.auth_pending:
            self.shutdown(self.close_reason or "session closed")
        elif not self.closing:
            self._arm_timer()

    def _control(self, event: object) -> None:
        if isinstance(event, Connect):
            self.info = ConnectionInfo(
                self.peer,
                self.port,
                self.conn_id,
                event.app,
                event.tc_url,
                event.flashver,
                event.swf_url,
                event.page_url,
            )
        elif isinstance(event, PublishRequest):
            self.auth_pending = True
            self._update_reading()
            self.server._spawn(self._authorize(event), auth=True)
        elif isinstance(event, PlayRequest):
            self.log.info("%s: play request for %s", self.where, redact(event.name))
            if self.server.play_handler is None:
                self.session.reject_play(event.stream_id, "NetStream.Play.Failed",
                                         "Playback is off")  # fmt: skip
                self.close_reason = "play refused"
                return
            self.auth_pending = True
            self._update_reading()
            self.server._spawn(self._authorize_play(event), auth=True)
        elif isinstance(event, PlayEnd):
            playing = self.plays.pop(event.stream_id, None)
            if playing is not None:
                self.server._end_play(self, playing, event.reason)
        elif isinstance(event, PublishEnd):
            publishing = self.publishes.pop(event.stream_id, None)
            if publishing is not None:
                self.server._end(self, publishing, event.reason)
        elif isinstance(event, ProtocolViolation):
            self._violation(f"protocol violation: {event.reason}")
        elif isinstance(event, ProtocolWarning):
            self.log.warning("%s: %s", self.where, event.reason)
        elif isinstance(event, TimedOut):
            self._violation(f"timed out: {event.reason}")

    def _violation(self, reason: str) -> None:
        self.log.warning("%s: %s", self.where, reason)
        self._flush()
        self.shutdown(reason)

    async def _authorize(self, request: PublishRequest) -> None:
        key = redact(request.name)
        publisher = Publisher(self.info, request.stream_id, self)
        try:
            decision = await self.server.handler.authorize(publisher, request)
            if not isinstance(decision, Accept | Reject):
                raise TypeError(f"authorize returned {type(decision).__name__}")
        except Exception as exc:
            self.log.error(
                "%s: authorize %s failed: %s: %s", self.where, key, type(exc).__name__, exc
            )
            self.log.debug("%s: authorize failed", self.where, exc_info=True)
            self.auth_pending = False
            self.shutdown(f"handler error: {type(exc).__name__}")
            return
        self.auth_pending = False
        if isinstance(decision, Reject):
            self.log.info(
                "%s: publish %s rejected: %s (%s)",
                self.where,
                key,
                decision.code,
                decision.description,
            )
            if not self.closing:
                self.session.reject_publish(request.stream_id, decision.code, decision.description)
                self.close_reason = f"rejected: {decision.code}"
                self._after_session()
            return
        publishing = _Publishing(decision.name, decision.sink.media, decision.sink)
        if self.closing:  # gone while we waited: the accepted publish still ends, once
            self.server._end(self, publishing, self.close_reason)
            return
        if decision.name == request.name:  # accepted under the name it sent: a public name now
            self.log.info("%s: publishing %s", self.where, decision.name)
        else:
            self.log.info("%s: publishing %s as %s", self.where, key, decision.name)
        self.publishes[request.stream_id] = publishing
        if decision.raw:
            self.session.tap(request.stream_id)
        try:
            started = self.session.accept_publish(request.stream_id)
        except Exception as exc:  # a core bug: this connection only
            self.log.error("%s: internal error: %s: %s", self.where, type(exc).__name__, exc)
            self.shutdown(f"internal error: {type(exc).__name__}")
            return
        if not started and not self.session.closed:  # no longer pending in the session
            self.publishes.pop(request.stream_id, None)
            self.server._end(self, publishing, "withdrawn before accept")
        self._update_reading()
        self._after_session()

    async def _authorize_play(self, request: PlayRequest) -> None:
        player = Player(self.info, request.stream_id, self)
        handler = self.server.play_handler
        assert handler is not None
        try:
            decision = await handler.authorize_play(player, request)
            if not isinstance(decision, PlayAccept | Reject):
                raise TypeError(f"authorize_play returned {type(decision).__name__}")
        except Exception as exc:
            self.log.error("%s: authorize play failed: %s: %s", self.where,
                           type(exc).__name__, exc)  # fmt: skip
            self.log.debug("%s: authorize play failed", self.where, exc_info=True)
            self.auth_pending = False
            self.shutdown(f"handler error: {type(exc).__name__}")
            return
        self.auth_pending = False
        if isinstance(decision, Reject):
            self.log.info("%s: play of %s refused: %s (%s)", self.where, redact(request.name),
                          decision.code, decision.description)  # fmt: skip
            if not self.closing:
                self.session.reject_play(request.stream_id, decision.code, decision.description)
                self.close_reason = f"play refused: {decision.code}"
                self._after_session()
            return
        playing = (decision.name, decision.sink)
        if self.closing or not self.session.accept_play(request.stream_id):
            self.server._end_play(self, playing, self.close_reason or "withdrawn before accept")
            return
        self.log.info("%s: playing %s", self.where, decision.name)
        self.plays[request.stream_id] = playing
        self._flush()
        try:
            decision.sink.start()
        except Exception as exc:
            self.log.error("%s: starting the play failed: %s: %s", self.where,
                           type(exc).__name__, exc)  # fmt: skip
            self.shutdown(f"handler error: {type(exc).__name__}")
            return
        self._update_reading()
        self._after_session()

    def finish_play(self, stream_id: int, description: str) -> None:
        if self.closing:
            return
        if self.session.end_play(stream_id, description):
            self.close_reason = description
            self.linger = True
            self._after_session()

    # -- output, flow control, timers ---------------------------------------------------

    def _flush(self) -> None:
        out = self.session.data_to_send()
        if not out or self.transport is None or self.transport.is_closing():
            return
        self.transport.write(out)
        # A player's queue is bounded by whoever feeds it (it drops to the next keyframe).
        if not self.plays and self.transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
            self.log.warning("%s: peer does not read; disconnecting", self.where)
            self.shutdown("peer does not read", abort=True)

    def _update_reading(self) -> None:
        transport = self.transport
        if transport is None or self.closing:
            return
        want = not (self.auth_pending or self.write_paused)
        if want != self.reading:
            self.reading = want
            if want:
                transport.resume_reading()
            else:
                transport.pause_reading()

    def _arm_timer(self) -> None:
        """Keep one call_at; a later deadline waits for the current one to fire first."""
        deadline = self.session.get_timer()
        if deadline is None or (self.timer is not None and self.timer_at <= deadline):
            return
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.loop.call_at(deadline, self._on_timer)
        self.timer_at = deadline

    def _on_timer(self) -> None:
        self.timer = None
        if self.closing or self.auth_pending:
            return  # a pending decision re-arms when it lands
        now = self.loop.time()
        deadline = self.session.get_timer()
        if deadline is not None and deadline <= now + _TIMER_SLACK:
            self.session.handle_timer(max(now, deadline))
        self._after_session()

    def fail_publish(self, stream_id: int, code: str, description: str) -> None:
        if self.closing:
            return
        if self.session.end_publish(stream_id, code, description):
            self.log.info("%s: ending the publish: %s", self.where, description)
            self.close_reason = description
            self.linger = True
            self._after_session()
        else:
            self.shutdown(description)

    def shutdown(self, reason: str, *, abort: bool = False) -> None:
        """Close once: flush what the session has, end every publish with `reason`."""
        if self.closing:
            return
        self.closing = True
        self.close_reason = reason
        self.log.debug("%s: closing: %s", self.where, reason)
        for pending in (self.timer, self.stall):
            if pending is not None:
                pending.cancel()
        self.timer = self.stall = None
        if self.proxy_gate is not None:
            self.proxy_gate.cancel()
        transport = self.transport
        if transport is not None and not transport.is_closing():
            if abort:
                transport.abort()
            else:
                with contextlib.suppress(Exception):  # closing anyway
                    out = self.session.data_to_send()
                    if out:
                        transport.write(out)
                if self.linger and transport.can_write_eof():
                    # A publisher told why it is ended keeps sending for a while before it
                    # reads: closing now would reset the connection and lose what we said.
                    # Send FIN, drop what it still sends, close after LINGER (nginx's
                    # lingering close).
                    try:
                        transport.write_eof()
                    except OSError:  # the peer is gone already (ENOTCONN): nothing to say
                        transport.abort()
                    else:
                        self.loop.call_later(LINGER, transport.close)
                else:
                    transport.close()
        publishes, self.publishes = self.publishes, {}
        for publishing in publishes.values():
            self.server._end(self, publishing, reason)
        plays, self.plays = self.plays, {}
        for playing in plays.values():
            self.server._end_play(self, playing, reason)


class RtmpServer:
    """Listens for RTMP, enforces connection caps, and runs one `_Connection` per peer."""

    #: Seconds a peer may leave our output unread (writes paused) before it is dropped.
    write_stall_timeout = 30.0
    #: Seconds close() lets pending authorize calls finish before cancelling them.
    close_grace = 5.0

    def __init__(
        self,
        handler: PublishHandler,
        *,
        host: str,
        port: int,
        session_config: SessionConfig | None = None,
        max_connections: int = 1000,
        max_connections_per_ip: int = 50,
        log: logging.Logger | None = None,
        tls: TlsListener | None = None,
        play_handler: PlayHandler | None = None,
        proxy: ProxyPolicy | None = None,
        sock: socket.socket | None = None,
        node: NodeCount | None = None,
    ) -> None:
        self.handler = handler
        #: With rtmpd workers: the caps are the node's, the other workers' connections count.
        self.node = node
        #: Who decides play requests; None: every play is refused ("Playback is off").
        self.play_handler = play_handler
        self.tls = tls
        #: An already listening socket (a worker's, made by its supervisor) instead of binding.
        self.sock = sock
        #: PROXY protocol on the plain RTMP listener (RTMPS behind a balancer: let it end TLS).
        self.proxy = proxy
        self.host = host
        self._port = port
        self.session_config = session_config or SessionConfig()
        self.max_connections = max_connections
        self.max_connections_per_ip = max_connections_per_ip
        self.log = log or logging.getLogger("rtmpd.rtmp")
        self._server: asyncio.Server | None = None
        self._tls_server: asyncio.Server | None = None
        self._conns: dict[int, _Connection] = {}
        self._per_ip: dict[str, int] = {}
        self._next_id = 1
        self._tasks: set[asyncio.Task[None]] = set()
        self._auth_tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        dual = self.sock or dual_stack_socket(self.host, self._port)
        if dual is not None:
            self._server = await loop.create_server(self._new_connection, sock=dual)
        else:
            self._server = await loop.create_server(
                self._new_connection, self.host, self._port, reuse_address=True
            )
        sock: socket.socket = self._server.sockets[0]
        bound = sock.getsockname()
        self._port = int(bound[1]) if isinstance(bound, tuple) else 0  # 0: a unix socket
        if self.tls is not None:
            tls_sock = self.tls.sock
            try:
                if tls_sock is not None:
                    self._tls_server = await loop.create_server(
                        lambda: self._new_connection(tls=True), sock=tls_sock
                    )
                else:
                    self._tls_server = await loop.create_server(
                        lambda: self._new_connection(tls=True), self.tls.host, self.tls.port,
                        reuse_address=True,
                    )  # fmt: skip
            except OSError as exc:
                self._server.close()
                raise TlsListenError(exc.errno, exc.strerror) from None
            self.tls.port = int(self._tls_server.sockets[0].getsockname()[1])

    @property
    def port(self) -> int:
        """The bound port (the real one when constructed with port 0)."""
        return self._port

    @property
    def tls_port(self) -> int:
        """The bound RTMPS port, 0 without RTMPS."""
        return self.tls.port if self.tls is not None else 0

    @property
    def tls_context(self) -> ssl.SSLContext | None:
        return self.tls.context if self.tls is not None else None

    def set_tls_context(self, context: ssl.SSLContext) -> None:
        """Use `context` (a reloaded certificate) for every TLS handshake from now on;
        connections already up keep theirs."""
        if self.tls is not None:
            self.tls.context = context

    def stop_listening(self) -> None:
        """No new connections (the ones open go on)."""
        for listener in (self._server, self._tls_server):
            if listener is not None:
                listener.close()

    async def drain(self, grace: float, redirect: str = "") -> DrainResult:
        """Ask the publishers open now to go, give them `grace` seconds, then end the rest.
        Publishers that announced the Reconnect capability get a reconnect request (to
        `redirect`, else to where they are); the others just get the grace."""
        conns = [c for c in self._conns.values() if c.publishes and not c.closing]
        asked = 0
        for conn in conns:
            description = "The server is draining: reconnect, please"
            if conn.session.request_reconnect(redirect, description):
                asked += 1
                conn._flush()
                self.log.info("%s: asked to reconnect%s", conn.where,
                              f" to {redirect}" if redirect else "")  # fmt: skip
        self.log.info(
            "draining: %d publisher(s) asked to reconnect, %d without the capability; "
            "the rest ends in %g s", asked, len(conns) - asked, grace,
        )  # fmt: skip
        if conns and grace > 0:
            await asyncio.wait([c.gone for c in conns], timeout=grace)
        late = [c for c in conns if not c.gone.done()]
        for conn in late:
            conn.shutdown("server draining")
        self.log.info("drained: %d went by themselves, %d ended", len(conns) - len(late),
                      len(late))  # fmt: skip
        return DrainResult(asked, len(conns) - len(late), len(late))

    @property
    def connections(self) -> int:
        return len(self._conns)

    def close_connection(self, conn_id: int, reason: str) -> bool:
        """Disconnect one connection by id (e.g. a revocation during authorize)."""
        conn = self._conns.get(conn_id)
        if conn is None:
            return False
        conn.shutdown(reason)
        return True

    async def close(self) -> None:
        """Stop listening, close every connection, and wait for every publish to end."""
        self.stop_listening()
        for conn in list(self._conns.values()):
            conn.shutdown("server shutting down")
        # Decisions still pending are moot now; give them a moment, then cancel them.
        if self._auth_tasks:
            _, late = await asyncio.wait(list(self._auth_tasks), timeout=self.close_grace)
            for task in late:
                task.cancel()
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        for _ in range(50):  # let closed transports finish flushing, then cut the rest
            if not self._conns:
                break
            await asyncio.sleep(0.02)
        for conn in list(self._conns.values()):
            if conn.transport is not None:
                conn.transport.abort()
        for _ in range(10):  # aborted transports report connection_lost on the next turns
            if not self._conns:
                break
            await asyncio.sleep(0)
        for listener in (self._server, self._tls_server):
            if listener is not None:
                await listener.wait_closed()
        self._server = self._tls_server = None

    # -- for _Connection ---------------------------------------------------------------

    def _new_connection(self, tls: bool = False) -> _Connection:
        conn_id = self._next_id
        self._next_id += 1
        return _Connection(self, conn_id, tls)

    def _admit(self, conn: _Connection, *, count_ip: bool = True) -> str:
        """Count a new connection in; the reason to refuse it, or ''. Without `count_ip` (a
        trusted proxy's connection before its header named the client) only the total cap
        counts it, until `_admit_ip`."""
        node = self.node
        held = len(self._conns) + (node.elsewhere() if node is not None else 0)
        if held >= self.max_connections:
            return f"{self.max_connections} connections already open"
        self._conns[conn.conn_id] = conn
        if node is not None:
            node.add(1)
        return self._admit_ip(conn) if count_ip else ""

    def _admit_ip(self, conn: _Connection) -> str:
        node = self.node
        held = self._per_ip.get(conn.peer, 0)
        if node is not None:
            held += node.elsewhere_from(conn.peer)
        if held >= self.max_connections_per_ip:
            del self._conns[conn.conn_id]
            if node is not None:
                node.add(-1)
            return f"{self.max_connections_per_ip} connections already open from {conn.peer}"
        self._per_ip[conn.peer] = self._per_ip.get(conn.peer, 0) + 1
        if node is not None:
            node.add_host(conn.peer, 1)
        conn.counted_ip = conn.peer
        return ""

    def _forget(self, conn: _Connection) -> None:
        if not conn.gone.done():
            conn.gone.set_result(None)
        if self._conns.pop(conn.conn_id, None) is None:
            return
        if self.node is not None:
            self.node.add(-1)
        if conn.counted_ip is None:
            return
        host, conn.counted_ip = conn.counted_ip, None
        if self.node is not None:
            self.node.add_host(host, -1)
        left = self._per_ip.get(host, 0) - 1
        if left > 0:
            self._per_ip[host] = left
        else:
            self._per_ip.pop(host, None)

    def _spawn(self, coro: Coroutine[Any, Any, None], *, auth: bool = False) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if auth:
            self._auth_tasks.add(task)
            task.add_done_callback(self._auth_tasks.discard)

    def _end(self, conn: _Connection, publishing: _Publishing, reason: str) -> None:
        self.log.info("%s: publish of %s ended: %s", conn.where, publishing.name, reason)
        self._spawn(self._call_end(conn, publishing.sink, reason))

    def _end_play(self, conn: _Connection, playing: tuple[str, PlaySink], reason: str) -> None:
        name, sink = playing
        self.log.info("%s: play of %s ended: %s", conn.where, name, reason)
        try:
            sink.end(reason)
        except Exception as exc:
            self.log.error("%s: ending the play failed: %s: %s", conn.where,
                           type(exc).__name__, exc)  # fmt: skip

    async def _call_end(self, conn: _Connection, sink: PublishSink, reason: str) -> None:
        try:
            await sink.end(reason)
        except Exception as exc:
            self.log.error("%s: ending the publish failed: %s: %s", conn.where,
                           type(exc).__name__, exc)  # fmt: skip
            self.log.debug("ending the publish failed", exc_info=True)
