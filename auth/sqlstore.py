"""What both user databases share: the accounts, keys, live state, API tokens and the SQL
that reads and writes them, over two primitives each backend gives (`_query`, `_exec`).

`rtmpd.auth.store.Store` runs it on SQLite (one file, one machine), `rtmpd.auth.pgstore.PgStore`
on PostgreSQL (several nodes). The SQL is written once with `?` placeholders; the tables are the
same on both (integers 0/1 for flags, floats for Unix times, bytes for digests), so `rtmpd users`
and the server behave the same whichever holds them.

Live state is a lease: the node (or worker) that holds a publish writes its name, and, once the
stream has a playlist, the HTTP base URL that serves it; it renews `live_expires` while it
runs. A record past its expiry belongs to a node that died: any node clears it, so the channel
does not stay live and its streamer can publish again elsewhere.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

from . import keys
from .names import public_name_problem


class StoreError(Exception):
    """A store operation failed; the message says why and never holds a key."""


class StoreBusy(StoreError):
    """Another writer held the database longer than the busy timeout."""


class SchemaTooNew(StoreError):
    """The database was migrated by a newer rtmpd."""


class UnknownUser(StoreError, LookupError):
    pass


class NameTaken(StoreError):
    pass


class InvalidName(StoreError, ValueError):
    pass


class UnknownDestination(StoreError, LookupError):
    pass


class Duplicate(Exception):
    """A write hit a UNIQUE constraint (backends raise it; the methods here handle it)."""


#: API token names: what `rtmpd tokens list` shows; one safe word.
TOKEN_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@dataclass(frozen=True, slots=True)
class User:
    name: str
    active: bool
    created: float
    live_since: float | None
    peer: str | None
    last_publish_end: float | None


@dataclass(frozen=True, slots=True)
class KeyOwner:
    """The user a key belongs to, as the publish decision needs it."""

    user_id: int
    name: str
    active: bool
    key_digest: bytes


@dataclass(frozen=True, slots=True)
class UserState:
    """What the revocation watcher re-checks for a live lease: the user, the key, and whose
    publish the live record belongs to now (another token: taken over elsewhere)."""

    active: bool
    key_digest: bytes
    live_token: str | None = None


@dataclass(frozen=True, slots=True)
class LiveRecord:
    """A live publish as the database knows it, whichever node holds it; `url` is the HTTP
    base that serves its playlist (None until it has one)."""

    name: str
    since: float
    node: str
    url: str | None
    #: What the holding node says of the stream (JSON: codecs, size), None until it plays.
    details: str | None = None


@dataclass(frozen=True, slots=True)
class ApiToken:
    """An API token as stored: a name and its digest's row (the token itself is never kept)."""

    token_id: int
    name: str
    created: float
    last_used: float | None


@dataclass(frozen=True, slots=True)
class Destination:
    """A push destination of a user, as stored: `url` holds the other service's key, so it
    is for connecting only (shown as `rtmpd.auth.destinations.redact(url)`)."""

    destination_id: int
    user: str
    url: str = field(repr=False)
    created: float = 0.0


@dataclass(frozen=True, slots=True)
class AccountEvent:
    """A change to an account that the server reports (webhooks): `kind` is "user.banned"."""

    event_id: int
    kind: str
    name: str
    at: float


_USER_COLUMNS = "name, active, created, live_since, peer, last_publish_end"
#: Live state columns cleared together when a publish ends (or its lease expires).
_CLEAR_LIVE = (
    "live_since = NULL, peer = NULL, live_token = NULL, live_node = NULL, "
    "live_url = NULL, live_expires = NULL, live_details = NULL"
)


def _user(row: Sequence[Any]) -> User:
    return User(row[0], bool(row[1]), row[2], row[3], row[4], row[5])


class SqlStore:
    """Accounts, keys, live state and tokens over `_query` and `_exec`."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._changes = 0  # commits of user data made through this store

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def open(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def _query(self, sql: str, params: Iterable[Any] = ()) -> list[Sequence[Any]]:
        """One read; rows as sequences."""
        raise NotImplementedError

    async def _exec(self, sql: str, params: Iterable[Any] = ()) -> int:
        """One write statement; the rows it changed. `Duplicate` on a UNIQUE violation."""
        raise NotImplementedError

    async def _exec_rows(self, sql: str, params: Iterable[Any] = ()) -> list[Sequence[Any]]:
        """One write statement with RETURNING; the rows it returned."""
        raise NotImplementedError

    @property
    def where(self) -> str:
        """The database as messages name it ("database /path", never a password)."""
        raise NotImplementedError

    def readable_by_others(self) -> bool:
        """Whether other local users can read the data (a file's mode; never for a server)."""
        return False

    async def change_marker(self) -> tuple[int, int]:
        """A value that changes whenever anyone commits user data."""
        raise NotImplementedError

    async def take_events(self, limit: int = 100) -> list[AccountEvent]:
        raise NotImplementedError

    # -- users ------------------------------------------------------------------------------

    async def add_user(self, name: str) -> str:
        """Create an active user; returns the new key (shown once, stored as a digest)."""
        problem = public_name_problem(name)
        if problem:
            raise InvalidName(problem)
        for _ in range(3):
            key = keys.new_key()
            try:
                await self._exec(
                    "INSERT INTO users (name, active, created, key_digest) VALUES (?, 1, ?, ?)",
                    (name, self._clock(), keys.key_digest(key)),
                )
            except Duplicate as exc:
                if await self.get_user(name) is not None:
                    raise NameTaken(f"the name {name!r} is taken") from exc
                continue  # a digest collision: practically impossible, draw again
            self._changes += 1
            return key
        raise StoreError("could not make a unique stream key")

    async def get_user(self, name: str) -> User | None:
        rows = await self._query(f"SELECT {_USER_COLUMNS} FROM users WHERE name = ?", (name,))
        return _user(rows[0]) if rows else None

    async def list_users(self) -> list[User]:
        rows = await self._query(f"SELECT {_USER_COLUMNS} FROM users ORDER BY name")
        return [_user(row) for row in rows]

    async def _require_user(self, name: str) -> None:
        if await self.get_user(name) is None:
            raise UnknownUser(f"no user named {name!r}")

    async def _set_active(self, name: str, active: bool) -> bool:
        changed = await self._exec(
            "UPDATE users SET active = ? WHERE name = ? AND active = ?",
            (int(active), name, int(not active)),
        )
        if not changed:
            await self._require_user(name)
            return False
        self._changes += 1
        return True

    async def ban(self, name: str) -> bool:
        """Set the user inactive; False if already banned. A live publish is cut."""
        return await self._set_active(name, False)

    async def unban(self, name: str) -> bool:
        return await self._set_active(name, True)

    async def remove(self, name: str) -> None:
        if not await self._exec("DELETE FROM users WHERE name = ?", (name,)):
            raise UnknownUser(f"no user named {name!r}")
        self._changes += 1

    async def rotate_key(self, name: str) -> str:
        """Give the user a new key; the old one stops working (and its live publish is cut)."""
        for _ in range(3):
            key = keys.new_key()
            try:
                changed = await self._exec(
                    "UPDATE users SET key_digest = ? WHERE name = ?", (keys.key_digest(key), name)
                )
            except Duplicate:
                continue
            if not changed:
                raise UnknownUser(f"no user named {name!r}")
            self._changes += 1
            return key
        raise StoreError("could not make a unique stream key")

    # -- keys and live state ----------------------------------------------------------------

    async def find_by_key(self, key: str) -> KeyOwner | None:
        digest = keys.key_digest(key)
        rows = await self._query(
            "SELECT id, name, active, key_digest FROM users WHERE key_digest = ?", (digest,)
        )
        if not rows or not keys.digests_equal(digest, bytes(rows[0][3])):
            return None
        row = rows[0]
        return KeyOwner(int(row[0]), row[1], bool(row[2]), bytes(row[3]))

    async def set_live(
        self, user_id: int, since: float, peer: str, token: str, *, node: str = "",
        expires: float | None = None, replace: bool = True,
    ) -> bool:  # fmt: skip
        """Record a publish as live under `token`, held by `node` until `expires` (renewed by
        `renew_live`). With `replace` false, only if no unexpired record is there (another
        node's publish of the same user: "already publishing"); whether it was written."""
        # A takeover on the same node keeps the URL its viewers are sent to; elsewhere the
        # URL waits for the new node's first segment.
        sets = "live_since = ?, peer = ?, live_token = ?, live_url = CASE WHEN live_node = ? " \
            "THEN live_url END, live_details = CASE WHEN live_node = ? THEN live_details END, " \
            "live_node = ?, live_expires = ?"  # fmt: skip
        params: list[Any] = [since, peer, token, node, node, node or None, expires, user_id]
        where = "id = ?"
        if not replace:
            where += " AND (live_token IS NULL OR live_expires < ?)"
            params.append(self._clock())
        changed = await self._exec(f"UPDATE users SET {sets} WHERE {where}", params)
        return bool(changed)

    async def mark_playing(
        self, user_id: int, token: str, url: str, details: str | None = None
    ) -> bool:
        """The publish under `token` has a playlist, served under the HTTP base `url`;
        `details` is what the node says of it to the others (opaque here)."""
        return bool(await self._exec(
            "UPDATE users SET live_url = ?, live_details = ? WHERE id = ? AND live_token = ?",
            (url, details, user_id, token),
        ))  # fmt: skip

    async def renew_live(self, node: str, expires: float) -> int:
        """Extend the lease of every live record `node` holds."""
        return await self._exec(
            "UPDATE users SET live_expires = ? WHERE live_node = ? AND live_token IS NOT NULL",
            (expires, node),
        )

    async def clear_live(self, user_id: int, token: str, ended: float) -> bool:
        """Clear live state if `token` still owns it (a taken-over publish owns nothing)."""
        return bool(
            await self._exec(
                f"UPDATE users SET {_CLEAR_LIVE}, last_publish_end = ? "
                "WHERE id = ? AND live_token = ?",
                (ended, user_id, token),
            )
        )

    async def clear_all_live(self) -> int:
        """Forget every live flag: no publisher survives a restart."""
        return await self._exec(
            f"UPDATE users SET {_CLEAR_LIVE} WHERE live_since IS NOT NULL OR live_token IS NOT NULL"
        )

    async def take_node_live(self, node: str) -> list[str]:
        """Forget the live records of `node` (it restarted, or it was an rtmpd worker that
        died: none of its publishers survived), and those no node claims (written before
        records named their node); the names whose records were cleared. One statement, so
        of two processes clearing the same node, each name goes to one of them, and a record
        another node took over meanwhile is not touched."""
        rows = await self._exec_rows(
            f"UPDATE users SET {_CLEAR_LIVE} WHERE (live_since IS NOT NULL OR "
            "live_token IS NOT NULL) AND (live_node = ? OR live_node IS NULL) RETURNING name",
            (node,),
        )
        if rows:
            self._changes += 1
        return sorted(str(r[0]) for r in rows)

    async def clear_expired(self, now: float) -> int:
        """Forget live records whose lease ran out: their node died or lost the database."""
        return await self._exec(
            f"UPDATE users SET {_CLEAR_LIVE}, last_publish_end = live_expires "
            "WHERE live_token IS NOT NULL AND live_expires < ?",
            (now,),
        )

    async def live_records(self, now: float) -> list[LiveRecord]:
        """Every unexpired live record of an active user, on any node."""
        rows = await self._query(
            "SELECT name, live_since, live_node, live_url, live_details FROM users WHERE "
            "live_token IS NOT NULL AND active = 1 AND (live_expires IS NULL OR "
            "live_expires >= ?) ORDER BY name",
            (now,),
        )
        return [LiveRecord(r[0], float(r[1]), r[2] or "", r[3], r[4]) for r in rows]

    async def user_states(self, user_ids: Sequence[int]) -> dict[int, UserState]:
        states: dict[int, UserState] = {}
        for start in range(0, len(user_ids), 500):
            chunk = list(user_ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            rows = await self._query(
                f"SELECT id, active, key_digest, live_token FROM users WHERE id IN ({marks})",
                chunk,
            )
            for row in rows:
                states[int(row[0])] = UserState(bool(row[1]), bytes(row[2]), row[3])
        return states

    # -- API tokens -------------------------------------------------------------------------

    async def add_token(self, name: str) -> str:
        """Create an API token called `name`; returns the token (shown once, stored as a
        digest)."""
        if not TOKEN_NAME.fullmatch(name):
            raise InvalidName("a token name is 1 to 64 characters of A-Z, a-z, 0-9, _ . -")
        for _ in range(3):
            token = keys.new_token()
            try:
                await self._exec(
                    "INSERT INTO api_tokens (name, created, digest) VALUES (?, ?, ?)",
                    (name, self._clock(), keys.key_digest(token)),
                )
            except Duplicate as exc:
                if any(t.name == name for t in await self.list_tokens()):
                    raise NameTaken(f"a token named {name!r} exists") from exc
                continue
            return token
        raise StoreError("could not make a unique token")

    async def list_tokens(self) -> list[ApiToken]:
        rows = await self._query(
            "SELECT id, name, created, last_used FROM api_tokens ORDER BY name"
        )
        return [ApiToken(int(r[0]), r[1], r[2], r[3]) for r in rows]

    async def remove_token(self, name: str) -> None:
        if not await self._exec("DELETE FROM api_tokens WHERE name = ?", (name,)):
            raise UnknownUser(f"no token named {name!r}")

    async def find_token(self, token: str) -> ApiToken | None:
        digest = keys.key_digest(token)
        rows = await self._query(
            "SELECT id, name, created, last_used, digest FROM api_tokens WHERE digest = ?",
            (digest,),
        )
        if not rows or not keys.digests_equal(digest, bytes(rows[0][4])):
            return None
        row = rows[0]
        return ApiToken(int(row[0]), row[1], row[2], row[3])

    async def token_exists(self, token_id: int) -> bool:
        return bool(await self._query("SELECT 1 FROM api_tokens WHERE id = ?", (token_id,)))

    async def token_used(self, token_id: int, when: float) -> None:
        await self._exec("UPDATE api_tokens SET last_used = ? WHERE id = ?", (when, token_id))

    # -- push destinations ------------------------------------------------------------------

    async def add_destination(self, name: str, url: str) -> Destination:
        """Give user `name` a push destination (the URL checked by the caller)."""
        now = self._clock()
        changed = await self._exec(
            "INSERT INTO destinations (user_id, url, created) "
            "SELECT id, ?, ? FROM users WHERE name = ?",
            (url, now, name),
        )
        if not changed:
            raise UnknownUser(f"no user named {name!r}")
        rows = await self._query(
            "SELECT d.id FROM destinations d JOIN users u ON u.id = d.user_id "
            "WHERE u.name = ? AND d.url = ? AND d.created = ? ORDER BY d.id DESC LIMIT 1",
            (name, url, now),
        )
        return Destination(int(rows[0][0]), name, url, now)

    async def destinations(self, name: str) -> list[Destination]:
        """User `name`'s destinations, oldest first (UnknownUser if there is no such user)."""
        await self._require_user(name)
        rows = await self._query(
            "SELECT d.id, d.url, d.created FROM destinations d JOIN users u ON u.id = d.user_id "
            "WHERE u.name = ? ORDER BY d.id", (name,),
        )  # fmt: skip
        return [Destination(int(r[0]), name, r[1], r[2]) for r in rows]

    async def remove_destination(self, name: str, destination_id: int) -> None:
        removed = await self._exec(
            "DELETE FROM destinations WHERE id = ? AND user_id = "
            "(SELECT id FROM users WHERE name = ?)", (destination_id, name),
        )  # fmt: skip
        if not removed:
            await self._require_user(name)
            raise UnknownDestination(f"{name} has no destination {destination_id}")
