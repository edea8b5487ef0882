"""The dashboard's sign-in and session over HTTP: the cookie's attributes (Secure only over
https, as a trusted proxy says), same-origin sign-in, CSRF on every change, and sessions that
end with their token."""

from __future__ import annotations

from collections.abc import AsyncIterator
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from rtmpd.app import Rtmpd
from tests.support.app import start_server


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Rtmpd]:
    srv = await start_server(tmp_path)
    yield srv
    await srv.stop()


class Browser:
    """Requests as a browser on this site sends them: Origin on POSTs, the session cookie."""

    def __init__(self, server: Rtmpd, http: aiohttp.ClientSession) -> None:
        self.host = f"127.0.0.1:{server.http_port}"
        self.base = f"http://{self.host}"
        self.http = http
        self.cookie = ""

    async def request(
        self, method: str, path: str, *, origin: str | None = "", **kwargs: Any
    ) -> tuple[int, str, Any]:
        headers = dict(kwargs.pop("headers", {}))
        if origin is not None:
            headers["Origin"] = origin or self.base
        if self.cookie:
            headers["Cookie"] = f"rtmpd_admin={self.cookie}"
        async with self.http.request(method, self.base + path, headers=headers,
                                     allow_redirects=False, **kwargs) as response:  # fmt: skip
            return response.status, await response.text(), response.headers

    async def sign_in(self, token: str, **headers: str) -> SimpleCookie:
        status, _, answer = await self.request(
            "POST", "/admin/login", data={"token": token}, headers=headers
        )
        assert status == 303 and answer["Location"] == "/admin"
        cookie = SimpleCookie(answer["Set-Cookie"])
        self.cookie = cookie["rtmpd_admin"].value
        return cookie

    async def csrf(self) -> str:
        status, page, _ = await self.request("GET", "/admin")
        assert status == 200 and 'name="csrf-token"' in page
        return page.split('name="csrf-token" content="')[1].split('"')[0]


@pytest.fixture
async def browser(server: Rtmpd) -> AsyncIterator[Browser]:
    async with aiohttp.ClientSession() as http:
        yield Browser(server, http)


async def test_sign_in_makes_a_strict_session_cookie(server: Rtmpd, browser: Browser) -> None:
    assert server.accounts is not None
    token = await server.accounts.add_token("ops")
    status, page, headers = await browser.request("GET", "/admin")
    assert status == 200 and 'action="/admin/login"' in page
    csp = headers["Content-Security-Policy"]
    assert "script-src 'self';" in csp and "form-action 'self'" in csp
    assert "frame-ancestors 'none'" in csp and "unsafe" not in csp
    assert headers["X-Frame-Options"] == "DENY" and headers["Cache-Control"] == "no-store"

    for origin in ("http://evil.example", None):  # cross-site, or no Origin/Referer at all
        status, _, _ = await browser.request("POST", "/admin/login", origin=origin,
                                             data={"token": token})  # fmt: skip
        assert status == 403
    status, page, headers = await browser.request("POST", "/admin/login", data={"token": "no"})
    assert status == 401 and "That token is not valid." in page and "Set-Cookie" not in headers

    cookie = (await browser.sign_in(token))["rtmpd_admin"]
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/"
    assert not cookie["secure"]  # plain http, no proxy saying otherwise
    assert token not in cookie.value and len(cookie.value) >= 40
    status, page, _ = await browser.request("GET", "/admin")
    assert status == 200 and "signed in with the token ops" in page
    # behind a TLS proxy on loopback (trusted by default) the cookie is Secure
    secure = (await browser.sign_in(token, **{"X-Forwarded-Proto": "https"}))["rtmpd_admin"]
    assert secure["secure"]


async def test_forwarded_proto_from_an_untrusted_peer_is_ignored(tmp_path: Path) -> None:
    server = await start_server(tmp_path, http={"trusted_proxies": []})
    try:
        assert server.accounts is not None
        token = await server.accounts.add_token("ops")
        async with aiohttp.ClientSession() as http:
            browser = Browser(server, http)
            cookie = await browser.sign_in(token, **{"X-Forwarded-Proto": "https"})
        assert not cookie["rtmpd_admin"]["secure"]
    finally:
        await server.stop()


async def test_changes_with_the_cookie_need_the_csrf_token(server: Rtmpd, browser: Browser) -> None:
    assert server.accounts is not None
    token = await server.accounts.add_token("ops")
    await server.accounts.add_user("benw")
    await browser.sign_in(token)
    csrf = await browser.csrf()
    status, body, _ = await browser.request("GET", "/api/admin/users", origin=None)
    assert status == 200 and '"benw"' in body  # reading needs only the session
    ban = "/api/admin/users/benw/ban"
    assert (await browser.request("POST", ban))[0] == 403  # no CSRF token
    assert (await browser.request("POST", ban, headers={"X-CSRF-Token": "x" * 43}))[0] == 403
    status, _, _ = await browser.request("POST", ban, origin="http://evil.example",
                                         headers={"X-CSRF-Token": csrf})  # fmt: skip
    assert status == 403
    assert (await server.accounts.user("benw")).active
    status, body, _ = await browser.request("POST", ban, headers={"X-CSRF-Token": csrf})
    assert status == 200 and '"active": false' in body

    # sign-out needs the token too, and ends the session
    assert (await browser.request("POST", "/admin/logout", data={"csrf": "nope"}))[0] == 403
    status, _, headers = await browser.request("POST", "/admin/logout", data={"csrf": csrf})
    assert status == 303 and 'rtmpd_admin=""' in headers["Set-Cookie"]
    assert (await browser.request("GET", "/api/admin/users", origin=None))[0] == 401


async def test_removing_the_token_ends_its_sessions(server: Rtmpd, browser: Browser) -> None:
    assert server.accounts is not None
    token = await server.accounts.add_token("ops")
    await browser.sign_in(token)
    assert (await browser.request("GET", "/api/admin/users", origin=None))[0] == 200
    await server.accounts.remove_token("ops")
    assert (await browser.request("GET", "/api/admin/users", origin=None))[0] == 401
    status, page, _ = await browser.request("GET", "/admin")
    assert status == 200 and 'action="/admin/login"' in page
