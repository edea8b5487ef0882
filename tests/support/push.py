"""Push destinations for the tests: an RTMP server that writes down every message it is sent
(rtmpd's own RtmpServer with a recording handler, the messages raw), a TCP proxy that can
stall (a destination whose network stops taking data), and a port that accepts and never
reads. Destination keys are made by `destination_key`, which the suite's key sweep records."""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass, field

from rtmpd.rtmp.events import PublishRequest, RawKind, RawMedia
from rtmpd.rtmp_contract import Accept, MediaEvent, Publisher, Reject
from rtmpd.server import RtmpServer


def destination_key() -> str:
    """Another service's stream key, as the suite's key sweep knows it (tests/conftest.py)."""
    from tests.conftest import RECORD

    key = "live_" + secrets.token_urlsafe(18)
    RECORD.keys.append(key)
    return key


@dataclass(slots=True)
class Received:
    """One publish a destination got: its key and every audio/video message as it came."""

    key: str
    messages: list[RawMedia] = field(default_factory=list)
    ended: str | None = None

    def video(self) -> list[RawMedia]:
        return [m for m in self.messages if m.msg_type == 9]

    def first_media_kinds(self) -> list[int]:
        return [m.kind for m in self.messages[:4]]


class _Sink:
    def __init__(self, received: Received) -> None:
        self.received = received

    def media(self, event: MediaEvent) -> None:
        if isinstance(event, RawMedia):
            self.received.messages.append(
                RawMedia(
                    event.stream_id,
                    event.msg_type,
                    event.timestamp,
                    bytes(event.payload),
                    event.kind,
                    event.key,
                )  # fmt: skip
            )

    async def end(self, reason: str) -> None:
        self.received.ended = reason


class RecordingDestination:
    """Accepts publishes whose key is in `keys` (any, when None), records them raw."""

    def __init__(self, keys: set[str] | None = None, port: int = 0) -> None:
        self.keys = keys
        self.publishes: list[Received] = []
        self.refused = 0
        # Another service's server: its log (which names what it refuses) is not rtmpd's.
        quiet = logging.getLogger("tests.destination")
        quiet.propagate = False
        self.server = RtmpServer(self, host="127.0.0.1", port=port, log=quiet)

    @property
    def port(self) -> int:
        return self.server.port

    async def start(self) -> RecordingDestination:
        await self.server.start()
        return self

    async def close(self) -> None:
        await self.server.close()

    async def authorize(self, publisher: Publisher, request: PublishRequest) -> Accept | Reject:
        if self.keys is not None and request.name not in self.keys:
            self.refused += 1
            return Reject("NetStream.Publish.BadName", f"unknown stream key {request.name}")
        received = Received(request.name)
        self.publishes.append(received)
        return Accept("mirror", _Sink(received), raw=True)

    @property
    def last(self) -> Received:
        return self.publishes[-1]

    def stall(self) -> None:
        """Stop reading every connection (a destination whose network stopped taking data)."""
        for conn in self.server._conns.values():
            if conn.transport is not None:
                conn.transport.pause_reading()

    def resume(self) -> None:
        for conn in self.server._conns.values():
            if conn.transport is not None:
                conn.transport.resume_reading()


def starts_at_keyframe(received: Received) -> bool:
    """Headers first, then a video keyframe before any other frame."""
    kinds = [m.kind for m in received.messages]
    first_frame = next(i for i, k in enumerate(kinds) if k != RawKind.HEADER)
    return first_frame > 0 and received.messages[first_frame].kind == RawKind.KEYFRAME


class StallProxy:
    """Forwards a TCP port to another; `stall()` stops reading from the client side (and so
    taking its data), `resume()` goes on."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.server: asyncio.Server | None = None
        self.stalled = asyncio.Event()
        self.stalled.set()  # set: flowing
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def start(self) -> StallProxy:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        return self

    def stall(self) -> None:
        self.stalled.clear()

    def resume(self) -> None:
        self.stalled.set()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:  # a small window, so that a stall shows soon
            import socket

            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, gate: bool) -> None:
            try:
                while True:
                    if gate:
                        await self.stalled.wait()
                    data = await src.read(8192)
                    if not data:
                        break
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        for task in (pump(reader, up_writer, True), pump(up_reader, writer, False)):
            t = asyncio.create_task(task)
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in list(self._tasks):
            task.cancel()


class NeverReads:
    """A port that accepts connections and never reads a byte (nor answers)."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.connections = 0
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> NeverReads:
        async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            writer.transport.pause_reading()
            self._writers.append(writer)

        self.server = await asyncio.start_server(accepted, "127.0.0.1", 0)
        return self

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        for writer in self._writers:
            writer.close()
        if self.server is not None:
            self.server.close()
