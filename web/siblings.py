"""Asking the worker that holds a stream, over its private HTTP socket.

rtmpd workers (rtmpd.worker) share the public port, so a redirect cannot reach a particular
one: a viewer's request lands on whichever worker the kernel picked. What only the owning worker
has is in its memory, LL-HLS playlists (a blocking reload waits for a part the owner is
packaging) and parts, so a worker that gets such a request for a sibling's stream makes the
same request to the owner over the owner's unix socket and answers with what it gets. The viewer
sees one answer, whichever worker took the connection.

The owner counts the viewer (`viewer_address`): the asking worker passes the client's address in
a header that is believed only on the private socket, which only rtmpd's own user can open.

The dashboard and the admin API (/admin, /api/admin/) are answered by worker 1 alone, asked the
same way: dashboard sessions live in its memory (a browser's second connection may land on
another worker), and its failed-token limit sees the client's address passed on.
"""

from __future__ import annotations

import json
import socket
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

#: The viewer's address, as the asking worker saw it (believed only on a private socket).
CLIENT_HEADER = "X-Rtmpd-Client"
#: "1" when the client's request came over https (to rtmpd or a trusted proxy), likewise.
HTTPS_HEADER = "X-Rtmpd-Https"
#: Seconds an asked worker may take: a blocking reload waits up to three target durations.
TIMEOUT = 60.0
#: Request headers passed on (what the HLS routes read), and response headers passed back.
_ASK = ("Range", "If-None-Match", "If-Modified-Since", "User-Agent", "Accept", "Authorization",
        "Cookie", "Content-Type", "X-CSRF-Token", "Origin", "Referer")  # fmt: skip
_SKIP = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive", "server",
                   "content-encoding"})  # fmt: skip


class Siblings:
    """Client sessions to the other workers, one per private socket, made when first used."""

    def __init__(self) -> None:
        self._sessions: dict[str, aiohttp.ClientSession] = {}

    def _session(self, path: str) -> aiohttp.ClientSession:
        session = self._sessions.get(path)
        if session is None or session.closed:
            session = aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(path=path),
                timeout=aiohttp.ClientTimeout(total=TIMEOUT),
                auto_decompress=False,
            )
            self._sessions[path] = session
        return session

    async def ask(
        self, path: str, request: web.Request, *, client: str | None = None, https: bool = False
    ) -> web.Response:
        """`request` answered by the worker listening on `path`; 502 if it cannot answer.
        `client`: the client's address (default: the peer's)."""
        headers = {k: v for k in _ASK if (v := request.headers.get(k)) is not None}
        headers[CLIENT_HEADER] = client or viewer_address(request) or ""
        headers["Host"] = request.host  # what same-origin checks compare with
        if https:
            headers[HTTPS_HEADER] = "1"
        url = "http://worker" + request.rel_url.raw_path_qs
        data = await request.read() if request.can_read_body else None
        session = self._session(path)
        try:
            async with session.request(request.method, url, headers=headers, data=data,
                                       allow_redirects=False) as got:  # fmt: skip
                body = await got.read()
                back = CIMultiDict((k, v) for k, v in got.headers.items()
                                   if k.lower() not in _SKIP)  # fmt: skip
                return web.Response(status=got.status, body=body, headers=back)
        except (aiohttp.ClientError, TimeoutError, OSError):
            reason = "The worker holding this stream did not answer"
            raise web.HTTPBadGateway(reason=reason) from None

    async def call(
        self, path: str, method: str, url: str, *, timeout: float
    ) -> tuple[int, Any] | None:
        """`method url` on the worker listening on `path`: its status and JSON body (None for
        a body that is not JSON), or None if it did not answer within `timeout` seconds."""
        session = self._session(path)
        limit = aiohttp.ClientTimeout(total=timeout)
        try:
            async with session.request(
                method, "http://worker" + url, allow_redirects=False, timeout=limit
            ) as got:
                body = await got.read()
        except (aiohttp.ClientError, TimeoutError, OSError):
            return None
        try:
            return got.status, json.loads(body) if body else None
        except ValueError:
            return got.status, None

    async def close(self) -> None:
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()


def private(request: web.Request) -> bool:
    """Whether `request` came over a worker's private socket (from another worker)."""
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    return sock is not None and sock.family == socket.AF_UNIX


def viewer_address(request: web.Request) -> str | None:
    """The viewer's address: the peer, or on a worker's private socket what the asking worker
    passed on."""
    if private(request):
        return request.headers.get(CLIENT_HEADER) or request.remote
    return request.remote
