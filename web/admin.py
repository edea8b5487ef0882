"""What the admin API and dashboard need, as a protocol the composition root implements.

rtmpd.web never imports auth: the composition root (rtmpd/admin.py) answers these calls from
`rtmpd.auth.Accounts` (users, keys, tokens: the same code path as `rtmpd users`), its live
publishes (kick, stats) and the health it samples once per second. Failures the caller can act
on are the `AdminError` subclasses below, each with its HTTP status.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol


class AdminError(Exception):
    """A request the admin API answers with `status` and `{"error": str(self)}`."""

    status = 400


class Invalid(AdminError):
    status = 400


class NotFound(AdminError):
    status = 404


class Conflict(AdminError):
    status = 409


class Unavailable(AdminError):
    status = 503


class Refused(Enum):
    """Why a token was not accepted; neither says whether any token exists."""

    INVALID = "invalid"
    RATE_LIMITED = "rate_limited"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the API token's name, and an id to re-check it by (removal ends
    dashboard sessions opened with it)."""

    name: str
    token_id: int


@dataclass(frozen=True, slots=True)
class UserInfo:
    """A streamer as the admin sees them; times are Unix timestamps."""

    name: str
    active: bool
    created: float
    live_since: float | None
    last_publish_end: float | None


@dataclass(frozen=True, slots=True)
class NewKey:
    """A user and the stream key just made for them: handed out once, in one response."""

    user: UserInfo
    key: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class HealthSample:
    """One second of a publish: ingest bitrate, frame rate, the latest keyframe interval and
    segment lag (None until known)."""

    t: float
    kbps: float
    fps: float
    keyframe_interval: float | None
    segment_lag: float | None


@dataclass(frozen=True, slots=True)
class PushInfo:
    """A push destination of a live broadcast, as it is doing now."""

    destination_id: int | None  # None: one of the configuration's [[push]]
    url: str  # redacted: the other service's key never leaves rtmpd
    connected: bool
    kbps: float
    dropped: int  # messages dropped on the way to a next keyframe (a slow destination)
    last_error: str | None


@dataclass(frozen=True, slots=True)
class DestinationInfo:
    """A user's push destination: its URL redacted, and its state while they broadcast."""

    destination_id: int
    url: str
    created: float
    live: PushInfo | None


@dataclass(frozen=True, slots=True)
class PublishInfo:
    """A live publish with its latest numbers and what its streamer could fix."""

    name: str
    since: float
    peer: str
    bytes_received: int
    latest: HealthSample | None
    segment_duration: float | None
    fragment: float  # the target segment duration ([hls] fragment)
    warnings: tuple[str, ...]
    destinations: tuple[PushInfo, ...] = ()


class Admin(Protocol):
    """Accounts and live publishes for the admin API. User methods raise `AdminError`s."""

    async def authenticate(self, token: str, addr: str) -> Principal | Refused:
        """The caller behind an API token; unknown tokens count against `addr`."""
        ...

    async def still_valid(self, principal: Principal) -> bool:
        """Whether the token behind a dashboard session still exists."""
        ...

    async def users(self) -> list[UserInfo]: ...

    async def user(self, name: str) -> UserInfo: ...

    async def create_user(self, name: str) -> NewKey: ...

    async def ban(self, name: str) -> UserInfo:
        """Also cuts the user's live publish (within the revocation watcher's poll)."""
        ...

    async def unban(self, name: str) -> UserInfo: ...

    async def remove(self, name: str) -> None: ...

    async def rotate_key(self, name: str) -> NewKey: ...

    async def destinations(self, name: str) -> list[DestinationInfo]: ...

    async def add_destination(self, name: str, url: str) -> DestinationInfo:
        """From the user's next broadcast on; the answer shows the URL redacted."""
        ...

    async def remove_destination(self, name: str, destination_id: int) -> None: ...

    def publishes(self) -> list[PublishInfo]:
        """Live publishes, by name; called on the event loop, must be quick."""
        ...

    def history(self, name: str) -> list[HealthSample] | None:
        """The last ten minutes of `name`'s live publish, oldest first; None if not live."""
        ...

    def kick(self, name: str) -> bool:
        """Disconnect `name`'s live publish (the streamer may reconnect: ban to keep them
        off); False if not live."""
        ...
