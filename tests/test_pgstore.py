"""The user store on a real PostgreSQL (a throwaway cluster made with initdb): the same
accounts, keys, tokens and live leases as on SQLite (each of those tests runs on both), the
migrations under one lock, changes heard through LISTEN/NOTIFY, account events taken once
among several nodes, and `rtmpd users` / `rtmpd tokens` against it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from rtmpd.auth.pgstore import SCHEMA_VERSION, PgStore
from rtmpd.auth.sqlstore import (
    InvalidName,
    NameTaken,
    SchemaTooNew,
    SqlStore,
    StoreError,
    UnknownUser,
)
from rtmpd.auth.store import SCHEMA_VERSION as SQLITE_SCHEMA_VERSION
from rtmpd.auth.store import Store

from rtmpd import cli

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlStore]:
    if request.param == "sqlite":
        opened: SqlStore = Store(tmp_path / "users.db")
    else:
        opened = PgStore(request.getfixturevalue("pg_url"))
    async with opened:
        yield opened


async def test_accounts_keys_and_tokens_behave_the_same(store: SqlStore) -> None:
    key = await store.add_user("benw")
    owner = await store.find_by_key(key)
    assert owner is not None and owner.name == "benw" and owner.active
    assert await store.find_by_key(key + "x") is None
    with pytest.raises(NameTaken):
        await store.add_user("benw")
    with pytest.raises(InvalidName):
        await store.add_user("Ben W")
    assert await store.ban("benw") and not await store.ban("benw")
    assert (await store.get_user("benw")) is not None
    assert not (await store.list_users())[0].active
    assert await store.unban("benw")
    new = await store.rotate_key("benw")
    assert await store.find_by_key(key) is None and await store.find_by_key(new) is not None
    token = await store.add_token("site")
    found = await store.find_token(token)
    assert found is not None and found.name == "site"
    await store.token_used(found.token_id, 123.0)
    assert (await store.list_tokens())[0].last_used == 123.0
    with pytest.raises(NameTaken):
        await store.add_token("site")
    await store.remove_token("site")
    assert await store.find_token(token) is None
    events = await store.take_events()
    assert [(e.kind, e.name) for e in events] == [("user.banned", "benw")]
    assert await store.take_events() == []
    await store.remove("benw")
    with pytest.raises(UnknownUser):
        await store.remove("benw")
    assert await store.list_users() == []


async def test_live_records_are_leases(store: SqlStore) -> None:
    now = time.time()
    await store.add_user("benw")
    await store.add_user("alice")
    ben = await store.find_by_key(await store.rotate_key("benw"))
    alice = await store.find_by_key(await store.rotate_key("alice"))
    assert ben is not None and alice is not None
    assert await store.set_live(ben.user_id, now, "1.2.3.4", "t1", node="a", expires=now + 100)
    assert await store.set_live(alice.user_id, now, "5.6.7.8", "t2", node="b", expires=now + 50)
    # Another node may not replace an unexpired record (duplicate = reject) ...
    assert not await store.set_live(ben.user_id, now, "9.9.9.9", "t3", node="b",
                                     expires=now + 200, replace=False)  # fmt: skip
    records = await store.live_records(now + 10)
    assert [(r.name, r.node, r.url) for r in records] == [("alice", "b", None), ("benw", "a", None)]
    assert await store.mark_playing(ben.user_id, "t1", "http://a:8080")
    assert not await store.mark_playing(ben.user_id, "old", "http://x")
    assert await store.renew_live("b", now + 300) == 1
    # ... and a record whose lease ran out is gone for everyone, its end recorded.
    assert await store.clear_expired(now + 150) == 1
    assert [r.name for r in await store.live_records(now + 150)] == ["alice"]
    user = await store.get_user("benw")
    assert user is not None and user.live_since is None and user.last_publish_end == now + 100
    # An expired record may be replaced even without takeover.
    await store.set_live(ben.user_id, now, "1.2.3.4", "t4", node="a", expires=now - 1)
    assert await store.set_live(ben.user_id, now, "9.9.9.9", "t5", node="b", expires=now + 9,
                                replace=False)  # fmt: skip
    states = await store.user_states([alice.user_id, ben.user_id])
    assert (states[alice.user_id].live_token, states[ben.user_id].live_token) == ("t2", "t5")
    assert await store.take_node_live("b") == ["alice", "benw"]
    assert await store.live_records(0.0) == []


async def test_a_takeover_on_the_same_node_keeps_the_url(store: SqlStore) -> None:
    ben = await store.find_by_key(await store.add_user("benw"))
    assert ben is not None
    await store.set_live(ben.user_id, 1.0, "p", "t1", node="a", expires=100.0)
    await store.mark_playing(ben.user_id, "t1", "http://a:8080")
    await store.set_live(ben.user_id, 2.0, "p", "t2", node="a", expires=100.0)
    assert [r.url for r in await store.live_records(3.0)] == ["http://a:8080"]
    await store.set_live(ben.user_id, 3.0, "p", "t3", node="b", expires=100.0)
    assert [(r.node, r.url) for r in await store.live_records(3.0)] == [("b", None)]


async def test_the_schemas_have_the_same_versions(pg_url: str) -> None:
    assert SCHEMA_VERSION == SQLITE_SCHEMA_VERSION
    first, second = PgStore(pg_url), PgStore(pg_url)
    await asyncio.gather(first.open(), second.open())  # one migrates, the other waits
    try:
        assert await first.schema_version() == await second.schema_version() == SCHEMA_VERSION
    finally:
        await first.close()
        await second.close()
    conn = await asyncpg.connect(pg_url)
    await conn.execute("UPDATE rtmpd_schema SET version = 99")
    await conn.close()
    with pytest.raises(SchemaTooNew, match="schema version 99"):
        await PgStore(pg_url).open()


async def test_changes_on_another_node_are_heard_without_polling(pg_url: str) -> None:
    async with PgStore(pg_url) as here, PgStore(pg_url) as there:
        await there.add_user("benw")
        await asyncio.sleep(0.2)
        quiet = await here.change_marker()
        await there.renew_live("b", 10.0)  # lease renewals are not news
        await asyncio.sleep(0.3)
        assert await here.change_marker() == quiet
        await there.ban("benw")
        async with asyncio.timeout(2):
            while await here.change_marker() == quiet:
                await asyncio.sleep(0.01)


async def test_each_account_event_goes_to_one_node(pg_url: str) -> None:
    async with PgStore(pg_url) as a, PgStore(pg_url) as b:
        for name in ("u1", "u2", "u3", "u4"):
            await a.add_user(name)
            await a.ban(name)
        got = await asyncio.gather(
            a.take_events(2), b.take_events(2), a.take_events(), b.take_events()
        )
        names = sorted(e.name for batch in got for e in batch)
        assert names == ["u1", "u2", "u3", "u4"]


async def test_an_unreachable_database_is_one_line_without_the_password() -> None:
    store = PgStore("postgresql://rtmpd:s3cret@127.0.0.1:9/rtmpd", timeout=2.0)
    with pytest.raises(StoreError) as info:
        await store.open()
    assert "s3cret" not in str(info.value) and "***" in str(info.value)
    assert "\n" not in str(info.value)


def test_the_users_and_tokens_commands_work_against_postgresql(
    tmp_path: Path,
    pg_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = tmp_path / "rtmpd.toml"
    config.write_text(f'[database]\nurl = "{pg_url}"\n')
    assert cli.main(["-c", str(config), "users", "add", "benw"]) == 0
    key = capsys.readouterr().out.strip()
    assert len(key) == 32
    assert cli.main(["users", "-c", str(config), "ban", "benw"]) == 0
    assert cli.main(["users", "list", "-c", str(config)]) == 0
    listing = capsys.readouterr().out
    assert "benw" in listing and " no " in listing
    assert cli.main(["tokens", "-c", str(config), "add", "site"]) == 0
    assert len(capsys.readouterr().out.strip()) == 40
    assert not (tmp_path / "rtmpd-data" / "rtmpd.sqlite3").exists()  # nothing went to SQLite

    async def check() -> None:
        async with PgStore(pg_url) as store:
            owner = await store.find_by_key(key)
            assert owner is not None and not owner.active

    asyncio.run(check())


async def test_push_destinations_behave_the_same_and_go_with_their_user(store: SqlStore) -> None:
    from rtmpd.auth.sqlstore import UnknownDestination

    await store.add_user("benw")
    await store.add_user("carol")
    first = await store.add_destination("benw", "rtmp://a.example/live2/one")
    second = await store.add_destination("benw", "rtmps://b.example/app/two")
    await store.add_destination("carol", "rtmp://c.example/app/three")
    assert second.destination_id > first.destination_id
    listed = await store.destinations("benw")
    assert [(d.destination_id, d.url) for d in listed] == [
        (first.destination_id, "rtmp://a.example/live2/one"),
        (second.destination_id, "rtmps://b.example/app/two"),
    ]
    with pytest.raises(UnknownUser):
        await store.add_destination("nobody", "rtmp://a.example/app/x")
    with pytest.raises(UnknownDestination):  # another user's destination is not benw's
        await store.remove_destination(
            "benw", (await store.destinations("carol"))[0].destination_id
        )
    await store.remove_destination("benw", first.destination_id)
    assert [d.destination_id for d in await store.destinations("benw")] == [second.destination_id]
    # a removed user's destinations go with it: a new user never inherits them
    await store.remove("benw")
    await store.add_user("dave")
    await store.add_user("benw")
    assert await store.destinations("benw") == [] and await store.destinations("dave") == []
    assert len(await store.destinations("carol")) == 1
