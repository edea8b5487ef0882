"""File modes whatever the umask: the database (key digests, addresses) is its owner's only,
the HLS files and folders are readable by a web server running as another user."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from rtmpd.auth import AuthConfig, AuthService

from tests.support.app import start_server
from tests.support.hostile import Publisher, Stream, small_tags, until


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(params=[0o077, 0o000], ids=["umask 077", "umask 000"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


async def test_files_are_created_with_their_own_modes(tmp_path: Path, umask: int) -> None:
    srv = await start_server(tmp_path, hls={"playlist_length": 60.0})
    try:
        db = srv.config.database_path
        key = await srv.auth.store.add_user("benw")
        publisher = Publisher(srv.rtmp.port, key)
        assert (await publisher.start()).code == "NetStream.Publish.Start"
        publisher.send_tags(list(small_tags(3.0)))
        await publisher.close()
        stream = Stream(srv, "benw")
        await until(stream.ended)
        database_files = [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")]
        assert {f.name: mode(f) for f in database_files} == {f.name: 0o600 for f in database_files}
    finally:
        await srv.stop()
    root = srv.config.hls_path
    folders = [root, *(p for p in root.rglob("*") if p.is_dir())]
    files = [p for p in root.rglob("*") if p.is_file()]
    assert any(p.suffix == ".ts" for p in files) and any(p.suffix == ".m3u8" for p in files)
    assert {str(p): mode(p) for p in folders} == {str(p): 0o755 for p in folders}
    assert {str(p): mode(p) for p in files} == {str(p): 0o644 for p in files}


async def test_a_database_others_can_read_is_named_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A database made before rtmpd made it 0600 keeps its mode (it is the operator's file),
    with a warning that says what to do."""
    db = tmp_path / "old.sqlite3"
    sqlite3.connect(db).close()
    db.chmod(0o644)
    svc = AuthService(AuthConfig(), db)
    with caplog.at_level(logging.WARNING):
        await svc.start()
        await svc.stop()
    assert mode(db) == 0o644
    assert any("can be read by other users" in r.getMessage() and "chmod 600" in r.getMessage()
               for r in caplog.records)  # fmt: skip
