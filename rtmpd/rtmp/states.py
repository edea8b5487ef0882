"""The rules of one RTMP connection: its states, the legal transitions, and where they apply.

How the state machine works (in the manner of h11's _state.py): the connection and each
message stream it creates have a state, and every transition is a row in a table below,
keyed by (state, trigger). Triggers are Enums: a ConnTrigger or StreamTrigger is something the
peer did (connect, publish, FCUnpublish, deleteStream, ...), something our user decided
(accept, reject), or the session closing. A peer trigger with no row is a protocol violation:
ConnectionState raises ProtocolError, and the session queues a ProtocolViolation event and
closes. A local trigger with no row (accepting a publish the peer already withdrew, say)
changes nothing and returns False, because the socket layer decides asynchronously and may
simply be late.

ConnectionState applies the tables and is the one writer of everything they govern: the
connection's state, the streams and their states, how many streams are PUBLISHING, and since
when we wait for a publish. It knows nothing of bytes, replies or events; ServerSession holds
one (rather than inheriting from it). Side effects live with its callers - the command handlers
in `rtmpd.rtmp.commands` and the session's accept/reject/close - next to the one `conn_to` or
`stream_to` call that makes the transition, so the tables stay the single source of legality.
(Which commands a state accepts at all is the handlers' part: before connect, only connect.)

Connection: HANDSHAKE -> AWAIT_CONNECT -> CONNECTED -> CLOSED (CLOSED from anywhere).
Streams: IDLE (created) -> PUBLISH_PENDING (PublishRequest emitted) -> PUBLISHING (accepted)
-> IDLE again on FCUnpublish/closeStream, or DELETED on deleteStream. Playing is the same
shape: IDLE -> PLAY_REQUESTED (PlayRequest emitted) -> PLAYING (accepted; DELETED when
refused) -> IDLE on closeStream or a close, DELETED on deleteStream. A publish the peer ends
while we are still deciding becomes WITHDRAWN; accepting it then ends it at once, so the rule
"every accepted publish gets exactly one PublishEnd" holds without the caller tracking races.
A session that closes for any reason (violation, timeout, reject, refused play, close()) first
fires StreamTrigger.CLOSE at every stream, then ConnTrigger.CLOSE: a PUBLISHING stream ends
(back to IDLE; the caller queues its PublishEnd), and no other stream state has a CLOSE row, so
a pending or withdrawn publish stays as it is (accept_publish refuses once closed anyway).

The publish timer: `waiting_since` is when we began waiting for a publish request. Every
connection transition restarts it (the handshake done, connect) or clears it (close); every
stream transition clears it while any stream is PUBLISH_PENDING, PUBLISHING or WITHDRAWN (or
a player's PLAY_REQUESTED or PLAYING: a player never publishes), and
starts it, if it is not running yet, once none is. ConnectionState stamps it with `now`, the
time of the input being handled, which the session sets before it hands the machine anything.

Media (audio, video, metadata) is turned into events only for streams that are PUBLISHING or
PUBLISH_PENDING: the latter so that a client that pipelines its sequence headers right after
`publish` loses nothing (the events queue up behind the PublishRequest; the caller holds them
until it decides, or drops them on reject). Media for any other stream id is ignored and
counted in `ignored_media` - harmless and bounded by the connect-to-publish timeout.
"""

from __future__ import annotations

from enum import Enum, auto

from .errors import ProtocolError


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
    PLAYING = auto()
    DELETED = auto()


class ConnTrigger(Enum):
    """What moves the connection (values name it in error messages)."""

    HANDSHAKE_DONE = "handshake_done"
    CONNECT = "connect"
    CLOSE = "close"


class StreamTrigger(Enum):
    """What moves a stream: the peer's publish, play, FCUnpublish or closeStream (UNPUBLISH)
    and deleteStream (DELETE); our accept and reject; the session closing (CLOSE)."""

    PUBLISH = "publish"
    PLAY = "play"
    UNPUBLISH = "unpublish"
    DELETE = "delete"
    ACCEPT = "accept"
    REJECT = "reject"
    CLOSE = "close"


_C = ConnState
_S = StreamState
_CT = ConnTrigger
_ST = StreamTrigger

CONN_TRANSITIONS: dict[tuple[ConnState, ConnTrigger], ConnState] = {
    (_C.HANDSHAKE, _CT.HANDSHAKE_DONE): _C.AWAIT_CONNECT,
    (_C.AWAIT_CONNECT, _CT.CONNECT): _C.CONNECTED,
    (_C.HANDSHAKE, _CT.CLOSE): _C.CLOSED,
    (_C.AWAIT_CONNECT, _CT.CLOSE): _C.CLOSED,
    (_C.CONNECTED, _CT.CLOSE): _C.CLOSED,
}

STREAM_TRANSITIONS: dict[tuple[StreamState, StreamTrigger], StreamState] = {
    (_S.IDLE, _ST.PUBLISH): _S.PUBLISH_PENDING,
    (_S.IDLE, _ST.PLAY): _S.PLAY_REQUESTED,
    (_S.IDLE, _ST.DELETE): _S.DELETED,
    (_S.IDLE, _ST.UNPUBLISH): _S.IDLE,
    (_S.PUBLISH_PENDING, _ST.ACCEPT): _S.PUBLISHING,
    (_S.PUBLISH_PENDING, _ST.REJECT): _S.DELETED,
    (_S.PUBLISH_PENDING, _ST.UNPUBLISH): _S.WITHDRAWN,
    (_S.PUBLISH_PENDING, _ST.DELETE): _S.WITHDRAWN,
    (_S.WITHDRAWN, _ST.ACCEPT): _S.DELETED,
    (_S.WITHDRAWN, _ST.REJECT): _S.DELETED,
    (_S.WITHDRAWN, _ST.DELETE): _S.WITHDRAWN,
    (_S.WITHDRAWN, _ST.UNPUBLISH): _S.WITHDRAWN,
    (_S.PUBLISHING, _ST.UNPUBLISH): _S.IDLE,
    (_S.PUBLISHING, _ST.DELETE): _S.DELETED,
    (_S.PUBLISHING, _ST.CLOSE): _S.IDLE,
    (_S.PLAY_REQUESTED, _ST.DELETE): _S.DELETED,
    (_S.PLAY_REQUESTED, _ST.UNPUBLISH): _S.PLAY_REQUESTED,
    (_S.PLAY_REQUESTED, _ST.ACCEPT): _S.PLAYING,
    (_S.PLAY_REQUESTED, _ST.REJECT): _S.DELETED,
    (_S.PLAYING, _ST.DELETE): _S.DELETED,
    (_S.PLAYING, _ST.UNPUBLISH): _S.IDLE,
    (_S.PLAYING, _ST.CLOSE): _S.IDLE,
}

#: States in which the stream counts as "a publish is happening" for the timers.
ACTIVE_STATES = frozenset((_S.PUBLISH_PENDING, _S.PUBLISHING, _S.WITHDRAWN))
#: States that stop the wait for a publish: a player is not expected to publish.
BUSY_STATES = ACTIVE_STATES | {_S.PLAY_REQUESTED, _S.PLAYING}
#: States whose media becomes events.
MEDIA_STATES = frozenset((_S.PUBLISH_PENDING, _S.PUBLISHING))


class Stream:
    """One message stream the peer created with createStream. `state` is ConnectionState's
    to change; `name` is the stream key it publishes under."""

    __slots__ = ("stream_id", "state", "name")

    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id
        self.state = StreamState.IDLE
        self.name = ""


class ConnectionState:
    """The connection's and its streams' states, changed only through the tables above.

    Read the attributes freely; only the methods below write them (`now` excepted, which is
    the session's to set). `streams` is never rebound, so a reader may keep a reference."""

    __slots__ = ("conn", "streams", "publishing", "waiting_since", "now", "_next_stream_id")

    def __init__(self, now: float) -> None:
        self.conn = ConnState.HANDSHAKE
        self.streams: dict[int, Stream] = {}
        self.publishing = 0  # streams in PUBLISHING
        self.waiting_since: float | None = None  # since when we wait for a publish request
        self.now = now
        self._next_stream_id = 1

    def conn_to(self, trigger: ConnTrigger) -> None:
        new = CONN_TRANSITIONS.get((self.conn, trigger))
        if new is None:
            raise ProtocolError(f"{trigger.value} not allowed in state {self.conn.name}")
        self.conn = new
        self._wait_for_publish(restart=True)

    def stream_to(self, stream: Stream, trigger: StreamTrigger, *, peer: bool = False) -> bool:
        """Apply `trigger` to `stream`. No row: ProtocolError if the peer caused it (`peer`),
        else False and nothing changes."""
        old = stream.state
        new = STREAM_TRANSITIONS.get((old, trigger))
        if new is None:
            if peer:
                raise ProtocolError(
                    f"{trigger.value} on stream {stream.stream_id} in state {old.name}"
                )
            return False
        if old is StreamState.PUBLISHING and new is not StreamState.PUBLISHING:
            self.publishing -= 1
        elif new is StreamState.PUBLISHING and old is not StreamState.PUBLISHING:
            self.publishing += 1
        stream.state = new
        if new is StreamState.DELETED:
            del self.streams[stream.stream_id]
        self._wait_for_publish(restart=False)
        return True

    def create_stream(self) -> Stream:
        """A new IDLE stream with the next id (the caller enforces the stream count limit)."""
        stream = Stream(self._next_stream_id)
        self._next_stream_id += 1
        self.streams[stream.stream_id] = stream
        return stream

    def close(self) -> list[int]:
        """CLOSE every stream, then the connection; the ids of the publishes that ended (each
        is owed a PublishEnd). Closing twice changes nothing and ends nothing."""
        if self.conn is ConnState.CLOSED:
            return []
        ended = [
            stream.stream_id
            for stream in list(self.streams.values())
            if self.stream_to(stream, StreamTrigger.CLOSE)
        ]
        self.conn_to(ConnTrigger.CLOSE)
        return ended

    def _wait_for_publish(self, *, restart: bool) -> None:
        """The one writer of `waiting_since` (the rule is in the module docstring)."""
        if self.conn is ConnState.CLOSED or any(
            stream.state in BUSY_STATES for stream in self.streams.values()
        ):
            self.waiting_since = None
        elif restart or self.waiting_since is None:
            self.waiting_since = self.now
