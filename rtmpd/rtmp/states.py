"""The rules of one RTMP connection: its states, the legal transitions, and where they apply.

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
"""

from __future__ import annotations

from collections import deque
from enum import Enum, auto

from .errors import ProtocolError
from .events import Event, ProtocolViolation, PublishEnd, TimedOut


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
ACTIVE_STATES = frozenset((_S.PUBLISH_PENDING, _S.PUBLISHING, _S.WITHDRAWN))
#: States whose media becomes events.
MEDIA_STATES = frozenset((_S.PUBLISH_PENDING, _S.PUBLISHING))


class Stream:
    """One message stream the peer created with createStream."""

    __slots__ = ("stream_id", "state", "name")

    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id
        self.state = StreamState.IDLE
        self.name = ""


class StateMachine:
    """The connection's and its streams' states, changed only through the tables above, and
    the events that a state change itself implies (PublishEnd, ProtocolViolation, TimedOut).
    The base of ServerSession: the command handlers and the I/O glue build on it."""

    def __init__(self, now: float) -> None:
        self._conn = ConnState.HANDSHAKE
        self._streams: dict[int, Stream] = {}
        self._events: deque[Event] = deque()
        self._now = now
        self._waiting_since: float | None = None  # since when we wait for a publish request
        self._publishing = 0  # streams in PUBLISHING

    def _conn_to(self, trigger: str) -> None:
        new = CONN_TRANSITIONS.get((self._conn, trigger))
        if new is None:
            raise ProtocolError(f"{trigger} not allowed in state {self._conn.name}")
        self._conn = new

    def _stream_to(self, stream: Stream, trigger: str, *, peer: bool = False) -> bool:
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
        if any(s.state in ACTIVE_STATES for s in self._streams.values()):
            self._waiting_since = None
        elif self._waiting_since is None:
            self._waiting_since = self._now
        return True

    def _close(self) -> None:
        if self._conn is not ConnState.CLOSED:
            self._conn_to("close")

    def _fail(self, event: ProtocolViolation | TimedOut) -> None:
        if self._conn is ConnState.CLOSED:
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
