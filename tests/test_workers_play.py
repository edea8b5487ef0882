"""RTMP play with `[server] workers = 2` (rtmpd.pull): a player on the worker that does not
hold the stream gets it pulled from the one that does, decodes it (FFmpeg through PyAV, in a
child process) and gets the end when the publish ends; two players there share one pull; a
takeover that brings the publish to the players' worker goes on for them without a pull.

Which worker takes a connection is made certain as in tests/test_workers.py: the other one is
stopped (SIGSTOP) until the connection has been taken."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator

import pytest

from tests.support.media import FlvTag, make_flv, read_flv_tags
from tests.support.rtmp_player import PlayResult, finish_player, start_player
from tests.test_workers import GUARD, Cluster, _start, _stop, answer, send_until, until

pytestmark = pytest.mark.timeout(120)

CONFIG = """\
[server]
workers = 2
balance = "{balance}"
[rtmp]
listen = "127.0.0.1:0"
allow_play = ["127.0.0.1"]
[http]
listen = "127.0.0.1:0"
[hls]
path = "hls"
fragment = 1.0
playlist_length = 10.0
grace = 1.0
speed_burst = 3600
[database]
path = "data/rtmpd.sqlite3"
[log]
level = "info"
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = _start(tmp_path_factory.mktemp("workers-play") / "node", config=CONFIG)
    cluster.tags = read_flv_tags(make_flv(seconds=10, fps=30, gop=30, width=160, height=96))
    try:
        yield cluster
    finally:
        _stop(cluster)
        print(cluster.text())  # shown when a test fails
    assert "Traceback" not in cluster.text()


def lines(cluster: Cluster, worker: int, *words: str) -> int:
    """Log lines of `worker` with every one of `words`."""
    return sum(1 for line in cluster.text().splitlines()
               if f"[w{worker}]" in line and all(w in line for w in words))  # fmt: skip


async def players_on(
    cluster: Cluster, worker: int, name: str, count: int
) -> list[asyncio.Task[PlayResult]]:
    """`count` FFmpeg players of `name` whose connections `worker` took."""
    url = f"rtmp://127.0.0.1:{cluster.rtmp_port}/app/{name}"
    before = lines(cluster, worker, f": playing {name}")  # the play request's name is redacted
    with cluster.only(worker):
        procs = [await start_player(url, 60) for _ in range(count)]

        async def asked() -> bool:
            return lines(cluster, worker, f": playing {name}") >= before + count

        await until(asked)
    return [asyncio.create_task(finish_player(p, 90)) for p in procs]


def pulled(cluster: Cluster, name: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return lines(cluster, 2, f"{name}: pulled from its worker") == 1

    return check


async def live_on(cluster: Cluster, worker: int, name: str) -> None:
    async def listed() -> bool:
        _, text, _ = await answer(cluster, f"/api/streams/{name}", worker)
        return '"live": true' in text

    await until(listed)


def decoded(result: PlayResult) -> None:
    """The player decoded pictures and stopped at the end of the stream, not on an error (a
    player that never got the end stops on its read timeout, an error)."""
    report = result.report
    assert result.returncode == 0 and report["error"] is None, (report, result.stderr[-2000:])
    assert report["width"] == 160 and report["pictures"] > 0 and report["first"] == "keyframe"


async def test_players_on_the_other_worker_share_one_pull_and_get_the_end(
    cluster: Cluster,
) -> None:
    name = "pia"
    key = cluster.cli("users", "add", name)
    tags: list[FlvTag] = cluster.tags
    publisher = await cluster.publish(key, worker=1)
    sent = send_until(publisher, tags, 0, 3000)
    await live_on(cluster, 2, name)
    players = await players_on(cluster, 2, name, 2)
    await until(pulled(cluster, name))
    sent = send_until(publisher, tags, sent, 6000)
    await asyncio.sleep(0.5)  # the players read what was sent
    await publisher.close()  # the publish ends; after the grace, the broadcast
    results = await asyncio.gather(*players)
    for result in results:
        decoded(result)
        assert result.report["media_seconds"] > 2.0  # the GOP it joined at, and what followed
    # One pull for both: worker 1 played the stream once, to worker 2's private socket.
    assert lines(cluster, 1, "rtmpd.siblings:", f": playing {name}") == 1
    assert lines(cluster, 1, f": playing {name}") == 1
    assert lines(cluster, 2, f"{name}: pulled from its worker") == 1
    assert lines(cluster, 2, f"{name}: pull ended: the stream ended") == 1


async def test_a_takeover_to_the_players_worker_goes_on_for_them(cluster: Cluster) -> None:
    name = "quinn"
    key = cluster.cli("users", "add", name)
    tags: list[FlvTag] = cluster.tags
    first = await cluster.publish(key, worker=1)
    sent = send_until(first, tags, 0, 3000)
    await live_on(cluster, 2, name)
    [player] = await players_on(cluster, 2, name, 1)
    await until(pulled(cluster, name))
    send_until(first, tags, sent, 5000)
    await asyncio.sleep(0.3)
    second = await cluster.publish(key, worker=2)  # the streamer came back on worker 2
    await first.wait_closed(GUARD)
    assert lines(cluster, 2, f"{name}: pull ended: the publish moved to this worker") == 1
    send_until(second, tags, 0, 4000)
    await asyncio.sleep(0.5)
    began = time.monotonic()
    await second.close()
    result = await player
    decoded(result)
    # At most 3 s came from the first publish once the player was on: the rest is the second's.
    assert result.report["media_seconds"] > 5.0, result.report
    print(f"\nthe player ended {time.monotonic() - began:.1f} s after the publish")
    await first.close()
