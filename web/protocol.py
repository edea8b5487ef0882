"""aiohttp's HTTP protocol as rtmpd runs it: what it says about itself, and what it logs.

- `Server: rtmpd`, never the Python and aiohttp versions (nginx-rtmp's reference says `nginx`):
  the app sets it on every routed response; `RequestHandler` sets it on the 400 aiohttp answers
  itself to a request it cannot parse (no app code runs for those).
- The log must not be an amplifier. aiohttp reports a malformed request, and a client that hung
  up while its response was being written, with `logger.exception` (ERROR and a traceback).
  Both are routine on a public port, so `ServerLog`, the logger aiohttp is given, counts them in
  /metrics and writes at most one short line per `Throttle.every` seconds saying how many;
  anything else (a bug in a handler) keeps its traceback.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from aiohttp import hdrs, web
from aiohttp.http import HttpProcessingError

from rtmpd.proxyproto import plain_host

from .metrics import Metrics

SERVER = "rtmpd"
#: At most one line per this many seconds for each kind of routine event (it says how many).
LOG_EVERY = 10.0


class Throttle:
    """Logs one kind of routine event at most once per `every` seconds; the line that is written
    says how many were left out since the previous one."""

    __slots__ = ("_log", "_level", "_noun", "_every", "_clock", "_logged_at", "_unlogged")

    def __init__(
        self,
        log: logging.Logger,
        level: int,
        noun: str,
        *,
        every: float = LOG_EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = log
        self._level = level
        self._noun = noun  # "refused" -> " (3 more refused since the last report)"
        self._every = every
        self._clock = clock
        self._logged_at = -every
        self._unlogged = 0

    def __call__(self, message: str, *args: object) -> None:
        self._unlogged += 1
        now = self._clock()
        if now - self._logged_at < self._every:
            return
        more = self._unlogged - 1
        extra = f" ({more} more {self._noun} since the last report)" if more else ""
        self._log.log(self._level, message + "%s", *args, extra)
        self._logged_at = now
        self._unlogged = 0


def routine_kind(exc: BaseException | None) -> str | None:
    """'malformed' or 'disconnected' for what clients do every day; None for anything else."""
    if isinstance(exc, HttpProcessingError):
        return "malformed"
    if isinstance(exc, ConnectionError):
        return "disconnected"
    return None


class ServerLog(logging.LoggerAdapter[logging.Logger]):
    """The `logger` aiohttp's RequestHandler reports through (AppRunner(..., logger=...))."""

    def __init__(
        self,
        logger: logging.Logger,
        metrics: Metrics,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(logger, {})
        self._metrics = metrics
        self._lines = {
            "malformed": Throttle(logger, logging.INFO, "malformed", clock=clock),
            "disconnected": Throttle(logger, logging.DEBUG, "gone", clock=clock),
        }

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        exc = _exception(kwargs.get("exc_info"))
        kind = routine_kind(exc)
        if kind is None:
            super().log(level, msg, *args, **kwargs)
            return
        self._metrics.http_client_error(kind)
        what = "malformed request" if kind == "malformed" else "client went away mid-response"
        # Only the exception's class: its message may quote the raw request line.
        self._lines[kind]("HTTP: %s (%s): %s", what, type(exc).__name__, _text(msg, args))


def _exception(exc_info: object) -> BaseException | None:
    if isinstance(exc_info, BaseException):
        return exc_info
    if isinstance(exc_info, tuple) and len(exc_info) == 3:
        value = exc_info[1]
        return value if isinstance(value, BaseException) else None
    return None


def _text(msg: object, args: tuple[object, ...]) -> str:
    """aiohttp's own message ("Error handling request from 127.0.0.1"), cut short."""
    try:
        text = str(msg) % args if args else str(msg)
    except (TypeError, ValueError):
        text = str(msg)
    return text[:120]


class RequestHandler(web.RequestHandler):
    """aiohttp's protocol; its own error answers (400 to what it cannot parse) say `rtmpd` too,
    and an IPv4 client of a dual-stack socket is its IPv4 address (request.remote: the access
    log, viewer counts)."""

    __slots__ = ("forwarded",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: The client's (address, port) from a trusted proxy's PROXY header (web/guard.py).
        self.forwarded: tuple[str, int] | None = None

    @property
    def peername(self) -> Any:
        if self.forwarded is not None:
            return self.forwarded
        peer = super().peername
        if isinstance(peer, tuple) and peer and isinstance(peer[0], str):
            host = plain_host(peer[0])
            if host != peer[0]:
                return (host, peer[1])
        return peer

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        response = super().handle_error(request, status, exc, message)
        response.headers[hdrs.SERVER] = SERVER
        return response


class Runner(web.AppRunner):
    """An AppRunner that keeps the protocol options it was given, so that `GuardedSite` can
    make rtmpd's `RequestHandler` with them."""

    def __init__(self, app: web.Application, **handler_args: Any) -> None:
        super().__init__(app, **handler_args)
        self.handler_args = {k: v for k, v in handler_args.items() if k not in _RUNNER_ONLY}


_RUNNER_ONLY = frozenset({"handle_signals", "shutdown_timeout"})


async def server_header(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: every routed response says `rtmpd` and nothing more."""
    response.headers[hdrs.SERVER] = SERVER
