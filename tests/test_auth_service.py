"""Publish decisions against a real SQLite file: keys, bans, takeover, leases, revocation
(also from another process), rate limiting and what the logs may show."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from rtmpd.auth import (
    BAD_NAME,
    DENIED,
    TAKEN_OVER,
    Accepted,
    AuthConfig,
    AuthService,
    Channel,
    Denied,
    Store,
)
from rtmpd.auth.keys import key_fingerprint
from rtmpd.auth.limiter import FailureLimiter, client_host
from rtmpd.auth.store import KeyOwner

from tests.support.auth import (
    Clock,
    Disconnects,
    KeyLookups,
    attempt,
    live_row,
    run_cli,
    wait_until,
)


async def make_users(db: Path, *names: str) -> dict[str, str]:
    async with Store(db) as store:
        return {name: await store.add_user(name) for name in names}


@pytest.fixture
async def db(tmp_path: Path) -> Path:
    return tmp_path / "users.db"


@pytest.fixture
async def service(db: Path) -> AsyncIterator[AuthService]:
    svc = AuthService(AuthConfig(), db, revoke_poll=0.05)
    await svc.start()
    yield svc
    await svc.stop()


async def accept(
    svc: AuthService, key: str, addr: str = "10.0.0.1"
) -> tuple[Accepted, Disconnects]:
    gone = Disconnects()
    decision = await svc.authorize(attempt(key, addr=addr), gone)
    assert isinstance(decision, Accepted), decision
    return decision, gone


async def test_a_known_key_publishes_under_the_public_name(db: Path, service: AuthService) -> None:
    keys = await make_users(db, "benw")
    before = await service.channel("benw")
    assert before == Channel("benw", True, None)
    decision, gone = await accept(service, keys["benw"], addr="10.0.0.7:50123")
    assert decision.name == decision.lease.name == "benw"
    assert await service.live_names() == {"benw"}
    since, peer, _ = live_row(db, "benw")
    assert since is not None and peer == "10.0.0.7:50123"
    channel = await service.channel("benw")
    assert channel is not None and channel.live_since == since and channel.active
    assert await service.live_channels() == [Channel("benw", True, since)]
    await decision.lease.end()
    assert await service.live_names() == set() and gone.reasons == []
    since, peer, ended = live_row(db, "benw")
    assert since is None and peer is None and ended is not None


async def test_refusals(db: Path, service: AuthService) -> None:
    keys = await make_users(db, "benw", "alice")
    async with Store(db) as store:
        await store.ban("alice")
    cases = [
        (attempt("not-a-key"), Denied(BAD_NAME, "unknown stream key")),
        (attempt("benw"), Denied(BAD_NAME, "unknown stream key")),  # a public name is no key
        (attempt(""), Denied(BAD_NAME, "unknown stream key")),
        (attempt("x" * 100_000), Denied(BAD_NAME, "unknown stream key")),
        (attempt("\udcff\x00"), Denied(BAD_NAME, "unknown stream key")),
        (attempt(keys["benw"], app="other"), Denied(DENIED, "unknown application")),
        (attempt(keys["alice"]), Denied(DENIED, "inactive user")),
    ]
    for i, (request, expected) in enumerate(cases):
        # a fresh address each time, so the rate limiter stays out of the way
        request = attempt(request.key, addr=f"10.1.0.{i}", app=request.app)
        assert await service.authorize(request, Disconnects()) == expected
    assert await service.live_names() == set()
    assert await service.channel("alice") == Channel("alice", False, None)
    assert await service.channel("nobody") is None
    assert await service.channel("../etc") is None


async def test_the_key_is_taken_without_its_query(db: Path, service: AuthService) -> None:
    keys = await make_users(db, "benw")
    decision = await service.authorize(attempt(keys["benw"] + "?token=1"), Disconnects())
    assert isinstance(decision, Accepted) and decision.name == "benw"
    decision2 = await service.authorize(
        attempt(keys["benw"], app="app/", query="a=b"), Disconnects()
    )
    assert isinstance(decision2, Accepted)


async def test_takeover_disconnects_the_old_publisher_and_keeps_the_new_live(
    db: Path, service: AuthService
) -> None:
    keys = await make_users(db, "benw")
    first, first_gone = await accept(service, keys["benw"], "10.0.0.1")
    second, second_gone = await accept(service, keys["benw"], "10.0.0.2")
    assert first_gone.reasons == [TAKEN_OVER] and second_gone.reasons == []
    await first.lease.end()  # the old connection closing must not clear the new live state
    assert await service.live_names() == {"benw"}
    since, peer, _ = live_row(db, "benw")
    assert since is not None and peer == "10.0.0.2"
    await second.lease.end()
    assert await service.live_names() == set()
    assert live_row(db, "benw")[0] is None


async def test_reject_mode_refuses_a_second_publisher(db: Path) -> None:
    keys = await make_users(db, "benw")
    svc = AuthService(AuthConfig(duplicate="reject"), db)
    await svc.start()
    try:
        first, first_gone = await accept(svc, keys["benw"])
        denied = await svc.authorize(attempt(keys["benw"], addr="10.0.0.2"), Disconnects())
        assert denied == Denied(DENIED, "already publishing")
        assert first_gone.reasons == [] and await svc.live_names() == {"benw"}
        await first.lease.end()
        await accept(svc, keys["benw"], "10.0.0.2")
    finally:
        await svc.stop()
    with pytest.raises(ValueError, match="duplicate"):
        AuthService(AuthConfig(duplicate="both"), db)


async def test_lease_end_clears_live_state_exactly_once(db: Path) -> None:
    keys = await make_users(db, "benw")
    clock = Clock(100.0)
    svc = AuthService(AuthConfig(), db, clock=clock)
    await svc.start()
    try:
        decision, _ = await accept(svc, keys["benw"])
        clock.now = 150.0
        await decision.lease.end()
        assert live_row(db, "benw") == (None, None, 150.0)
        clock.now = 170.0
        again, _ = await accept(svc, keys["benw"])
        clock.now = 200.0
        await decision.lease.end()  # the old lease again: nothing happens
        assert live_row(db, "benw")[0] == 170.0 and await svc.live_names() == {"benw"}
        await again.lease.end()
        await again.lease.end()
        assert live_row(db, "benw") == (None, None, 200.0)
    finally:
        await svc.stop()


async def test_stale_live_flags_are_cleared_at_start(db: Path) -> None:
    keys = await make_users(db, "benw", "alice")
    async with Store(db) as store:
        for name in ("benw", "alice"):
            owner = await store.find_by_key(keys[name])
            assert owner is not None
            await store.set_live(owner.user_id, 42.0, "10.9.9.9", "crashed")
    assert live_row(db, "benw")[0] == 42.0
    svc = AuthService(AuthConfig(), db)
    await svc.start()
    try:
        assert live_row(db, "benw")[0] is None and live_row(db, "alice")[0] is None
        assert await svc.live_names() == set()
        assert await svc.channel("benw") == Channel("benw", True, None)
    finally:
        await svc.stop()


@pytest.mark.parametrize(
    ("action", "reason"),
    [("ban", "user banned"), ("remove", "user removed"), ("rotate_key", "stream key changed")],
)
async def test_revocation_in_this_process_disconnects_the_live_publisher(
    db: Path, service: AuthService, action: str, reason: str
) -> None:
    keys = await make_users(db, "benw", "alice")
    _, gone = await accept(service, keys["benw"])
    _, other_gone = await accept(service, keys["alice"], "10.0.0.2")
    await getattr(service.store, action)("benw")
    await asyncio.wait_for(gone.called.wait(), timeout=2.0)
    assert gone.reasons == [reason]
    assert await service.live_names() == {"alice"} and other_gone.reasons == []
    if action != "remove":
        assert await wait_until(lambda: live_row(db, "benw")[0] is None, timeout=2.0)


@pytest.mark.parametrize(
    ("command", "reason"),
    [("ban", "user banned"), ("remove", "user removed"), ("rotate-key", "stream key changed")],
)
async def test_revocation_from_another_process_disconnects_within_2_seconds(
    db: Path, command: str, reason: str
) -> None:
    keys = await make_users(db, "benw")
    svc = AuthService(AuthConfig(), db)  # the default poll interval
    await svc.start()
    try:
        _, gone = await accept(svc, keys["benw"])
        code, _, err = await run_cli(db, command, "benw")
        assert code == 0, err
        await asyncio.wait_for(gone.called.wait(), timeout=2.0)
        assert gone.reasons == [reason] and await svc.live_names() == set()
        if command == "rotate-key":
            denied = await svc.authorize(attempt(keys["benw"], addr="10.0.0.3"), Disconnects())
            assert denied == Denied(BAD_NAME, "unknown stream key")
    finally:
        await svc.stop()


async def test_a_key_rotated_during_the_decision_is_still_caught(
    db: Path, service: AuthService, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = await make_users(db, "benw", "alice")
    await accept(service, keys["alice"], "10.0.0.2")  # someone live: the watcher keeps looking
    lookup = service.store.find_by_key

    async def lookup_then_rotate(key: str) -> KeyOwner | None:
        owner = await lookup(key)  # the decision has found the key's owner ...
        async with Store(db) as other:
            await other.rotate_key("benw")  # ... when another process gives benw a new key,
        await asyncio.sleep(0.2)  # and the watcher has seen that change before the grant
        return owner

    monkeypatch.setattr(service.store, "find_by_key", lookup_then_rotate)
    gone = Disconnects()
    assert isinstance(await service.authorize(attempt(keys["benw"]), gone), Accepted)
    await asyncio.wait_for(gone.called.wait(), timeout=2.0)
    assert gone.reasons == ["stream key changed"]


async def test_failed_attempts_are_rate_limited_per_address(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = await make_users(db, "benw", "alice")
    clock = Clock()
    svc = AuthService(AuthConfig(max_failures=5, failure_window=60, backoff=60), db, clock=clock)
    await svc.start()
    try:
        for i in range(4):
            clock.now += 1
            denied = await svc.authorize(attempt(f"guess-{i}", addr="6.6.6.6"), Disconnects())
            assert denied == Denied(BAD_NAME, "unknown stream key")
        # one more failure inside the window blocks, then even the right key is refused
        await svc.authorize(attempt("guess-5", addr="6.6.6.6:1234"), Disconnects())
        blocked = Denied(DENIED, "too many failed attempts")
        lookups = KeyLookups(svc.store, monkeypatch)
        for i in range(1000):
            assert await svc.authorize(attempt(f"g{i}", addr="6.6.6.6"), Disconnects()) == blocked
        assert await svc.authorize(attempt(keys["benw"], addr="6.6.6.6"), Disconnects()) == blocked
        assert lookups.count == 0  # no database work while blocked
        # other addresses are not affected
        await accept(svc, keys["alice"], "10.0.0.2")
        # after the backoff the address may try again
        clock.now += 61
        await accept(svc, keys["benw"], "6.6.6.6")
    finally:
        await svc.stop()


async def test_a_valid_key_does_not_buy_guesses(db: Path) -> None:
    """A streamer's own key, used between guesses from the same address, does not wipe the
    address's failures: after the fifth wrong key the address is blocked, valid key or not."""
    keys = await make_users(db, "benw")
    svc = AuthService(AuthConfig(max_failures=5), db, clock=Clock())
    await svc.start()
    try:
        answers = []
        for i in range(48):
            decision = await svc.authorize(attempt(keys["benw"], addr="6.6.6.6"), Disconnects())
            if isinstance(decision, Accepted):
                await decision.lease.end()
            answers.append("accepted" if isinstance(decision, Accepted) else decision.description)
            wrong = await svc.authorize(attempt(f"guess-{i}", addr="6.6.6.6"), Disconnects())
            answers.append(wrong.description)
        assert answers.count("unknown stream key") == 5
        assert answers[:10] == ["accepted", "unknown stream key"] * 5
        assert set(answers[10:]) == {"too many failed attempts"}
    finally:
        await svc.stop()


async def test_failures_spread_beyond_the_window_do_not_block(db: Path) -> None:
    keys = await make_users(db, "benw")
    clock = Clock()
    svc = AuthService(AuthConfig(max_failures=5, failure_window=60), db, clock=clock)
    await svc.start()
    try:
        for i in range(12):
            clock.now += 20
            denied = await svc.authorize(attempt(f"guess-{i}", addr="6.6.6.6"), Disconnects())
            assert denied.description == "unknown stream key"
        await accept(svc, keys["benw"], "6.6.6.6")
    finally:
        await svc.stop()


async def test_logs_never_show_a_whole_key(
    db: Path, service: AuthService, caplog: pytest.LogCaptureFixture
) -> None:
    keys = await make_users(db, "benw", "alice")
    caplog.set_level(logging.DEBUG)
    wrong = "WXYZ" + keys["benw"][4:-1] + "!"
    decision, _ = await accept(service, keys["benw"], "10.0.0.1")
    await accept(service, keys["benw"], "10.0.0.2")
    for _ in range(6):
        await service.authorize(attempt(wrong, addr="6.6.6.6"), Disconnects())
    await service.store.ban("alice")
    await service.authorize(attempt(keys["alice"], addr="10.0.0.3"), Disconnects())
    await decision.lease.end()
    text = caplog.text
    assert "6.6.6.6" in text and f"(key {key_fingerprint(wrong)})" in text and "blocked" in text
    for secret in (*keys.values(), wrong):
        assert secret[:4] not in text and secret[4:12] not in text


async def test_a_locked_database_denies_instead_of_crashing(db: Path) -> None:
    keys = await make_users(db, "benw")
    svc = AuthService(AuthConfig(), db, db_busy_timeout=0.2, revoke_poll=0.05)
    await svc.start()
    holder = sqlite3.connect(db, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        denied = await svc.authorize(attempt(keys["benw"]), Disconnects())
        assert denied == Denied(DENIED, "authorization temporarily unavailable")
        holder.execute("COMMIT")
        decision, _ = await accept(svc, keys["benw"], "10.0.0.2")
        # the publish ends while another writer holds the lock: cleared later, by the watcher
        holder.execute("BEGIN IMMEDIATE")
        await decision.lease.end()
        assert await svc.live_names() == set()
        assert live_row(db, "benw")[0] is not None
        holder.execute("COMMIT")
        assert await wait_until(lambda: live_row(db, "benw")[0] is None, timeout=2.0)
    finally:
        holder.close()
        await svc.stop()


@pytest.mark.parametrize("begin", ["BEGIN IMMEDIATE", "BEGIN EXCLUSIVE"])
async def test_publishers_do_not_queue_behind_another_writers_lock(db: Path, begin: str) -> None:
    """While another process holds the write lock, twenty publishers at once are all told
    "temporarily unavailable" within one busy timeout between them (they used to wait one each,
    in turn), and reads go on meanwhile: a channel is found while the publishes still wait.
    Once the lock goes, publishes work."""
    names = [f"user{i}" for i in range(20)]
    keys = await make_users(db, *names)
    busy = 1.0
    svc = AuthService(AuthConfig(), db, db_busy_timeout=busy)
    await svc.start()
    holder = sqlite3.connect(db, isolation_level=None)
    try:
        holder.execute(begin)
        pending = [
            asyncio.create_task(svc.authorize(attempt(keys[n], addr=f"10.0.1.{i}"), Disconnects()))
            for i, n in enumerate(names)
        ]
        assert await svc.channel("user7") is not None  # a read, not queued behind the writes
        assert not any(task.done() for task in pending)
        async with asyncio.timeout(3 * busy):  # in turn, they took 20 busy timeouts
            answers = await asyncio.gather(*pending)
        assert answers == [Denied(DENIED, "authorization temporarily unavailable")] * 20
        holder.execute("ROLLBACK")
        decision, _ = await accept(svc, keys["user0"], "10.0.1.0")
        await decision.lease.end()
    finally:
        holder.close()
        await svc.stop()


async def test_a_failing_disconnect_callback_does_not_break_takeover(
    db: Path, service: AuthService
) -> None:
    keys = await make_users(db, "benw")

    def broken(reason: str) -> None:
        raise RuntimeError("socket already gone")

    first = await service.authorize(attempt(keys["benw"]), broken)
    assert isinstance(first, Accepted)
    second, _ = await accept(service, keys["benw"], "10.0.0.2")
    assert await service.live_names() == {"benw"}
    await second.lease.end()
    await first.lease.end()
    assert await service.live_names() == set() and live_row(db, "benw")[0] is None


async def test_an_ipv6_attacker_is_one_client_per_64(
    db: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Guesses from 50 addresses of one IPv6 /64, all at once, cost 5 key lookups and block the
    whole /64; the next /64 and every IPv4 address are their own clients; an IPv4 client seen
    through a dual-stack socket (::ffff:a.b.c.d) is that IPv4 address."""
    caplog.set_level(logging.WARNING)
    keys = await make_users(db, "benw")
    svc = AuthService(AuthConfig(max_failures=5), db, clock=Clock())
    await svc.start()
    try:
        lookups = KeyLookups(svc.store, monkeypatch)
        answers = await asyncio.gather(*(
            svc.authorize(attempt(f"guess-{i}", addr=f"[2001:db8:1:2::{i:x}]:4000"), Disconnects())
            for i in range(1, 51)
        ))  # fmt: skip
        assert lookups.count == 5
        assert sum(a.description == "too many failed attempts" for a in answers) == 45
        blocked = Denied(DENIED, "too many failed attempts")
        for other in ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::abcd"):
            assert await svc.authorize(attempt(keys["benw"], addr=other), Disconnects()) == blocked
        decision, _ = await accept(svc, keys["benw"], "2001:db8:1:3::1")  # the next /64
        await decision.lease.end()
        for i in range(5):
            await svc.authorize(attempt(f"v4-{i}", addr="::ffff:192.0.2.7"), Disconnects())
        assert (
            await svc.authorize(attempt(keys["benw"], addr="192.0.2.7"), Disconnects()) == blocked
        )
        decision, _ = await accept(svc, keys["benw"], "192.0.2.8")  # IPv4: each address alone
        await decision.lease.end()
        decision, _ = await accept(svc, keys["benw"], "::ffff:192.0.2.9")  # not all of ::/64
        await decision.lease.end()
    finally:
        await svc.stop()
    blocks = [r.getMessage() for r in caplog.records if "blocked for" in r.getMessage()]
    assert blocks == [
        "2001:db8:1:2::/64 blocked for 60 s after 5 failed attempts",
        "192.0.2.7 blocked for 60 s after 5 failed attempts",
    ]


def test_limiter_forgives_at_its_rate() -> None:
    """max_failures at once block; failing at max_failures per window (here one per 12 s) never
    does; after the backoff a client starts over with the whole allowance."""
    clock = Clock()
    limiter = FailureLimiter(5, 60, 30, clock=clock)
    assert [limiter.failure("10.0.0.1") for _ in range(5)] == [False] * 4 + [True]
    clock.now += 29
    assert limiter.blocked("10.0.0.1")
    clock.now += 1
    assert not limiter.blocked("10.0.0.1")
    assert [limiter.failure("10.0.0.1") for _ in range(5)] == [False] * 4 + [True]
    for _ in range(100):
        clock.now += 12
        assert limiter.failure("10.0.0.2") is False


def test_limiter_keys_on_the_host_and_stays_bounded() -> None:
    assert client_host("10.0.0.1:5000") == "10.0.0.1" == client_host("10.0.0.1")
    assert client_host("[2001:db8::1]:5000") == "2001:db8::1" == client_host("2001:db8::1")
    clock = Clock()
    limiter = FailureLimiter(2, 60, 60, clock=clock, max_entries=3)
    for i in range(100):
        limiter.failure(f"10.0.0.{i}")
    assert not limiter.blocked("10.0.0.99")
    # The table holds 3 addresses: the 3 latest block at their second failure, the one
    # before them was dropped and counts from one again.
    assert all(limiter.failure(f"10.0.0.{i}") for i in (97, 98, 99))
    assert limiter.failure("10.0.0.96") is False
    assert limiter.failure("6.6.6.6") is False and limiter.failure("6.6.6.6") is True
    assert limiter.blocked("6.6.6.6")
    clock.now += 61
    assert not limiter.blocked("6.6.6.6")
    assert FailureLimiter(0, 60, 60).failure("x") is False  # max_failures 0: no limit
    # the blocked clients are bounded too: the oldest block is dropped first
    for i in range(4):
        assert limiter.failure(f"10.1.0.{i}") is False and limiter.failure(f"10.1.0.{i}") is True
    assert not limiter.blocked("10.1.0.0")
    assert all(limiter.blocked(f"10.1.0.{i}") for i in (1, 2, 3))
