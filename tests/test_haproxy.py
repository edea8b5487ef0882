"""rtmpd behind a real HAProxy (Debian's) running deploy/haproxy.cfg with send-proxy-v2: the
streamer's and the viewer's own addresses reach the failed-key limit, the per-address caps and
the logs, where without the PROXY header every client would be HAProxy's one address."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from rtmpd.app import Rtmpd
from tests.support.app import publish_attempt, start_server
from tests.support.engines import free_port, haproxy
from tests.support.hostile import lines


@dataclass(frozen=True, slots=True)
class Balanced:
    server: Rtmpd
    rtmp: int  # HAProxy's RTMP port
    http: int


@pytest.fixture
async def balanced(tmp_path: Path) -> AsyncIterator[Balanced]:
    server = await start_server(
        tmp_path,
        rtmp={
            "proxy_protocol": True,
            "trusted_proxies": ["127.0.0.1"],
            "max_connections_per_ip": 2,
        },
        http={"proxy_protocol": True, "trusted_proxies": ["127.0.0.1"]},
        auth={"max_failures": 3, "failure_window": 60.0, "backoff": 60.0},
    )
    rtmp, http = free_port(), free_port()
    node_rtmp, node_http = f"127.0.0.1:{server.rtmp.port}", f"127.0.0.1:{server.http_port}"
    env = {"RTMP_BIND": f"127.0.0.1:{rtmp}", "HTTP_BIND": f"127.0.0.1:{http}",
           "NODE_A_RTMP": node_rtmp, "NODE_A_HTTP": node_http,
           "NODE_B_RTMP": node_rtmp, "NODE_B_HTTP": node_http}  # fmt: skip
    try:
        with haproxy(env, [rtmp, http]):
            yield Balanced(server, rtmp, http)
    finally:
        await server.stop()


async def test_the_streamers_address_through_haproxy(
    balanced: Balanced, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    store = balanced.server.auth.store
    assert store is not None
    key = await store.add_user("benw")
    port = balanced.rtmp
    # The failed-key limit blocks the guesser at 127.0.0.7, not everyone behind HAProxy.
    answers = [await publish_attempt(port, "wrong", "127.0.0.7") for _ in range(4)]
    assert [a.description if a else None for a in answers] == (
        ["unknown stream key"] * 3 + ["too many failed attempts"]
    )
    ok = await publish_attempt(port, key, "127.0.0.8")
    assert ok is not None and ok.code == "NetStream.Publish.Start"
    text = "\n".join(lines(caplog, logging.INFO))
    assert "publish from 127.0.0.7 refused" in text and "127.0.0.7 blocked for 60 s" in text
    assert "publish from 127.0.0.8 accepted under benw" in text
    assert " 127.0.0.8:" in text and "via 127.0.0.1: publishing" in text


async def test_per_address_caps_through_haproxy(
    balanced: Balanced, caplog: pytest.LogCaptureFixture
) -> None:
    port = balanced.rtmp
    held = []
    for _ in range(2):
        _, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.9", 0))
        held.append(writer)
    async with asyncio.timeout(5):
        while balanced.server.rtmp.connections < 2:
            await asyncio.sleep(0.02)
    assert await publish_attempt(port, "k", "127.0.0.9") is None  # a third from .9: refused
    other = await publish_attempt(port, "wrong", "127.0.0.10")
    assert other is not None and other.description == "unknown stream key"
    assert any("2 connections already open from 127.0.0.9" in line for line in lines(caplog))
    for writer in held:
        writer.close()


async def test_the_viewers_address_through_haproxy(
    balanced: Balanced, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", balanced.http, local_addr=("127.0.0.11", 0)
    )
    writer.write(b"GET /api/streams HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    async with asyncio.timeout(5):
        answer = await reader.read()
    writer.close()
    assert answer.startswith(b"HTTP/1.1 200")
    access = [r.getMessage() for r in caplog.records if r.name == "rtmpd.access"]
    assert any(line.startswith("127.0.0.11 - - ") for line in access), access
