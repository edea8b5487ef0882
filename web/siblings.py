"""Asking the worker that holds a stream, over its private HTTP socket.

rtmpd workers (rtmpd.worker) share the public port, so a redirect cannot reach a particular
one: a viewer's request lands on whichever worker the kernel picked. What only the owning worker
has is in its memory, LL-HLS playlists (a blocking reload waits for a part the owner is
packaging) and parts, so a worker that gets such a request for a sibling's stream makes the
same request to the owner over the owner's unix socket and answers with what it gets. The viewer
sees one answer, whichever worker took the connection.

The owner counts the viewer (`viewer_address`): the asking worker passes the client's address in
a header that is believed only on the private socket, which only rtmpd's own user can open.
"""

from __future__ import annotations

import socket

import aiohttp
from aiohttp import web

#: The viewer's address, as the asking worker saw it (believed only on a private socket).
CLIENT_HEADER = "X-Rtmpd-Client"
#: Seconds an asked worker may take: a blocking reload waits up to three target durations.
TIMEOUT = 60.0
#: Request headers passed on (what the HLS routes read), and response headers passed back.
_ASK = ("Range", "If-None-Match", "If-Modified-Since", "User-Agent")
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

    async def ask(self, path: str, request: web.Request) -> web.Response:
        """`request` answered by the worker listening on `path`; 502 if it cannot answer."""
        headers = {k: v for k in _ASK if (v := request.headers.get(k)) is not None}
        headers[CLIENT_HEADER] = viewer_address(request) or ""
        url = "http://worker" + request.rel_url.raw_path_qs
        try:
            async with self._session(path).request(request.method, url, headers=headers) as got:
                body = await got.read()
                back = {k: v for k, v in got.headers.items() if k.lower() not in _SKIP}
                return web.Response(status=got.status, body=body, headers=back)
        except (aiohttp.ClientError, TimeoutError, OSError):
            reason = "The worker holding this stream did not answer"
            raise web.HTTPBadGateway(reason=reason) from None

    async def close(self) -> None:
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()


def viewer_address(request: web.Request) -> str | None:
    """The viewer's address: the peer, or on a worker's private socket what the asking worker
    passed on."""
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family == socket.AF_UNIX:
            return request.headers.get(CLIENT_HEADER) or request.remote
    return request.remote
