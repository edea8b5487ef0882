"""A node never sends viewers to itself: a live record under its own node name that it no
longer holds (its publish just ended, the record not yet cleared) is not "another node's"."""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp

from tests.support.app import start_server


async def test_its_own_stale_live_record_is_not_elsewhere(tmp_path: Path) -> None:
    server = await start_server(tmp_path, database={"node": "node-a"})
    try:
        assert server.auth.store is not None and server.auth._database is not None
        key = await server.auth.store.add_user("benw")
        owner = await server.auth.store.find_by_key(key)
        assert owner is not None
        now = time.time()
        written = await server.auth.store.set_live(
            owner.user_id, now, "127.0.0.1:5000", "stale", node="node-a", expires=now + 60
        )
        assert written
        await server.auth._database._read_remote(now)  # what the lease watcher does every 5 s
        assert server.auth.remote("benw") is None
        url = f"http://127.0.0.1:{server.http_port}/live/benw/index.m3u8"
        async with aiohttp.ClientSession() as http, http.get(url, allow_redirects=False) as got:
            assert got.status == 404  # nothing here: not a 307 to this same node
    finally:
        await server.stop()
