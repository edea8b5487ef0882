"""RTMP play of a stream another worker holds (`[server] workers` with `[rtmp] allow_play`).

A player lands on whichever worker the kernel picked; one publish lives in one worker. The
worker a player reached decides the play as always ([rtmp] allow_play, on_play), and if the
stream is a sibling's, pulls it from that sibling: one `Pull` per stream and worker, however
many players it has there, made with the project's client (rtmpd.rtmp.client.ClientSession,
over rtmpd.client_link's ClientLink, as rtmpd.push does) to the sibling's private RTMP listener: a
unix socket in the folder only rtmpd's user can open, whose plays are not checked again (the
player was, where it connected). The pulled messages go into a `Fanout` of their own (the
GOP cache, the headers, the metadata), so players here start and drop as players of a local
publish do; rtmpd.rtmp.relayed tells the messages apart as the server's tap would.

Pulled on demand, not pushed to every worker as nginx-rtmp's rtmp_auto_push does: a stream
nobody plays on another worker costs nothing, and the pull ends when its last player here
leaves. It also ends when the sibling's broadcast ends (its players here get the same end as
local players); a takeover that brings the publish to this worker adopts the pull's fanout
(its players go on, on one timeline) and drops the pull.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rtmpd.auth.model import PLAY_NOT_FOUND
from rtmpd.client_link import ClientLink, open_unix_client_link
from rtmpd.rtmp import limits
from rtmpd.rtmp.client import ClientEvent, ClientSession, MediaMessage, Status
from rtmpd.rtmp.events import PlayRequest, PublishRequest, RawMedia
from rtmpd.rtmp.messages import MessageType
from rtmpd.rtmp.relayed import classify, metadata
from rtmpd.rtmp_contract import Accept, PlayAccept, Player, Publisher, Reject

from .relay import Fanout, PlayerOutput

if TYPE_CHECKING:
    from .broadcast import Broadcast

log = logging.getLogger("rtmpd.pull")

#: Seconds from connecting to the sibling's Play.Start.
CONNECT_TIMEOUT = 10.0
#: Seconds the sibling may leave our output unread (we send little: acknowledgements).
STALL_TIMEOUT = 30.0
#: The pending connections of a private RTMP listener.
BACKLOG = 128
_DATA = MessageType.DATA_AMF0.value
_ENDED = ("NetStream.Play.UnpublishNotify", "NetStream.Play.Stop")


class Refused(Exception):
    """The sibling refused the play (the stream is gone there)."""


class Pull:
    """One sibling's stream, played once for every player of it on this worker."""

    def __init__(
        self,
        name: str,
        path: str,
        app: str,
        *,
        on_end: Callable[[Pull], None],
        on_drop: Callable[[str, int], None] | None = None,
    ) -> None:
        self.name = name
        self.path = path
        self.fanout = Fanout(name, on_drop=on_drop)
        self.fanout.attach(self)
        self.players = 0
        #: The fanout went to a local broadcast (a takeover to this worker): not finished here.
        self.adopted = False
        self.ended = False
        self._app = app
        self._on_end = on_end
        self._link: ClientLink | None = None
        self._started: asyncio.Future[None] | None = None
        self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self, reason: str) -> None:
        """Stop pulling (the last player left, or the publish came here); players not told."""
        link = self._link
        if link is not None:
            link.close(reason)
        elif not self._task.done():
            self._task.cancel()

    def adopt(self) -> Fanout:
        """The fanout, for a local broadcast of the name from now on; the pull stops."""
        self.adopted = True
        self.fanout.detach(self)
        self.stop("the publish moved to this worker")
        return self.fanout

    async def _run(self) -> None:
        reason = "the stream ended"
        try:
            reason = await self._once()
        except asyncio.CancelledError:
            reason = "stopped"
        except (OSError, TimeoutError, ConnectionError, Refused) as exc:
            reason = str(exc) or type(exc).__name__
        finally:
            self._finish(reason)

    async def _once(self) -> str:
        session = ClientSession(chunk_size=limits.SERVER_CHUNK_SIZE)
        self._started = started = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                link = await open_unix_client_link(session, self._event, self.path,
                                                   stall_timeout=STALL_TIMEOUT)  # fmt: skip
                self._link = link
                session.connect(self._app, f"rtmp://localhost/{self._app}")
                session.create_stream()
                session.play(self.name)
                link.flush()
                waits: set[asyncio.Future[Any]] = {started, link.done}
                done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        except TimeoutError:
            raise TimeoutError(f"no Play.Start within {CONNECT_TIMEOUT:g} s") from None
        if started in done:
            started.result()  # raises Refused
        else:
            return link.done.result()
        log.info("%s: pulled from its worker for %d player(s) here", self.name, self.players)
        return await link.done

    def _event(self, event: ClientEvent) -> None:
        if isinstance(event, MediaMessage):
            payload = event.payload
            if event.msg_type == _DATA:
                values = metadata(payload)
                if values is not None:
                    self.fanout.metadata(self, values)
                return
            found = classify(event.msg_type, payload)
            if found is not None:
                kind, key = found
                raw = RawMedia(event.stream_id, event.msg_type, event.timestamp, payload,
                               kind, key)  # fmt: skip
                self.fanout.message(self, raw)
        elif isinstance(event, Status):
            started = self._started
            if event.code == "NetStream.Play.Start":
                if started is not None and not started.done():
                    started.set_result(None)
            elif event.code in _ENDED:
                if self._link is not None:
                    self._link.close("the stream ended")
            elif event.level == "error" and started is not None and not started.done():
                started.set_exception(Refused(f"{event.code}: {event.description}"))

    def _finish(self, reason: str) -> None:
        if self.ended:
            return
        self.ended = True
        if self._link is not None:
            self._link.close(reason)
        log.info("%s: pull ended: %s", self.name, reason)
        self._on_end(self)
        if not self.adopted:
            self.fanout.finish()  # players here get the end players of the owner get


class Pulls:
    """This worker's pulls by name: one per stream however many players."""

    def __init__(
        self,
        app: str,
        locate: Callable[[str], str | None],
        *,
        on_drop: Callable[[str, int], None] | None = None,
    ) -> None:
        self._app = app
        self._locate = locate
        self._on_drop = on_drop
        self.pulls: dict[str, Pull] = {}

    def join(self, name: str) -> Pull | None:
        """A player of `name` here: its pull (made now if none), or None if no sibling holds
        it. The caller calls `leave` once the player is gone."""
        pull = self.pulls.get(name)
        if pull is None or pull.ended:
            path = self._locate(name)
            if path is None:
                return None
            pull = Pull(name, path, self._app, on_end=self._ended, on_drop=self._on_drop)
            self.pulls[name] = pull
        pull.players += 1
        return pull

    def leave(self, pull: Pull) -> None:
        pull.players -= 1
        if pull.players <= 0 and not pull.ended:
            pull.stop("no player left")

    def adopt(self, name: str) -> Fanout | None:
        """A publish of `name` came to this worker: the fanout its players watch, if any."""
        pull = self.pulls.pop(name, None)
        if pull is None or pull.ended:
            return None
        return pull.adopt()

    def close(self) -> None:
        for pull in list(self.pulls.values()):
            pull.stop("server shutting down")

    def _ended(self, pull: Pull) -> None:
        if self.pulls.get(pull.name) is pull:
            del self.pulls[pull.name]


class SiblingPlays:
    """The private RTMP listener's handler: plays of this worker's broadcasts, by name,
    without the checks the player already passed where it connected; no publishing."""

    def __init__(self, broadcasts: dict[str, Broadcast]) -> None:
        self._broadcasts = broadcasts

    async def authorize(self, publisher: Publisher, request: PublishRequest) -> Accept | Reject:
        return Reject("NetStream.Publish.Denied", "publishing is not taken here")

    async def authorize_play(self, player: Player, request: PlayRequest) -> PlayAccept | Reject:
        broadcast = self._broadcasts.get(request.name)
        if broadcast is None or broadcast.ended:
            return Reject(PLAY_NOT_FOUND, "no such live stream")
        return PlayAccept(request.name, PlayerOutput(broadcast.fanout, player))


def private_listener(path: str) -> socket.socket:
    """A listening unix socket at `path` (a stale one of an earlier run replaced)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        os.chmod(path, 0o600)
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock
