"""Accounts: API tokens (digests only, the per-address limit), account events written by the
store's trigger whoever bans, and `rtmpd tokens` on a real SQLite file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from rtmpd.auth import keys
from rtmpd.auth.accounts import Accounts, TokenRefused
from rtmpd.auth.cli import main_tokens
from rtmpd.auth.limiter import FailureLimiter
from rtmpd.auth.store import ApiToken, NameTaken, Store, UnknownUser

from tests.support.auth import Clock


async def test_tokens_are_stored_as_digests_and_checked(tmp_path: Path) -> None:
    db = tmp_path / "users.db"
    clock = Clock()
    async with Store(db) as store:
        accounts = Accounts(store, clock=clock)
        token = await accounts.add_token("django-site")
        assert len(token) == 40 and token != await accounts.add_token("ops")
        with pytest.raises(NameTaken):
            await accounts.add_token("ops")
        found = await accounts.check_token(token, "10.0.0.1:5000")
        assert isinstance(found, ApiToken) and found.name == "django-site"
        assert found.last_used is None  # as read; the use is written after the check
        listed = {t.name: t for t in await accounts.tokens()}
        assert listed["django-site"].last_used == clock.now and listed["ops"].last_used is None
        assert await accounts.check_token(token[:-1] + "x", "10.0.0.1") is TokenRefused.INVALID
        assert await accounts.check_token("", "10.0.0.1") is TokenRefused.INVALID
        assert await accounts.token_valid(found.token_id)
        await accounts.remove_token("django-site")
        assert await accounts.check_token(token, "10.0.0.1") is TokenRefused.INVALID
        assert not await accounts.token_valid(found.token_id)
        with pytest.raises(UnknownUser):
            await accounts.remove_token("django-site")
    data = b"".join(path.read_bytes() for path in tmp_path.iterdir())
    assert token.encode() not in data and token[8:24].encode() not in data
    with sqlite3.connect(db) as conn:
        digests = [row[0] for row in conn.execute("SELECT digest FROM api_tokens")]
    conn.close()
    assert keys.key_digest(token) not in digests and len(digests) == 1


async def test_failed_tokens_block_the_address_like_failed_keys(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    async with Store(tmp_path / "users.db") as store:
        accounts = Accounts(store, limiter=FailureLimiter(3, 60, 30, clock=clock), clock=clock)
        token = await accounts.add_token("site")
        for _ in range(3):
            assert await accounts.check_token("guess", "6.6.6.6:1") is TokenRefused.INVALID
        # blocked: even the right token is refused, without a lookup
        assert await accounts.check_token(token, "6.6.6.6:2") is TokenRefused.RATE_LIMITED
        assert isinstance(await accounts.check_token(token, "10.0.0.2"), ApiToken)  # per address
        clock.now += 31
        assert isinstance(await accounts.check_token(token, "6.6.6.6"), ApiToken)
    assert "6.6.6.6 blocked for 30 s" in caplog.text and "unknown token" in caplog.text
    assert token[:8] not in caplog.text and "guess" not in caplog.text


async def test_a_ban_writes_one_event_whoever_makes_it(tmp_path: Path) -> None:
    db = tmp_path / "users.db"
    async with Store(db) as store:
        accounts = Accounts(store)
        await accounts.add_user("benw")
        await accounts.add_user("alice")
        user, changed = await accounts.ban("benw")
        assert changed and not user.active
        assert (await accounts.ban("benw"))[1] is False  # already banned: no second event
        await accounts.unban("benw")
        with sqlite3.connect(db) as other:  # another process, even a sqlite3 shell
            other.execute("UPDATE users SET active = 0 WHERE name = 'alice'")
        other.close()
        events = await accounts.take_events()
        assert [(e.kind, e.name) for e in events] == [("user.banned", "benw"),
                                                      ("user.banned", "alice")]  # fmt: skip
        assert all(abs(e.at - events[0].at) < 60 and e.at > 1.6e9 for e in events)
        assert await accounts.take_events() == []


def test_tokens_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "users.db"
    assert main_tokens(["add", "django-site"], db) == 0
    out, err = capsys.readouterr()
    token = out.strip()
    assert out == token + "\n" and len(token) == 40
    assert "Authorization: Bearer" in err and token not in err
    assert main_tokens(["add", "django-site"], db) == 1
    assert capsys.readouterr().err.count("\n") == 1
    assert main_tokens(["add", "no spaces"], db) == 1
    capsys.readouterr()
    assert main_tokens(["list"], db) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["NAME", "CREATED", "LAST", "USED"]
    assert "django-site" in out and token not in out
    assert main_tokens(["remove", "django-site"], db) == 0
    assert capsys.readouterr().out == "removed token django-site\n"
    assert main_tokens(["remove", "django-site"], db) == 1
