"""Managing accounts: what `rtmpd users`, `rtmpd tokens` and the admin API do, in one place.

The command line (its own process, its own `Store`) and the running server's admin API (the
server's `Store`, so the revocation watcher sees the change on its next poll) call the same
methods; a ban, a removal or a key rotation made either way cuts a live publish the same way,
and writes the same account events (the store's trigger) for the webhooks.

API tokens are checked here too, under the same kind of per-address limit as stream keys: after
`max_failures` unknown tokens within `failure_window` seconds, an address is refused without a
lookup for `backoff` seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from . import destinations, keys
from .limiter import AttemptGuard, FailureLimiter, client_host
from .sqlstore import (
    AccountEvent,
    ApiToken,
    Destination,
    InvalidName,
    SqlStore,
    UnknownUser,
    User,
)

#: Seconds between two writes of a token's last-used time (not one write per request).
TOKEN_USED_EVERY = 60.0


@dataclass(frozen=True, slots=True)
class NewKey:
    """A user and the stream key just made for them: shown once, never stored."""

    user: User
    key: str = field(repr=False)


class TokenRefused(Enum):
    INVALID = "invalid token"
    RATE_LIMITED = "too many failed attempts"


class Accounts:
    """Users, their keys and API tokens, over one open `Store`. Failures raise `StoreError`
    subclasses: `UnknownUser`, `NameTaken`, `InvalidName`, `StoreBusy`."""

    def __init__(
        self,
        store: SqlStore,
        *,
        limiter: FailureLimiter | None = None,
        clock: Callable[[], float] = time.time,
        log: logging.Logger | None = None,
    ) -> None:
        self.store = store
        self._clock = clock
        self._log = log or logging.getLogger("rtmpd.auth")
        self._guard = AttemptGuard(limiter or FailureLimiter(5, 60.0, 60.0), self._log)

    # -- users ------------------------------------------------------------------------------

    async def add_user(self, name: str) -> NewKey:
        key = await self.store.add_user(name)
        return NewKey(await self.user(name), key)

    async def users(self) -> list[User]:
        return await self.store.list_users()

    async def user(self, name: str) -> User:
        user = await self.store.get_user(name)
        if user is None:
            raise UnknownUser(f"no user named {name!r}")
        return user

    async def ban(self, name: str) -> tuple[User, bool]:
        """Set the user inactive (a live publish is cut); whether that changed anything."""
        changed = await self.store.ban(name)
        return await self.user(name), changed

    async def unban(self, name: str) -> tuple[User, bool]:
        changed = await self.store.unban(name)
        return await self.user(name), changed

    async def remove(self, name: str) -> None:
        """Delete the user (a live publish is cut)."""
        await self.store.remove(name)

    async def rotate_key(self, name: str) -> NewKey:
        """A new key; the old one stops working (a live publish with it is cut)."""
        key = await self.store.rotate_key(name)
        return NewKey(await self.user(name), key)

    async def take_events(self) -> list[AccountEvent]:
        """Account events written since the last call (users banned, by anyone)."""
        return await self.store.take_events()

    # -- push destinations ------------------------------------------------------------------

    async def add_destination(self, name: str, url: str) -> Destination:
        """A push destination for `name`'s broadcasts (from their next one on). The URL holds
        the other service's key: it is checked, stored, and from now on only shown redacted.
        InvalidName (with a message that never holds the key) when it is not usable."""
        try:
            destinations.parse_url(url)
        except destinations.InvalidDestination as exc:
            raise InvalidName(str(exc)) from None
        return await self.store.add_destination(name, url.strip())

    async def destinations(self, name: str) -> list[Destination]:
        return await self.store.destinations(name)

    async def remove_destination(self, name: str, destination_id: int) -> None:
        await self.store.remove_destination(name, destination_id)

    # -- API tokens -------------------------------------------------------------------------

    async def add_token(self, name: str) -> str:
        """A new API token called `name`: shown once, stored as a digest."""
        return await self.store.add_token(name)

    async def tokens(self) -> list[ApiToken]:
        return await self.store.list_tokens()

    async def remove_token(self, name: str) -> None:
        await self.store.remove_token(name)

    async def check_token(self, token: str, addr: str) -> ApiToken | TokenRefused:
        """The token's record if `token` is a current API token. Unknown tokens count against
        the address as failed key attempts do; a blocked address is refused unlooked-up."""
        host = client_host(addr)
        guard = self._guard
        if guard.blocked(host):
            return TokenRefused.RATE_LIMITED
        async with guard.turn(host):
            if guard.blocked(host):
                return TokenRefused.RATE_LIMITED
            found = None
            if token and len(token) <= keys.MAX_KEY_CHARS:
                found = await self.store.find_token(token)
            if found is None:
                guard.failed(host, f"API request from {host} refused: unknown token")
                return TokenRefused.INVALID
        now = self._clock()
        if found.last_used is None or now - found.last_used >= TOKEN_USED_EVERY:
            await self.store.token_used(found.token_id, now)
        return found

    async def token_valid(self, token_id: int) -> bool:
        """Whether the token a session was opened with still exists (removal ends sessions)."""
        return await self.store.token_exists(token_id)
