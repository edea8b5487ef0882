"""The web layer's `Admin` (rtmpd.web.admin), built from auth's `Accounts` and the live
publishes: lives in the composition root so that web and auth stay unaware of each other.

Users go through `Accounts` on the server's own store, the same code path as `rtmpd users`:
the revocation watcher sees a ban, removal or new key on its next poll and cuts the publish.
auth's failures become the web layer's errors (and so HTTP statuses) here.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterable

from rtmpd.auth.accounts import Accounts, TokenRefused
from rtmpd.auth.destinations import redact
from rtmpd.auth.names import PUBLIC_NAME
from rtmpd.auth.sqlstore import (
    Destination,
    InvalidName,
    NameTaken,
    StoreError,
    UnknownDestination,
    UnknownUser,
    User,
)
from rtmpd.web.admin import (
    Conflict,
    DestinationInfo,
    HealthSample,
    Invalid,
    NewKey,
    NotFound,
    Principal,
    PublishInfo,
    PushInfo,
    Refused,
    Unavailable,
    UserInfo,
)

from .publish import Publish
from .push import PushStatus

KICKED = "kicked by an admin"


@contextlib.asynccontextmanager
async def _answers(name: str = "") -> AsyncIterator[None]:
    """auth's errors in the web layer's words."""
    try:
        yield
    except (UnknownUser, UnknownDestination) as exc:
        raise NotFound(str(exc)) from None
    except NameTaken as exc:
        raise Conflict(str(exc)) from None
    except InvalidName as exc:
        if PUBLIC_NAME.fullmatch(name):  # well formed, so reserved: taken by the site itself
            raise Conflict(str(exc)) from None
        raise Invalid(str(exc)) from None
    except StoreError as exc:
        raise Unavailable(f"the database is unavailable, try again: {type(exc).__name__}") from None


def _user(user: User) -> UserInfo:
    return UserInfo(user.name, user.active, user.created, user.live_since, user.last_publish_end)


class AdminService:
    """Implements `rtmpd.web.admin.Admin`."""

    def __init__(
        self,
        accounts: Accounts,
        publishes: Callable[[], Iterable[Publish]],
        fragment: float,
        *,
        push_status: Callable[[str], list[PushStatus]] = lambda name: [],
    ) -> None:
        self._accounts = accounts
        self._publishes = publishes
        self._fragment = fragment
        self._push_status = push_status

    async def authenticate(self, token: str, addr: str) -> Principal | Refused:
        async with _answers():
            found = await self._accounts.check_token(token, addr)
        if found is TokenRefused.RATE_LIMITED:
            return Refused.RATE_LIMITED
        if isinstance(found, TokenRefused):
            return Refused.INVALID
        return Principal(found.name, found.token_id)

    async def still_valid(self, principal: Principal) -> bool:
        async with _answers():
            return await self._accounts.token_valid(principal.token_id)

    async def users(self) -> list[UserInfo]:
        async with _answers():
            return [_user(u) for u in await self._accounts.users()]

    async def user(self, name: str) -> UserInfo:
        async with _answers(name):
            return _user(await self._accounts.user(name))

    async def create_user(self, name: str) -> NewKey:
        async with _answers(name):
            made = await self._accounts.add_user(name)
        return NewKey(_user(made.user), made.key)

    async def ban(self, name: str) -> UserInfo:
        async with _answers(name):
            user, _ = await self._accounts.ban(name)
        return _user(user)

    async def unban(self, name: str) -> UserInfo:
        async with _answers(name):
            user, _ = await self._accounts.unban(name)
        return _user(user)

    async def remove(self, name: str) -> None:
        async with _answers(name):
            await self._accounts.remove(name)

    async def rotate_key(self, name: str) -> NewKey:
        async with _answers(name):
            made = await self._accounts.rotate_key(name)
        return NewKey(_user(made.user), made.key)

    def _live(self) -> dict[str, Publish]:
        """The newest publish per name (a taken-over one may linger until its end)."""
        newest: dict[str, Publish] = {}
        for publish in self._publishes():
            held = newest.get(publish.name)
            if held is None or publish.lease.since >= held.lease.since:
                newest[publish.name] = publish
        return dict(sorted(newest.items()))

    def publishes(self) -> list[PublishInfo]:
        return [
            PublishInfo(
                name=p.name,
                since=p.lease.since,
                peer=p.lease.peer,
                bytes_received=p.publisher.bytes_received,
                latest=p.health.latest(),
                segment_duration=p.health.segment_duration,
                fragment=self._fragment,
                warnings=tuple(p.health.warnings()),
                destinations=tuple(_push(s) for s in self._push_status(p.name)),
            )
            for p in self._live().values()
        ]

    async def destinations(self, name: str) -> list[DestinationInfo]:
        async with _answers(name):
            found = await self._accounts.destinations(name)
        return [self._destination(d) for d in found]

    async def add_destination(self, name: str, url: str) -> DestinationInfo:
        async with _answers():
            made = await self._accounts.add_destination(name, url)
        return self._destination(made)

    async def remove_destination(self, name: str, destination_id: int) -> None:
        async with _answers(name):
            await self._accounts.remove_destination(name, destination_id)

    def _destination(self, dest: Destination) -> DestinationInfo:
        live = next((_push(s) for s in self._push_status(dest.user)
                     if s.destination_id == dest.destination_id), None)  # fmt: skip
        return DestinationInfo(dest.destination_id, redact(dest.url), dest.created, live)

    def history(self, name: str) -> list[HealthSample] | None:
        publish = self._live().get(name)
        return None if publish is None else list(publish.health.samples)

    def kick(self, name: str) -> bool:
        publish = self._live().get(name)
        if publish is None:
            return False
        publish.publisher.close(KICKED)
        return True


def _push(status: PushStatus) -> PushInfo:
    return PushInfo(status.destination_id, status.url, status.connected, status.kbps,
                    status.dropped, status.last_error)  # fmt: skip
