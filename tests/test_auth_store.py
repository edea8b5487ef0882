"""The user store on real SQLite files: migrations, digest-only keys, names, locking."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import sqlite3
from pathlib import Path

import pytest
from rtmpd.auth import keys
from rtmpd.auth.names import RESERVED, valid_path_name, valid_public_name
from rtmpd.auth.store import (
    MIGRATIONS,
    SCHEMA_VERSION,
    InvalidName,
    NameTaken,
    SchemaTooNew,
    Store,
    StoreBusy,
    StoreError,
    UnknownUser,
)


async def test_migrates_an_empty_file_to_the_latest_schema_in_wal_mode(tmp_path: Path) -> None:
    db = tmp_path / "users.db"
    db.touch()
    async with Store(db) as store:
        assert await store.schema_version() == SCHEMA_VERSION == len(MIGRATIONS)
        assert await store.list_users() == []
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # kept by the file
        columns = {row[1] for row in conn.execute("PRAGMA table_info(users)")}
    conn.close()
    assert {"name", "active", "created", "key_digest", "live_since", "peer"} <= columns
    assert "key" not in columns


async def test_migrates_forward_from_version_1_keeping_users(tmp_path: Path) -> None:
    db = tmp_path / "users.db"
    key = keys.new_key()
    conn = sqlite3.connect(db)
    for statement in MIGRATIONS[0]:
        conn.execute(statement)
    conn.execute(
        "INSERT INTO users (name, active, created, key_digest) VALUES ('benw', 1, 5.0, ?)",
        (keys.key_digest(key),),
    )
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    async with Store(db) as store:
        assert await store.schema_version() == SCHEMA_VERSION
        user = await store.get_user("benw")
        assert user is not None and user.created == 5.0 and user.live_since is None
        owner = await store.find_by_key(key)
        assert owner is not None and owner.name == "benw"


async def test_a_newer_schema_is_refused_and_left_alone(tmp_path: Path) -> None:
    db = tmp_path / "users.db"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(SchemaTooNew, match="newer"):
        await Store(db).open()
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 99
    conn.close()


async def test_unusable_files_give_a_clear_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(StoreError, match="junk.db"):
        await Store(junk).open()
    with pytest.raises(StoreError, match="cannot open"):
        await Store(tmp_path / "missing" / "dir" / "users.db").open()
    with pytest.raises(StoreError, match="not open"):
        await Store(tmp_path / "x.db").list_users()


async def test_keys_are_stored_only_as_sha256_digests(tmp_path: Path) -> None:
    db = tmp_path / "users.db"
    async with Store(db) as store:
        key = await store.add_user("benw")
        rotated = await store.rotate_key("benw")
        other = await store.add_user("alice")
        assert len(key) == 32 and len(rotated) == 32
        assert all(c.isalnum() or c in "-_" for c in key + rotated)
        with sqlite3.connect(db) as conn:
            digest = conn.execute("SELECT key_digest FROM users WHERE name='benw'").fetchone()[0]
        conn.close()
        assert digest == hashlib.sha256(rotated.encode()).digest()
        files = list(tmp_path.iterdir())
        assert any(p.name.endswith("-wal") for p in files)
        for path in files:
            data = path.read_bytes()
            for secret in (key, rotated, other):
                assert secret.encode() not in data
                assert secret[8:24].encode() not in data


async def test_key_lookup_compares_digests_with_hmac_compare_digest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    async with Store(tmp_path / "users.db") as store:
        key = await store.add_user("benw")
        assert (await store.find_by_key(key)) is not None
        assert seen == [(keys.key_digest(key), keys.key_digest(key))]
        assert await store.find_by_key(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
        assert await store.find_by_key("benw") is None  # a public name is not a key


@pytest.mark.parametrize(
    "name",
    ["B", "x", "BenW", "a" * 33, "ben-w", "ben.w", "ben w", "bén", "", "api", "live", "admin",
     "static", "metrics", "health", "index", "www", "assets", "../x", "benw\n"],
)  # fmt: skip
async def test_invalid_and_reserved_names_are_refused(tmp_path: Path, name: str) -> None:
    async with Store(tmp_path / "users.db") as store:
        with pytest.raises(InvalidName):
            await store.add_user(name)
        assert await store.list_users() == []


def test_name_rules() -> None:
    assert valid_public_name("ab") and valid_public_name("a" * 32) and valid_public_name("b_3")
    assert {"favicon.ico", "robots.txt", "api", "live"} <= RESERVED
    assert valid_path_name("J42ninLbjl2E2V8ePqy7") and valid_path_name("a-b_C")
    for bad in ("", "a/b", "..", "a.b", "x" * 65, "API", "a b", "a%2f"):
        assert not valid_path_name(bad)


async def test_user_commands_and_their_errors(tmp_path: Path) -> None:
    async with Store(tmp_path / "users.db") as store:
        key = await store.add_user("benw")
        with pytest.raises(NameTaken, match="taken"):
            await store.add_user("benw")
        for action in (store.ban, store.unban, store.remove, store.rotate_key):
            with pytest.raises(UnknownUser, match="nobody"):
                await action("nobody")
        assert await store.ban("benw") is True
        assert await store.ban("benw") is False
        owner = await store.find_by_key(key)
        assert owner is not None and not owner.active
        assert await store.unban("benw") is True
        assert await store.unban("benw") is False
        new = await store.rotate_key("benw")
        assert await store.find_by_key(key) is None
        owner = await store.find_by_key(new)
        assert owner is not None and owner.active and owner.name == "benw"
        await store.remove("benw")
        assert await store.find_by_key(new) is None and await store.list_users() == []


async def test_live_state_is_cleared_only_by_its_own_token(tmp_path: Path) -> None:
    async with Store(tmp_path / "users.db") as store:
        key = await store.add_user("benw")
        owner = await store.find_by_key(key)
        assert owner is not None
        await store.set_live(owner.user_id, 10.0, "10.0.0.1:5000", "new-token")
        assert not await store.clear_live(owner.user_id, "old-token", 20.0)
        user = await store.get_user("benw")
        assert user is not None and user.live_since == 10.0 and user.peer == "10.0.0.1:5000"
        assert await store.clear_live(owner.user_id, "new-token", 30.0)
        user = await store.get_user("benw")
        assert user is not None and user.live_since is None and user.last_publish_end == 30.0
        await store.set_live(owner.user_id, 40.0, "peer", "t")
        assert await store.clear_all_live() == 1
        assert (await store.list_users())[0].live_since is None


async def test_change_marker_sees_own_commits_and_other_connections(tmp_path: Path) -> None:
    db = tmp_path / "users.db"
    async with Store(db) as store:
        first = await store.change_marker()
        assert await store.change_marker() == first
        await store.add_user("benw")
        second = await store.change_marker()
        assert second != first
        async with Store(db) as other:
            await other.ban("benw")
        assert await store.change_marker() != second


async def test_a_held_write_lock_becomes_storebusy_and_changes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "users.db"
    async with Store(db) as setup:
        await setup.add_user("benw")
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        async with Store(db, busy_timeout=0.2) as store:
            with pytest.raises(StoreBusy, match="locked by another writer"):
                await store.add_user("alice")
            with pytest.raises(StoreBusy):
                await store.ban("benw")
            # readers are not blocked in WAL mode
            assert [u.name for u in await store.list_users()] == ["benw"]
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    async with Store(db) as store:
        users = await store.list_users()
        assert [(u.name, u.active) for u in users] == [("benw", True)]


async def test_a_briefly_held_write_lock_is_waited_for(tmp_path: Path) -> None:
    db = tmp_path / "users.db"
    async with Store(db) as store:
        holder = sqlite3.connect(db, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        asyncio.get_running_loop().call_later(0.2, holder.execute, "COMMIT")
        try:
            key = await store.add_user("alice")
        finally:
            holder.close()
        assert (await store.find_by_key(key)) is not None
