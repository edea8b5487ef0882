"""A whole rtmpd (the composition root) in the test's event loop, and an in-process publisher.

The in-process publisher drives rtmpd's own sans-I/O client over a real socket; unlike PyAV's
publisher (which must run in a child process, see rtmp_fixtures) it can hold a publish open
while the test acts (takeover, bans), and see exactly when the server closes it. It can go
over TLS (rtmps), and announce enhanced RTMP's Reconnect capability; ReconnectingPublisher
honours the reconnect requests that brings, as the spec asks of a client.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rtmpd.app import Rtmpd
from rtmpd.config import from_dict
from rtmpd.rtmp.client import ClientSession, MediaMessage, ReconnectRequest, Status
from rtmpd.rtmp.exheader import CapsEx
from tests.support.media import TAG_AUDIO, TAG_VIDEO, FlvTag, make_flv, read_flv_tags


def make_config(tmp_path: Path, **sections: Any) -> Any:
    """A config with these sections merged in (a list, such as `push=[{...}]`, replaces)."""
    data: dict[str, Any] = {
        "rtmp": {"listen": "127.0.0.1:0"},
        "http": {"listen": "127.0.0.1:0"},
        "hls": {"fragment": 1.0, "playlist_length": 4.0},
    }
    for name, values in sections.items():
        if isinstance(values, list):
            data[name] = values
        else:
            data.setdefault(name, {}).update(values)
    return from_dict(data, tmp_path)


async def start_server(tmp_path: Path, **sections: Any) -> Rtmpd:
    server = Rtmpd(make_config(tmp_path, **sections))
    await server.start()
    return server


async def publish_attempt(
    port: int, key: str, source: str, preamble: bytes = b"", *, host: str = "127.0.0.1"
) -> Status | None:
    """Connect from `source`, send `preamble` (a PROXY header, say), publish `key`: the
    server's answer, or None when it closed the connection without one."""
    session = ClientSession()
    reader, writer = await asyncio.open_connection(host, port, local_addr=(source, 0))
    try:
        session.connect("app", f"rtmp://{host}:{port}/app")
        session.create_stream()
        session.publish(key)
        writer.write(preamble + session.data_to_send())
        async with asyncio.timeout(10):
            while data := await reader.read(65536):
                session.receive_data(data)
                while (event := session.next_event()) is not None:
                    if isinstance(event, Status):
                        return event
                writer.write(session.data_to_send())
        return None
    except ConnectionError:
        return None
    finally:
        writer.close()


class _ClientLink:
    """What HeldPublisher and HeldPlayer share: rtmpd's sans-I/O client on a stream pair, and
    the loop that reads it, handing each event to `_event`."""

    #: Whether a read loop cancelled (or failed) counts as closed (a publisher's close) or not
    #: (a player's stall, which may resume).
    closed_on_cancel = True
    session: ClientSession
    closed: asyncio.Event
    _reader: asyncio.StreamReader | None
    _writer: asyncio.StreamWriter | None

    def _event(self, event: object) -> None:
        raise NotImplementedError

    def _flush(self) -> None:
        data = self.session.data_to_send()
        if data and self._writer is not None and not self._writer.is_closing():
            self._writer.write(data)

    async def _read(self) -> None:
        assert self._reader is not None
        try:
            while data := await self._reader.read(65536):
                self.session.receive_data(data)
                while (event := self.session.next_event()) is not None:
                    self._event(event)
                self._flush()
        except (ConnectionError, OSError):
            pass
        except BaseException:  # cancelled (or the core refused what the server sent)
            if self.closed_on_cancel:
                self.closed.set()
            raise
        self.closed.set()


class HeldPublisher(_ClientLink):
    """Publishes with rtmpd's client and keeps the connection open until told otherwise."""

    def __init__(
        self,
        port: int,
        key: str,
        app: str = "app",
        source: str = "127.0.0.1",
        *,
        tls: ssl.SSLContext | None = None,
        caps_ex: int = 0,
    ) -> None:
        self.port = port
        self.key = key
        self.app = app
        self.source = source  # the local (client) address: 127.x addresses are distinct peers
        self.tls = tls
        self.session = ClientSession(caps_ex=caps_ex)
        self.statuses: list[Status] = []
        self.reconnect_requests: list[ReconnectRequest] = []
        #: The server's certificate (DER) over TLS.
        self.peer_cert: bytes | None = None
        self.closed = asyncio.Event()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pump: asyncio.Task[None] | None = None

    async def start(self, timeout: float = 10.0) -> Status:
        """Connect and publish; returns the server's onStatus answer to publish."""
        self._reader, self._writer = await asyncio.open_connection(
            "127.0.0.1", self.port, local_addr=(self.source, 0), ssl=self.tls,
            server_hostname="" if self.tls else None,
        )  # fmt: skip
        if self.tls is not None:
            tls_object = self._writer.get_extra_info("ssl_object")
            self.peer_cert = tls_object.getpeercert(binary_form=True)
        scheme = "rtmps" if self.tls else "rtmp"
        self.session.connect(self.app, f"{scheme}://127.0.0.1:{self.port}/{self.app}")
        self.session.create_stream()
        self.session.publish(self.key)
        self._flush()
        self._pump = asyncio.create_task(self._read())
        async with asyncio.timeout(timeout):
            while not self.statuses:
                if self.closed.is_set():
                    raise ConnectionError("closed before any onStatus")
                await asyncio.sleep(0.01)
        return self.statuses[0]

    def send_tags(self, tags: list[FlvTag], offset_ms: int = 0) -> None:
        for tag in tags:
            if tag.kind == TAG_VIDEO:
                self.session.send_video(tag.timestamp + offset_ms, tag.body)
            elif tag.kind == TAG_AUDIO:
                self.session.send_audio(tag.timestamp + offset_ms, tag.body)
        self._flush()

    async def wait_closed(self, timeout: float) -> None:
        await asyncio.wait_for(self.closed.wait(), timeout)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._pump is not None:
            self._pump.cancel()
            await asyncio.gather(self._pump, return_exceptions=True)

    def _event(self, event: object) -> None:
        if isinstance(event, Status):
            self.statuses.append(event)
        elif isinstance(event, ReconnectRequest):
            self.reconnect_requests.append(event)


class ReconnectingPublisher:
    """Publishes tags in real time, announcing the Reconnect capability, and honours reconnect
    requests: it keeps sending on the old connection up to the next video keyframe, then
    connects again (to the request's tcUrl, else where it was), publishes the same key from
    that keyframe on (sequence headers first, stamped with its time) and closes the old
    connection. Timestamps go on as they were: one timeline across the reconnect."""

    def __init__(self, port: int, key: str, *, tls: ssl.SSLContext | None = None) -> None:
        self.port = port
        self.key = key
        self.tls = tls
        self.connections: list[HeldPublisher] = []
        #: (media timestamp of the keyframe, seconds the new connection took to publish).
        self.reconnects: list[tuple[int, float]] = []

    @property
    def current(self) -> HeldPublisher:
        return self.connections[-1]

    async def connect(self, port: int) -> HeldPublisher:
        publisher = HeldPublisher(port, self.key, tls=self.tls, caps_ex=CapsEx.RECONNECT)
        status = await publisher.start()
        if status.code != "NetStream.Publish.Start":
            raise ConnectionError(f"publish refused: {status.code}")
        self.connections.append(publisher)
        return publisher

    async def run(self, tags: list[FlvTag], pace: float = 1.0) -> None:
        headers = [t for t in tags if t.is_sequence_header]
        if not self.connections:
            await self.connect(self.port)
        start = time.monotonic()
        for tag in tags:
            delay = start + tag.timestamp / 1000 / pace - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            old = self.current
            keyframe = tag.kind == TAG_VIDEO and tag.body[0] >> 4 == 1 and tag.body[1] == 1
            if old.reconnect_requests and keyframe:
                target = urlsplit(old.reconnect_requests[-1].tc_url).port or self.port
                began = time.monotonic()
                new = await self.connect(target)
                self.reconnects.append((tag.timestamp, time.monotonic() - began))
                new.send_tags([FlvTag(t.kind, tag.timestamp, t.body) for t in headers])
                await old.close()
            self.current.send_tags([tag])

    async def close(self) -> None:
        for publisher in self.connections:
            await publisher.close()


def media_tags(**kwargs: Any) -> list[FlvTag]:
    return [t for t in read_flv_tags(make_flv(**kwargs)) if t.kind in (TAG_AUDIO, TAG_VIDEO)]


class LiveStream:
    """A HeldPublisher sending `tags` in real time over and over (timestamps going on, the
    sequence headers once), until stopped: a live stream for players and relays to join."""

    def __init__(self, port: int, key: str, tags: list[FlvTag], source: str = "127.0.0.1") -> None:
        self.publisher = HeldPublisher(port, key, source=source)
        self.tags = tags
        self.sent = 0  # tags sent so far
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> Status:
        status = await self.publisher.start()
        self._task = asyncio.create_task(self._run())
        return status

    async def _run(self) -> None:
        media = [t for t in self.tags if not t.is_sequence_header]
        self.publisher.send_tags([t for t in self.tags if t.is_sequence_header])
        period = media[-1].timestamp + 40
        began = time.monotonic()
        offset = 0
        while not self.publisher.closed.is_set():
            for tag in media:
                delay = began + (tag.timestamp + offset) / 1000 - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                self.publisher.send_tags([tag], offset)
                self.sent += 1
            offset += period

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.publisher.close()


class HeldPlayer(_ClientLink):
    """Plays with rtmpd's own client over a real socket and keeps every message it gets;
    `stall()` stops reading (a player whose network stopped), `resume()` reads again."""

    closed_on_cancel = False

    def __init__(
        self, port: int, name: str, app: str = "app", source: str = "127.0.0.1",
        *, rcvbuf: int = 0,
    ) -> None:  # fmt: skip
        self.port = port
        self.name = name
        self.app = app
        self.source = source
        self.rcvbuf = rcvbuf
        self.session = ClientSession()
        self.statuses: list[Status] = []
        self.media: list[MediaMessage] = []
        self.closed = asyncio.Event()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pump: asyncio.Task[None] | None = None

    async def start(self, timeout: float = 10.0) -> Status:
        """Connect and play; the server's first onStatus answer on the stream."""
        sock = socket.socket()
        if self.rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        sock.bind((self.source, 0))
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", self.port))
        self._reader, self._writer = await asyncio.open_connection(sock=sock)
        self.session.connect(self.app, f"rtmp://127.0.0.1:{self.port}/{self.app}")
        self.session.create_stream()
        self.session.play(self.name)
        self._flush()
        self.resume()
        async with asyncio.timeout(timeout):
            while not self.statuses:
                if self.closed.is_set():
                    raise ConnectionError("closed before any onStatus")
                await asyncio.sleep(0.01)
        return self.statuses[0]

    def codes(self) -> list[str]:
        return [s.code for s in self.statuses]

    def stall(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            self._pump = None

    def resume(self) -> None:
        if self._pump is None:
            self._pump = asyncio.create_task(self._read())

    async def close(self) -> None:
        self.stall()
        if self._writer is not None:
            self._writer.close()

    def _event(self, event: object) -> None:
        if isinstance(event, Status):
            self.statuses.append(event)
        elif isinstance(event, MediaMessage):
            self.media.append(event)
