"""nginx-rtmp-compatible on_publish / on_publish_done and on_play / on_play_done HTTP callbacks.

Requests are built exactly as nginx-rtmp builds them (a form-encoded POST with app, flashver,
swfurl, tcurl, pageurl, addr, clientid, call, name, type, then the publish query's own
arguments), so an existing hook such as the seed's Django view keeps working unchanged.
Answers: 2xx accepts under the stream name itself, 3xx accepts under the last path segment of
Location (not followed), 404 is an unknown key, other 4xx a refusal; 5xx, timeouts and
connection errors deny as "temporarily unavailable".

A 2xx keeps nginx-rtmp's meaning, and so makes the name as sent public: usually that name is
the streamer's key, which then shows in the API, the pages, the HLS path and the logs. rtmpd
says so in a WARNING, once per name, and from then on logs that name like any public name (in
full, everywhere); only names not accepted are shown masked.

on_play (`PlayCallbacks`) is asked the same way with call=play and nginx-rtmp's play fields
(start, duration, reset): 2xx plays the name as asked, 3xx the public name in Location, 4xx
refuses and 5xx, timeouts and connection errors refuse as "temporarily unavailable";
on_play_done is told when the play ends, its answer ignored.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import aiohttp

from .decider import Granted, Request
from .keys import key_fingerprint
from .lease import Lease
from .limiter import AttemptGuard, client_host
from .model import (
    BAD_NAME,
    DENIED,
    PLAY_FAILED,
    PLAY_NOT_FOUND,
    RATE_LIMITED,
    UNAVAILABLE,
    UNKNOWN_KEY,
    Channel,
    Denied,
    PlayAttempt,
    PublishAttempt,
)
from .names import valid_path_name, valid_public_name

FORM = "application/x-www-form-urlencoded"
FIELDS = ("app", "flashver", "swfurl", "tcurl", "pageurl", "addr", "clientid", "call", "name",
          "type")  # fmt: skip
MAX_QUERY_CHARS = 4096
MAX_QUERY_ARGS = 64


#: Names accepted as sent that rtmpd remembers having warned about (then it starts over).
MAX_WARNED_NAMES = 4096


@dataclass(frozen=True, slots=True)
class CallbackAccept:
    name: str
    as_sent: bool = False  # a 2xx: the stream name itself, usually the key, is the public name


@dataclass(frozen=True, slots=True)
class CallbackDeny:
    denied: Denied
    failed_attempt: bool  # the endpoint refused the key: counts toward the rate limit


def form_fields(attempt: PublishAttempt, call: str, key: str, query: str) -> list[tuple[str, str]]:
    """The POST fields in nginx-rtmp's order. Query arguments named like a standard field are
    dropped, so `name` always means the stream name (nginx-rtmp would send both)."""
    fields = [
        ("app", attempt.app),
        ("flashver", attempt.flashver),
        ("swfurl", attempt.swfurl),
        ("tcurl", attempt.tcurl),
        ("pageurl", attempt.pageurl),
        ("addr", client_host(attempt.addr)),
        ("clientid", attempt.clientid),
        ("call", call),
        ("name", key),
        ("type", attempt.publish_type),
    ]
    pairs = parse_qsl(query.lstrip("?")[:MAX_QUERY_CHARS], keep_blank_values=True)
    fields.extend((k, v) for k, v in pairs[:MAX_QUERY_ARGS] if k not in FIELDS)
    return fields


def _check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"callback URL must be an absolute http(s) URL: {url!r}")
    return url


def redirect_name(location: str) -> str | None:
    """The public name a 3xx Location points at (its last path segment), if valid."""
    if location.lower().startswith("rtmp://"):
        return None  # nginx-rtmp would relay; rtmpd does not
    path = urlsplit(location).path.rstrip("/")
    name = unquote(path.rsplit("/", 1)[-1])
    return name if valid_public_name(name) else None


class CallbackClient:
    """Asks the configured endpoints; `start()` inside the event loop, `close()` after."""

    def __init__(
        self, on_publish: str, on_publish_done: str | None, timeout: float, log: logging.Logger
    ) -> None:
        self.on_publish = _check_url(on_publish)
        self.on_publish_done = _check_url(on_publish_done) if on_publish_done else None
        self.timeout = timeout
        self._log = log
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def _post(self, url: str, fields: list[tuple[str, str]]) -> tuple[int, str | None]:
        if self._session is None:
            raise RuntimeError("CallbackClient.start() was not called")
        async with self._session.post(
            url,
            data=urlencode(fields).encode(),
            headers={"Content-Type": FORM},
            allow_redirects=False,
        ) as response:
            return response.status, response.headers.get("Location")

    async def publish(
        self, attempt: PublishAttempt, key: str, query: str
    ) -> CallbackAccept | CallbackDeny:
        hint = key_fingerprint(key)
        try:
            status, location = await self._post(
                self.on_publish, form_fields(attempt, "publish", key, query)
            )
        except TimeoutError:
            self._log.warning("on_publish gave no answer within %g s (key %s)", self.timeout, hint)
            return CallbackDeny(UNAVAILABLE, False)
        except aiohttp.ClientError as exc:
            self._log.warning("on_publish failed (key %s): %s", hint, type(exc).__name__)
            return CallbackDeny(UNAVAILABLE, False)
        if 200 <= status < 300:
            if valid_path_name(key):
                return CallbackAccept(key, as_sent=True)
            return CallbackDeny(Denied(BAD_NAME, "invalid stream name"), False)
        if 300 <= status < 400:
            name = redirect_name(location or "")
            if name is None:
                self._log.warning("on_publish redirect is not a valid public name (key %s)", hint)
                return CallbackDeny(Denied(DENIED, "invalid redirect"), False)
            return CallbackAccept(name)
        if status == 404:
            return CallbackDeny(UNKNOWN_KEY, True)
        if 400 <= status < 500:
            return CallbackDeny(Denied(DENIED, f"publish refused (HTTP {status})"), True)
        self._log.warning("on_publish answered HTTP %d (key %s)", status, hint)
        return CallbackDeny(UNAVAILABLE, False)

    async def publish_done(self, attempt: PublishAttempt, key: str, query: str, label: str) -> None:
        """Tell on_publish_done, with the original name; the answer is ignored."""
        if self.on_publish_done is None:
            return
        try:
            await self._post(self.on_publish_done, form_fields(attempt, "publish_done", key, query))
        except TimeoutError:
            self._log.warning("on_publish_done for %s: no answer within %g s", label, self.timeout)
        except aiohttp.ClientError as exc:
            self._log.warning("on_publish_done for %s failed: %s", label, type(exc).__name__)


class CallbackDecider:
    """Decides by asking on_publish, and tells on_publish_done when a publish ends; keeps no
    database. Implements `Decider[Request]`: the request is kept for on_publish_done, which
    gets the same fields as on_publish."""

    def __init__(self, client: CallbackClient, guard: AttemptGuard, log: logging.Logger) -> None:
        self._client = client
        self._guard = guard
        self._log = log
        self._requests: dict[Lease, Request] = {}  # live and taken-over leases
        self._tasks: set[asyncio.Task[None]] = set()
        self._warned: set[str] = set()  # names accepted as sent, already warned about

    async def start(self) -> None:
        await self._client.start()

    async def stop(self) -> None:
        """Wait for on_publish_done calls still in flight (up to the callback timeout)."""
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=self._client.timeout)
        self._requests.clear()
        await self._client.close()

    async def decide(self, request: Request) -> Granted[Request] | Denied:
        """One question to the endpoint at a time per client, as the database decider looks
        keys up: concurrent guesses would all pass `blocked()` before the first refusal came
        back, and each would cost the endpoint a request."""
        async with self._guard.turn(request.host):
            if self._guard.blocked(request.host):
                return RATE_LIMITED
            answer = await self._client.publish(request.attempt, request.key, request.query)
            if not isinstance(answer, CallbackAccept):
                if answer.failed_attempt:
                    return self._guard.refused(request.host, request.key, answer.denied)
                return answer.denied
        if answer.as_sent:
            self._warn_public(answer.name)
        return Granted(answer.name, request)

    def _warn_public(self, name: str) -> None:
        if name in self._warned:
            return
        if len(self._warned) >= MAX_WARNED_NAMES:
            self._warned.clear()
        self._warned.add(name)
        self._log.warning(
            "on_publish answered 2xx: publishing under the stream name as sent, %s, which is now "
            "public (API, pages, HLS path and logs show it in full); if stream names are keys, "
            "answer 3xx with Location: <public name> to keep them private",
            name,
        )

    async def went_live(self, lease: Lease, grant: Request) -> Denied | None:
        self._requests[lease] = grant
        return None

    async def ended(self, lease: Lease) -> None:
        request = self._requests.pop(lease, None)
        if request is None:
            return
        task = asyncio.create_task(
            self._client.publish_done(request.attempt, request.key, request.query, lease.name)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def channel(self, name: str, live: Lease | None) -> Channel | None:
        """Only live names are known here (the endpoint has no channel list)."""
        if live is None or not valid_path_name(name):
            return None
        return Channel(name, True, live.since)


PLAY_FIELDS = ("app", "flashver", "swfurl", "tcurl", "pageurl", "addr", "clientid", "call",
               "name", "start", "duration", "reset")  # fmt: skip
PLAY_UNAVAILABLE = Denied(PLAY_FAILED, "authorization temporarily unavailable")


def play_fields(attempt: PlayAttempt, call: str) -> list[tuple[str, str]]:
    """on_play's POST fields in nginx-rtmp's order (start and duration as the unsigned 32-bit
    integers nginx-rtmp prints), then the play query's own arguments."""
    fields = [
        ("app", attempt.app),
        ("flashver", attempt.flashver),
        ("swfurl", attempt.swfurl),
        ("tcurl", attempt.tcurl),
        ("pageurl", attempt.pageurl),
        ("addr", client_host(attempt.addr)),
        ("clientid", attempt.clientid),
        ("call", call),
        ("name", attempt.name),
        ("start", str(int(attempt.start) & 0xFFFFFFFF)),
        ("duration", str(int(attempt.duration) & 0xFFFFFFFF)),
        ("reset", "1" if attempt.reset else "0"),
    ]
    pairs = parse_qsl(attempt.query.lstrip("?")[:MAX_QUERY_CHARS], keep_blank_values=True)
    fields.extend((k, v) for k, v in pairs[:MAX_QUERY_ARGS] if k not in PLAY_FIELDS)
    return fields


class PlayCallbacks:
    """Asks on_play whether a player may play, and tells on_play_done when it stopped."""

    def __init__(
        self, on_play: str, on_play_done: str | None, timeout: float, log: logging.Logger
    ) -> None:
        self.on_play = _check_url(on_play)
        self.on_play_done = _check_url(on_play_done) if on_play_done else None
        self.timeout = timeout
        self._log = log
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))

    async def close(self) -> None:
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=self.timeout)
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def _post(self, url: str, fields: list[tuple[str, str]]) -> tuple[int, str | None]:
        if self._session is None:
            raise RuntimeError("PlayCallbacks.start() was not called")
        async with self._session.post(
            url, data=urlencode(fields).encode(), headers={"Content-Type": FORM},
            allow_redirects=False,
        ) as response:  # fmt: skip
            return response.status, response.headers.get("Location")

    async def play(self, attempt: PlayAttempt) -> str | Denied:
        """The public name to play, or why not."""
        try:
            status, location = await self._post(self.on_play, play_fields(attempt, "play"))
        except TimeoutError:
            self._log.warning("on_play gave no answer within %g s", self.timeout)
            return PLAY_UNAVAILABLE
        except aiohttp.ClientError as exc:
            self._log.warning("on_play failed: %s", type(exc).__name__)
            return PLAY_UNAVAILABLE
        if 200 <= status < 300:
            return attempt.name
        if 300 <= status < 400:
            name = redirect_name(location or "")
            if name is None:
                self._log.warning("on_play redirect is not a valid public name")
                return Denied(PLAY_FAILED, "invalid redirect")
            return name
        if status == 404:
            return Denied(PLAY_NOT_FOUND, "no such stream")
        if 400 <= status < 500:
            return Denied(PLAY_FAILED, f"play refused (HTTP {status})")
        self._log.warning("on_play answered HTTP %d", status)
        return PLAY_UNAVAILABLE

    def play_done(self, attempt: PlayAttempt) -> None:
        """Tell on_play_done (with the name as asked), in the background."""
        if self.on_play_done is None or self._session is None:
            return
        task = asyncio.create_task(self._play_done(self.on_play_done, attempt))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _play_done(self, url: str, attempt: PlayAttempt) -> None:
        try:
            await self._post(url, play_fields(attempt, "play_done"))
        except TimeoutError:
            self._log.warning("on_play_done: no answer within %g s", self.timeout)
        except aiohttp.ClientError as exc:
            self._log.warning("on_play_done failed: %s", type(exc).__name__)
