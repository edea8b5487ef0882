"""Hostile peers at both ports of a whole server: slowloris on RTMP and HTTP, connection
floods past the caps, and a thousand stream-key guesses, each while a real publisher streams
(which keeps streaming, loses nothing and is never disconnected)."""

from __future__ import annotations

import asyncio
import logging
import resource
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from rtmpd.web.guard import ConnectionGuard

from rtmpd.app import FD_RESERVE, Rtmpd
from rtmpd.rtmp.client import ClientSession, Status
from rtmpd.rtmp.config import SessionConfig
from tests.support.app import make_config, start_server
from tests.support.auth import KeyLookups
from tests.support.hostile import (
    Publisher,
    Stream,
    lines,
    processed,
    received_bytes,
    small_tags,
    split_at,
    until,
)
from tests.support.media import FlvTag

START = "NetStream.Publish.Start"
ATTACKER = "127.0.0.9"


async def start(tmp_path: Path, keepalive: float) -> Rtmpd:
    """A server with small caps and short timeouts, so that floods hit them quickly."""
    srv = Rtmpd(
        make_config(tmp_path, rtmp={"max_connections_per_ip": 20}, hls={"playlist_length": 60.0})
    )
    srv.http_keepalive_timeout = keepalive
    srv.http_guard.max_per_ip = 5
    await srv.start()
    srv.rtmp.session_config = SessionConfig(handshake_timeout=0.5, publish_timeout=0.5)
    return srv


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Rtmpd]:
    srv = await start(tmp_path, keepalive=0.5)
    yield srv
    await srv.stop()


@pytest.fixture
async def patient_server(tmp_path: Path) -> AsyncIterator[Rtmpd]:
    """Idle connections stay for the test's length: only the caps act."""
    srv = await start(tmp_path, keepalive=60.0)
    yield srv
    await srv.stop()


async def streaming(server: Rtmpd, name: str = "benw") -> Publisher:
    key = await server.auth.store.add_user(name)
    publisher = Publisher(server.rtmp.port, key, source="127.0.0.2")
    assert (await publisher.start()).code == START
    return publisher


async def closed(reader: asyncio.StreamReader, timeout: float = 5.0) -> bytes:
    """Read until the server closes the connection; what it sent before closing."""
    data = b""
    async with asyncio.timeout(timeout):
        try:
            while chunk := await reader.read(65536):
                data += chunk
        except ConnectionResetError:
            pass
    return data


async def trickle(writer: asyncio.StreamWriter, data: bytes, every: float = 0.05) -> None:
    """Send one byte at a time, slowly, until done or the server hangs up."""
    for i in range(len(data)):
        if writer.is_closing():
            return
        writer.write(data[i : i + 1])
        await asyncio.sleep(every)


# -- RTMP --------------------------------------------------------------------------------------


async def test_rtmp_slowloris_cannot_exhaust_the_server(
    server: Rtmpd, caplog: pytest.LogCaptureFixture
) -> None:
    """Thirty connections from one address trickle a handshake: twenty are let in (the
    per-address cap) and all are cut at the handshake timeout, however slowly they keep
    sending; one that gets through the handshake and never publishes is cut too. A publisher
    from elsewhere streams throughout."""
    publisher = await streaming(server)
    first, second = split_at(small_tags(4.0), 2000)
    base = received_bytes(server)
    publisher.send_tags(first)

    slow = [
        await asyncio.open_connection("127.0.0.1", server.rtmp.port, local_addr=(ATTACKER, 0))
        for _ in range(30)
    ]
    tricklers = [asyncio.create_task(trickle(w, b"\x03" + bytes(3072), 0.02)) for _, w in slow]
    idle = ClientSession()  # completes the handshake and connect, then waits
    idle.connect("app", "rtmp://x/app")
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", server.rtmp.port, local_addr=("127.0.0.10", 0)
    )
    writer.write(idle.data_to_send())
    while not idle.handshake_done:
        idle.receive_data(await reader.read(65536))
        writer.write(idle.data_to_send())

    await asyncio.gather(*(closed(r) for r, _ in slow), closed(reader))
    for task in tricklers:
        task.cancel()
    refused = [line for line in lines(caplog) if "refused" in line and ATTACKER in line]
    timed_out = [line for line in lines(caplog) if "no handshake within" in line]
    assert len(refused) == 10 and len(timed_out) == 20
    assert any("no publish within" in line for line in lines(caplog))

    await processed(server, base, first)
    publisher.send_tags(second)
    await publisher.close()
    stream = Stream(server, "benw")
    await until(stream.ended)
    assert 3.8 <= stream.playlist().duration <= 4.2
    await until(lambda: server.rtmp.connections == 0)
    for _, w in slow:
        w.close()
    writer.close()


async def guess(port: int, key: str, source: str) -> Status:
    session = ClientSession()
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    try:
        session.connect("app", f"rtmp://127.0.0.1:{port}/app")
        session.create_stream()
        session.publish(key)
        writer.write(session.data_to_send())
        while True:
            data = await reader.read(65536)
            if not data:
                raise ConnectionError("closed without an answer")
            session.receive_data(data)
            while (event := session.next_event()) is not None:
                if isinstance(event, Status):
                    return event
            writer.write(session.data_to_send())
    finally:
        writer.close()


async def test_a_thousand_wrong_keys_from_one_address(
    server: Rtmpd, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1,000 guesses, 10 at a time: after the fifth failure the address is refused without a
    database lookup; meanwhile a publisher from another address keeps streaming."""
    caplog.set_level(logging.INFO)
    publisher = await streaming(server)
    lookups = KeyLookups(server.auth.store, monkeypatch)
    seconds = split_at(small_tags(5.0), 1000, 2000, 3000, 4000)
    statuses: list[Status] = []
    stream = Stream(server, "benw")

    async def guesser(worker: int) -> None:
        for n in range(20):
            statuses.append(await guess(server.rtmp.port, f"guess-{worker}-{n}-xxxxxxxx", ATTACKER))

    base = received_bytes(server)
    sent: list[FlvTag] = []
    for part in seconds:
        publisher.send_tags(part)
        sent += part
        await asyncio.gather(*(guesser(w) for w in range(10)))  # 200 guesses per second
        await processed(server, base, sent)
    assert len(statuses) == 1000
    assert all(s.level == "error" for s in statuses)
    assert sum(s.description == "too many failed attempts" for s in statuses) == 995
    assert lookups.count == 5
    assert sum("blocked for" in line for line in lines(caplog)) == 1
    assert not publisher.closed.is_set()
    await publisher.close()
    await until(stream.ended)
    playlist = stream.playlist()
    assert 4.8 <= playlist.duration <= 5.2
    assert not any(s.discontinuity for s in playlist.segments)
    assert (
        'rtmpd_publish_attempts_total{outcome="denied"} 1000.0' in server.metrics.render().decode()
    )


# -- HTTP --------------------------------------------------------------------------------------


async def http_status(port: int, path: str) -> int:
    async with aiohttp.ClientSession() as client, client.get(f"http://127.0.0.1:{port}{path}") as r:
        return r.status


REQUEST = b"GET /api/streams HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 200 + b"\r\n\r\n"


async def test_http_slowloris_is_cut_at_the_header_timeout(server: Rtmpd) -> None:
    """A request head trickled a byte at a time, and a connection that says nothing, are closed
    after the keep-alive timeout (0.5 s here), however much they still have to send; a normal
    client is served at the same time."""
    port = server.http_port
    slow = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
    trickler = asyncio.create_task(trickle(slow[0][1], REQUEST))  # 3 s of head at this pace
    assert await http_status(port, "/api/streams") == 200
    assert await closed(slow[0][0]) == b""  # never a complete request, so never an answer
    assert not trickler.done()  # cut while it still had bytes to send
    trickler.cancel()
    assert await closed(slow[1][0]) == b""  # said nothing at all
    # A complete request is answered; the idle keep-alive connection then closes too.
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(REQUEST)
    assert (await closed(reader)).startswith(b"HTTP/1.1 200 ")
    for _, w in [*slow, (reader, writer)]:
        w.close()


async def test_http_connection_caps(
    patient_server: Rtmpd, caplog: pytest.LogCaptureFixture
) -> None:
    """Past five connections from one address (the cap set here) a new one gets a 503 and is
    closed; other addresses are served; the count is given back as connections close."""
    port = patient_server.http_port
    held = [
        await asyncio.open_connection("127.0.0.1", port, local_addr=(ATTACKER, 0)) for _ in range(5)
    ]
    await until(lambda: patient_server.http_guard.connections == 5)
    extra = await asyncio.open_connection("127.0.0.1", port, local_addr=(ATTACKER, 0))
    assert (await closed(extra[0])).startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    refused = [line for line in lines(caplog) if "HTTP connection refused" in line]
    assert len(refused) == 1 and ATTACKER in refused[0]
    assert await http_status(port, "/") == 200
    held[0][1].close()
    await until(lambda: patient_server.http_guard.connections <= 4)
    again = await asyncio.open_connection("127.0.0.1", port, local_addr=(ATTACKER, 0))
    again[1].write(REQUEST.replace(b"Host: x", b"Host: x\r\nConnection: close"))
    assert (await closed(again[0])).startswith(b"HTTP/1.1 200 ")
    for _, w in held[1:] + [extra, again]:
        w.close()
    await until(lambda: patient_server.http_guard.connections == 0)
    assert patient_server.http_guard.refused == 1


async def test_the_open_file_limit_leaves_room_for_the_caps(tmp_path: Path) -> None:
    """Connections are bounded by the caps, not by running out of file descriptors (which
    would stop accept() on both ports and every segment write): the soft limit is raised."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    try:
        srv = await start_server(tmp_path)
        needed = srv.config.rtmp.max_connections + srv.http_guard.max_connections + FD_RESERVE
        raised = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        await srv.stop()
        assert raised == (needed if hard == resource.RLIM_INFINITY else min(needed, hard))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_connection_guard_counts_and_throttles_its_log() -> None:
    """The per-address cap refuses; the total cap refuses only when every connection is busy,
    else it closes the least recently active idle one; a flood of refusals is one log line per
    ten seconds that says how many."""
    now = [0.0]
    messages: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    log = logging.getLogger("rtmpd.test.guard")
    log.addHandler(Capture())
    loop = asyncio.get_running_loop()
    peers: list[socket.socket] = []
    transports: list[asyncio.Transport] = []

    async def transport() -> asyncio.Transport:
        ours, theirs = socket.socketpair()
        peers.append(theirs)
        made, _ = await loop.connect_accepted_socket(asyncio.Protocol, ours)
        transports.append(made)
        return made

    guard = ConnectionGuard(3, 2, log=log, clock=lambda: now[0])
    a1, a2 = guard.admit("a", await transport()), guard.admit("a", await transport())
    assert guard.admit("a", await transport()) is None
    b = guard.admit("b", await transport())
    assert a1 is not None and a2 is not None and b is not None
    with guard.busy(a1.transport), guard.busy(a2.transport), guard.busy(b.transport):
        assert guard.idle == 0
        assert guard.admit("c", await transport()) is None
        for _ in range(100):
            assert guard.admit("d", await transport()) is None
        now[0] = 10.0
        assert guard.admit("d", await transport()) is None
    assert guard.idle == 3  # idle again, b the least recently active (its request ended first)
    guard.active(b)  # bytes arrived on b: now a2 is the least recently active
    c = guard.admit("c", await transport())
    assert c is not None and a2.transport.is_closing() and not a2.open
    assert not a1.transport.is_closing() and not b.transport.is_closing()
    assert guard.connections == 3 and guard.refused == 103
    guard.release(a2)  # connection_lost of a connection already dropped: no double count
    assert guard.connections == 3
    assert messages == [
        "HTTP connection refused: 2 HTTP connections already open from a",
        "HTTP connection refused: 3 HTTP connections already open, all busy (101 more refused "
        "since the last report)",
        "HTTP: 3 connections open; the least recently active idle one (a) was closed to make room",
    ]
    for made in transports:
        made.close()
    for peer in peers:
        peer.close()
