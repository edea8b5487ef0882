"""Which user database: PostgreSQL when `[database] url` is set, else the SQLite file. The
server and `rtmpd users` / `rtmpd tokens` open it the same way."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from .pgstore import PgStore
from .sqlstore import SqlStore
from .store import Store

#: Seconds a database operation waits (a lock, a connection) before it fails.
DB_BUSY_TIMEOUT = 5.0


def open_store(
    path: Path, url: str = "", *, busy_timeout: float = DB_BUSY_TIMEOUT,
    clock: Callable[[], float] = time.time,
) -> SqlStore:  # fmt: skip
    """The user database: PostgreSQL at `url` when set, else the SQLite file at `path`."""
    if url:
        return PgStore(url, clock=clock, timeout=busy_timeout)
    return Store(path, busy_timeout=busy_timeout, clock=clock)
