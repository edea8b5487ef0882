"""`rtmpd users ...` logic: keys alone on stdout, one clear line per mistake, no change on error."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from rtmpd.auth import Store
from rtmpd.auth.cli import main_users

from tests.support.auth import run_cli

HINT = "rtmp://example.com:1935/app"


def users(db: Path) -> list[tuple[str, int, bytes]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT name, active, key_digest FROM users ORDER BY name").fetchall()
    conn.close()
    return rows


def find(db: Path, key: str) -> str | None:
    async def lookup() -> str | None:
        async with Store(db) as store:
            owner = await store.find_by_key(key)
            return owner.name if owner else None

    return asyncio.run(lookup())


def run(capsys: pytest.CaptureFixture[str], db: Path, *argv: str) -> tuple[int, str, str]:
    code = main_users(list(argv), db, HINT)
    out, err = capsys.readouterr()
    return code, out, err


def test_add_prints_the_key_alone_and_the_hint_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "users.db"
    code, out, err = run(capsys, db, "add", "benw")
    assert code == 0
    key = out.strip()
    assert out == key + "\n" and len(key) == 32
    assert "publish to rtmp://example.com:1935/app/<key>" in err and key not in err
    assert find(db, key) == "benw"


def test_a_derived_publish_url_says_how_to_set_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main_users(
        ["add", "benw"], tmp_path / "users.db", "rtmp://studio:1935/app", guessed=True
    )
    err = capsys.readouterr().err
    assert code == 0 and "publish to rtmp://studio:1935/app/<key>" in err
    assert "[web] public_rtmp_url" in err
    main_users(["add", "alice"], tmp_path / "users.db", HINT)
    assert "public_rtmp_url" not in capsys.readouterr().err  # configured: nothing to explain


def test_list_ban_unban_rotate_remove(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "users.db"
    run(capsys, db, "add", "benw")
    old = run(capsys, db, "add", "alice")[1].strip()
    code, out, _ = run(capsys, db, "list")
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["NAME", "ACTIVE", "LIVE", "SINCE", "CREATED"]
    assert lines[1].split()[:3] == ["alice", "yes", "-"] and lines[2].split()[:2] == ["benw", "yes"]
    assert run(capsys, db, "ban", "benw")[:2] == (0, "banned benw\n")
    assert run(capsys, db, "ban", "benw")[:2] == (0, "benw was already banned\n")
    assert run(capsys, db, "list")[1].splitlines()[2].split()[:2] == ["benw", "no"]
    assert run(capsys, db, "unban", "benw")[:2] == (0, "unbanned benw\n")
    code, out, err = run(capsys, db, "rotate-key", "alice")
    new = out.strip()
    assert code == 0 and out == new + "\n" and new != old and new not in err
    assert find(db, old) is None and find(db, new) == "alice"
    assert run(capsys, db, "remove", "alice")[:2] == (0, "removed alice\n")
    assert [row[0] for row in users(db)] == ["benw"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["add", "benw"], "the name 'benw' is taken"),
        (["add", "BenW"], "a name is 2 to 32 characters"),
        (["add", "x"], "a name is 2 to 32 characters"),
        (["add", "api"], "the name 'api' is reserved"),
        (["add", "live"], "reserved"),
        (["ban", "nobody"], "no user named 'nobody'"),
        (["unban", "nobody"], "no user named 'nobody'"),
        (["remove", "nobody"], "no user named 'nobody'"),
        (["rotate-key", "nobody"], "no user named 'nobody'"),
        (["ban", "\x1b[2Jevil"], "no user named '\\x1b[2Jevil'"),
    ],
)
def test_bad_input_is_one_line_status_1_and_no_change(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    db = tmp_path / "users.db"
    run(capsys, db, "add", "benw")
    before = users(db)
    code, out, err = run(capsys, db, *argv)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and message in err and "\x1b" not in err
    assert users(db) == before


def test_usage_errors_and_unusable_databases(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, tmp_path / "users.db", "frobnicate")
    assert code == 2 and "usage: rtmpd users" in err
    assert run(capsys, tmp_path / "users.db")[0] == 2
    code, out, err = run(capsys, tmp_path / "no" / "such" / "dir.db", "list")
    assert code == 1 and out == "" and err.count("\n") == 1 and "cannot open database" in err


async def test_works_from_another_process(tmp_path: Path) -> None:
    db = tmp_path / "users.db"
    code, out, err = await run_cli(db, "add", "benw")
    key = out.strip()
    assert code == 0 and out == key + "\n" and "publish to" in err
    async with Store(db) as store:
        owner = await store.find_by_key(key)
        assert owner is not None and owner.name == "benw"
    code, out, err = await run_cli(db, "add", "benw")
    assert code == 1 and out == "" and "taken" in err
