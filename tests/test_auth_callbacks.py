"""nginx-rtmp callback mode against a real aiohttp app playing the seed's Django views."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl

import aiohttp
import pytest
from aiohttp import web
from rtmpd.auth import BAD_NAME, DENIED, TAKEN_OVER, Accepted, AuthConfig, AuthService, Denied
from rtmpd.auth.callbacks import redirect_name
from rtmpd.auth.keys import key_fingerprint

from tests.support.app import HeldPublisher, media_tags, start_server
from tests.support.auth import Disconnects, attempt, wait_until

KEY = "J42ninLbjl2E2V8ePqy7"
BANNED_KEY = "BannedKeyBannedKey00"


@dataclass
class Hook:
    """The seed's Django views (302 to the public name, 403 inactive, 404 unknown) and a few
    misbehaving endpoints; remembers every request."""

    streams: dict[str, tuple[str, bool]] = field(
        default_factory=lambda: {KEY: ("benw", True), BANNED_KEY: ("alice", False)}
    )
    requests: list[tuple[str, str, str, list[tuple[str, str]]]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""

    def calls(self, path: str) -> list[list[tuple[str, str]]]:
        return [form for p, _, _, form in self.requests if p == path]

    async def record(self, request: web.Request) -> list[tuple[str, str]]:
        body = (await request.read()).decode()
        form = parse_qsl(body, keep_blank_values=True)
        self.requests.append((request.path, request.method, request.content_type, form))
        return form

    async def on_publish(self, request: web.Request) -> web.StreamResponse:
        form = await self.record(request)
        stream = self.streams.get(dict(form)["name"])
        if stream is None:
            return web.Response(status=404, text="not found")
        if not stream[1]:
            return web.Response(status=403, text="inactive user")
        return web.Response(status=302, headers={"Location": stream[0]})

    async def on_publish_done(self, request: web.Request) -> web.StreamResponse:
        await self.record(request)
        return web.Response(text="OK")

    async def fixed(self, request: web.Request) -> web.StreamResponse:
        await self.record(request)
        status = int(request.match_info["status"])
        location = request.query.get("location")
        headers = {"Location": location} if location is not None else {}
        return web.Response(status=status, headers=headers)

    async def slow(self, request: web.Request) -> web.StreamResponse:
        await self.record(request)
        await self.release.wait()
        return web.Response(status=302, headers={"Location": "benw"})

    async def followed(self, request: web.Request) -> web.StreamResponse:
        await self.record(request)
        return web.Response(text="a redirect must not be followed")


@pytest.fixture
async def hook() -> AsyncIterator[Hook]:
    h = Hook()
    app = web.Application()
    app.router.add_post("/on_publish", h.on_publish)
    app.router.add_post("/on_publish_done", h.on_publish_done)
    app.router.add_post("/status/{status}", h.fixed)
    app.router.add_post("/slow", h.slow)
    app.router.add_route("*", "/benw", h.followed)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    h.url = f"http://127.0.0.1:{port}"
    yield h
    h.release.set()
    await runner.cleanup()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def started(tmp_path: Path, **options: object) -> AuthService:
    svc = AuthService(AuthConfig(**options), tmp_path / "users.db")
    await svc.start()
    return svc


async def test_form_fields_are_exactly_nginx_rtmps(tmp_path: Path, hook: Hook) -> None:
    svc = await started(tmp_path, on_publish=f"{hook.url}/on_publish",
                        on_publish_done=f"{hook.url}/on_publish_done")  # fmt: skip
    try:
        request = attempt(
            KEY,
            addr="192.0.2.7:50000",
            query="token=a%20b&x=1&x=2&empty=&name=evil",
            tcurl="rtmp://example.com:1935/app",
            flashver="FMLE/3.0 (compatible; FMSc/1.0)",
            swfurl="http://example.com/player.swf",
            pageurl="http://example.com/page",
            clientid="17",
        )
        decision = await svc.authorize(request, Disconnects())
        assert isinstance(decision, Accepted) and decision.name == "benw"
        [(path, method, content_type, form)] = hook.requests
        assert (path, method, content_type) == (
            "/on_publish", "POST", "application/x-www-form-urlencoded",
        )  # fmt: skip
        common = [
            ("app", "app"),
            ("flashver", "FMLE/3.0 (compatible; FMSc/1.0)"),
            ("swfurl", "http://example.com/player.swf"),
            ("tcurl", "rtmp://example.com:1935/app"),
            ("pageurl", "http://example.com/page"),
            ("addr", "192.0.2.7"),
            ("clientid", "17"),
        ]
        query = [("token", "a b"), ("x", "1"), ("x", "2"), ("empty", "")]
        assert form == [*common, ("call", "publish"), ("name", KEY), ("type", "live"), *query]
        await decision.lease.end()
        await decision.lease.end()
        assert await wait_until(lambda: bool(hook.calls("/on_publish_done")), timeout=5)
        await svc.stop()  # waits for callbacks still in flight
        done = hook.calls("/on_publish_done")
        assert done == [[*common, ("call", "publish_done"), ("name", KEY), ("type", "live"),
                         *query]]  # fmt: skip
    finally:
        await svc.stop()
    assert not (tmp_path / "users.db").exists()  # callback mode keeps no database


async def test_django_style_answers(tmp_path: Path, hook: Hook) -> None:
    svc = await started(tmp_path, on_publish=f"{hook.url}/on_publish")
    try:
        denied = await svc.authorize(attempt(BANNED_KEY), Disconnects())
        assert denied == Denied(DENIED, "publish refused (HTTP 403)")
        denied = await svc.authorize(attempt("no-such-key", addr="10.0.0.2"), Disconnects())
        assert denied == Denied(BAD_NAME, "unknown stream key")
        decision = await svc.authorize(attempt(KEY, addr="10.0.0.3"), Disconnects())
        assert isinstance(decision, Accepted) and decision.name == "benw"
        assert hook.calls("/benw") == []  # the redirect was not followed
        assert await svc.live_names() == {"benw"}
        channel = await svc.channel("benw")
        assert channel is not None and channel.live_since is not None
        assert await svc.channel("alice") is None
        await decision.lease.end()
        assert await svc.live_names() == set()
    finally:
        await svc.stop()


@pytest.mark.parametrize(
    ("path", "key", "expected"),
    [
        ("/status/200", KEY, KEY),  # 2xx: nginx-rtmp publishes under the name itself
        ("/status/204", "plain_name-2", "plain_name-2"),
        ("/status/200", "has.dot", Denied(BAD_NAME, "invalid stream name")),
        ("/status/200", "api", Denied(BAD_NAME, "invalid stream name")),
        ("/status/301?location=http://x.example/users/benw", KEY, "benw"),
        ("/status/307?location=/profile/benw/", KEY, "benw"),
        ("/status/302?location=Bad%20Name", KEY, Denied(DENIED, "invalid redirect")),
        ("/status/302?location=../../etc", KEY, "etc"),  # only the last segment counts
        ("/status/302?location=benw/..", KEY, Denied(DENIED, "invalid redirect")),
        ("/status/302?location=admin", KEY, Denied(DENIED, "invalid redirect")),
        ("/status/302?location=rtmp://other/app/benw", KEY, Denied(DENIED, "invalid redirect")),
        ("/status/302", KEY, Denied(DENIED, "invalid redirect")),
        ("/status/404", KEY, Denied(BAD_NAME, "unknown stream key")),
        ("/status/401", KEY, Denied(DENIED, "publish refused (HTTP 401)")),
        ("/status/500", KEY, Denied(DENIED, "authorization temporarily unavailable")),
        ("/nowhere", KEY, Denied(BAD_NAME, "unknown stream key")),  # aiohttp's own 404
    ],
)
async def test_status_code_handling(
    tmp_path: Path, hook: Hook, path: str, key: str, expected: str | Denied
) -> None:
    svc = await started(tmp_path, on_publish=f"{hook.url}{path}")
    try:
        decision = await svc.authorize(attempt(key), Disconnects())
        if isinstance(expected, Denied):
            assert decision == expected
            assert await svc.live_names() == set()
        else:
            assert isinstance(decision, Accepted) and decision.name == expected
            assert await svc.live_names() == {expected}
        assert hook.calls("/benw") == []
    finally:
        await svc.stop()


async def test_no_answer_in_time_or_no_server_denies(
    tmp_path: Path, hook: Hook, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    unavailable = Denied(DENIED, "authorization temporarily unavailable")
    svc = await started(tmp_path, on_publish=f"{hook.url}/slow", callback_timeout=0.3)
    try:
        assert await svc.authorize(attempt(KEY), Disconnects()) == unavailable
        assert len(hook.calls("/slow")) == 1
    finally:
        await svc.stop()
    port = closed_port()
    svc = await started(tmp_path, on_publish=f"http://127.0.0.1:{port}/on_publish",
                        on_publish_done=f"http://127.0.0.1:{port}/done")  # fmt: skip
    try:
        assert await svc.authorize(attempt(KEY), Disconnects()) == unavailable
    finally:
        await svc.stop()
    assert "no answer within" in caplog.text and "on_publish failed" in caplog.text
    assert KEY[:4] not in caplog.text and f"(key {key_fingerprint(KEY)})" in caplog.text


async def test_publish_done_errors_are_logged_without_the_key(
    tmp_path: Path, hook: Hook, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    svc = await started(tmp_path, on_publish=f"{hook.url}/on_publish",
                        on_publish_done=f"http://127.0.0.1:{closed_port()}/done")  # fmt: skip
    try:
        decision = await svc.authorize(attempt(KEY), Disconnects())
        assert isinstance(decision, Accepted) and decision.name == "benw"
        await decision.lease.end()
    finally:
        await svc.stop()
    assert "on_publish_done for benw" in caplog.text and KEY not in caplog.text


TAGS = media_tags(seconds=2.5, fps=10, width=96, height=64)


async def test_a_2xx_makes_the_name_as_sent_public_and_says_so_once(
    tmp_path: Path, hook: Hook, caplog: pytest.LogCaptureFixture
) -> None:
    """nginx-rtmp's meaning is kept: 2xx publishes under the name as sent, normally the key. It
    then shows in the API and the HLS path, so rtmpd warns once per name that it is public and
    how to keep it private, and names it the same way (in full) in every log line."""
    caplog.set_level(logging.INFO)
    srv = await start_server(
        tmp_path,
        auth={"on_publish": f"{hook.url}/status/200",
              "on_publish_done": f"{hook.url}/on_publish_done"},
    )  # fmt: skip
    try:
        for _ in range(2):
            publisher = HeldPublisher(srv.rtmp.port, KEY)
            assert (await publisher.start()).code == "NetStream.Publish.Start"
            publisher.send_tags(TAGS)  # live once its playlist exists
            async with aiohttp.ClientSession() as client:
                url = f"http://127.0.0.1:{srv.http_port}/api/streams"
                for _ in range(200):
                    async with client.get(url) as r:
                        names = [s["name"] for s in (await r.json())["streams"]]
                    if names:
                        break
                    await asyncio.sleep(0.05)
                assert names == [KEY]
            await publisher.close()
            await publisher.wait_closed(5)
        await wait_until(lambda: len(hook.calls("/on_publish_done")) == 2, timeout=5)
    finally:
        await srv.stop()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert KEY in warnings[0] and "now public" in warnings[0] and "3xx" in warnings[0]
    said = [r.getMessage() for r in caplog.records]
    assert not any("J42n…" in line for line in said)  # never masked here, in full there
    about = [line for line in said if KEY in line]
    assert len(about) >= 8  # accepted, publishing, ended (server, publish), HLS, warning


async def test_takeover_and_reject_apply_per_public_name(tmp_path: Path, hook: Hook) -> None:
    svc = await started(tmp_path, on_publish=f"{hook.url}/on_publish",
                        on_publish_done=f"{hook.url}/on_publish_done")  # fmt: skip
    try:
        first = Disconnects()
        old = await svc.authorize(attempt(KEY, addr="10.0.0.1"), first)
        new = await svc.authorize(attempt(KEY, addr="10.0.0.2"), Disconnects())
        assert isinstance(old, Accepted) and isinstance(new, Accepted)
        assert first.reasons == [TAKEN_OVER]
        await old.lease.end()
        assert await svc.live_names() == {"benw"}
        await new.lease.end()
        assert await svc.live_names() == set()
        assert await wait_until(lambda: len(hook.calls("/on_publish_done")) == 2, timeout=5)
    finally:
        await svc.stop()
    svc = await started(tmp_path, on_publish=f"{hook.url}/on_publish", duplicate="reject")
    try:
        first = Disconnects()
        assert isinstance(await svc.authorize(attempt(KEY), first), Accepted)
        denied = await svc.authorize(attempt(KEY, addr="10.0.0.2"), Disconnects())
        assert denied == Denied(DENIED, "already publishing") and first.reasons == []
    finally:
        await svc.stop()


async def test_refusals_from_the_endpoint_count_toward_the_rate_limit(
    tmp_path: Path, hook: Hook
) -> None:
    svc = await started(tmp_path, on_publish=f"{hook.url}/on_publish", max_failures=5)
    try:
        for i in range(5):
            await svc.authorize(attempt(f"guess-{i}", addr="6.6.6.6"), Disconnects())
        asked = len(hook.requests)
        for _ in range(50):
            denied = await svc.authorize(attempt(KEY, addr="6.6.6.6"), Disconnects())
            assert denied == Denied(DENIED, "too many failed attempts")
        assert len(hook.requests) == asked  # blocked attempts never reach the endpoint
        other = await svc.authorize(attempt(KEY, addr="10.0.0.9"), Disconnects())
        assert isinstance(other, Accepted)
    finally:
        await svc.stop()


async def test_concurrent_guesses_ask_the_endpoint_one_at_a_time(
    tmp_path: Path, hook: Hook
) -> None:
    """Fifty wrong keys from one address at once: as in database mode, the endpoint is asked one
    at a time per address, so it hears max_failures of them and the rest are refused here."""
    svc = await started(tmp_path, on_publish=f"{hook.url}/status/404", max_failures=5)
    try:
        answers = await asyncio.gather(*(
            svc.authorize(attempt(f"guess-{i}", addr="6.6.6.6"), Disconnects()) for i in range(50)
        ))  # fmt: skip
        assert len(hook.calls("/status/404")) == 5
        assert answers.count(Denied(DENIED, "too many failed attempts")) == 45
        other = await svc.authorize(attempt("guess", addr="10.0.0.9"), Disconnects())
        assert other == Denied(BAD_NAME, "unknown stream key")  # another address is asked
        assert len(hook.calls("/status/404")) == 6
    finally:
        await svc.stop()


async def test_a_key_the_endpoint_accepts_does_not_buy_guesses(tmp_path: Path, hook: Hook) -> None:
    """As in database mode: successes between wrong keys do not reset the failure count."""
    svc = await started(tmp_path, on_publish=f"{hook.url}/on_publish", max_failures=5)
    try:
        refused = 0
        for i in range(48):
            decision = await svc.authorize(attempt(KEY, addr="6.6.6.6"), Disconnects())
            if isinstance(decision, Accepted):
                await decision.lease.end()
            wrong = await svc.authorize(attempt(f"guess-{i}", addr="6.6.6.6"), Disconnects())
            refused += wrong == Denied(BAD_NAME, "unknown stream key")
        assert refused == 5
        assert len([form for form in hook.calls("/on_publish") if dict(form)["name"] != KEY]) == 5
    finally:
        await svc.stop()


def test_redirect_names_and_bad_callback_urls(tmp_path: Path) -> None:
    assert redirect_name("benw") == "benw"
    assert redirect_name("https://x.example/u/benw?x=1#f") == "benw"
    assert redirect_name("/a/b%5Fc") == "b_c"
    for bad in ("", "/", "BenW", "RTMP://h/app/benw", "a/..", "api"):
        assert redirect_name(bad) is None
    for url in ("ftp://x/on_publish", "/on_publish", "on_publish"):
        with pytest.raises(ValueError, match="http"):
            AuthService(AuthConfig(on_publish=url), tmp_path / "db")
