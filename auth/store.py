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
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import aiosqlite

from .sqlstore import (
    TOKEN_NAME,
    AccountEvent,
    ApiToken,
    Duplicate,
    InvalidName,
    KeyOwner,
    LiveRecord,
    NameTaken,
    SchemaTooNew,
    SqlStore,
    StoreBusy,
    StoreError,
    UnknownUser,
    User,
    UserState,
)

__all__ = [
    "TOKEN_NAME", "AccountEvent", "ApiToken", "InvalidName", "KeyOwner", "LiveRecord",
    "NameTaken", "SchemaTooNew", "SqlStore", "Store", "StoreBusy", "StoreError", "UnknownUser",
    "User", "UserState",
]  # fmt: skip

#: Unix time with fractions, in SQL (unixepoch('subsec') needs SQLite 3.42).
_NOW = "(julianday('now') - 2440587.5) * 86400.0"

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
    (  # live state as a lease: which node holds it, where it is served, until when
        "ALTER TABLE users ADD COLUMN live_node TEXT",
        "ALTER TABLE users ADD COLUMN live_url TEXT",
        "ALTER TABLE users ADD COLUMN live_expires REAL",
    ),
    (  # push destinations: another service's URL (with its key) per row, gone with the user
        """CREATE TABLE destinations (
            id INTEGER PRIMARY KEY,
            user_id INTEGER NOT NULL,
            url TEXT NOT NULL,
            created REAL NOT NULL
        )""",
        "CREATE INDEX destinations_by_user ON destinations (user_id)",
        # (SQLite reuses the highest rowid: a new user must not inherit a removed one's)
        """CREATE TRIGGER destinations_of_removed_user AFTER DELETE ON users
            BEGIN
                DELETE FROM destinations WHERE user_id = OLD.id;
            END""",
    ),
    (  # what the holding node says of its live stream (codecs, size), for the other nodes
        "ALTER TABLE users ADD COLUMN live_details TEXT",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


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


class Store(SqlStore):
    """Async access to one SQLite file. `open()` before use, `close()` after."""

    def __init__(
        self, path: Path, *, busy_timeout: float = 5.0, clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__(clock=clock)
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self._conn: aiosqlite.Connection | None = None  # writes
        self._reader: aiosqlite.Connection | None = None
        self._writing = asyncio.Lock()  # one write at a time on _conn
        self._gave_up = 0  # writes that found the database locked for the whole busy timeout

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

    async def _query(self, sql: str, params: Iterable[Any] = ()) -> list[Sequence[Any]]:
        """A read, on the reading connection (the writing one until that is open)."""
        conn = self._connection(self._reader or self._conn)
        try:
            return list(await conn.execute_fetchall(sql, tuple(params)))
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

    async def _exec_rows(self, sql: str, params: Iterable[Any] = ()) -> list[Sequence[Any]]:
        """One write statement with RETURNING, on the writing connection; its rows."""
        gave_up = self._gave_up
        async with self._writing:
            if self._gave_up != gave_up:
                raise self._busy()
            try:
                conn = self._connection(self._conn)
                return list(await conn.execute_fetchall(sql, tuple(params)))
            except sqlite3.Error as exc:
                error = self._error(exc)
                if isinstance(error, StoreBusy):
                    self._gave_up += 1
                raise error from exc

    async def _run(self, conn: aiosqlite.Connection, sql: str, params: Iterable[Any] = ()) -> int:
        """One statement on `conn`; the number of rows it changed."""
        try:
            cursor = await conn.execute(sql, tuple(params))
            count = cursor.rowcount
            await cursor.close()
        except sqlite3.IntegrityError as exc:
            raise Duplicate(str(exc)) from exc
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        return count

    @property
    def where(self) -> str:
        return f"database {self.path}"

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

    async def change_marker(self) -> tuple[int, int]:
        """Changes when anyone commits: PRAGMA data_version on the reading connection for other
        connections (the CLI, and this store's writing one), a local counter for this store's
        own commits as well (SQLite does not bump data_version for a connection's own)."""
        rows = await self._query("PRAGMA data_version")
        return int(rows[0][0]), self._changes

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
