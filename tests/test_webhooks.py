"""Webhooks against a real aiohttp receiver that checks signatures with the function printed in
docs/webhooks.md: the events of a whole server, retries with backoff, a bounded queue that
never blocks, and the counts in /metrics."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from rtmpd.webhooks import Webhooks, WebhooksConfig, sign
from tests.support.app import HeldPublisher, media_tags, start_server
from tests.support.auth import run_cli

ROOT = Path(__file__).resolve().parents[1]
SECRET = "whsec-test-0123456789"
GUARD = 20.0


def doc_verify() -> Callable[..., bool]:
    """`verify_signature` exactly as docs/webhooks.md shows it."""
    text = (ROOT / "docs" / "webhooks.md").read_text()
    block = re.search(r"<!-- verify-signature -->\n```python\n(.*?)```", text, re.S)
    assert block is not None, "docs/webhooks.md lost its verify_signature block"
    namespace: dict[str, Any] = {}
    exec(compile(block[1], "docs/webhooks.md", "exec"), namespace)
    verify: Callable[..., bool] = namespace["verify_signature"]
    return verify


verify_signature = doc_verify()


@dataclass
class Receiver:
    """An aiohttp app standing in for the community site: checks each signature, records the
    verified events; `failures` first answers are 500s."""

    failures: int = 0
    hang: bool = False
    events: list[dict[str, Any]] = field(default_factory=list)
    attempts: list[tuple[str, str, float]] = field(default_factory=list)  # delivery, t, when
    refused: int = 0
    url: str = ""
    release: asyncio.Event = field(default_factory=asyncio.Event)  # ends hanging answers

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        header = request.headers.get("Rtmpd-Signature", "")
        self.attempts.append((request.headers["Rtmpd-Delivery"], header, time.time()))
        if self.hang:
            await self.release.wait()
        if not verify_signature(SECRET, header, body):
            self.refused += 1
            return web.Response(status=403)
        if self.failures > 0:
            self.failures -= 1
            return web.Response(status=500)
        event = json.loads(body)
        assert request.headers["Rtmpd-Event"] == event["type"]
        assert request.headers["Rtmpd-Delivery"] == event["id"]
        self.events.append(event)
        return web.Response(text="ok")

    def kinds(self) -> list[str]:
        return [e["type"] for e in self.events]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver()
    app = web.Application()
    app.router.add_post("/hooks/rtmpd", found.handle)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    found.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hooks/rtmpd"
    yield found
    found.release.set()
    await runner.shutdown()
    await runner.cleanup()


async def until(predicate: Callable[[], bool], timeout: float = GUARD) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


def test_the_documented_check_refuses_tampering_and_replays() -> None:
    body = b'{"id":"evt_1","type":"stream.started"}'
    now = int(time.time())
    header = sign(SECRET, now, body)
    assert re.fullmatch(r"t=\d+,v1=[0-9a-f]{64}", header)
    assert verify_signature(SECRET, header, body)
    assert not verify_signature(SECRET, header, body.replace(b"started", b"ended"))
    assert not verify_signature("another secret", header, body)
    assert not verify_signature(SECRET, sign(SECRET, now - 301, body), body)  # a replay
    assert verify_signature(SECRET, sign(SECRET, now - 299, body), body)
    assert not verify_signature(SECRET, "", body) and not verify_signature(SECRET, "t=x,v1=", body)


async def test_a_server_reports_streams_refusals_and_bans(
    tmp_path: Path, receiver: Receiver, sweep: Any
) -> None:
    server = await start_server(tmp_path, webhooks={"url": receiver.url, "secret": SECRET})
    try:
        assert server.accounts is not None
        key = (await server.accounts.add_user("benw")).key
        held = HeldPublisher(server.rtmp.port, key)
        assert (await held.start()).code == "NetStream.Publish.Start"
        held.send_tags(media_tags(seconds=1.0))
        await until(lambda: "stream.started" in receiver.kinds())
        await held.close()
        await until(lambda: "stream.ended" in receiver.kinds())
        wrong = HeldPublisher(server.rtmp.port, key[::-1])
        assert (await wrong.start()).description == "unknown stream key"
        await until(lambda: "publish.refused" in receiver.kinds())
        # a ban from another process: the store's trigger writes the event, the server sends it
        assert (await run_cli(server.config.database_path, "ban", "benw"))[0] == 0
        await until(lambda: "user.banned" in receiver.kinds())
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{server.http_port}/metrics") as response,
        ):
            metrics = await response.text()
    finally:
        await server.stop()
    by_kind = {e["type"]: e for e in receiver.events}
    assert by_kind["stream.started"]["data"]["name"] == "benw"
    ended = by_kind["stream.ended"]["data"]
    assert ended["name"] == "benw" and ended["duration_seconds"] >= 0 and ended["reason"]
    refused = by_kind["publish.refused"]["data"]
    assert refused == {"reason": "unknown stream key", "addr": "127.0.0.1", "app": "app"}
    assert by_kind["user.banned"]["data"]["name"] == "benw"
    assert receiver.refused == 0 and len({e["id"] for e in receiver.events}) == len(receiver.events)
    bodies = json.dumps(receiver.events)
    for secret in (key, key[::-1]):
        assert secret not in bodies and secret[:8] not in bodies
    assert 'rtmpd_webhooks_total{outcome="delivered"} 4.0' in metrics
    assert "rtmpd_webhooks_pending 0.0" in metrics


async def test_failed_deliveries_are_retried_with_backoff_then_given_up(
    receiver: Receiver,
) -> None:
    outcomes: list[str] = []
    config = WebhooksConfig(url=receiver.url, secret=SECRET, retry_for=30.0)
    hooks = Webhooks(config, on_outcome=outcomes.append, backoff=0.05)
    await hooks.start()
    try:
        receiver.failures = 2
        hooks.emit("stream.started", {"name": "benw"})
        await until(lambda: outcomes.count("delivered") == 1)
        assert outcomes == ["retried", "retried", "delivered"] and hooks.pending == 0
        ids = {delivery for delivery, _, _ in receiver.attempts}
        assert len(receiver.attempts) == 3 and len(ids) == 1  # one event id on every attempt
        waits = [
            b[2] - a[2] for a, b in zip(receiver.attempts, receiver.attempts[1:], strict=False)
        ]
        assert waits[1] > waits[0]  # the backoff grows (0.05 s, then 0.1 s, jittered ±20 %)
    finally:
        await hooks.stop()
    outcomes.clear()
    short = Webhooks(WebhooksConfig(url=receiver.url, secret="wrong", retry_for=0.3),
                     on_outcome=outcomes.append, backoff=0.05)  # fmt: skip
    await short.start()
    try:
        short.emit("stream.ended", {"name": "benw"})  # the receiver refuses the signature
        await until(lambda: "failed" in outcomes)
        assert outcomes[-1] == "failed" and set(outcomes[:-1]) == {"retried"}
        assert short.pending == 0
    finally:
        await short.stop()


async def test_a_stuck_receiver_never_blocks_and_the_queue_is_bounded(
    receiver: Receiver,
) -> None:
    receiver.hang = True
    outcomes: list[str] = []
    config = WebhooksConfig(url=receiver.url, secret=SECRET, timeout=30.0, max_pending=6)
    hooks = Webhooks(config, on_outcome=outcomes.append)
    await hooks.start()
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        for i in range(10):
            hooks.emit("publish.refused", {"reason": "unknown stream key", "n": i})
        assert loop.time() - started < 1.0  # emit only queues (a hang guard, not a benchmark)
        assert outcomes == ["dropped"] * 4 and hooks.pending == 6
        await until(lambda: len(receiver.attempts) == 4)  # four workers, all stuck
        # stuck workers do not stop the loop: other work goes on meanwhile
        await asyncio.sleep(0.05)
        assert len(receiver.attempts) == 4
    finally:
        await hooks.stop(drain=0.1)
    assert hooks.pending == 0
