"""`[::]` listens for everyone: IPv4 clients reach a `[::]:PORT` listener on both ports (asyncio
alone would bind it IPv6-only), and are seen as the IPv4 addresses they are."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from pathlib import Path

import aiohttp
import pytest

from rtmpd.rtmp.client import ClientSession, Status
from tests.support.app import HeldPublisher, start_server
from tests.support.hostile import lines


async def publish_status(host: str, port: int, key: str) -> Status:
    """Connect to host:port over its own address family, publish `key`; the onStatus answer."""
    session = ClientSession()
    reader, writer = await asyncio.open_connection(host, port)
    try:
        session.connect("app", f"rtmp://x:{port}/app")
        session.create_stream()
        session.publish(key)
        writer.write(session.data_to_send())
        async with asyncio.timeout(10):
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


def test_this_machine_has_both_loopbacks() -> None:
    """The test below is meant to run everywhere it runs here: it needs ::1 and 127.0.0.1."""
    assert socket.has_dualstack_ipv6()
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        with socket.socket(family) as sock:
            sock.bind((host, 0))


async def test_ipv4_and_ipv6_clients_reach_a_dual_stack_listener(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    srv = await start_server(tmp_path, rtmp={"listen": "[::]:0"}, http={"listen": "[::]:0"})
    try:
        async with aiohttp.ClientSession() as client:
            for host in ("127.0.0.1", "[::1]"):
                async with client.get(f"http://{host}:{srv.http_port}/api/streams") as r:
                    assert r.status == 200, host
                    assert await r.json() == {"streams": []}
        key = await srv.auth.store.add_user("benw")
        publisher = HeldPublisher(srv.rtmp.port, key)  # over IPv4
        assert (await publisher.start()).code == "NetStream.Publish.Start"
        await publisher.close()
        for host in ("127.0.0.1", "::1"):
            status = await publish_status(host, srv.rtmp.port, f"wrong-key-from-{len(host)}")
            assert status.description == "unknown stream key", host
    finally:
        await srv.stop()
    said = [record.getMessage() for record in caplog.records]
    assert any(re.fullmatch(r"RTMP listening on rtmp://\[::\]:\d+/app", line) for line in said)
    assert any(re.fullmatch(r"HTTP listening on http://\[::\]:\d+/", line) for line in said)
    refused = [line for line in lines(caplog) if "publish from" in line and "refused" in line]
    assert len(refused) == 2
    assert "from 127.0.0.1 refused" in refused[0] and "from ::1 refused" in refused[1]
    assert not any("::ffff:" in record.getMessage() for record in caplog.records)
