"""SQLite store: users, stream-key digests, live state, API token digests and account events.

Shared by the running server and `rtmpd users` in other processes: WAL mode (readers never
wait for the writer), a busy timeout (writers wait for each other), single-statement writes,
and forward migrations under BEGIN IMMEDIATE keyed by PRAGMA user_version. A lock held too
long becomes `StoreBusy`, never a crash.

Account events (a user banned) are written by a trigger in the same statement as the change,
whoever made it (the server, `rtmpd users` in another process, a sqlite3 shell): the server
drains them into webhooks (`take_events`).
Two connections, each with its own thread: reads (key lookups, pages, the revocation watcher)
never wait behind a write that waits for another process's lock. Writes take turns on the
other; while one waits for the lock, those behind it do not each wait their own busy timeout
in turn: when it gives up, they fail at once. N publishers facing a locked database wait one
busy timeout, not N.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosqlite

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


class UnknownDestination(StoreError, LookupError):
    pass


class InvalidName(StoreError, ValueError):
    pass


#: Unix time with fractions, in SQL (unixepoch('subsec') needs SQLite 3.42).
_NOW = "(julianday('now') - 2440587.5) * 86400.0"
#: API token names: what `rtmpd tokens list` shows; one safe word.
TOKEN_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")

# Each step moves the schema one version forward; never edit a released step, append one.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE users (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            active INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
            created REAL NOT NULL,
            key_digest BLOB NOT NULL UNIQUE CHECK (length(key_digest) = 32)
        )""",
    ),
    (
        "ALTER TABLE users ADD COLUMN live_since REAL",
        "ALTER TABLE users ADD COLUMN peer TEXT",
        "ALTER TABLE users ADD COLUMN live_token TEXT",
        "ALTER TABLE users ADD COLUMN last_publish_end REAL",
    ),
    (
        """CREATE TABLE api_tokens (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            created REAL NOT NULL,
            last_used REAL,
            digest BLOB NOT NULL UNIQUE CHECK (length(digest) = 32)
        )""",
        """CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,
            name TEXT NOT NULL,
            at REAL NOT NULL
        )""",
        f"""CREATE TRIGGER user_banned AFTER UPDATE OF active ON users
            WHEN OLD.active = 1 AND NEW.active = 0
            BEGIN
                INSERT INTO events (kind, name, at) VALUES ('user.banned', NEW.name, {_NOW});
            END""",
    ),
    (
        """CREATE TABLE destinations (
            id INTEGER PRIMARY KEY,
            user_id INTEGER NOT NULL,
            url TEXT NOT NULL,
            created REAL NOT NULL
        )""",
        "CREATE INDEX destinations_by_user ON destinations (user_id)",
        """CREATE TRIGGER user_removed AFTER DELETE ON users
            BEGIN
                DELETE FROM destinations WHERE user_id = OLD.id;
            END""",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


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
    """What the revocation watcher re-checks for a live lease."""

    active: bool
    key_digest: bytes


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


def _user(row: Sequence[Any]) -> User:
    return User(row[0], bool(row[1]), row[2], row[3], row[4], row[5])


def _is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    text = str(exc)
    return "locked" in text or "busy" in text


#: The database holds key digests and addresses: its owner's only. SQLite gives the -wal and
#: -shm files it makes the database file's mode.
DB_MODE = 0o600


def _probe(path: Path) -> None:
    """Create the file DB_MODE if it does not exist (whatever the umask), then open it."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, DB_MODE)
    except FileExistsError:
        pass
    else:
        try:
            os.fchmod(fd, DB_MODE)
        finally:
            os.close(fd)
    sqlite3.connect(path).close()


class Store:
    """Async access to one SQLite file. `open()` before use, `close()` after."""

    def __init__(
        self, path: Path, *, busy_timeout: float = 5.0, clock: Callable[[], float] = time.time
    ) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self._clock = clock
        self._conn: aiosqlite.Connection | None = None  # writes
        self._reader: aiosqlite.Connection | None = None
        self._writing = asyncio.Lock()  # one write at a time on _conn
        self._gave_up = 0  # writes that found the database locked for the whole busy timeout
        self._changes = 0  # commits of user data made through this store

    async def __aenter__(self) -> Store:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def open(self) -> None:
        if self._conn is not None:
            return
        try:
            # Probe with plain sqlite3 first: a failed aiosqlite.connect leaves its worker
            # thread reporting to an event loop that may be gone by then.
            await asyncio.to_thread(_probe, self.path)
            self._conn = await self._connect()
        except OSError as exc:
            raise StoreError(f"cannot open database {self.path}: {exc.strerror}") from exc
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open database {self.path}: {exc}") from exc
        try:
            await self._run(self._conn, "PRAGMA journal_mode = WAL")
            await self._run(self._conn, "PRAGMA synchronous = NORMAL")
            await self._migrate()
            try:
                self._reader = await self._connect()
            except sqlite3.Error as exc:
                raise StoreError(f"cannot open database {self.path}: {exc}") from exc
        except BaseException:
            await self.close()
            raise

    async def _connect(self) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(self.path, isolation_level=None, timeout=self.busy_timeout)
        try:
            await self._run(conn, f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        except BaseException:
            await conn.close()
            raise
        return conn

    async def close(self) -> None:
        conns, self._conn, self._reader = (self._reader, self._conn), None, None
        for conn in conns:
            if conn is not None:
                await conn.close()

    # -- plumbing ---------------------------------------------------------------------------

    def _error(self, exc: sqlite3.Error) -> StoreError:
        if _is_busy(exc):
            return self._busy()
        return StoreError(f"database {self.path}: {exc}")

    def _busy(self) -> StoreBusy:
        return StoreBusy(
            f"database {self.path} is locked by another writer "
            f"(gave up after {self.busy_timeout:g} s); try again"
        )

    def _connection(self, conn: aiosqlite.Connection | None) -> aiosqlite.Connection:
        if conn is None:
            raise StoreError(f"database {self.path} is not open")
        return conn

    async def _query(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        """A read, on the reading connection (the writing one until that is open)."""
        conn = self._connection(self._reader or self._conn)
        try:
            return list(await conn.execute_fetchall(sql, tuple(params)))
        except sqlite3.IntegrityError:
            raise
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    async def _exec(self, sql: str, params: Iterable[Any] = ()) -> int:
        """Run one write statement; the number of rows it changed. If the write ahead of this
        one gave up on another process's lock while this one waited for its turn, this one
        gives up too, at once: it would only wait out the same lock."""
        gave_up = self._gave_up
        async with self._writing:
            if self._gave_up != gave_up:
                raise self._busy()
            try:
                return await self._run(self._connection(self._conn), sql, params)
            except StoreBusy:
                self._gave_up += 1
                raise

    async def _run(self, conn: aiosqlite.Connection, sql: str, params: Iterable[Any] = ()) -> int:
        """One statement on `conn`; the number of rows it changed."""
        try:
            cursor = await conn.execute(sql, tuple(params))
            count = cursor.rowcount
            await cursor.close()
        except sqlite3.IntegrityError:
            raise
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        return count

    def readable_by_others(self) -> bool:
        """Whether the file lets group or others read it (a database made before rtmpd made
        it 0600, or loosened by hand)."""
        try:
            return bool(self.path.stat().st_mode & 0o077)
        except OSError:
            return False

    async def schema_version(self) -> int:
        return int((await self._query("PRAGMA user_version"))[0][0])

    async def _migrate(self) -> None:
        """At open, on the writing connection only (the reading one is not open yet)."""
        if await self.schema_version() == SCHEMA_VERSION:
            return
        conn = self._connection(self._conn)
        await self._run(conn, "BEGIN IMMEDIATE")  # re-read under the write lock: one migrator wins
        try:
            version = await self.schema_version()
            if version > SCHEMA_VERSION:
                raise SchemaTooNew(
                    f"database {self.path} has schema version {version}, newer than this "
                    f"rtmpd understands ({SCHEMA_VERSION}); upgrade rtmpd"
                )
            for step in MIGRATIONS[version:]:
                for statement in step:
                    await self._run(conn, statement)
            await self._run(conn, f"PRAGMA user_version = {SCHEMA_VERSION}")
            await self._run(conn, "COMMIT")
        except BaseException:
            with contextlib.suppress(StoreError):
                await self._run(conn, "ROLLBACK")
            raise

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
            except sqlite3.IntegrityError as exc:
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
            except sqlite3.IntegrityError:
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

    async def set_live(self, user_id: int, since: float, peer: str, token: str) -> None:
        await self._exec(
            "UPDATE users SET live_since = ?, peer = ?, live_token = ? WHERE id = ?",
            (since, peer, token, user_id),
        )

    async def clear_live(self, user_id: int, token: str, ended: float) -> bool:
        """Clear live state if `token` still owns it (a taken-over publish owns nothing)."""
        return bool(
            await self._exec(
                "UPDATE users SET live_since = NULL, peer = NULL, live_token = NULL, "
                "last_publish_end = ? WHERE id = ? AND live_token = ?",
                (ended, user_id, token),
            )
        )

    async def clear_all_live(self) -> int:
        """Forget every live flag: no publisher survives a restart."""
        return await self._exec(
            "UPDATE users SET live_since = NULL, peer = NULL, live_token = NULL "
            "WHERE live_since IS NOT NULL OR live_token IS NOT NULL"
        )

    async def user_states(self, user_ids: Sequence[int]) -> dict[int, UserState]:
        states: dict[int, UserState] = {}
        for start in range(0, len(user_ids), 500):
            chunk = list(user_ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            rows = await self._query(
                f"SELECT id, active, key_digest FROM users WHERE id IN ({marks})", chunk
            )
            for row in rows:
                states[int(row[0])] = UserState(bool(row[1]), bytes(row[2]))
        return states

    async def change_marker(self) -> tuple[int, int]:
        """Changes when anyone commits: PRAGMA data_version on the reading connection for other
        connections (the CLI, and this store's writing one), a local counter for this store's
        own commits as well (SQLite does not bump data_version for a connection's own)."""
        rows = await self._query("PRAGMA data_version")
        return int(rows[0][0]), self._changes

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
            except sqlite3.IntegrityError as exc:
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
            "WHERE u.name = ? ORDER BY d.id DESC LIMIT 1", (name,),
        )  # fmt: skip
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

    # -- account events ---------------------------------------------------------------------

    async def take_events(self, limit: int = 100) -> list[AccountEvent]:
        """The oldest events not taken yet, removed from the table (at least once: a crash
        between the read and the delete hands them out again)."""
        rows = await self._query(
            "SELECT id, kind, name, at FROM events ORDER BY id LIMIT ?", (limit,)
        )
        if rows:
            await self._exec("DELETE FROM events WHERE id <= ?", (int(rows[-1][0]),))
        return [AccountEvent(int(r[0]), r[1], r[2], r[3]) for r in rows]
