"""Shared pieces of the rtmpd.web tests: an in-memory Directory and a served app on port 0."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from rtmpd.web import Channel, StreamStats, create_app, make_runner


class MemoryDirectory:
    """The other side of rtmpd.web's Directory protocol, backed by dictionaries."""

    def __init__(self) -> None:
        self.channels: dict[str, Channel] = {}
        self.stream_stats: dict[str, StreamStats] = {}
        self.jpegs: dict[str, bytes] = {}
        self.thumbnail_threads: list[str] = []
        #: Streams served by another node: name -> its HTTP base URL.
        self.owners: dict[str, str] = {}

    def add(
        self,
        name: str,
        *,
        live: bool = False,
        since: float | None = None,
        stats: StreamStats | None = None,
        jpeg: bytes | None = None,
    ) -> None:
        self.channels[name] = Channel(name, live, (since or time.time()) if live else None)
        if stats is not None:
            self.stream_stats[name] = stats
        if jpeg is not None:
            self.jpegs[name] = jpeg

    def go_live(self, name: str) -> None:
        self.channels[name] = Channel(name, True, time.time())

    async def channel(self, name: str) -> Channel | None:
        return self.channels.get(name)

    async def live_channels(self) -> list[Channel]:
        return [c for c in self.channels.values() if c.live]

    def elsewhere(self, name: str) -> str | None:
        return self.owners.get(name)

    def stats(self, name: str) -> StreamStats | None:
        return self.stream_stats.get(name)

    def thumbnail(self, name: str) -> Callable[[], bytes | None] | None:
        def render() -> bytes | None:
            self.thumbnail_threads.append(threading.current_thread().name)
            return self.jpegs.get(name)

        return render


@dataclass
class Served:
    """A running app: its base URL, an HTTP client for it and the app itself."""

    app: web.Application
    port: int
    session: aiohttp.ClientSession
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.session.get(self.base + path, **kwargs)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.session.request(method, self.base + path, **kwargs)


@asynccontextmanager
async def serve(
    hls_path: Path,
    directory: MemoryDirectory | None = None,
    *,
    nested: bool = True,
    **kwargs: Any,
) -> AsyncIterator[Served]:
    """create_app + make_runner on 127.0.0.1, port 0; yields once it accepts connections."""
    app = create_app(
        hls_path=hls_path, nested=nested, directory=directory or MemoryDirectory(), **kwargs
    )
    runner = make_runner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as session:
            yield Served(app, port, session)
    finally:
        await runner.cleanup()


async def raw_request(port: int, head: bytes) -> tuple[int, bytes]:
    """Send a request exactly as given (no client-side URL normalising); status and body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()
    status_line, _, rest = data.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


async def raw_get(port: int, target: str) -> tuple[int, bytes]:
    head = f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    return await raw_request(port, head.encode("latin-1"))
