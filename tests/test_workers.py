"""`[server] workers = 2`: the `rtmpd` command as a user runs it, one supervisor and two worker
processes on one RTMP and one HTTP port. Both workers answer (X-Rtmpd-Worker); /metrics is one
view of both; a publish lands in one worker and the API, the channel list and the page of either
show it; an LL-HLS blocking reload is answered whichever worker receives it; a worker killed
with SIGKILL is restarted and its streamer publishes again; a reconnect that lands on the
other worker takes the stream over; a ban cuts the stream whichever worker holds it; the
failed-key limit holds across workers; the admin API lists and kicks either worker's
publishes; a killed worker's streams get ENDLIST at once, except one its streamer already took
over on the other worker; viewer counts, the connection caps and [hls] max_total_bytes are the
node's; SIGTERM stops everything.

Which worker takes a connection is made certain by stopping the other one (SIGSTOP) while it
connects: with `balance = "shared"` a stopped worker accepts nothing."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from tests.support.app import HeldPublisher
from tests.support.m3u8_validator import PlaylistHistory
from tests.support.media import TAG_AUDIO, TAG_VIDEO, FlvTag, make_flv, read_flv_tags

START = "NetStream.Publish.Start"
GUARD = 20.0  # a hang guard, not a speed requirement
pytestmark = pytest.mark.timeout(120)

CONFIG = """\
[server]
workers = 2
balance = "{balance}"
[rtmp]
listen = "127.0.0.1:0"
drain_grace = 1.0
[http]
listen = "127.0.0.1:0"
[hls]
path = "hls"
low_latency = true
fragment = 1.0
playlist_length = 10.0
[database]
path = "data/rtmpd.sqlite3"
[auth]
max_failures = 3
[log]
level = "info"
"""


@dataclass
class Cluster:
    """The supervisor and what its log says: ports, worker process ids."""

    folder: Path
    proc: subprocess.Popen[bytes]
    log: Path
    rtmp_port: int = 0
    http_port: int = 0
    tags: list[FlvTag] = field(default_factory=list)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "rtmpd", "-c", str(self.folder / "rtmpd.toml"), *args],
            capture_output=True, text=True, cwd=self.folder, timeout=30,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        lines = done.stdout.strip().splitlines()
        return lines[-1].strip() if lines else ""

    def pids(self) -> dict[int, int]:
        """Worker number -> its process id now (the children of the supervisor)."""
        found: dict[int, int] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if (
                int(stat.rsplit(")", 1)[1].split()[1]) != self.proc.pid
                or b"--worker" not in cmdline
            ):
                continue
            for line in self.text().splitlines()[::-1]:
                m = re.search(r"\[w(\d)\] rtmpd.worker: pid (\d+)", line)
                if m and int(m[2]) == int(entry.name):
                    found[int(m[1])] = int(entry.name)
                    break
        return found

    @contextmanager
    def only(self, worker: int) -> Iterator[None]:
        """Every other worker stopped (SIGSTOP): new connections go to `worker`."""
        others = [pid for n, pid in self.pids().items() if n != worker]
        for pid in others:
            os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            for pid in others:
                os.kill(pid, signal.SIGCONT)

    async def publish(self, key: str, worker: int, source: str = "127.0.0.1") -> HeldPublisher:
        with self.only(worker):
            publisher = HeldPublisher(self.rtmp_port, key, source=source)
            status = await publisher.start()
        assert status.code == START, status
        return publisher


#: Plain HLS (each worker serves every stream's playlists from the files and counts its own
#: viewers), and small node-wide bounds that the tests of the bounds reach from two workers.
PLAIN = (
    CONFIG.replace("low_latency = true", "low_latency = false\nmax_total_bytes = 1_000_000")
    .replace(
        "drain_grace = 1.0", "drain_grace = 1.0\nmax_connections = 4\nmax_connections_per_ip = 2"
    )
    .replace("[http]\n", "[http]\nmax_connections_per_ip = 4\n")
)


def _start(folder: Path, balance: str = "shared", config: str = CONFIG) -> Cluster:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "rtmpd.toml").write_text(config.format(balance=balance))
    log = folder / "rtmpd.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rtmpd", "-c", "rtmpd.toml"], cwd=folder, stdout=out, stderr=out
        )
    cluster = Cluster(folder, proc, log)
    deadline = time.monotonic() + GUARD
    while "2 workers up" not in cluster.text():
        assert proc.poll() is None, cluster.text()
        assert time.monotonic() < deadline, cluster.text()
        time.sleep(0.05)
    m = re.search(r"on RTMP port (\d+) and HTTP port (\d+)", cluster.text())
    assert m is not None
    cluster.rtmp_port, cluster.http_port = int(m[1]), int(m[2])
    return cluster


def _stop(cluster: Cluster) -> None:
    if cluster.proc.poll() is None:
        cluster.proc.send_signal(signal.SIGTERM)
        try:
            cluster.proc.wait(GUARD)
        except subprocess.TimeoutExpired:
            cluster.proc.kill()
            cluster.proc.wait()


@pytest.fixture(scope="module")
def tags() -> list[FlvTag]:
    return read_flv_tags(make_flv(seconds=14, fps=30, gop=30, width=160, height=96))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, tags: list[FlvTag]) -> Iterator[Cluster]:
    """One supervisor for the tests below (each with its own streamer): starting two workers
    is most of what they take."""
    cluster = _start(tmp_path_factory.mktemp("workers") / "node")
    cluster.tags = tags
    try:
        yield cluster
    finally:
        _stop(cluster)
        print(cluster.text())  # shown when a test fails
    assert "Traceback" not in cluster.text()


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory, tags: list[FlvTag]) -> Iterator[Cluster]:
    """A second supervisor, for plain HLS and node-wide bounds."""
    cluster = _start(tmp_path_factory.mktemp("workers") / "plain", config=PLAIN)
    cluster.tags = tags
    try:
        yield cluster
    finally:
        _stop(cluster)
        print(cluster.text())
    assert "Traceback" not in cluster.text()


@contextlib.asynccontextmanager
async def connected(cluster: Cluster, worker: int) -> AsyncIterator[aiohttp.ClientSession]:
    """A client whose one keep-alive connection `worker` accepted (the other one was stopped
    until a first request on it was answered)."""
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(f"http://127.0.0.1:{cluster.http_port}",
                                     connector=connector) as http:  # fmt: skip
        with cluster.only(worker):
            async with http.get("/api/openapi.json") as first:
                await first.read()
        assert first.headers["X-Rtmpd-Worker"] == str(worker)
        yield http


async def answer(cluster: Cluster, path: str, worker: int) -> tuple[int, str, dict[str, str]]:
    """GET `path` answered by `worker`."""
    async with connected(cluster, worker) as http, http.get(path) as response:
        text = (await response.read()).decode(errors="replace")
    assert response.headers["X-Rtmpd-Worker"] == str(worker)
    return response.status, text, dict(response.headers)


async def until(check: object, timeout: float = GUARD) -> None:
    async with asyncio.timeout(timeout):
        while not await check():  # type: ignore[operator]
            await asyncio.sleep(0.05)


def send_until(publisher: HeldPublisher, tags: list[FlvTag], sent: int, ms: int) -> int:
    end = sent
    while end < len(tags) and tags[end].timestamp <= ms:
        end += 1
    publisher.send_tags(tags[sent:end])
    return end


async def test_both_workers_answer_and_metrics_show_both(cluster: Cluster) -> None:
    for worker in (1, 2):
        for _ in range(3):
            status, _, _ = await answer(cluster, "/api/streams", worker)
            assert status == 200
    counts = []
    for worker in (1, 2):  # each worker's scrape counts both workers' requests
        _, text, _ = await answer(cluster, "/metrics", worker)
        m = re.search(r'rtmpd_http_requests_total\{route="api_streams",status="200"\} (\S+)', text)
        assert m is not None, text
        counts.append(float(m[1]))
        assert "rtmpd_workers 2.0" in text
    assert counts[0] == counts[1] >= 6


async def test_a_publish_in_one_worker_is_listed_and_played_from_either(cluster: Cluster) -> None:
    name = "carol"
    key = cluster.cli("users", "add", name)
    publisher = await cluster.publish(key, worker=2)
    sent = send_until(publisher, cluster.tags, 0, 3000)

    async def listed_by_worker_1() -> bool:
        _, text, _ = await answer(cluster, "/api/streams", 1)
        return f'"name": "{name}"' in text or f'"name":"{name}"' in text

    await until(listed_by_worker_1)
    for worker in (1, 2):
        status, text, _ = await answer(cluster, f"/api/streams/{name}", worker)
        assert status == 200 and '"live": true' in text
        status, text, _ = await answer(cluster, "/", worker)
        assert status == 200 and name in text
        status, text, _ = await answer(cluster, f"/live/{name}/index.m3u8", worker)
        assert status == 200 and "#EXT-X-PART:" in text
    # An LL-HLS blocking reload for the next part, received by the worker without the
    # stream: it waits until worker 2 packages that part, and lists it.
    history = PlaylistHistory()
    _, text, _ = await answer(cluster, f"/live/{name}/index.m3u8", 1)
    playlist = history.check(text)
    msn = playlist.first_sequence + len(playlist.segments)
    part = len(playlist.open_parts)
    async with connected(cluster, 1) as http:
        blocked = asyncio.create_task(
            http.get(f"/live/{name}/index.m3u8?_HLS_msn={msn}&_HLS_part={part}")
        )
        await asyncio.sleep(0.3)  # worker 1 asked worker 2, which waits for the part
        assert not blocked.done()
        sent = send_until(publisher, cluster.tags, sent, cluster.tags[sent].timestamp + 600)
        response = await asyncio.wait_for(blocked, GUARD)
        async with response:
            assert response.status == 200
            assert response.headers["X-Rtmpd-Worker"] == "1"
            reloaded = PlaylistHistory().check(await response.text())
    after = (reloaded.first_sequence + len(reloaded.segments), len(reloaded.open_parts))
    assert after > (msn, part)

    # Codecs and the thumbnail, which worker 2 knows, shown by worker 1 too.
    async def same_codecs() -> bool:
        _, one, _ = await answer(cluster, f"/api/streams/{name}", 1)
        _, two, _ = await answer(cluster, f"/api/streams/{name}", 2)
        a, b = json.loads(one)["video"], json.loads(two)["video"]
        return a is not None and b is not None and (a["codec"], a["width"]) == (
            b["codec"], b["width"])  # fmt: skip

    await until(same_codecs)
    status, _, headers = await answer(cluster, f"/thumb/{name}.jpg", 1)
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    await publisher.close()


async def test_a_multitrack_rendition_is_answered_by_either_worker(cluster: Cluster) -> None:
    """A rendition's LL-HLS playlist (with its rendition report), a blocking reload of it and
    its hinted part, asked of the worker that does not hold the stream: relayed as the single
    rendition's are; the API lists both renditions there too."""
    name = "mtvera"
    key = cluster.cli("users", "add", name)
    flv = make_flv(seconds=6, fps=10, gop=10, width=160, height=96, renditions=[[80, 48]])
    tags = [t for t in read_flv_tags(flv) if t.kind in (TAG_AUDIO, TAG_VIDEO)]
    publisher = await cluster.publish(key, worker=2)
    sent = send_until(publisher, tags, 0, 3000)

    async def rendition_on_worker_1() -> bool:
        status, text, _ = await answer(cluster, f"/live/{name}/v1.m3u8", 1)
        return status == 200 and "#EXT-X-RENDITION-REPORT:" in text

    await until(rendition_on_worker_1)
    status, text, _ = await answer(cluster, f"/live/{name}/index.m3u8", 1)
    assert status == 200 and text.count("#EXT-X-STREAM-INF:") == 2
    _, text, headers = await answer(cluster, f"/live/{name}/v1.m3u8", 1)
    playlist = PlaylistHistory().check(text)
    assert playlist.reports[0]["URI"] == "v0.m3u8"
    msn = playlist.first_sequence + len(playlist.segments)
    part, hinted = len(playlist.open_parts), playlist.preload_hint
    async with connected(cluster, 1) as http:
        blocked = asyncio.create_task(
            http.get(f"/live/{name}/v1.m3u8?_HLS_msn={msn}&_HLS_part={part}")
        )
        await asyncio.sleep(0.3)  # worker 1 asked worker 2, which waits for the part
        assert not blocked.done()
        send_until(publisher, tags, sent, tags[sent].timestamp + 600)
        response = await asyncio.wait_for(blocked, GUARD)
        async with response:
            assert response.status == 200 and response.headers["X-Rtmpd-Worker"] == "1"
            reloaded = PlaylistHistory().check(await response.text())
    assert (reloaded.first_sequence + len(reloaded.segments), len(reloaded.open_parts)) > (
        msn, part)  # fmt: skip
    status, body, _ = await answer(cluster, f"/live/{name}/{hinted}", 1)
    assert status == 200

    async def both_renditions() -> bool:
        _, text, _ = await answer(cluster, f"/api/streams/{name}", 1)
        found = json.loads(text)["renditions"]
        return [(r["track"], r["width"]) for r in found] == [(0, 160), (1, 80)]

    await until(both_renditions)
    await publisher.close()


async def test_a_killed_worker_is_restarted_and_its_streamer_publishes_again(
    cluster: Cluster,
) -> None:
    name = "dave"
    key = cluster.cli("users", "add", name)
    publisher = await cluster.publish(key, worker=1)
    send_until(publisher, cluster.tags, 0, 3000)
    playlist = cluster.folder / "hls" / name / "index.m3u8"

    async def segments_listed() -> bool:
        return playlist.exists() and "#EXTINF" in playlist.read_text()

    await until(segments_listed)
    old = cluster.pids()
    os.kill(old[1], signal.SIGKILL)
    await publisher.wait_closed(GUARD)
    await publisher.close()

    async def restarted() -> bool:
        now = cluster.pids()
        return 1 in now and now[1] != old[1] and "rtmpd: HTTP listening" in cluster.text()

    await until(restarted)
    assert "worker 1 died (signal 9); restarting it" in cluster.text()
    assert cluster.pids()[2] == old[2]  # the other one went on
    again = await cluster.publish(key, worker=2)  # the reconnect lands on the other worker
    send_until(again, cluster.tags, 0, 3000)

    async def plays_on() -> bool:
        status, text, _ = await answer(cluster, f"/live/{name}/index.m3u8", 1)
        return status == 200 and "#EXT-X-DISCONTINUITY" in text and "#EXT-X-ENDLIST" not in text

    await until(plays_on)

    async def listed_live() -> bool:  # once worker 2 recorded its playlist, within 0.5 s
        _, text, _ = await answer(cluster, f"/api/streams/{name}", 1)
        return '"live": true' in text

    await until(listed_live)
    await again.close()


async def test_a_reconnect_on_the_other_worker_takes_over_and_a_ban_cuts_it(
    cluster: Cluster,
) -> None:
    name = "erin"
    key = cluster.cli("users", "add", name)
    first = await cluster.publish(key, worker=1)
    send_until(first, cluster.tags, 0, 1000)
    second = await cluster.publish(key, worker=2)
    await first.wait_closed(2.0)  # worker 1 saw the live record go to worker 2
    assert "taken over by a new connection" in cluster.text()
    assert not second.closed.is_set()
    started = time.monotonic()
    cluster.cli("users", "ban", name)
    await second.wait_closed(2.0)
    print(f"\nban cut the publish in worker 2 after {(time.monotonic() - started) * 1000:.0f} ms")
    await first.close()
    await second.close()


async def test_a_dashboard_session_opened_on_one_worker_holds_on_the_other(
    cluster: Cluster,
) -> None:
    token = cluster.cli("tokens", "add", "ops")
    base = f"http://127.0.0.1:{cluster.http_port}"
    async with connected(cluster, 2) as http:
        signed = await http.post("/admin/login", data={"token": token},
                                 headers={"Origin": base}, allow_redirects=False)  # fmt: skip
        assert signed.status == 303, await signed.text()
        cookie = signed.cookies["rtmpd_admin"].value
    async with connected(cluster, 1) as http:
        page = await http.get("/admin", cookies={"rtmpd_admin": cookie})
        assert page.status == 200 and "ops" in await page.text()
    async with connected(cluster, 2) as http:
        users = await http.get("/api/admin/users", headers={"Authorization": f"Bearer {token}"})
        assert users.status == 200 and users.headers["X-Rtmpd-Worker"] == "2"


async def test_the_failed_key_limit_holds_across_workers(cluster: Cluster) -> None:
    name = "fred"
    key = cluster.cli("users", "add", name)
    guesser = "127.0.0.5"
    for _ in range(3):  # max_failures wrong keys, all in worker 1
        with cluster.only(1):
            wrong = HeldPublisher(cluster.rtmp_port, "not-a-key", source=guesser)
            assert (await wrong.start()).code == "NetStream.Publish.BadName"
        await wrong.close()
    await asyncio.sleep(0.5)  # worker 2 reads worker 1's failures from the supervisor
    with cluster.only(2):
        blocked = HeldPublisher(cluster.rtmp_port, key, source=guesser)
        status = await blocked.start()
    assert status.code != START and "too many" in status.description.lower(), status
    await blocked.close()
    elsewhere = await cluster.publish(key, worker=2, source="127.0.0.6")  # others go on
    await elsewhere.close()


async def test_sigterm_stops_every_worker_and_reuseport_serves_from_both(tmp_path: Path) -> None:
    cluster = _start(tmp_path / "node", balance="reuseport")
    try:
        pids = cluster.pids()
        assert sorted(pids) == [1, 2]
        seen: set[str] = set()
        async with asyncio.timeout(GUARD):
            while seen != {"1", "2"}:  # the kernel hashes each new connection to one
                connector = aiohttp.TCPConnector(force_close=True)
                async with aiohttp.ClientSession(connector=connector) as http:
                    got = await http.get(f"http://127.0.0.1:{cluster.http_port}/")
                    seen.add(got.headers["X-Rtmpd-Worker"])
    finally:
        cluster.proc.send_signal(signal.SIGTERM)
        assert cluster.proc.wait(GUARD) == 0
    for pid in pids.values():
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()
    assert not (tmp_path / "node" / "data" / "rtmpd.pid").exists()
    assert "Traceback" not in cluster.text()


def test_the_server_section_is_checked() -> None:
    from rtmpd.config import ConfigError, from_dict

    assert from_dict({}, Path(".")).server.worker_count == 1
    assert from_dict({"server": {"workers": "auto"}}, Path(".")).server.worker_count == len(
        os.sched_getaffinity(0)
    )
    for bad, words in (({"workers": 0}, "[server] workers"), ({"balance": "x"}, "reuseport")):
        with pytest.raises(ConfigError, match=re.escape(words)):
            from_dict({"server": bad}, Path("."))


def test_a_port_in_use_is_one_line_and_exit_status_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        (tmp_path / "rtmpd.toml").write_text(
            CONFIG.format(balance="reuseport").replace(
                '[http]\nlisten = "127.0.0.1:0"', f'[http]\nlisten = "127.0.0.1:{port}"'
            )
        )
        done = subprocess.run([sys.executable, "-m", "rtmpd", "-c", "rtmpd.toml"], cwd=tmp_path,
                              capture_output=True, text=True, timeout=30)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        f"rtmpd: cannot listen for HTTP on 127.0.0.1:{port}: address already in use"
    )


async def test_a_restarted_worker_ends_the_streams_it_held_when_no_other_could(
    cluster: Cluster,
) -> None:
    name = "olga"
    publisher = await cluster.publish(cluster.cli("users", "add", name), worker=1)
    send_until(publisher, cluster.tags, 0, 3000)
    playlist = cluster.folder / "hls" / name / "index.m3u8"

    async def listed() -> bool:
        return playlist.exists() and "#EXTINF" in playlist.read_text()

    async def ended() -> bool:
        return "#EXT-X-ENDLIST" in playlist.read_text()

    await until(listed)
    pids = cluster.pids()
    os.kill(pids[2], signal.SIGSTOP)  # the other worker cannot act on the news
    try:
        os.kill(pids[1], signal.SIGKILL)
        await until(ended)  # the restarted worker 1 found its record left and ended it
    finally:
        os.kill(pids[2], signal.SIGCONT)
    assert f"HLS {name}: its publisher went before this worker's restart" in cluster.text()
    await publisher.close()


async def admin_call(
    cluster: Cluster, worker: int, method: str, path: str, token: str
) -> tuple[int, dict[str, object]]:
    """An admin API call on a connection `worker` accepted (worker 1 answers it)."""
    async with connected(cluster, worker) as http:
        headers = {"Authorization": f"Bearer {token}"}
        async with http.request(method, path, headers=headers) as response:
            body = await response.read()
    return response.status, json.loads(body) if body else {}


async def test_the_admin_api_lists_and_kicks_the_publishes_of_every_worker(
    cluster: Cluster,
) -> None:
    token = cluster.cli("tokens", "add", "ops-publishes")
    held = {}
    for worker, name in ((1, "ivan"), (2, "judy")):
        held[name] = await cluster.publish(cluster.cli("users", "add", name), worker=worker)
        send_until(held[name], cluster.tags, 0, 2000)

    async def both_listed() -> bool:
        status, body = await admin_call(cluster, 2, "GET", "/api/admin/publishes", token)
        assert status == 200 and body["unanswered_workers"] == []
        listed = {p["name"]: p["worker"] for p in body["publishes"]}  # type: ignore[attr-defined]
        return {listed.get("ivan"), listed.get("judy")} == {"1", "2"}

    await until(both_listed)
    status, body = await admin_call(cluster, 1, "GET", "/api/admin/publishes/judy/health", token)
    assert status == 200 and body["name"] == "judy"
    status, body = await admin_call(cluster, 2, "GET", "/api/admin/publishes/judy", token)
    assert status == 200 and body["worker"] == "2" and body["video"] is not None

    # A worker that does not answer is named, and the answer does not wait for it.
    async with connected(cluster, 1) as http:
        with cluster.only(1):
            got = await http.get("/api/admin/publishes",
                                 headers={"Authorization": f"Bearer {token}"})  # fmt: skip
            stalled = await got.json()
    assert stalled["unanswered_workers"] == ["2"]
    assert [p["name"] for p in stalled["publishes"] if p["name"] in held] == ["ivan"]

    # Kicks, asked of either worker, end the publish the other one holds.
    assert (await admin_call(cluster, 1, "DELETE", "/api/admin/publishes/judy", token))[0] == 204
    await held["judy"].wait_closed(GUARD)
    assert (await admin_call(cluster, 2, "DELETE", "/api/admin/publishes/ivan", token))[0] == 204
    await held["ivan"].wait_closed(GUARD)
    assert "kicked by an admin" in cluster.text()
    for publisher in held.values():
        await publisher.close()

    async def none_listed() -> bool:
        _, body = await admin_call(cluster, 2, "GET", "/api/admin/publishes", token)
        return not {"ivan", "judy"} & {p["name"] for p in body["publishes"]}  # type: ignore[attr-defined]

    await until(none_listed)
    status, _ = await admin_call(cluster, 2, "DELETE", "/api/admin/publishes/judy", token)
    assert status == 404
    async with connected(cluster, 2) as http:  # the workers' own route is not on the public port
        assert (await http.get("/_worker/admin/publishes")).status == 404


async def test_a_killed_workers_streams_end_and_one_taken_over_elsewhere_goes_on(
    cluster: Cluster,
) -> None:
    keys = {name: cluster.cli("users", "add", name) for name in ("gina", "hank")}
    held = {name: await cluster.publish(key, worker=2) for name, key in keys.items()}
    for publisher in held.values():
        send_until(publisher, cluster.tags, 0, 3000)
    hls = cluster.folder / "hls"

    async def both_listed() -> bool:
        return all(
            (hls / n / "index.m3u8").exists() and "#EXTINF" in (hls / n / "index.m3u8").read_text()
            for n in held
        )

    await until(both_listed)
    pids = cluster.pids()
    os.kill(pids[2], signal.SIGSTOP)  # hank's streamer reconnects to worker 1 first, then
    try:  # worker 2 dies holding gina's (and hank's old) connection
        again = HeldPublisher(cluster.rtmp_port, keys["hank"])
        assert (await again.start()).code == START
    finally:
        os.kill(pids[2], signal.SIGKILL)
    sent = send_until(again, cluster.tags, 0, 1000)
    gina = hls / "gina" / "index.m3u8"

    async def gina_ended() -> bool:
        return "#EXT-X-ENDLIST" in gina.read_text()

    await until(gina_ended)  # told by the supervisor, worker 1 ended it (not the restart)
    status, text, _ = await answer(cluster, "/api/streams/gina", 1)
    assert status == 200 and json.loads(text)["live"] is False

    async def restarted() -> bool:
        now = cluster.pids()
        return 2 in now and now[2] != pids[2] and "[w2] rtmpd: HTTP listening" in cluster.text()

    await until(restarted)
    sent = send_until(again, cluster.tags, sent, 3000)

    async def hank_plays_on() -> bool:
        status, text, _ = await answer(cluster, "/live/hank/index.m3u8", 2)
        return status == 200 and "#EXT-X-DISCONTINUITY" in text and "#EXT-X-ENDLIST" not in text

    await until(hank_plays_on)

    async def hank_listed_live() -> bool:  # once worker 1 recorded its playlist
        _, text, _ = await answer(cluster, "/api/streams/hank", 2)
        return json.loads(text)["live"] is True

    await until(hank_listed_live)
    assert not again.closed.is_set()
    assert "HLS hank: its publisher went" not in cluster.text()
    assert "HLS gina: its publisher went when" in cluster.text()
    await again.close()
    for publisher in held.values():
        await publisher.close()


async def test_a_channels_viewers_are_summed_over_the_workers(plain: Cluster) -> None:
    name = "kate"
    publisher = await plain.publish(plain.cli("users", "add", name), worker=1)
    send_until(publisher, plain.tags, 0, 3000)
    playlist = f"/live/{name}/index.m3u8"

    async def listed() -> bool:
        status, text, _ = await answer(plain, playlist, 2)
        return status == 200 and "#EXTINF" in text

    await until(listed)
    for worker, viewers in ((1, ("a", "b")), (2, ("c",))):  # each worker serves the file
        async with connected(plain, worker) as http:
            for agent in viewers:
                got = await http.get(playlist, headers={"User-Agent": f"viewer {agent}"})
                assert got.status == 200 and got.headers["X-Rtmpd-Worker"] == str(worker)

    async def counted(worker: int) -> bool:  # once the other worker wrote its counts
        _, text, _ = await answer(plain, f"/api/streams/{name}", worker)
        return int(json.loads(text)["viewers"]) == 3 + 1  # and the probe in `listed`

    for worker in (1, 2):
        await until(functools.partial(counted, worker))
        _, page, _ = await answer(plain, f"/{name}", worker)
        assert re.search(r'data-field="viewers">4<', page), page
    await publisher.close()


async def test_the_connection_caps_are_the_nodes(plain: Cluster) -> None:
    keys = [plain.cli("users", "add", f"cap{n}") for n in range(4)]
    held = [  # two from one address, one in each worker; then the node's total of four
        await plain.publish(keys[0], worker=1, source="127.0.0.7"),
        await plain.publish(keys[1], worker=2, source="127.0.0.7"),
        await plain.publish(keys[2], worker=1, source="127.0.0.8"),
    ]
    for worker in (1, 2):  # a third from the address is refused whichever worker takes it
        with plain.only(worker), pytest.raises(ConnectionError):
            await HeldPublisher(plain.rtmp_port, "not-a-key", source="127.0.0.7").start()
    held.append(await plain.publish(keys[3], worker=2, source="127.0.0.9"))
    with plain.only(1), pytest.raises(ConnectionError):
        await HeldPublisher(plain.rtmp_port, "not-a-key", source="127.0.0.10").start()
    assert "2 connections already open from 127.0.0.7" in plain.text()
    assert "4 connections already open" in plain.text()
    await held.pop().close()

    async def admitted() -> bool:  # once worker 2 counted the connection out
        with plain.only(1):
            try:
                status = await HeldPublisher(plain.rtmp_port, keys[3], source="127.0.0.9").start()
            except ConnectionError:
                return False
        assert status.code == START
        return True

    await until(admitted)
    for publisher in held:
        await publisher.close()

    # HTTP: four from one address, two in each worker; a fifth gets a 503 from either.
    clients = []
    for worker in (1, 2, 1, 2):
        connector = aiohttp.TCPConnector(limit=1, local_addr=("127.0.0.20", 0))
        http = aiohttp.ClientSession(f"http://127.0.0.1:{plain.http_port}", connector=connector)
        clients.append(http)
        with plain.only(worker):
            async with http.get("/api/openapi.json") as got:
                assert got.headers["X-Rtmpd-Worker"] == str(worker)
    try:
        for worker in (1, 2):
            with plain.only(worker):
                connector = aiohttp.TCPConnector(local_addr=("127.0.0.20", 0))
                async with aiohttp.ClientSession(connector=connector) as http:
                    got = await http.get(f"http://127.0.0.1:{plain.http_port}/")
                    assert got.status == 503
    finally:
        for http in clients:
            await http.close()
    assert "4 HTTP connections already open from 127.0.0.20" in plain.text()


async def test_max_total_bytes_bounds_the_folder_of_every_worker(plain: Cluster) -> None:
    big = await plain.publish(plain.cli("users", "add", "mona"), worker=1)
    sent = send_until(big, plain.tags, 0, 10000)  # about 0.55 MB of files: within the bound
    await asyncio.sleep(0.5)
    small = await plain.publish(plain.cli("users", "add", "nick"), worker=2)
    send_until(small, plain.tags, 0, 10000)  # as much again in worker 2: past it together
    async with asyncio.timeout(GUARD):
        while not big.closed.is_set() and sent < len(plain.tags):  # a streamer going on
            sent = send_until(big, plain.tags, sent, plain.tags[sent].timestamp + 100)
            await asyncio.sleep(0.1)
    await big.wait_closed(GUARD)  # the node's largest live stream was ended, by worker 1
    assert any(s.code == "NetStream.Failed" and "max_total_bytes" in s.description
               for s in big.statuses), big.statuses  # fmt: skip
    assert not small.closed.is_set()
    await big.close()
    await small.close()
