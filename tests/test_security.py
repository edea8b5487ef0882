"""The stream key stays secret and the HTTP side stays inside its folder, whole server.

The suite-wide sweep (conftest.py) fails the run if any key the suite made appears in a log
record, an HTTP response or a file name; the first tests here check that the sweep really sees
those things. The others drive a real publish and every public surface, attempt traversal and
log injection, and check this test's own key right away, so a leak is pinned to its cause."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from rtmpd.auth.keys import key_fingerprint, new_key

from rtmpd.app import Rtmpd
from rtmpd.rtmp.chunk import serialize_message
from rtmpd.rtmp.handshake import ClientHandshake
from rtmpd.rtmp.messages import MessageType, encode_command
from rtmpd.server import redact
from tests.support.app import start_server
from tests.support.hostile import Publisher, Stream, lines, small_tags, until
from tests.support.publisher import run_publisher

FindLeaks = Callable[[Iterable[str], dict[str, list[str]]], list[str]]


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Rtmpd]:
    srv = await start_server(tmp_path)
    yield srv
    await srv.stop()


async def raw_get(port: int, target: bytes) -> tuple[int, bytes]:
    """Send a request line exactly as given (no client-side normalisation)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0
    return status, data


# -- the sweep itself ----------------------------------------------------------------------------


def test_the_sweep_finds_keys_and_their_prefixes(sweep_find_leaks: FindLeaks) -> None:
    key = "Zq8vN2cT7yLmW4pXa9RbK1sD6fHj3GeU"
    shown = key_fingerprint(key)
    clean = {"logs": [f"publish (key {shown}) accepted"], "http": ["<p>benw</p>"], "files": []}
    assert sweep_find_leaks([key], clean) == []
    leaks = sweep_find_leaks(
        [key],
        {"logs": [f"oops {key}", f"old hint {key[:4]}…"], "http": [f"x{key[:8]}y"],
         "files": [f"hls/{key[:8]}.ts"]},
    )  # fmt: skip
    assert [leak.split(" in ")[1].split(":")[0] for leak in leaks] == [
        "logs", "logs", "http", "files", "logs"
    ]  # fmt: skip
    assert all("Zq8v…" in leak for leak in leaks)


async def test_the_sweep_records_keys_logs_and_responses(sweep: Any, server: Rtmpd) -> None:
    key = await server.auth.store.add_user("benw")
    assert sweep.keys[-1] == key  # made through rtmpd.auth.keys.new_key, recorded
    logging.getLogger("rtmpd.somewhere").debug("sweep canary %d", 42)
    assert sweep.logs[-1].endswith("sweep canary 42")
    responses = sweep.responses
    status, body = await raw_get(server.http_port, b"/benw")
    assert status == 200 and b"benw" in body
    assert sweep.responses == responses + 1
    assert any("<title>" in text and "benw" in text for text in sweep.http[-20:])
    assert sweep.basetemp is not None and server.config.hls_path.is_relative_to(sweep.basetemp)


# -- a real publish and every public surface ---------------------------------------------------

SURFACES = [
    "/",
    "/benw",
    "/api/streams",
    "/api/streams/benw",
    "/metrics",
    "/thumb/benw.jpg",
    "/live/benw/index.m3u8",
    "/nobody",
    "/api/streams/nobody",
    "/admin",
    "/api/openapi.json",
    "/api/admin/users",
]


async def test_the_key_appears_nowhere_public(
    sweep: Any, server: Rtmpd, caplog: pytest.LogCaptureFixture
) -> None:
    """FFmpeg publishes with the key in its URL; while live and after, every page, API answer,
    header and log line is free of it, and so is every file name."""
    caplog.set_level(logging.DEBUG)
    key = await server.auth.store.add_user("benw")
    url = f"rtmp://127.0.0.1:{server.rtmp.port}/app/{key}"
    result = await run_publisher(url, seconds=3.0, width=160, height=120)
    assert result.returncode == 0, result.stderr
    stream = Stream(server, "benw")
    await until(stream.ended)
    held = Publisher(server.rtmp.port, key)  # live again, so the live pages have content
    assert (await held.start()).code == "NetStream.Publish.Start"
    held.send_tags(list(small_tags(2.0)))
    await until(lambda: stream.segments() >= 4)
    bodies = []
    for path in [*SURFACES, f"/live/benw/{stream.playlist().segments[0].uri}"]:
        status, data = await raw_get(server.http_port, path.encode())
        assert status in (200, 401, 404), path
        bodies.append(data)
    await held.close()
    for needle in (key, key[:8]):
        assert not any(needle.encode() in body for body in bodies)
        assert needle not in caplog.text
        assert not any(needle in str(p) for p in server.config.hls_path.rglob("*"))
        assert not any(needle in text for text in sweep.http)
    # what the logs show instead: the same fingerprint from the socket layer and from auth
    assert f"publishing {redact(key)} as benw" in caplog.text
    assert redact(key) == f"key {key_fingerprint(key)}" and key[:4] not in caplog.text
    # Publishing with the public name as the key is an unknown key, not a way in.
    wrong = Publisher(server.rtmp.port, "benw")
    assert (await wrong.start()).description == "unknown stream key"
    await wrong.close()


# -- HTTP traversal and reflection -----------------------------------------------------------

TRAVERSALS = [
    b"/live/../rtmpd.sqlite3",
    b"/live/..%2frtmpd.sqlite3",
    b"/live/%2e%2e/%2e%2e/rtmpd.sqlite3",
    b"/live/benw/../../rtmpd.sqlite3",
    b"/live/benw/..%2F..%2Frtmpd.sqlite3",
    b"/live/benw/%2e%2e%2f%2e%2e%2frtmpd.sqlite3",
    b"/live/benw\\..\\..\\rtmpd.sqlite3",
    b"/live//etc/passwd",
    b"/live/benw/index.m3u8/../../../rtmpd.sqlite3",
    b"/static/../../rtmpd.sqlite3",
    b"/static/%2e%2e/%2e%2e/rtmpd.sqlite3",
    b"/thumb/../rtmpd.sqlite3",
    b"/../../../../etc/passwd",
    b"/%2e%2e/%2e%2e/etc/passwd",
    b"/api/streams/..%2f..%2frtmpd.sqlite3",
    b"http://127.0.0.1/live/../rtmpd.sqlite3",
]


@pytest.mark.parametrize("target", TRAVERSALS)
async def test_traversal_is_404(server: Rtmpd, target: bytes) -> None:
    await server.auth.store.add_user("benw")
    assert server.config.database_path.exists()
    status, body = await raw_get(server.http_port, target)
    assert status in (400, 404), body[:200]
    assert b"SQLite format 3" not in body and b"root:" not in body


async def test_reflected_paths_are_escaped(server: Rtmpd) -> None:
    status, body = await raw_get(server.http_port, b"/%3Cscript%3Ealert(1)%3C/script%3E")
    assert status == 404
    assert b"<script>alert" not in body and b"&lt;script&gt;alert(1)" in body


# -- log injection -------------------------------------------------------------------------------


async def test_peer_strings_cannot_forge_or_flood_log_lines(
    server: Rtmpd, caplog: pytest.LogCaptureFixture
) -> None:
    """A stream name with line breaks and terminal escapes, and a 100 KB command name before
    connect: the log lines they cause are single lines of bounded length."""
    caplog.set_level(logging.DEBUG)
    forged = Publisher(server.rtmp.port, "\n\x1b[2J2099-01-01 CRITICAL rtmpd: forged")
    assert (await forged.start()).level == "error"
    await forged.close()

    reader, writer = await asyncio.open_connection("127.0.0.1", server.rtmp.port)
    hs = ClientHandshake()
    writer.write(hs.data_to_send())
    while not hs.complete:
        hs.receive_data(await reader.read(65536))
        writer.write(hs.data_to_send())
    call = encode_command("x\n" * 50_000, 1.0, None)
    writer.write(serialize_message(3, MessageType.COMMAND_AMF0, 0, 0, call, 128).data)
    await asyncio.wait_for(reader.read(), 10)
    writer.close()
    records = [r.getMessage() for r in caplog.records if r.name.startswith("rtmpd")]
    assert any("before connect" in m for m in records)
    assert all("\n" not in m and "\x1b" not in m and len(m) < 500 for m in records), [
        m[:200] for m in records if "\n" in m or "\x1b" in m or len(m) >= 500
    ]
    assert not any("forged" in line for line in lines(caplog, logging.INFO))


def test_keys_are_long_random_and_url_safe() -> None:
    made = {new_key() for _ in range(200)}
    assert len(made) == 200
    assert all(len(k) == 32 and k.replace("-", "").replace("_", "").isalnum() for k in made)
