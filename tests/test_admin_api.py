"""The management API on a whole running rtmpd: tokens, users (the same code path and effects
as `rtmpd users`), live publishes with their stats, kick, and the keyframe-interval warning."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from rtmpd.app import Rtmpd
from tests.support.app import HeldPublisher, media_tags, start_server
from tests.support.auth import run_cli
from tests.support.media import FlvTag

GUARD = 20.0  # seconds before a wait gives up: a hang guard, not a speed requirement


class Api:
    """An HTTP client for one server's admin API; `token` goes in every request unless told."""

    def __init__(self, server: Rtmpd, session: aiohttp.ClientSession, token: str) -> None:
        self.base = f"http://127.0.0.1:{server.http_port}"
        self.session = session
        self.token = token

    async def call(
        self, method: str, path: str, *, token: str | None = "", **kwargs: Any
    ) -> tuple[int, Any, dict[str, str]]:
        headers = dict(kwargs.pop("headers", {}))
        token = self.token if token == "" else token
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        async with self.session.request(
            method, self.base + path, headers=headers, **kwargs
        ) as response:
            body = await response.json() if response.status != 204 else None
            return response.status, body, dict(response.headers)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Rtmpd]:
    srv = await start_server(tmp_path, auth={"max_failures": 3, "backoff": 60.0})
    yield srv
    await srv.stop()


@pytest.fixture
async def api(server: Rtmpd) -> AsyncIterator[Api]:
    assert server.accounts is not None
    token = await server.accounts.add_token("site")
    async with aiohttp.ClientSession() as session:
        yield Api(server, session, token)


async def until(predicate: Any, timeout: float = GUARD) -> None:
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.05)


async def live(server: Rtmpd, key: str) -> HeldPublisher:
    held = HeldPublisher(server.rtmp.port, key)
    assert (await held.start()).code == "NetStream.Publish.Start"
    return held


async def paced(held: HeldPublisher, tags: list[FlvTag]) -> None:
    """Send tags at the pace of their timestamps, a second's worth at a time."""
    start = asyncio.get_running_loop().time()
    second = 0
    while tags:
        now = [t for t in tags if t.timestamp < (second + 1) * 1000]
        tags = tags[len(now) :]
        held.send_tags(now)
        second += 1
        await asyncio.sleep(max(0.0, start + second - asyncio.get_running_loop().time()))


async def test_without_a_valid_token_everything_is_401_and_says_nothing(
    server: Rtmpd, api: Api
) -> None:
    for method, path in [("GET", "/api/admin/users"), ("GET", "/api/admin/users/nobody"),
                         ("POST", "/api/admin/users/nobody/ban"), ("GET", "/api/admin/nothing"),
                         ("DELETE", "/api/admin/publishes/nobody")]:  # fmt: skip
        status, body, headers = await api.call(method, path, token=None)
        assert (status, body) == (401, {"error": "a valid API token is required"}), path
        assert headers["WWW-Authenticate"].startswith("Bearer")
    basic = {"Authorization": "Basic x"}
    status, body, _ = await api.call("GET", "/api/admin/users", token=None, headers=basic)
    assert (status, body) == (401, {"error": "a valid API token is required"})
    # unknown tokens count like unknown keys: 3 here, then the address is refused unlooked-up
    for _ in range(2):
        assert (await api.call("GET", "/api/admin/users", token="guess"))[0] == 401
    # a valid token does not buy guesses: the third failure still blocks
    assert (await api.call("GET", "/api/admin/users", token=api.token))[0] == 200
    assert (await api.call("GET", "/api/admin/users", token="guess"))[0] == 401
    status, body, _ = await api.call("GET", "/api/admin/users")
    assert (status, body) == (429, {"error": "too many failed attempts"})
    # per address: behind the (trusted, loopback) proxy another client is not blocked
    other = {"X-Forwarded-For": "203.0.113.9"}
    assert (await api.call("GET", "/api/admin/users", headers=other))[0] == 200


async def test_users_through_the_api_are_users_of_the_cli(
    server: Rtmpd, api: Api, sweep: Any
) -> None:
    handed_out = sweep.keys_handed_out
    status, body, headers = await api.call("POST", "/api/admin/users", json={"name": "benw"})
    assert status == 201 and headers["Location"] == "/api/admin/users/benw"
    assert headers["Cache-Control"] == "no-store"
    key = body["key"]
    assert body["user"]["name"] == "benw" and body["user"]["active"] is True
    assert sweep.keys[-1] == key and sweep.keys_handed_out == handed_out + 1
    assert key not in sweep.http[-1] and '"name": "benw"' in sweep.http[-1]  # only the key left out
    db = server.config.database_path
    code, out, _ = await run_cli(db, "list")
    assert code == 0 and "benw" in out
    for bad, expected in [({"name": "benw"}, 409), ({"name": "admin"}, 409),
                          ({"name": "Ben W"}, 400), ({"name": 7}, 400), ({}, 400),
                          ({"name": "x_y", "extra": 1}, 400)]:  # fmt: skip
        status, body, _ = await api.call("POST", "/api/admin/users", json=bad)
        assert status == expected and set(body) == {"error"}, bad
    status, _, _ = await api.call(
        "POST",
        "/api/admin/users",
        data="name=benw",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status == 415
    status, _, _ = await api.call(
        "POST", "/api/admin/users", data="{nope", headers={"Content-Type": "application/json"}
    )
    assert status == 400

    # the CLI's ban shows in the API; the API's unban shows in the CLI
    assert (await run_cli(db, "ban", "benw"))[0] == 0
    assert (await api.call("GET", "/api/admin/users/benw"))[1]["active"] is False
    status, body, _ = await api.call("POST", "/api/admin/users/benw/unban")
    assert status == 200 and body["active"] is True
    assert "yes" in (await run_cli(db, "list"))[1].splitlines()[1]
    status, body, _ = await api.call("GET", "/api/admin/users")
    assert [u["name"] for u in body["users"]] == ["benw"]
    assert (await api.call("GET", "/api/admin/users/nobody"))[0] == 404
    assert (await api.call("POST", "/api/admin/users/nobody/ban"))[0] == 404

    # a ban made through the API cuts the live publish as the CLI's does
    held = await live(server, key)
    status, body, _ = await api.call("GET", "/api/admin/users/benw")
    assert body["live"] is True and body["live_since"] is not None
    status, body, _ = await api.call("POST", "/api/admin/users/benw/ban")
    assert status == 200 and body["active"] is False
    await held.wait_closed(2.5)
    assert (await HeldPublisher(server.rtmp.port, key).start()).description == "inactive user"
    await api.call("POST", "/api/admin/users/benw/unban")

    # so does a key rotation: the new key works, the old one is unknown
    held = await live(server, key)
    status, body, _ = await api.call("POST", "/api/admin/users/benw/rotate-key")
    assert status == 200 and body["key"] != key and body["user"]["name"] == "benw"
    await held.wait_closed(2.5)
    new_key = body["key"]
    assert (await HeldPublisher(server.rtmp.port, key).start()).description == "unknown stream key"
    held = await live(server, new_key)

    # and a removal
    status, body, _ = await api.call("DELETE", "/api/admin/users/benw")
    assert status == 204 and body is None
    await held.wait_closed(2.5)
    assert (await api.call("GET", "/api/admin/users/benw"))[0] == 404
    code, out, _ = await run_cli(db, "list")
    assert "benw" not in out


async def test_live_publishes_with_their_numbers_and_kick(server: Rtmpd, api: Api) -> None:
    assert server.accounts is not None
    key = (await server.accounts.add_user("benw")).key
    held = await live(server, key)
    sending = asyncio.create_task(paced(held, media_tags(seconds=8.0, fps=25, gop=25)))

    async def measured() -> bool:
        _, body, _ = await api.call("GET", "/api/admin/publishes")
        now = body["publishes"][0] if body["publishes"] else {}
        return (now.get("fps") or 0) > 0 and now.get("keyframe_interval") is not None

    await until(measured)
    status, body, _ = await api.call("GET", "/api/admin/publishes/benw")
    assert status == 200 and body["name"] == "benw" and body["peer"].startswith("127.0.0.1")
    assert body["bytes_received"] > 10_000 and body["ingest_kbps"] > 0
    assert body["keyframe_interval"] == 1.0 and body["warnings"] == []  # 1 s GOP, 1 s segments
    assert body["video"]["codec"].startswith("avc1") and body["fragment"] == 1.0
    status, health, _ = await api.call("GET", "/api/admin/publishes/benw/health")
    assert status == 200 and health["interval"] == 1.0 and health["samples"]
    times = [sample["t"] for sample in health["samples"]]
    assert times == sorted(set(times))

    status, _, _ = await api.call("DELETE", "/api/admin/publishes/benw")
    assert status == 204
    await held.wait_closed(5)
    sending.cancel()

    async def gone() -> bool:
        return (await api.call("GET", "/api/admin/publishes/benw"))[0] == 404

    await until(gone)
    assert (await api.call("GET", "/api/admin/publishes/benw/health"))[0] == 404
    assert (await api.call("DELETE", "/api/admin/publishes/benw"))[0] == 404
    assert (await api.call("GET", "/api/admin/users/benw"))[1]["active"] is True  # not a ban


async def test_a_gop_longer_than_the_fragment_is_warned_about_once(
    server: Rtmpd, api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    """OBS's default (250 frames) against 5 s segments, scaled down: 2 s GOPs, 1 s fragment."""
    caplog.set_level(logging.INFO)
    assert server.accounts is not None
    key = (await server.accounts.add_user("benw")).key
    held = await live(server, key)
    held.send_tags(media_tags(seconds=6.0, fps=25, gop=50))

    async def warned() -> bool:
        _, body, _ = await api.call("GET", "/api/admin/publishes/benw")
        return bool(body.get("warnings")) and body["keyframe_interval"] is not None

    await until(warned)
    _, body, _ = await api.call("GET", "/api/admin/publishes/benw")
    assert body["keyframe_interval"] == 2.0
    assert body["warnings"] == ["keyframe interval 2.0 s: set 1 s in OBS for 1 s segments"]
    lines = [r.getMessage() for r in caplog.records if "keyframes every" in r.getMessage()]
    assert lines == [
        "benw: keyframes every 2.0 s, longer than the 1 s segments ([hls] fragment): segments "
        "will be 2.0 s; set a 2 s keyframe interval in the encoder (OBS: Keyframe Interval 2 s;"
        " FFmpeg: -g at twice the frame rate)"
    ]
    await held.close()
