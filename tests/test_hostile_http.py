"""Hostile HTTP clients at a whole server: readers that stop reading, idle connections flooding
the total cap, malformed requests and clients hanging up (which must not flood the log), and
what the server says about itself. In each, an honest viewer is still served."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from rtmpd.app import Rtmpd
from tests.support.app import start_server
from tests.support.hostile import until

SEGMENT = "/live/benw/1.ts"
BIG = 16 * 1024 * 1024  # far more than loopback socket buffers hold for a tiny receive window
HONEST = "127.0.0.2"


async def serving(tmp_path: Path, **http: Any) -> Rtmpd:
    """A server with a large segment and a playlist in the HLS folder."""
    srv = await start_server(tmp_path, http=http)
    folder = srv.config.hls_path / "benw"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "1.ts").write_bytes(bytes(BIG))
    (folder / "index.m3u8").write_text("#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\n1.ts\n")
    return srv


@pytest.fixture
async def closing() -> AsyncIterator[list[socket.socket]]:
    """Client sockets a test opened, closed at its end."""
    socks: list[socket.socket] = []
    yield socks
    for sock in socks:
        sock.close()


async def stalled_reader(
    port: int, path: str, source: str, socks: list[socket.socket]
) -> socket.socket:
    """A client with a tiny receive window that asks for `path` and never reads."""
    sock = socket.socket()
    socks.append(sock)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.bind((source, 0))
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", port))
    await loop.sock_sendall(sock, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return sock


async def silent(port: int, source: str, socks: list[socket.socket]) -> socket.socket:
    """A connection that sends nothing (or, after `request`, waits in keep-alive)."""
    sock = socket.socket()
    socks.append(sock)
    sock.bind((source, 0))
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return sock


async def request(sock: socket.socket, path: str = "/api/streams") -> bytes:
    """One keep-alive request on `sock`; the response head and body as received."""
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(sock, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = b""
    async with asyncio.timeout(5):
        while b"\r\n\r\n" not in data or not _complete(data):
            chunk = await loop.sock_recv(sock, 65536)
            if not chunk:
                break
            data += chunk
    return data


def _complete(data: bytes) -> bool:
    head, _, body = data.partition(b"\r\n\r\n")
    match = re.search(rb"(?i)content-length: *(\d+)", head)
    return match is None or len(body) >= int(match[1])


async def closed_by_server(sock: socket.socket, timeout: float = 5.0) -> bool:
    """Whether the server closes or resets `sock` within `timeout` (what it sent is dropped)."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            while await loop.sock_recv(sock, 1 << 20):
                pass
    except TimeoutError:
        return False
    except ConnectionError:
        pass
    return True


async def honest_get(port: int, path: str) -> tuple[int, bytes, str]:
    """An honest viewer from its own address: status, body, Server header."""
    connector = aiohttp.TCPConnector(local_addr=(HONEST, 0), force_close=True)
    async with (
        aiohttp.ClientSession(connector=connector) as client,
        client.get(f"http://127.0.0.1:{port}{path}") as r,
    ):
        return r.status, await r.read(), r.headers.get("Server", "")


def metric(server: Rtmpd, name: str, **labels: str) -> float:
    text = server.metrics.render().decode()
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    match = re.search(rf"^{name}(?:\{{{re.escape(inner)}\}})? (\S+)$", text, re.M)
    return float(match[1]) if match else 0.0


def http_lines(caplog: pytest.LogCaptureFixture, needle: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "rtmpd.http" and needle in r.getMessage()]


# -- readers that stop reading ----------------------------------------------------------------


async def test_readers_that_stop_are_reset_at_the_send_timeout(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, closing: list[socket.socket]
) -> None:
    """Thirty clients ask for a 16 MiB segment and stop reading. Each is reset once it has
    taken nothing for the send timeout (0.5 s here), with one log line for all of them; an
    honest viewer gets the whole segment meanwhile."""
    caplog.set_level(logging.INFO)
    srv = await serving(tmp_path, send_timeout=0.5)
    try:
        port = srv.http_port
        readers = [
            await stalled_reader(port, SEGMENT, f"127.0.0.{3 + i % 3}", closing) for i in range(30)
        ]
        await until(lambda: srv.http_guard.connections == 30)
        status, body, _ = await honest_get(port, SEGMENT)
        assert status == 200 and len(body) == BIG
        await until(lambda: srv.http_guard.connections == 0)  # a bounded wait, not a speed
        assert all([await closed_by_server(sock) for sock in readers])
        assert metric(srv, "rtmpd_http_connections_dropped_total", reason="send_timeout") == 30
        assert len(http_lines(caplog, "took nothing for 0.5 s")) == 1
    finally:
        await srv.stop()


async def test_a_reader_of_a_buffered_response_is_reset_too(
    tmp_path: Path, closing: list[socket.socket]
) -> None:
    """A response aiohttp writes from memory (here a 4 MiB self-hosted hls.min.js) fills the
    transport's buffer: a client that stops reading it is reset at the send timeout as well."""
    hlsjs = tmp_path / "hls.min.js"
    hlsjs.write_bytes(b"/*" + b"x" * (4 * 1024 * 1024) + b"*/")
    srv = await start_server(tmp_path, http={"send_timeout": 0.5}, web={"hlsjs_file": str(hlsjs)})
    try:
        port = srv.http_port
        path = "/static/vendor/hls.min.js"
        readers = [await stalled_reader(port, path, "127.0.0.3", closing) for _ in range(5)]
        await until(lambda: srv.http_guard.connections == 5)
        await until(lambda: srv.http_guard.connections == 0)
        assert all([await closed_by_server(sock) for sock in readers])
        assert metric(srv, "rtmpd_http_connections_dropped_total", reason="send_timeout") == 5
        status, body, _ = await honest_get(port, path)
        assert status == 200 and len(body) == hlsjs.stat().st_size
    finally:
        await srv.stop()


# -- idle connections at the total cap --------------------------------------------------------


class Viewer:
    """An honest player: one keep-alive connection from its own address, kept between requests."""

    def __init__(self, port: int, source: str) -> None:
        self.base = f"http://127.0.0.1:{port}"
        connector = aiohttp.TCPConnector(local_addr=(source, 0), limit=1)
        self.session = aiohttp.ClientSession(connector=connector)

    async def get(self, path: str) -> int:
        async with self.session.get(self.base + path) as r:
            await r.read()
            return r.status


@pytest.fixture
async def viewers() -> AsyncIterator[list[Viewer]]:
    made: list[Viewer] = []
    yield made
    for viewer in made:
        await viewer.session.close()


async def test_idle_connections_make_room_at_the_total_cap(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    closing: list[socket.socket],
    viewers: list[Viewer],
) -> None:
    """At the total cap (6 here) a new connection is served: the least recently active idle
    connection is closed for it, in that order; busy ones (slow downloads) are never closed, and
    only when all are busy does the new connection get a 503."""
    caplog.set_level(logging.INFO)
    srv = await serving(
        tmp_path, max_connections=6, max_connections_per_ip=3, keepalive_timeout=60.0
    )
    try:
        port = srv.http_port
        await until(lambda: srv.http_guard.connections == 0)
        for _ in range(3):
            await stalled_reader(port, SEGMENT, "127.0.0.3", closing)
        a, b, c = [await silent(port, "127.0.0.4", closing) for _ in range(3)]
        await until(lambda: srv.http_guard.connections == 6)
        assert (await request(a)).startswith(b"HTTP/1.1 200 ")  # a: active last
        await until(lambda: srv.http_guard.idle == 3)
        for expected in (b, c, a):
            viewers.append(Viewer(port, HONEST))
            assert await viewers[-1].get("/api/streams") == 200
            assert await closed_by_server(expected)
        # 3 busy, 3 viewers idle between requests: slow downloads take the viewers' places
        for _ in range(3):
            await stalled_reader(port, SEGMENT, "127.0.0.5", closing)
        await until(lambda: srv.http_guard.connections == 6 and srv.http_guard.idle == 0)
        assert (await honest_get(port, "/api/streams"))[0] == 503  # all busy: none to close
        assert srv.http_guard.connections == 6
        assert metric(srv, "rtmpd_http_connections_dropped_total", reason="idle") == 6
        assert metric(srv, "rtmpd_http_connections_dropped_total", reason="refused") == 1
        assert len(http_lines(caplog, "closed to make room")) == 1
    finally:
        for sock in closing:  # downloads in progress would hold stop() for its grace
            sock.close()
        await srv.stop()


async def test_a_flood_of_idle_connections_does_not_keep_viewers_waiting(
    tmp_path: Path, closing: list[socket.socket], viewers: list[Viewer]
) -> None:
    """Two hundred idle connections from twenty addresses fill the total cap; twenty viewers
    arrive and are all served (never a 503), each in the place of an idle flood connection, and
    keep their connections for their next requests."""
    srv = await serving(
        tmp_path, max_connections=200, max_connections_per_ip=10, keepalive_timeout=60.0
    )
    try:
        port = srv.http_port
        await until(lambda: srv.http_guard.connections == 0)
        for i in range(200):
            await silent(port, f"127.0.1.{i % 20 + 1}", closing)
        await until(lambda: srv.http_guard.connections == 200)
        viewers.extend(Viewer(port, f"127.0.2.{i + 1}") for i in range(20))
        for _ in range(3):
            assert [await v.get("/live/benw/index.m3u8") for v in viewers] == [200] * 20
        assert srv.http_guard.connections == 200
        assert metric(srv, "rtmpd_http_connections_dropped_total", reason="idle") == 20
    finally:
        await srv.stop()


# -- the log is not an amplifier --------------------------------------------------------------

MALFORMED = [
    b"GARBAGE\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
    b"GET /\x00 HTTP/1.1\r\n\r\n",
    b"GET / HTTP/9.9\r\n\r\n",
    b"GET / HTTP/1.1\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 9000 + b"\r\n\r\n",
]


async def test_malformed_requests_and_hang_ups_are_counted_not_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """300 malformed requests, and 120 clients hanging up before or during their response (as a
    load tool does when it stops): no traceback, one short line for the malformed ones (the
    count is in /metrics), and the server serves on."""
    caplog.set_level(logging.DEBUG)
    srv = await serving(tmp_path)
    try:
        port = srv.http_port
        for i in range(300):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(MALFORMED[i % len(MALFORMED)])
            assert (await reader.read()).startswith(b"HTTP/1.")
            writer.close()
        for path in (SEGMENT, "/live/benw/index.m3u8", "/", "/api/streams"):
            for i in range(30):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode() * 3)
                if i % 2:
                    await reader.readexactly(12)  # mid-response
                writer.transport.abort()
        await until(lambda: srv.http_guard.connections == 0)
        assert (await honest_get(port, SEGMENT))[0] == 200
    finally:
        await srv.stop()
    tracebacks = [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
    assert tracebacks == []
    assert [r.levelno for r in http_lines(caplog, "malformed request")] == [logging.INFO]
    assert len(caplog.records) < 1000  # access log lines (one per request) and little else
    assert metric(srv, "rtmpd_http_client_errors_total", kind="malformed") == 300
    assert metric(srv, "rtmpd_http_client_errors_total", kind="disconnected") > 0


# -- what the server says about itself --------------------------------------------------------


async def test_every_answer_says_server_rtmpd_and_no_version(
    tmp_path: Path, closing: list[socket.socket]
) -> None:
    srv = await serving(tmp_path, max_connections_per_ip=2, keepalive_timeout=60.0)
    try:
        port = srv.http_port
        answers = [await honest_get(port, path)
                   for path in ("/", "/api/streams", "/nope", SEGMENT, "/metrics")]  # fmt: skip
        assert [status for status, _, _ in answers] == [200, 200, 404, 200, 200]
        raw: list[bytes] = []
        for head in (f"GET {SEGMENT} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     "Range: bytes=99999999-\r\n\r\n".encode(),
                     b"GARBAGE\r\n\r\n"):  # fmt: skip
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(head)
            raw.append(await reader.read())
            writer.close()
        await silent(port, "127.0.0.3", closing)
        await silent(port, "127.0.0.3", closing)
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, local_addr=("127.0.0.3", 0)
        )
        raw.append(await reader.read())  # past the per-address cap
        writer.close()
    finally:
        await srv.stop()
    assert {server for _, _, server in answers} == {"rtmpd"}
    heads = [part for data in raw for part in data.split(b"HTTP/1.")[1:]]
    statuses = [head[2:5] for head in heads]
    assert statuses == [b"416", b"400", b"503"]
    for head in heads:
        assert re.findall(rb"(?im)^server:[^\r\n]*", head) == [b"Server: rtmpd"]
