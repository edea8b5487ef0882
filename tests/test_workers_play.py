"""RTMP play and recording with `[server] workers = 2`. Play (rtmpd.pull): a player on the
worker that does not hold the stream gets it pulled from the one that does, decodes it (FFmpeg
through PyAV, in a child process) and gets the end when the publish ends; players there (one
joining late, from the pull's own GOP cache) share one pull; a takeover that brings the
publish to the players' worker goes on for them without a pull (one on the worker it left
gets the end). Recording (rtmpd.hls.shared_recordings): a recording worker 2 made is listed
and downloaded from worker 1 and decodes; one whose worker was killed mid-broadcast is closed
by the restarted worker and listed and played from the other.

Which worker takes a connection is made certain as in tests/test_workers.py: the other one is
stopped (SIGSTOP) until the connection has been taken."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.media import FlvTag, make_flv, read_flv_tags
from tests.support.rtmp_player import PlayResult, finish_player, start_player
from tests.test_record import decode_errors
from tests.test_workers import (
    GUARD,
    Cluster,
    _start,
    _stop,
    answer,
    connected,
    send_until,
    until,
)

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
[record]
enabled = true
path = "recordings"
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
    playing = ("rtmpd.rtmp:", f": playing {name}")  # the play request's name is redacted
    before = lines(cluster, worker, *playing)
    with cluster.only(worker):
        procs = [await start_player(url, 60) for _ in range(count)]

        async def asked() -> bool:
            return lines(cluster, worker, *playing) >= before + count

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
    sent = send_until(publisher, tags, sent, 4500)
    await asyncio.sleep(0.3)
    # A late joiner, on the pull already running: headers and the last GOP from worker 2's
    # own cache (worker 1 is stopped while it connects), then the live stream.
    players += await players_on(cluster, 2, name, 1)
    sent = send_until(publisher, tags, sent, 7000)
    await asyncio.sleep(0.5)  # the players read what was sent
    await publisher.close()  # the publish ends; after the grace, the broadcast
    results = await asyncio.gather(*players)
    for result in results:
        decoded(result)
        assert result.report["media_seconds"] > 2.0  # the GOP it joined at, and what followed
    # One pull for all three: worker 1 played the stream once, to worker 2's private socket.
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
    [left] = await players_on(cluster, 1, name, 1)  # on the worker the publish will leave
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
    decoded(await left)  # the end, once worker 1's grace for the stream was over
    assert lines(cluster, 1, "rtmpd.rtmp:", f"play of {name} ended: the stream ended") == 1
    result = await player
    decoded(result)
    # At most 3 s came from the first publish once the player was on: the rest is the second's.
    assert result.report["media_seconds"] > 5.0, result.report
    print(f"\nthe player ended {time.monotonic() - began:.1f} s after the publish")
    await first.close()


async def recordings_of(cluster: Cluster, name: str, worker: int) -> list[dict[str, Any]]:
    """The finished recordings of `name` as the public API of `worker` lists them."""
    status, text, _ = await answer(cluster, f"/api/streams/{name}/recordings", worker)
    assert status == 200, text
    found: list[dict[str, Any]] = json.loads(text)["recordings"]
    return found


async def every_recording(cluster: Cluster, name: str, token: str) -> list[dict[str, Any]]:
    """Those being recorded too: the admin API's list (answered by worker 1, whichever worker
    the request reaches)."""
    headers = {"Authorization": f"Bearer {token}"}
    path = f"/api/admin/recordings/{name}"
    async with connected(cluster, 2) as http, http.get(path, headers=headers) as response:
        assert response.status == 200, await response.text()
        found: list[dict[str, Any]] = (await response.json())["recordings"]
    return found


async def test_a_recording_of_worker_2_is_listed_and_downloaded_from_worker_1(
    cluster: Cluster, tmp_path: Path
) -> None:
    name = "rosa"
    key = cluster.cli("users", "add", name)
    token = cluster.cli("tokens", "add", "rosa-test")
    publisher = await cluster.publish(key, worker=2)
    send_until(publisher, cluster.tags, 0, 4000)

    async def recording_seen() -> bool:  # worker 2 rewrites its sidecar as it records
        found = await every_recording(cluster, name, token)
        return bool(found) and found[0]["recording"] and found[0]["bytes"] > 50_000

    await until(recording_seen)
    await publisher.close()

    async def with_mp4() -> bool:
        found = await recordings_of(cluster, name, 1)
        return bool(found) and found[0]["mp4_url"] is not None

    await until(with_mp4)
    [listed] = await recordings_of(cluster, name, 1)
    assert await recordings_of(cluster, name, 2) == [listed]
    assert listed["recording"] is False and listed["duration_seconds"] >= 2.0
    status, text, headers = await answer(cluster, listed["playlist_url"], 1)
    assert status == 200 and "#EXT-X-ENDLIST" in text
    async with connected(cluster, 1) as http, http.get(listed["mp4_url"]) as response:
        assert response.status == 200 and response.headers["X-Rtmpd-Worker"] == "1"
        mp4 = tmp_path / "recording.mp4"
        mp4.write_bytes(await response.read())
    assert decode_errors(mp4) == ""
    assert lines(cluster, 2, f"recording {name}: started") == 1
    assert lines(cluster, 1, f"recording {name}") == 0  # worker 1 only read the folder


async def test_a_recording_of_a_killed_worker_is_closed_and_listed_by_the_other(
    cluster: Cluster,
) -> None:
    name = "sami"
    key = cluster.cli("users", "add", name)
    token = cluster.cli("tokens", "add", "sami-test")
    publisher = await cluster.publish(key, worker=2)
    send_until(publisher, cluster.tags, 0, 3000)

    async def recording() -> bool:
        found = await every_recording(cluster, name, token)
        return bool(found) and found[0]["recording"] and found[0]["duration_seconds"] >= 1.0

    await until(recording)
    old = cluster.pids()
    os.kill(old[2], signal.SIGKILL)
    await publisher.wait_closed(GUARD)
    await publisher.close()

    async def closed() -> bool:
        found = await recordings_of(cluster, name, 1)
        return bool(found) and not found[0]["recording"] and found[0]["mp4_url"] is not None

    # by worker 2 once restarted (after its restart pause), which takes back its own
    # recordings and makes the MP4: a hang guard of three times the usual
    await until(closed, 3 * GUARD)
    assert lines(cluster, 2, f"recording {name}: ", "closed after an interrupted run") == 1
    [listed] = await recordings_of(cluster, name, 1)
    status, text, _ = await answer(cluster, listed["playlist_url"], 1)
    assert status == 200 and "#EXT-X-PLAYLIST-TYPE:VOD" in text and "#EXT-X-ENDLIST" in text
