"""Dashboard sessions: a random id in an HttpOnly, SameSite=Strict cookie, held in memory.

The cookie carries no token, only a 256-bit id naming a session here; every session has its
own CSRF token, which the dashboard's page hands its script and which every state-changing
request made with the cookie must echo in `X-CSRF-Token` (forms: a `csrf` field). Sessions end
after `IDLE` seconds unused, on sign-out, on restart, and when their API token is removed.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from .admin import Principal

COOKIE = "rtmpd_admin"
#: Seconds a session lasts without a request.
IDLE = 8 * 3600.0
#: Sessions kept at most; the least recently used go first.
MAX_SESSIONS = 1000


@dataclass(slots=True)
class Session:
    principal: Principal
    csrf: str
    last_seen: float


class Sessions:
    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def open(self, principal: Principal) -> tuple[str, Session]:
        """A new session for `principal`: its id (the cookie's value) and the session."""
        sid = secrets.token_urlsafe(32)
        session = Session(principal, secrets.token_urlsafe(32), self._clock())
        self._sessions[sid] = session
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
        return sid, session

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        session = self._sessions.get(sid)
        if session is None:
            return None
        now = self._clock()
        if now - session.last_seen > IDLE:
            del self._sessions[sid]
            return None
        session.last_seen = now
        self._sessions.move_to_end(sid)
        return session

    def close(self, sid: str | None) -> None:
        if sid:
            self._sessions.pop(sid, None)


def csrf_ok(session: Session, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(session.csrf.encode(), given.encode())
