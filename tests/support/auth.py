"""Helpers for the rtmpd.auth tests: publish attempts, disconnect recorders, a settable clock,
a key-lookup counter, and `rtmpd users` run in a separate Python process."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from rtmpd.auth import PublishAttempt, Store
from rtmpd.auth.store import KeyOwner

CLI = (
    "import sys; from pathlib import Path; from rtmpd.auth.cli import main_users; "
    "sys.exit(main_users(sys.argv[2:], Path(sys.argv[1]), 'rtmp://example.com:1935/app'))"
)


def attempt(key: str, addr: str = "10.0.0.1", app: str = "app", **extra: str) -> PublishAttempt:
    return PublishAttempt(app=app, key=key, query=extra.pop("query", ""), addr=addr, **extra)


class Disconnects:
    """A disconnect callback that remembers the reasons it was given."""

    def __init__(self) -> None:
        self.reasons: list[str] = []
        self.called = asyncio.Event()

    def __call__(self, reason: str) -> None:
        self.reasons.append(reason)
        self.called.set()


class KeyLookups:
    """Counts the key lookups a store answers, by wrapping its `find_by_key` for one test:
    evidence that refused attempts never reached the database."""

    def __init__(self, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        lookup = store.find_by_key

        async def counted(key: str) -> KeyOwner | None:
            self.count += 1
            return await lookup(key)

        monkeypatch.setattr(store, "find_by_key", counted)


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def run_cli(db: Path, *args: str) -> tuple[int, str, str]:
    """`rtmpd users ARGS` in another process, without blocking this event loop."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CLI, str(db), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    """Poll `predicate` until it holds or `timeout` seconds pass (a deadline, not a speed)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


def live_row(db: Path, name: str) -> tuple[float | None, str | None, float | None]:
    """(live_since, peer, last_publish_end) read with a separate plain connection."""
    with sqlite3.connect(db) as conn:
        row = conn.execute(
            "SELECT live_since, peer, last_publish_end FROM users WHERE name = ?", (name,)
        ).fetchone()
    conn.close()
    assert row is not None
    return row[0], row[1], row[2]
