"""Shared helpers for the RTMP core tests: feeding bytes whole or split, driving a session."""

from __future__ import annotations

from functools import cache
from typing import Any

from rtmpd.rtmp.chunk import ChunkReader, ChunkWriter, Message
from rtmpd.rtmp.client import ClientEvent, ClientSession
from rtmpd.rtmp.events import Event
from rtmpd.rtmp.handshake import ClientHandshake
from rtmpd.rtmp.messages import ChunkStreamId, MessageType, encode_command
from rtmpd.rtmp.session import ServerSession
from tests.support import wire
from tests.support.media import make_flv, read_flv_tags
from tests.support.pieces import pieces


def read_messages(data: bytes, mode: str, reader: ChunkReader | None = None) -> list[Message]:
    reader = reader or ChunkReader()
    out = []
    for piece in pieces(data, mode):
        reader.feed(piece)
        while (msg := reader.next_message()) is not None:
            out.append(msg)
    return out


def as_tuples(messages: list[Message]) -> list[tuple[int, int, int, int, bytes]]:
    return [(m.csid, m.msg_type, m.stream_id, m.timestamp, bytes(m.payload)) for m in messages]


def drain(session: ServerSession | ClientSession) -> list[Any]:
    events = []
    while (event := session.next_event()) is not None:
        events.append(event)
    return events


class RawClient:
    """A hand-driven client: does the handshake with ClientHandshake, then sends whatever
    messages a test builds, so tests control every byte the server sees."""

    def __init__(
        self, server: ServerSession, mode: str = "whole", chunk_size: int = 128, now: float = 0.0
    ) -> None:
        self.server = server
        self.mode = mode
        self.writer = ChunkWriter(chunk_size)
        self.reader = ChunkReader()
        self.now = now
        hs = ClientHandshake()
        self.feed(hs.data_to_send())
        hs.receive_data(server.data_to_send())
        self.feed(hs.data_to_send())
        assert hs.complete
        self.replies: list[Message] = []

    def feed(self, data: bytes) -> None:
        for piece in pieces(data, self.mode):
            self.server.receive_data(piece, self.now)

    def send(
        self, msg_type: int, payload: bytes, stream_id: int = 0, ts: int = 0, csid: int = 0
    ) -> None:
        csid = csid or (ChunkStreamId.COMMAND if msg_type in (17, 20) else 4)
        self.feed(self.writer.write(csid, msg_type, stream_id, ts, payload))

    def command(
        self, name: str, tid: float, obj: Any = None, *args: Any, stream_id: int = 0
    ) -> None:
        self.send(MessageType.COMMAND_AMF0, encode_command(name, tid, obj, *args), stream_id)

    def collect(self) -> list[Message]:
        """Messages the server sent since the last call."""
        self.reader.feed(self.server.data_to_send())
        out = []
        while (msg := self.reader.next_message()) is not None:
            out.append(msg)
        self.replies.extend(out)
        return out

    def connect(self, app: str = "live", **extra: Any) -> None:
        obj = {"app": app, "tcUrl": f"rtmp://localhost/{app}", "flashVer": "FMLE/3.0"}
        obj.update(extra)
        self.command("connect", 1, obj)

    def publish(self, name: str = "key1234", stream_id: int = 1) -> None:
        self.command("createStream", 2)
        self.command("publish", 0, None, name, "live", stream_id=stream_id)


def pump(client: ClientSession, server: ServerSession, now: float = 0.0) -> list[Event]:
    """Shuttle bytes both ways until both sides are quiet; returns the server's events."""
    events: list[Event] = []
    for _ in range(1000):
        up = client.data_to_send()
        if up:
            server.receive_data(up, now)
        down = server.data_to_send()
        if down:
            client.receive_data(down)
        events.extend(drain(server))
        if not up and not down:
            return events
    raise AssertionError("pair did not go quiet")


def send_raw(client: ClientSession, server: ServerSession, data: bytes, now: float = 0.0) -> None:
    """Bytes no well-behaved client would send, to the server right after what `client` has
    queued so far (so they land in the client's byte stream where the call is made)."""
    server.receive_data(client.data_to_send() + data, now)


def send_abort(client: ClientSession, csid: int) -> None:
    """An Abort Message for chunk stream `csid` (our client never needs to send one)."""
    client.send_message(ChunkStreamId.CONTROL, MessageType.ABORT, 0, 0, wire.abort(csid))


def client_events(client: ClientSession) -> list[ClientEvent]:
    return drain(client)


@cache
def real_configs() -> tuple[bytes, bytes]:
    """(AVCDecoderConfigurationRecord, AudioSpecificConfig) from a real libx264/aac encode."""
    tags = read_flv_tags(make_flv(seconds=0.2, width=64, height=48))
    video = next(t for t in tags if t.kind == 9 and t.is_sequence_header)
    audio = next(t for t in tags if t.kind == 8 and t.is_sequence_header)
    return video.body[5:], audio.body[2:]
