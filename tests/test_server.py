"""RtmpServer over real sockets: FFmpeg (PyAV, in a child process) publishing to it, raw
sockets misbehaving at it, and a recording Recordedr in between."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from rtmpd.rtmp.chunk import serialize_message
from rtmpd.rtmp.client import ClientEvent, ClientSession, Status, StreamCreated
from rtmpd.rtmp.config import SessionConfig
from rtmpd.rtmp.events import (
    Audio,
    AudioConfig,
    Metadata,
    PublishRequest,
    Video,
    VideoConfig,
)
from rtmpd.rtmp.handshake import ClientHandshake
from rtmpd.rtmp.messages import MessageType, encode_command
from rtmpd.server import Accept, ConnectionInfo, Publisher, Reject, RtmpServer
from tests.support.media import make_flv, read_flv_tags
from tests.support.publisher import make_flv_shifted, run_publisher, start_publisher

KEY = "sk9Xq2secretstreamkey"
#: What the logs show of KEY: a fingerprint of its digest, no character of the key.
KEY_LOGGED = "key sha256:" + hashlib.sha256(KEY.encode()).hexdigest()[:8]
SMALL: dict[str, Any] = {"seconds": 1.0, "fps": 25, "width": 160, "height": 120}

Media = Video | Audio | VideoConfig | AudioConfig | Metadata


class Recorded:
    """The sink of one publish the Recorder accepted: what the server told it goes to the
    Recorder's lists."""

    def __init__(self, recorder: Recorder, name: str, publisher: Publisher) -> None:
        self.recorder = recorder
        self.name = name
        self.publisher = publisher

    @property
    def info(self) -> ConnectionInfo:
        return self.publisher.info

    @property
    def bytes_received(self) -> int:
        return self.publisher.bytes_received

    def close(self, reason: str) -> None:
        self.publisher.close(reason)

    def media(self, event: Media) -> None:
        self.recorder.on_media(self, event)

    async def end(self, reason: str) -> None:
        await self.recorder.on_publish_end(self, reason)


class Recorder:
    """A Recordedr that accepts (or rejects) and writes down everything it is told."""

    def __init__(self, name: str = "alice", reject: Reject | None = None) -> None:
        self.name = name
        self.reject = reject
        self.requests: list[tuple[ConnectionInfo, PublishRequest]] = []
        self.media: list[tuple[Recorded, int, int, bytes]] = []
        self.metadata: list[dict[str, Any]] = []
        self.ends: list[tuple[Recorded, str]] = []
        self.first_media = asyncio.Event()
        self.gate: asyncio.Event | None = None  # authorize waits for it when set
        self.on_media_hook: Callable[[Recorded, Media], None] | None = None
        self.end_delay = 0.0
        self.authorize_error: Exception | None = None

    async def authorize(self, publisher: Publisher, request: PublishRequest) -> Accept | Reject:
        self.requests.append((publisher.info, request))
        if self.gate is not None:
            await self.gate.wait()
        if self.authorize_error is not None:
            raise self.authorize_error
        return self.reject or Accept(self.name, Recorded(self, self.name, publisher))

    def on_media(self, publish: Recorded, event: Media) -> None:
        if self.on_media_hook is not None:
            self.on_media_hook(publish, event)
        if isinstance(event, Metadata):
            self.metadata.append(event.values)
            return
        kind = 9 if isinstance(event, Video | VideoConfig) else 8
        self.media.append((publish, kind, event.timestamp, bytes(event.data)))
        self.first_media.set()

    async def on_publish_end(self, publish: Recorded, reason: str) -> None:
        if self.end_delay:
            await asyncio.sleep(self.end_delay)
        self.ends.append((publish, reason))


ServerFactory = Callable[..., Awaitable[RtmpServer]]


@pytest.fixture
async def make_server() -> AsyncIterator[ServerFactory]:
    servers: list[RtmpServer] = []

    async def factory(handler: Recorder, **kwargs: Any) -> RtmpServer:
        server = RtmpServer(handler, host="127.0.0.1", port=0, **kwargs)
        await server.start()
        servers.append(server)
        return server

    yield factory
    for server in servers:
        await server.close()


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="rtmpd.rtmp")
    return caplog


def info_lines(logs: pytest.LogCaptureFixture, needle: str) -> list[str]:
    """Log lines at INFO and above that contain `needle`."""
    return [
        r.getMessage()
        for r in logs.records
        if r.levelno >= logging.INFO and needle in r.getMessage()
    ]


def url(server: RtmpServer, key: str = KEY) -> str:
    return f"rtmp://127.0.0.1:{server.port}/app/{key}"


def expected_media(flv: bytes) -> list[tuple[int, int, bytes]]:
    """(kind, timestamp, payload after the FLV audio/video header) for every A/V tag but the
    AVC end-of-sequence marker, which carries no media and is not an event."""
    out = []
    for tag in read_flv_tags(flv):
        if tag.kind == 9 and tag.body[1] == 2:
            continue
        if tag.kind == 9:
            out.append((9, tag.timestamp, tag.body[5:]))
        elif tag.kind == 8:
            out.append((8, tag.timestamp, tag.body[2:]))
    return out


def received(handler: Recorder) -> list[tuple[int, int, bytes]]:
    return [(kind, ts, data) for _, kind, ts, data in handler.media]


async def until(check: Callable[[], bool], timeout: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


async def raw_handshake(
    port: int, source: str = "127.0.0.1"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect and complete a digest handshake with nothing but rtmpd.rtmp.handshake."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    hs = ClientHandshake(digest=True)
    writer.write(hs.data_to_send())
    while not hs.complete:
        data = await asyncio.wait_for(reader.read(65536), 10)
        if not data:
            raise ConnectionError("closed during handshake")
        hs.receive_data(data)
        writer.write(hs.data_to_send())
    return reader, writer


async def closed_by_server(reader: asyncio.StreamReader, timeout: float = 10.0) -> bool:
    """Whether the server closes this connection (EOF or reset) within `timeout`."""
    try:
        while await asyncio.wait_for(reader.read(65536), timeout):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


class RawClient:
    """rtmpd.rtmp.client.ClientSession over a real socket, for what FFmpeg will not do."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.session = ClientSession(digest=True)
        self.events: list[ClientEvent] = []

    @classmethod
    async def open(cls, port: int) -> RawClient:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    def flush(self) -> None:
        self.writer.write(self.session.data_to_send())

    async def wait_for(self, kind: type[Any], timeout: float = 10.0) -> Any:
        """Read until an event of `kind` arrives (keeping every event in `events`)."""
        while True:
            for event in self.events:
                if isinstance(event, kind):
                    self.events.remove(event)
                    return event
            self.flush()
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
            if not data:
                raise ConnectionError("server closed the connection")
            self.session.receive_data(data)
            while (new := self.session.next_event()) is not None:
                self.events.append(new)

    async def connect_and_create(self, port: int) -> int:
        self.session.connect("app", f"rtmp://127.0.0.1:{port}/app")
        self.session.create_stream()
        created = await self.wait_for(StreamCreated)
        return int(created.stream_id)

    def send_tags(self, flv: bytes, limit: int | None = None) -> int:
        """Send the audio/video tags of an FLV file as messages; returns how many."""
        tags = [t for t in read_flv_tags(flv) if t.kind in (8, 9)][:limit]
        for tag in tags:
            if tag.kind == 9:
                self.session.send_video(tag.timestamp, tag.body)
            else:
                self.session.send_audio(tag.timestamp, tag.body)
        return len(tags)


# -- publishing -------------------------------------------------------------------------------


async def test_accepted_publish_delivers_every_message(
    make_server: ServerFactory, logs: pytest.LogCaptureFixture
) -> None:
    handler = Recorder("alice")
    server = await make_server(handler)
    result = await run_publisher(url(server) + "?token=1", seconds=4.0)
    assert result.returncode == 0, result.stderr
    await until(lambda: len(handler.ends) == 1 and server.connections == 0)

    assert received(handler) == expected_media(make_flv(seconds=4.0))
    ((info, request),) = handler.requests
    assert request.name == KEY and request.query == "token=1"
    assert info.app == "app" and info.peer == "127.0.0.1"
    assert info.tc_url == f"rtmp://127.0.0.1:{server.port}/app"
    handle, reason = handler.ends[0]
    assert {h for h, *_ in handler.media} == {handle}
    assert handle.name == "alice" and handle.info.conn_id == info.conn_id
    assert handle.bytes_received > sum(len(d) for *_, d in handler.media)
    assert handler.metadata and handler.metadata[0].get("width") == 320
    # The key is a secret: logs show a fingerprint of its digest, not even its first characters.
    assert KEY not in logs.text and KEY[:4] not in logs.text
    assert f"publishing {KEY_LOGGED} as alice" in logs.text
    assert "alice" in logs.text


async def test_timestamps_past_24_bits(make_server: ServerFactory) -> None:
    """Five hours in: every timestamp needs the extended timestamp field."""
    handler = Recorder()
    server = await make_server(handler)
    offset = 5 * 3600 * 1000
    result = await run_publisher(url(server), offset_ms=offset, **SMALL)
    assert result.returncode == 0, result.stderr
    await until(lambda: len(handler.ends) == 1)
    want = expected_media(make_flv_shifted(offset, **SMALL))
    assert received(handler) == want
    assert max(ts for _, ts, _ in want) > 0xFFFFFF
    assert sum(1 for _, ts, _ in want if ts > 0xFFFFFF) > len(want) // 2


async def test_rejected_publish_then_server_serves_next(
    make_server: ServerFactory, logs: pytest.LogCaptureFixture
) -> None:
    handler = Recorder(reject=Reject("NetStream.Publish.BadName", "unknown stream key"))
    server = await make_server(handler)
    result = await run_publisher(url(server), **SMALL)
    assert result.returncode != 0
    assert handler.media == [] and handler.ends == []
    assert len(handler.requests) == 1
    await until(lambda: server.connections == 0)

    handler.reject = None
    result = await run_publisher(url(server, "another-key"), **SMALL)
    assert result.returncode == 0, result.stderr
    await until(lambda: len(handler.ends) == 1)
    assert received(handler) == expected_media(make_flv(**SMALL))
    assert KEY not in logs.text and "another-key" not in logs.text
    assert "rejected" in logs.text


async def test_publisher_killed_mid_stream_ends_once(make_server: ServerFactory) -> None:
    handler = Recorder()
    server = await make_server(handler)
    proc = await start_publisher(url(server), seconds=120.0, fps=25, width=160, height=120)
    try:
        await asyncio.wait_for(handler.first_media.wait(), 30)
    finally:
        proc.kill()
        await proc.wait()
    await until(lambda: len(handler.ends) == 1 and server.connections == 0)
    await asyncio.sleep(0.1)
    assert len(handler.ends) == 1
    assert "disconnected" in handler.ends[0][1] or "connection" in handler.ends[0][1]
    # Far fewer messages than 120 s would make: it really stopped mid-stream.
    assert 0 < len(handler.media) < 120 * 25


async def test_handle_close_disconnects_publisher(make_server: ServerFactory) -> None:
    handler = Recorder()
    server = await make_server(handler)
    closed: list[Recorded] = []

    def takeover(publish: Recorded, event: Media) -> None:
        if isinstance(event, Video) and not closed:
            closed.append(publish)
            publish.close("taken over")

    handler.on_media_hook = takeover
    result = await run_publisher(url(server), seconds=30.0, fps=25, width=160, height=120)
    assert result.returncode != 0
    await until(lambda: len(handler.ends) == 1 and server.connections == 0)
    assert handler.ends == [(closed[0], "taken over")]


async def test_handler_exceptions_cost_one_connection(
    make_server: ServerFactory, logs: pytest.LogCaptureFixture
) -> None:
    handler = Recorder()
    server = await make_server(handler)

    def explode(publish: Recorded, event: Media) -> None:
        raise ValueError("packager broke")

    handler.on_media_hook = explode
    result = await run_publisher(url(server), seconds=30.0, fps=25, width=160, height=120)
    assert result.returncode != 0
    await until(lambda: len(handler.ends) == 1 and server.connections == 0)
    assert "ValueError: packager broke" in logs.text

    handler.on_media_hook = None
    handler.authorize_error = RuntimeError("database is down")
    result = await run_publisher(url(server), **SMALL)
    assert result.returncode != 0
    assert "RuntimeError: database is down" in logs.text
    assert len(handler.ends) == 1

    handler.authorize_error = None
    result = await run_publisher(url(server), **SMALL)
    assert result.returncode == 0, result.stderr
    await until(lambda: len(handler.ends) == 2)
    assert KEY not in logs.text


async def test_close_waits_for_every_publish_end(make_server: ServerFactory) -> None:
    handler = Recorder()
    handler.end_delay = 0.2
    server = await make_server(handler)
    proc = await start_publisher(url(server), seconds=120.0, fps=25, width=160, height=120)
    try:
        await asyncio.wait_for(handler.first_media.wait(), 30)
        await server.close()
        assert [reason for _, reason in handler.ends] == ["server shutting down"]
        assert server.connections == 0
        assert await asyncio.wait_for(proc.wait(), 30) != 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_publisher_leaving_during_authorize_ends_once(make_server: ServerFactory) -> None:
    """Reading pauses while authorize runs; once the Accept lands the server notices the peer
    is gone, and the accepted publish ends exactly once."""
    handler = Recorder()
    handler.gate = asyncio.Event()
    server = await make_server(handler)
    proc = await start_publisher(url(server), **SMALL)
    try:
        await until(lambda: len(handler.requests) == 1)
    finally:
        proc.kill()
        await proc.wait()
    await asyncio.sleep(0.1)
    assert handler.ends == []
    handler.gate.set()
    await until(lambda: len(handler.ends) == 1 and server.connections == 0)
    await asyncio.sleep(0.05)
    assert len(handler.ends) == 1 and handler.ends[0][0].name == "alice"
    assert handler.media == []


async def test_close_connection_during_authorize(make_server: ServerFactory) -> None:
    """A revocation while the decision is pending: the Accept that follows still ends once,
    with the revocation's reason, and nothing is published."""
    handler = Recorder()
    handler.gate = asyncio.Event()
    server = await make_server(handler)
    proc = await start_publisher(url(server), **SMALL)
    try:
        await until(lambda: len(handler.requests) == 1)
        info = handler.requests[0][0]
        assert server.close_connection(info.conn_id, "banned")
        assert not server.close_connection(info.conn_id + 1000, "nobody")
        handler.gate.set()
        await until(lambda: len(handler.ends) == 1 and server.connections == 0)
        assert handler.ends[0][1] == "banned" and handler.media == []
        assert await asyncio.wait_for(proc.wait(), 30) != 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


# -- misbehaving peers -----------------------------------------------------------------------


async def test_garbage_closes_that_connection_only(
    make_server: ServerFactory, logs: pytest.LogCaptureFixture
) -> None:
    handler = Recorder()
    server = await make_server(handler)
    healthy_reader, healthy_writer = await raw_handshake(server.port)

    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert await closed_by_server(reader)
    writer.close()
    assert any("127.0.0.1" in r.getMessage() for r in logs.records if r.levelno >= logging.INFO)

    # Garbage after a good handshake: a command message whose AMF is nonsense.
    reader, writer = await raw_handshake(server.port)
    local_port = writer.get_extra_info("sockname")[1]
    writer.write(serialize_message(3, 20, 0, 0, b"\xff" * 16, 128).data)
    assert await closed_by_server(reader)
    writer.close()
    lines = info_lines(logs, f"127.0.0.1:{local_port}:")
    assert len(lines) == 1 and "protocol violation" in lines[0]

    assert server.connections == 1  # the healthy one is still there
    healthy_writer.close()
    await until(lambda: server.connections == 0)
    reader, writer = await raw_handshake(server.port)
    writer.close()
    assert handler.requests == []


async def test_connection_caps(make_server: ServerFactory, logs: pytest.LogCaptureFixture) -> None:
    handler = Recorder()
    server = await make_server(handler, max_connections=3, max_connections_per_ip=2)
    first = await raw_handshake(server.port)
    second = await raw_handshake(server.port)
    with pytest.raises(ConnectionError):
        await raw_handshake(server.port)  # third from 127.0.0.1: over the per-IP cap
    other = await raw_handshake(server.port, source="127.0.0.2")
    with pytest.raises(ConnectionError):
        await raw_handshake(server.port, source="127.0.0.3")  # over the total cap
    assert server.connections == 3
    assert sum("refused" in r.getMessage() for r in logs.records) == 2

    first[1].close()
    await until(lambda: server.connections == 2)
    again = await raw_handshake(server.port)  # the count was given back
    for _, writer in (second, other, again):
        writer.close()
    await until(lambda: server.connections == 0)


async def test_pipelined_media_waits_for_the_decision(make_server: ServerFactory) -> None:
    """Media sent right behind `publish` is held, in order, until authorize answers."""
    handler = Recorder()
    handler.gate = asyncio.Event()
    server = await make_server(handler)
    client = await RawClient.open(server.port)
    await client.connect_and_create(server.port)
    flv = make_flv(**SMALL)
    client.session.publish(KEY)
    count = client.send_tags(flv, limit=30)
    client.flush()
    await until(lambda: len(handler.requests) == 1)
    await asyncio.sleep(0.1)
    assert handler.media == []
    handler.gate.set()
    status = await client.wait_for(Status)
    assert status.code == "NetStream.Publish.Start"
    await until(lambda: len(handler.media) == count)
    assert received(handler) == expected_media(flv)[:count]

    client.session.delete_stream()
    client.flush()
    await until(lambda: len(handler.ends) == 1)
    assert handler.ends[0][1] in ("FCUnpublish", "deleteStream")
    client.writer.close()
    await until(lambda: server.connections == 0)
    assert len(handler.ends) == 1


async def test_rejected_pipelined_media_is_dropped(make_server: ServerFactory) -> None:
    handler = Recorder(reject=Reject("NetStream.Publish.Denied", "banned"))
    server = await make_server(handler)
    client = await RawClient.open(server.port)
    await client.connect_and_create(server.port)
    client.session.publish(KEY)
    client.send_tags(make_flv(**SMALL), limit=10)
    status = await client.wait_for(Status)
    assert (status.level, status.code, status.description) == (
        "error",
        "NetStream.Publish.Denied",
        "banned",
    )
    assert await closed_by_server(client.reader)
    assert handler.media == [] and handler.ends == []


async def test_timeouts_close_with_one_log_line(
    make_server: ServerFactory, logs: pytest.LogCaptureFixture
) -> None:
    config = SessionConfig(handshake_timeout=0.2, publish_timeout=0.3, idle_timeout=0.3)
    handler = Recorder()
    server = await make_server(handler, session_config=config)

    silent_reader, silent_writer = await asyncio.open_connection("127.0.0.1", server.port)
    silent_port = silent_writer.get_extra_info("sockname")[1]
    assert await closed_by_server(silent_reader)
    lines = info_lines(logs, f":{silent_port}:")
    assert len(lines) == 1 and "timed out" in lines[0] and "handshake" in lines[0]

    # A publisher that goes quiet is dropped, and its publish ends once, as a timeout.
    client = await RawClient.open(server.port)
    await client.connect_and_create(server.port)
    client.session.publish(KEY)
    client.send_tags(make_flv(**SMALL), limit=5)
    assert (await client.wait_for(Status)).code == "NetStream.Publish.Start"
    assert await closed_by_server(client.reader)
    await until(lambda: len(handler.ends) == 1 and server.connections == 0)
    assert "no media" in handler.ends[0][1]
    assert len(handler.media) == 5


async def test_peer_that_does_not_read_is_dropped(
    make_server: ServerFactory, logs: pytest.LogCaptureFixture
) -> None:
    """Commands make the server write; a peer that never reads the answers is cut off instead
    of growing our output queue."""
    handler = Recorder()
    server = await make_server(handler)
    server.write_stall_timeout = 0.3
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
    client = RawClient(*await asyncio.open_connection(sock=sock))
    await client.connect_and_create(server.port)
    # An unknown command costs us a _error reply several times its size.
    call = encode_command("x", 1.0, None)
    flood = serialize_message(3, MessageType.COMMAND_AMF0, 0, 0, call, 4096).data * 20000
    for _ in range(50):
        client.writer.write(flood)  # never read again, never drained
        await asyncio.sleep(0)
        if server.connections == 0:
            break
    await until(lambda: server.connections == 0)
    assert "peer does not read" in logs.text
    client.writer.transport.abort()


async def test_play_is_refused_and_logged_without_the_key(
    make_server: ServerFactory, logs: pytest.LogCaptureFixture
) -> None:
    handler = Recorder()
    server = await make_server(handler)
    client = await RawClient.open(server.port)
    await client.connect_and_create(server.port)
    client.session.play(KEY)
    status = await client.wait_for(Status)
    assert status.code == "NetStream.Play.Failed"
    assert await closed_by_server(client.reader)
    await until(lambda: server.connections == 0)
    assert f"play request for {KEY_LOGGED}" in logs.text and KEY[:4] not in logs.text
    assert handler.requests == []
