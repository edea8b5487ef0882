"""Several rtmpd nodes on one PostgreSQL (a throwaway cluster): a user added on node A
publishes on node B; A lists B's stream (with its codecs and thumbnail) and sends its viewers
to B, and an nginx edge in front of A follows that redirect itself; a ban on A cuts the stream
on B within 2 s; a reconnect that lands on another node takes the stream over; with
duplicate = reject the other node refuses; a node killed with SIGKILL has its stream released
by the others once its lease runs out, and the streamer publishes again elsewhere; and two
nodes behind HAProxy (deploy/haproxy.cfg, send-proxy-v2) see the streamer's and the viewer's
own addresses."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from rtmpd.app import Rtmpd
from tests.support.app import HeldPublisher, media_tags, start_server
from tests.support.engines import DEPLOY, free_port, haproxy, nginx, stop, wait_port

START = "NetStream.Publish.Start"
LEASE = 3.0
pytestmark = pytest.mark.timeout(120)


async def node(tmp_path: Path, name: str, url: str, **sections: dict[str, Any]) -> Rtmpd:
    database = {"url": url, "node": name, "lease": LEASE, **sections.pop("database", {})}
    return await start_server(tmp_path / name, database=database, **sections)


@pytest.fixture
async def nodes(tmp_path: Path, pg_url: str) -> AsyncIterator[tuple[Rtmpd, Rtmpd]]:
    a = await node(tmp_path, "a", pg_url)
    b = await node(tmp_path, "b", pg_url)
    try:
        yield a, b
    finally:
        await b.stop()
        await a.stop()


async def until(check: Any, timeout: float = 5.0, what: str = "") -> float:
    """Poll the async `check` until it is true; the seconds it took."""
    started = time.monotonic()
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.02)
    return time.monotonic() - started


async def api_live(server: Rtmpd, source: str = "127.0.0.1") -> list[str]:
    """The names node `server`'s API lists as live, asked directly from `source`."""
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with aiohttp.ClientSession(connector=connector) as http:
        got = await http.get(f"http://127.0.0.1:{server.http_port}/api/streams")
        return [s["name"] for s in (await got.json())["streams"]]


async def streaming(port: int, key: str, source: str = "127.0.0.1") -> HeldPublisher:
    publisher = HeldPublisher(port, key, source=source)
    assert (await publisher.start()).code == START
    publisher.send_tags(media_tags(seconds=3, fps=10, width=96, height=64))
    return publisher


async def test_a_user_of_node_a_publishes_on_node_b_and_a_sends_viewers_there(
    nodes: tuple[Rtmpd, Rtmpd],
) -> None:
    a, b = nodes
    assert a.accounts is not None
    key = (await a.accounts.add_user("benw")).key
    publisher = await streaming(b.rtmp.port, key)

    async def a_lists_it() -> bool:
        return await api_live(a) == ["benw"]

    await until(a_lists_it, what="node A lists benw")
    async with aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{a.http_port}"
        moved = await http.get(f"{base}/live/benw/index.m3u8", allow_redirects=False)
        assert moved.status == 307
        assert moved.headers["Location"] == f"{b.node_url}/live/benw/index.m3u8"
        assert moved.headers["Cache-Control"] == "no-store"
        followed = await http.get(f"{base}/live/benw/index.m3u8")
        assert followed.status == 200 and (await followed.text()).startswith("#EXTM3U")
        assert str(followed.url).startswith(b.node_url)
        page = await http.get(f"{base}/api/streams/benw")
        info = await page.json()
        own = await (await http.get(f"{b.node_url}/api/streams/benw")).json()
        assert info["live"] is True
        # what node B knows of its stream, node A shows too (but for the bitrates)
        assert own["video"]["kbps"] is not None
        assert info["video"] == {**own["video"], "kbps": None}
        assert info["audio"] == {**own["audio"], "kbps": None}
        assert info["video"]["name"] == "H.264" and info["video"]["width"] == 96
        thumb = await http.get(f"{base}/thumb/benw.jpg")
        assert thumb.status == 200 and (await thumb.read())[:2] == b"\xff\xd8"
        # the nginx edge in front of node A follows A's 307 itself: viewers stay on the edge
        with nginx(f"127.0.0.1:{a.http_port}") as edge:
            at_edge = f"http://127.0.0.1:{edge.port}/live/benw/"
            listed = await http.get(at_edge + "index.m3u8")
            assert listed.status == 200 and not listed.history
            segment = next(line for line in (await listed.text()).splitlines()
                           if line.endswith(".ts"))  # fmt: skip
            served = [await http.get(at_edge + segment) for _ in range(3)]
            assert [r.status for r in served] == [200] * 3
            assert [r.headers["X-Cache"] for r in served] == ["MISS", "HIT", "HIT"]
            assert all(str(r.url).startswith(at_edge) for r in served)
            assert len({await r.read() for r in served}) == 1
    await publisher.close()

    async def a_drops_it() -> bool:
        return await api_live(a) == []

    await until(a_drops_it, what="node A drops benw after the publish ended")


async def test_a_ban_on_node_a_cuts_the_stream_on_node_b_within_2_s(
    nodes: tuple[Rtmpd, Rtmpd],
) -> None:
    a, b = nodes
    assert a.accounts is not None
    key = (await a.accounts.add_user("benw")).key
    publisher = await streaming(b.rtmp.port, key)
    await asyncio.sleep(0.3)
    started = time.monotonic()
    await a.accounts.ban("benw")
    await publisher.wait_closed(2.0)
    took = time.monotonic() - started
    print(f"\nban on A cut the publish on B after {took * 1000:.0f} ms")
    assert took < 2.0
    await publisher.close()


async def test_a_reconnect_on_another_node_takes_the_stream_over(
    nodes: tuple[Rtmpd, Rtmpd],
) -> None:
    a, b = nodes
    assert a.accounts is not None
    key = (await a.accounts.add_user("benw")).key
    first = await streaming(a.rtmp.port, key)
    second = await streaming(b.rtmp.port, key)
    await first.wait_closed(2.0)  # the half-open old connection on A is cut

    async def a_sends_to_b() -> bool:
        record = a.auth.remote("benw")
        return record is not None and record.url == b.node_url

    await until(a_sends_to_b)
    assert await api_live(a) == ["benw"] and await api_live(b) == ["benw"]
    assert not second.closed.is_set()
    await second.close()
    await first.close()


async def test_duplicate_reject_holds_across_nodes(tmp_path: Path, pg_url: str) -> None:
    a = await node(tmp_path, "a", pg_url, auth={"duplicate": "reject"})
    b = await node(tmp_path, "b", pg_url, auth={"duplicate": "reject"})
    try:
        assert a.accounts is not None
        key = (await a.accounts.add_user("benw")).key
        first = await streaming(a.rtmp.port, key)
        refused = await HeldPublisher(b.rtmp.port, key).start()
        assert refused.description == "already publishing"
        assert not first.closed.is_set()
        await first.close()
    finally:
        await b.stop()
        await a.stop()


def write_node_config(folder: Path, name: str, url: str, rtmp: int, http: int) -> Path:
    """deploy/rtmpd-node.toml with its @WORDS@ filled in; fragments of 1 s for a quick test."""
    folder.mkdir(parents=True, exist_ok=True)
    text = (DEPLOY / "rtmpd-node.toml").read_text()
    for word, value in (("RTMP", f"127.0.0.1:{rtmp}"), ("HTTP", f"127.0.0.1:{http}"),
                        ("BALANCER", "127.0.0.1"), ("DATABASE", url), ("NODE", name),
                        ("PUBLIC", f"http://127.0.0.1:{http}"), ("DATA", str(folder))):  # fmt: skip
        text = text.replace(f"@{word}@", value)
    text = text.replace("lease = 15.0", f"lease = {LEASE}")
    text = text.replace("[hls]\n", "[hls]\nfragment = 1.0\nplaylist_length = 4.0\n")
    config = folder / "rtmpd.toml"
    config.write_text(text)
    return config


async def test_a_killed_nodes_stream_is_released_by_the_others(
    tmp_path: Path, pg_url: str, nodes: tuple[Rtmpd, Rtmpd]
) -> None:
    a, b = nodes
    assert a.accounts is not None
    key = (await a.accounts.add_user("benw")).key
    rtmp, http = free_port(), free_port()
    config = write_node_config(tmp_path / "c", "c", pg_url, rtmp, http)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "rtmpd", "-c", str(config), "serve"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:
        await asyncio.to_thread(wait_port, rtmp, proc, 30.0)
        # HAProxy (127.0.0.1) is the node's trusted balancer; the streamer comes straight in.
        publisher = await streaming(rtmp, key, source="127.0.0.2")

        async def a_lists_it() -> bool:
            return await api_live(a) == ["benw"]

        await until(a_lists_it, 10.0)
        proc.send_signal(signal.SIGKILL)  # no goodbye: its live record stays behind
        proc.wait(5)
        killed = time.monotonic()

        async def released() -> bool:
            return await api_live(a) == [] and a.auth.remote("benw") is None

        await until(released, LEASE + 3.0)
        took = time.monotonic() - killed
        print(f"\nnode c's stream released {took:.2f} s after SIGKILL (lease {LEASE:g} s)")
        again = await streaming(b.rtmp.port, key)

        async def a_sends_to_b() -> bool:
            return await api_live(a) == ["benw"]

        await until(a_sends_to_b)
        await again.close()
        await publisher.close()
    finally:
        stop(proc)
        err = proc.stderr.read().decode() if proc.stderr else ""
        assert key not in err and key[:8] not in err


async def test_two_nodes_behind_haproxy(
    tmp_path: Path, pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """deploy/haproxy.cfg in front of nodes A and B: the streamer's address reaches the node
    its publish lands on, and any node answers viewers (or sends them to the owner)."""
    caplog.set_level(logging.INFO)
    behind = {"proxy_protocol": True, "trusted_proxies": ["127.0.0.1"]}
    a = await node(tmp_path, "a", pg_url, rtmp=behind, http=behind)
    b = await node(tmp_path, "b", pg_url, rtmp=behind, http=behind)
    rtmp, http = free_port(), free_port()
    env = {"RTMP_BIND": f"127.0.0.1:{rtmp}", "HTTP_BIND": f"127.0.0.1:{http}"}
    for label, server in (("A", a), ("B", b)):
        env[f"NODE_{label}_RTMP"] = f"127.0.0.1:{server.rtmp.port}"
        env[f"NODE_{label}_HTTP"] = f"127.0.0.1:{server.http_port}"
    try:
        with haproxy(env, [rtmp, http]):
            assert a.accounts is not None
            key = (await a.accounts.add_user("benw")).key
            publisher = await streaming(rtmp, key, source="127.0.0.7")
            owner = a if a.auth.remote("benw") is None and await a.auth.live_names() else b
            assert await owner.auth.live_names() == {"benw"}
            accepted = [
                r.getMessage() for r in caplog.records if "accepted under" in r.getMessage()
            ]
            assert accepted == ["publish from 127.0.0.7 accepted under benw"]

            async def both_list_it() -> bool:  # asked directly, not as the trusted balancer
                direct = [await api_live(n, "127.0.0.2") for n in (a, b)]
                return direct == [["benw"], ["benw"]]

            await until(both_list_it)
            connector = aiohttp.TCPConnector(local_addr=("127.0.0.8", 0), force_close=True)
            statuses = []
            async with aiohttp.ClientSession(connector=connector) as viewer:
                for _ in range(6):
                    url = f"http://127.0.0.1:{http}/live/benw/index.m3u8"
                    got = await viewer.get(url, allow_redirects=False)
                    statuses.append(got.status)
                    if got.status == 307:
                        assert got.headers["Location"].startswith(owner.node_url)
                for _ in range(2):  # whichever node HAProxy picks, the viewer gets the playlist
                    followed = await viewer.get(url)
                    assert followed.status == 200
                    assert (await followed.text()).startswith("#EXTM3U")
            assert set(statuses) == {200, 307}, statuses  # round robin: owner and the other
            access = [r.getMessage() for r in caplog.records if r.name == "rtmpd.access"]
            viewed = [line for line in access if "/live/benw/" in line]
            assert len(viewed) >= 8 and all(line.startswith("127.0.0.8 - - ") for line in viewed)
            await publisher.close()
    finally:
        await b.stop()
        await a.stop()
