"""Push (restreaming): each destination of a broadcast is its own connection, made with the
project's client (rtmpd.rtmp.client.ClientSession, over rtmpd.client_link's ClientLink).

A relay connects when its broadcast starts, publishes, and from the next keyframe on (the
sequence headers and metadata first, stamped with that keyframe's time) sends what the
broadcast's fanout offers, as it came. Its queue is its socket's output buffer, bounded by
QUEUE_BYTES: past it the relay drops every message up to the next keyframe and counts them,
so a slow or dead destination costs only itself; one that takes nothing for STALL_TIMEOUT is
disconnected. A destination that refuses, times out or drops is retried with backoff (1 s
doubling to 30 s) for as long as the broadcast lasts; at the
end of the broadcast the relay unpublishes (FCUnpublish, deleteStream) and closes.

The destination's URL carries another service's key: it is only used to connect; every log
line, status and error shows `DestinationUrl.redacted`, and an error text the other server
sent has the key cut out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rtmpd.auth.destinations import DestinationUrl
from rtmpd.client_link import ClientLink, open_client_link
from rtmpd.rtmp import limits
from rtmpd.rtmp.client import ClientEvent, ClientSession, Status

from .relay import Fanout, Relayed

log = logging.getLogger("rtmpd.push")

#: Bytes queued for one destination (its socket buffer not counted) before it drops to the
#: next keyframe.
QUEUE_BYTES = 4 * 1024 * 1024
#: Seconds from connecting to the destination's Publish.Start (TCP, TLS, handshake, connect).
CONNECT_TIMEOUT = 10.0
#: Seconds a destination may take nothing at all, with output waiting, before it is
#: disconnected (and connected again, with backoff).
STALL_TIMEOUT = 30.0
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 30.0
_HEADER = 2


class Refused(Exception):
    """The destination answered with an error (connect or publish refused)."""


@dataclass(frozen=True, slots=True)
class PushStatus:
    """What the API shows of one destination of a live broadcast."""

    destination_id: int | None  # None: a [[push]] destination of the configuration
    url: str  # redacted
    connected: bool
    kbps: float
    dropped: int
    last_error: str | None


class PushRelay:
    """One destination of one broadcast. Implements rtmpd.relay.Output and BroadcastPart."""

    def __init__(
        self,
        fanout: Fanout,
        target: DestinationUrl,
        *,
        destination_id: int | None,
        tls: Callable[[], ssl.SSLContext] = ssl.create_default_context,
        on_connected: Callable[[int], None] | None = None,
    ) -> None:
        self.fanout = fanout
        self.target = target
        self.destination_id = destination_id
        self.label = f"{fanout.name} -> {target.redacted}"
        self._stream = target.stream_name(fanout.name)
        self._tls = tls
        self._on_connected = on_connected
        self.connected = False
        self.dropped = 0
        self.bytes_sent = 0
        self.kbps = 0.0
        self.last_error: str | None = None
        self._sampled = (time.monotonic(), 0)
        self._session: ClientSession | None = None
        self._link: ClientLink | None = None
        self._published: asyncio.Future[None] | None = None
        self._waiting = True  # for a keyframe to (re)start at
        self._started = False  # the headers went on this connection
        self._task: asyncio.Task[None] | None = None
        self._ending = False

    def status(self) -> PushStatus:
        return PushStatus(self.destination_id, self.target.redacted, self.connected,
                          self.kbps, self.dropped, self.last_error)  # fmt: skip

    def sample(self) -> None:
        """Once a second: the bitrate sent since the last sample."""
        now = time.monotonic()
        then, sent = self._sampled
        if now > then:
            self.kbps = round((self.bytes_sent - sent) * 8 / 1000 / (now - then), 1)
        self._sampled = (now, self.bytes_sent)

    # -- BroadcastPart ------------------------------------------------------------------------

    def publish_started(self) -> None:
        if self._task is None and not self._ending:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def end(self) -> None:
        """The broadcast is over: unpublish and close."""
        if self._ending:
            return
        self._ending = True
        self.fanout.outputs.discard(self)
        session, link = self._session, self._link
        if link is not None and session is not None:
            with contextlib.suppress(Exception):  # a link that is going anyway
                if session.publishing:
                    session.delete_stream()
                link.close("the broadcast ended")
        if self._task is not None:
            self._task.cancel()
        self._set_connected(False)

    # -- Output -----------------------------------------------------------------------------

    def finish(self) -> None:
        self.end()

    def offer(self, item: Relayed) -> None:
        session, link = self._session, self._link
        if session is None or link is None or not self.connected:
            return
        if item.kind == _HEADER:  # never dropped; before the start they go with the keyframe
            if self._started:
                self._send(session, link, item)
            return
        if self._waiting:
            if not self.fanout.startable(item) or link.buffered > QUEUE_BYTES:
                if self._started:  # dropping to the next keyframe it can take
                    self._drop()
                return
            self._waiting = False
            if not self._started:
                self._started = True
                self._send_headers(item.timestamp)
        elif link.buffered > QUEUE_BYTES:
            self._waiting = True
            self._drop()
            return
        self._send(session, link, item)

    def _send(self, session: ClientSession, link: ClientLink, item: Relayed) -> None:
        stream_id = session.stream_id
        if stream_id is None:
            return
        msg = item.cut(stream_id, session.chunk_size)
        session.send_serialized(msg)
        self.bytes_sent += len(msg.data)
        link.flush()

    def _drop(self) -> None:
        self.dropped += 1
        self.fanout.dropped("push")

    def metadata(self, values: dict[str, Any]) -> None:
        session, link = self._session, self._link
        if session is not None and link is not None and self.connected and self._started:
            session.send_metadata(values)
            link.flush()

    def _send_headers(self, timestamp: int) -> None:
        session = self._session
        assert session is not None and session.stream_id is not None
        if self.fanout.meta is not None:
            session.send_metadata(self.fanout.meta, timestamp)
        for header in self.fanout.headers.values():
            msg = header.cut(session.stream_id, session.chunk_size, timestamp)
            session.send_serialized(msg)
            self.bytes_sent += len(msg.data)

    # -- the connection ----------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = BACKOFF_FIRST
        while not self._ending:
            began = time.monotonic()
            try:
                reason = await self._once()
            except asyncio.CancelledError:
                raise
            except (OSError, TimeoutError, Refused, ConnectionError) as exc:
                reason = self._clean(str(exc) or type(exc).__name__)
            self._drop_link()
            if self._ending:
                return
            self.last_error = reason
            if time.monotonic() - began > BACKOFF_MAX:
                backoff = BACKOFF_FIRST  # it worked for a while: a fresh start
            log.warning("push %s: %s; retrying in %g s", self.label, reason, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)

    async def _once(self) -> str:
        """Connect and publish, then relay until the connection goes; why it went."""
        target = self.target
        session = ClientSession(chunk_size=limits.SERVER_CHUNK_SIZE)
        self._session = session
        self._published = asyncio.get_running_loop().create_future()
        tls = self._tls() if target.tls else None
        published = self._published
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                link = await open_client_link(session, self._event, target.host, target.port,
                                              tls=tls, stall_timeout=STALL_TIMEOUT)  # fmt: skip
                self._link = link
                session.connect(target.app, target.tc_url)
                session.create_stream()
                session.publish(self._stream)
                link.flush()
                waits: set[asyncio.Future[Any]] = {published, link.done}
                done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        except TimeoutError:
            step = "publish" if self._link is not None else "connection"
            raise TimeoutError(f"no {step} within {CONNECT_TIMEOUT:g} s") from None
        if published in done:
            published.result()  # raises Refused
        if link.done.done():
            return self._clean(link.done.result())
        self._waiting = True
        self._started = False
        self._set_connected(True)
        self.fanout.outputs.add(self)
        log.info("push %s: publishing", self.label)
        reason = await link.done
        self.fanout.outputs.discard(self)
        return self._clean(reason)

    def _event(self, event: ClientEvent) -> None:
        published = self._published
        if not isinstance(event, Status) or published is None or published.done():
            return
        if event.code == "NetStream.Publish.Start":
            published.set_result(None)
        elif event.level == "error" or event.code.endswith(("Failed", "Rejected", "BadName")):
            published.set_exception(Refused(self._clean(f"{event.code}: {event.description}")))

    def _drop_link(self) -> None:
        self.fanout.outputs.discard(self)
        link = self._link
        if link is not None:
            link.close("retrying", abort=True)
        self._link = None
        self._session = None
        self._published = None
        self._set_connected(False)

    def _set_connected(self, connected: bool) -> None:
        if connected != self.connected:
            self.connected = connected
            if self._on_connected is not None:
                self._on_connected(1 if connected else -1)

    def _clean(self, text: str) -> str:
        """An error as it may be shown: without the key, short, one line."""
        stream = self.target.stream
        if stream:
            text = text.replace(stream, "<key>")
            key = stream.partition("?")[0]
            if key:
                text = text.replace(key, "<key>")
        return " ".join(text.split())[:200]
