"""The benchmark scenarios; each prints a markdown table and appends JSON records to
bench/results/results.jsonl.

    python -m bench.run flat      [--servers rtmpd,nginx,pyrtmp] [--seconds 60] [--profile]
    python -m bench.run realtime  [--servers rtmpd,nginx] [-n 10 50 100 200] [--steady 60]
    python -m bench.run viewers   [--servers rtmpd,nginx] [-m 100 1000] [--seconds 30]
    python -m bench.run edge      [--servers direct,edge] [-m 1000] [--seconds 30]
    python -m bench.run parts     [--modes ll,ll-idle,ts] [-n 200] [--steady 60]
    python -m bench.run llviewers [--servers direct,edge] [-m 1000] [--seconds 30]
    python -m bench.run playlists [--servers rtmpd,rtmpd-w2] [-c 64] [--seconds 20]

Servers: rtmpd, rtmpd-w2 (two worker processes, balance = reuseport), rtmpd-w2-shared,
nginx, pyrtmp. playlists: wrk (Debian's package) with C keep-alive connections fetching one
stream's playlist as fast as answered, while it is published in real time.

Every scenario takes --fragment, --format (ts, fmp4, auto), --low-latency and --part for
rtmpd's [hls] section (the defaults: fragment 5 s, format auto, low_latency off, part 0.2 s).

flat: one publisher pushes the file as fast as the server reads it (server `rtmpd-record`: rtmpd
with [record] on); server CPU seconds per hour
of media. realtime: N publishers paced in real time; server CPU (share of one core) and RSS in
the steady window, segment lag from outside (inotify, see hlswatch.py) and rtmpd's own
histogram. viewers: M HLS viewers of one live stream. edge: the same viewers of rtmpd, directly
or through nginx as the caching edge (deploy/nginx-edge.conf), with rtmpd's own count of the
requests it answered (its /metrics). parts: N real-time publishers with LL-HLS on and one
blocking-reload client per stream: the part lag from outside (bench/llclient.py), and rtmpd's
CPU share against the same N with LL-HLS on and no clients (ll-idle) and in MPEG-TS mode (ts).
llviewers: M LL-HLS viewers of one stream, each a blocking-reload loop plus part fetches:
how long after a part completes each viewer's blocking reload returns. The server's numbers
are its own process only (nginx: the worker); the load average is recorded with every
result, since the machine is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import av

from bench.hlswatch import HlsWatcher, segment_lags
from bench.llclient import Answer, PartLags, follow, summarize
from bench.loadgen import LoadGenerator, PreparedMedia
from bench.media import SPECS, ensure_media
from bench.servers import (
    ROOT,
    PyrtmpServer,
    RtmpdServer,
    Server,
    connections_per_process,
    cpu_per_process,
    cpu_seconds,
    loadavg,
    make_server,
    rss_bytes,
    wait_idle,
)
from bench.viewers import TIMEOUT, run_in_processes

RESULTS = Path(__file__).resolve().parent / "results"
MIB = 1024 * 1024


def machine() -> dict[str, Any]:
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "pyav": av.__version__,
    }


@dataclass(slots=True)
class Sample:
    t: float
    cpu: float
    rss: int


class Sampler:
    """CPU and RSS of one PID every `interval` seconds, on the running loop."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        self.pid, self.interval = pid, interval
        self.samples: list[Sample] = []
        self.loads: list[float] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(OSError):
                self.samples.append(
                    Sample(time.monotonic(), cpu_seconds(self.pid), rss_bytes(self.pid))
                )
                self.loads.append(loadavg()[0])
            await asyncio.sleep(self.interval)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def window(self, start: float, end: float) -> tuple[float, int, float]:
        """(CPU share of one core, max RSS, seconds covered) between two monotonic times."""
        inside = [s for s in self.samples if start <= s.t <= end]
        if len(inside) < 2:
            return float("nan"), 0, 0.0
        first, last = inside[0], inside[-1]
        span = last.t - first.t
        return (last.cpu - first.cpu) / span, max(s.rss for s in inside), span


def record(scenario: str, row: dict[str, Any]) -> dict[str, Any]:
    row = {"scenario": scenario, "time": time.strftime("%Y-%m-%d %H:%M:%S"), **row}
    RESULTS.mkdir(exist_ok=True)
    with open(RESULTS / "results.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")
    return row


def table(rows: list[dict[str, Any]], cols: list[str]) -> str:
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(str(r.get(c, "")) for c in cols) + " |")
    return "\n".join(lines)


async def make_streams(server: Server, count: int) -> list[tuple[str, str]]:
    """Keys for `count` publishers (rtmpd: `rtmpd users add`, four at a time)."""
    if not isinstance(server, RtmpdServer) or count <= 4:
        return await asyncio.to_thread(server.make_streams, count)
    sem = asyncio.Semaphore(4)

    async def one(i: int) -> tuple[str, str]:
        name = f"bench{i:04d}"
        async with sem:
            return await asyncio.to_thread(server.add_user, name), name

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def scrape_lag(server: Server) -> dict[str, Any] | None:
    """rtmpd's own segment lag histogram (cumulative bucket counts) from /metrics."""
    if not isinstance(server, RtmpdServer):
        return None
    url = f"http://127.0.0.1:{server.http_port}/metrics"
    try:
        async with aiohttp.ClientSession() as http, http.get(url) as resp:
            text = await resp.text()
    except aiohttp.ClientError as exc:
        return {"error": str(exc)}
    buckets: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("rtmpd_hls_segment_lag_seconds_bucket"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[le] = float(line.rsplit(" ", 1)[1])
    count = buckets.get("+Inf", 0.0)
    out: dict[str, Any] = {"count": int(count), "le": {k: int(v) for k, v in buckets.items()}}
    for pct in (50, 99):
        out[f"p{pct}_le"] = next(
            (le for le, v in buckets.items() if count and v >= count * pct / 100), None
        )
    return out


def _watcher(server: Server, streams: list[tuple[str, str]]) -> HlsWatcher | None:
    if server.hls_dir is None or isinstance(server, PyrtmpServer):
        return None
    watcher = HlsWatcher(server.hls_dir, {name for _, name in streams})
    watcher.start()
    return watcher


class Profiler:
    """py-spy recording one PID (raw collapsed stacks, no pausing of the target)."""

    def __init__(self, pid: int, out: Path, *, native: bool = False) -> None:
        self.out = out
        exe = Path(sys.executable).with_name("py-spy")
        # --native pauses the target to unwind C stacks; without it sampling does not pause.
        mode = ["--native"] if native else ["--nonblocking"]
        self.proc = subprocess.Popen(
            [str(exe), "record", "--pid", str(pid), "--rate", "200", *mode]
            + ["--format", "raw", "-o", str(out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> list[tuple[str, float, float]]:
        self.proc.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(30)
        return hot_spots(self.out)


def hot_spots(raw: Path, top: int = 15) -> list[tuple[str, float, float]]:
    """(function (file), self %, inclusive %) from py-spy's collapsed stacks."""
    selfc: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    if not raw.exists():
        return []
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        count = int(n)
        frames = [_frame(f) for f in stack.split(";") if f]
        if not frames or frames[-1] in IDLE_FRAMES:  # no Python stack, or waiting in epoll
            continue
        total += count
        if frames:
            selfc[frames[-1]] = selfc.get(frames[-1], 0) + count
        for fr in set(frames):
            incl[fr] = incl.get(fr, 0) + count
    if not total:
        return []
    ranked = sorted(selfc, key=lambda k: -selfc[k])[:top]
    return [(k, 100 * selfc[k] / total, 100 * incl[k] / total) for k in ranked]


#: Leaf frames that are the event loop waiting, which py-spy --nonblocking counts as active.
IDLE_FRAMES = {"EpollSelector.select (selectors.py)"}


def _frame(text: str) -> str:
    """'func (path/to/file.py:123)' -> 'func (file.py)'; project paths made relative."""
    name, _, where = text.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("/site-packages/", "/lib/python3.11/", f"{ROOT}/"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where})" if where else name


# --- scenarios -------------------------------------------------------------------------------


def rtmpd_options(args: argparse.Namespace, **hls: Any) -> dict[str, Any]:
    """RtmpdServer's keywords from the common options (`hls` overrides them)."""
    keys: dict[str, Any] = {}
    if args.format:
        keys["format"] = args.format
    if args.low_latency:
        keys["low_latency"] = True
        keys["part_duration"] = args.part
    keys.update(hls)
    playlist = max(30.0, 6 * args.fragment)
    return {"fragment": args.fragment, "playlist_length": playlist, "hls": keys}


def hls_label(server: Server) -> str:
    """What the server's HLS was: "ts", "fmp4", "ll 0.2 s" (rtmpd), or "" (others)."""
    if not isinstance(server, RtmpdServer):
        return ""
    text = server.config.read_text()
    if "low_latency = true" in text:
        part = text.split("part_duration = ", 1)[1].split("\n", 1)[0]
        return f"ll {part} s"
    if 'format = "' in text:
        return text.split('format = "', 1)[1].split('"', 1)[0]
    return "auto"


async def scenario_flat(
    label: str, args: argparse.Namespace, media: PreparedMedia
) -> dict[str, Any]:
    # Flat out (and paced at 10x) is far faster than real time: rtmpd's pace bound
    # ([hls] max_speed, which ends such a publish after its burst) is lifted.
    server = make_server(label, max_speed=1e6, **rtmpd_options(args))
    server.start()
    try:
        streams = await make_streams(server, 1)
        watcher = _watcher(server, streams)
        load0 = loadavg()
        prof = None
        if args.profile and label == "rtmpd":
            RESULTS.mkdir(exist_ok=True)
            name = "profile-flat-native.txt" if args.native else "profile-flat.txt"
            prof = Profiler(server.pid, RESULTS / name, native=args.native)
            await asyncio.sleep(1.0)  # py-spy attached
        c0 = cpu_seconds(server.pid)
        gen = LoadGenerator(
            "127.0.0.1",
            server.rtmp_port,
            streams,
            media,
            mode="flat" if args.speed is None else "realtime",
            speed=args.speed or 1.0,
            seconds=args.seconds,
            lenient=label == "pyrtmp",
        )
        res = await gen.run()
        c1 = await asyncio.to_thread(wait_idle, server.pid)
        spots = prof.stop() if prof else []
        if watcher:
            await asyncio.sleep(0.5)
            watcher.stop()
        s = res.summary()
        cpu = c1 - c0
        media_s = res.media_seconds
        listed = segments = ts_mb = None
        if watcher:
            segs = [seg for st in watcher.streams.values() for seg in st.segments.values()]
            listed = round(sum(seg.duration for seg in segs), 1)
            ts_mb = sum(sum(st.ts_sizes.values()) for st in watcher.streams.values()) / 1e6
            segments = sum(
                max(st.segments) - (st.first_seq or 0) + 1
                for st in watcher.streams.values()
                if st.segments
            )
        row = {
            "server": server.label,
            "hls": hls_label(server),
            "media_s": media_s,
            "wall_s": s["wall_seconds"],
            "speed_x_realtime": round(media_s / s["wall_seconds"], 1)
            if s["wall_seconds"]
            else None,
            "server_cpu_s": round(cpu, 2),
            "cpu_s_per_media_hour": round(cpu / media_s * 3600, 1),
            "hls_media_seen_s": listed,
            "hls_segments": segments,
            "hls_ts_mb": round(ts_mb, 1) if ts_mb is not None else None,
            "pacing": "flat" if args.speed is None else f"{args.speed:g}x",
            "spec": args.spec,
            "errors": s["errors"],
            "notes": s["notes"],
            "rss_mib": round(rss_bytes(server.pid) / MIB, 1),
            "loadavg": [load0, loadavg()],
        }
        if spots:
            row["hot_spots"] = [(f, round(a, 1), round(b, 1)) for f, a, b in spots]
        return row
    finally:
        server.stop()


async def scenario_realtime(
    label: str, n: int, args: argparse.Namespace, media: PreparedMedia
) -> dict[str, Any]:
    server = make_server(label, **rtmpd_options(args))
    server.start()
    try:
        streams = await make_streams(server, n)
        watcher = _watcher(server, streams)
        await asyncio.sleep(1.0)
        base_rss = rss_bytes(server.pid)
        ramp = args.ramp if args.ramp is not None else min(10.0, 0.05 * n)
        total = ramp + args.warm + args.steady + 1
        prof = None
        if args.profile and isinstance(server, RtmpdServer):
            RESULTS.mkdir(exist_ok=True)
            prof = Profiler(server.pid, RESULTS / f"profile-realtime-{n}.txt")
        sampler = Sampler(server.pid)
        sampler.start()
        t0, p0 = time.monotonic(), time.process_time()
        gen = LoadGenerator(
            "127.0.0.1",
            server.rtmp_port,
            streams,
            media,
            mode="realtime",
            seconds=total,
            ramp=ramp,
            lenient=label == "pyrtmp",
        )
        spread = asyncio.create_task(_spread(server, t0 + ramp + args.warm, args.steady))
        res = await gen.run()
        loadgen_share = (time.process_time() - p0) / (time.monotonic() - t0)
        spots = prof.stop() if prof else []
        await asyncio.sleep(1.0)
        await sampler.stop()
        lag_hist = await scrape_lag(server)
        if watcher:
            watcher.stop()
        share, rss_max, span = sampler.window(
            t0 + ramp + args.warm, t0 + ramp + args.warm + args.steady
        )
        s = res.summary()
        row: dict[str, Any] = {
            "server": server.label,
            "publishers": n,
            "steady_s": round(span, 1),
            "cpu_share_of_core": round(share, 3),
            "rss_mib": round(rss_max / MIB, 1),
            "rss_base_mib": round(base_rss / MIB, 1),
            "rss_per_publisher_mib": round((rss_max - base_rss) / n / MIB, 2),
            "connect_to_publish_ms": s["connect_to_publish_ms"],
            "max_send_backlog_kib": s["max_send_backlog_bytes"] // 1024,
            "errors": len(s["errors"]),
            "error_sample": s["errors"][:5],
            "notes": s["notes"],
            "loadavg_during": round(max(sampler.loads), 2) if sampler.loads else None,
            "loadgen_cpu_share": round(loadgen_share, 3),
        }
        row.update(await spread)
        if watcher:
            row.update(segment_lags(watcher, res.records, late=args.late).summary())
        if lag_hist is not None:
            row["rtmpd_lag_histogram"] = lag_hist
        if spots:
            row["hot_spots"] = [(f, round(a, 1), round(b, 1)) for f, a, b in spots]
        return row
    finally:
        server.stop()


async def _spread(server: Server, start: float, steady: float) -> dict[str, Any]:
    """How the steady window's work was spread over the processes (rtmpd's workers): RTMP
    connections each held in the middle of it, and each one's share of a core over it."""
    await asyncio.sleep(max(0.0, start - time.monotonic()))
    c0 = cpu_per_process(server.pid)
    await asyncio.sleep(steady / 2)
    conns = connections_per_process(server.pid, server.rtmp_port)
    await asyncio.sleep(steady / 2)
    c1 = cpu_per_process(server.pid)
    if len(c0) != len(c1):
        return {"publishers_per_process": conns}
    return {
        "publishers_per_process": conns,
        "cpu_share_per_process": [round((b - a) / steady, 3) for a, b in zip(c0, c1, strict=True)],
    }


async def _wait_playlist(url: str, segments: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(url) as resp:
                    if resp.status == 200 and (await resp.text()).count("#EXTINF") >= segments:
                        return
            await asyncio.sleep(0.5)
    raise TimeoutError(f"no playlist with {segments} segments at {url}")


async def scenario_viewers(
    label: str, m: int, args: argparse.Namespace, media: PreparedMedia
) -> dict[str, Any]:
    server = make_server(label, **rtmpd_options(args))
    server.start()
    try:
        streams = await make_streams(server, 1)
        name = streams[0][1]
        lead = 20.0
        gen = LoadGenerator(
            "127.0.0.1",
            server.rtmp_port,
            streams,
            media,
            mode="realtime",
            seconds=lead + args.seconds + 15,
        )
        publishing = asyncio.create_task(gen.run())
        base = f"http://127.0.0.1:{server.http_port}"
        path = f"/live/{name}/index.m3u8"
        await _wait_playlist(base + path, 2, lead + 10)
        load0 = loadavg()
        c0, t0 = cpu_seconds(server.pid), time.monotonic()
        stats = await asyncio.to_thread(
            run_in_processes,
            base,
            path,
            m,
            args.seconds,
            processes=args.procs,
            segments=not args.playlists_only,
        )
        c1, t1 = cpu_seconds(server.pid), time.monotonic()
        load1 = loadavg()
        rss = rss_bytes(server.pid)
        for pub in list(gen.active):
            pub.finish()
        await publishing
        row = {"server": server.label, **stats.summary(args.seconds, m)}
        row["fetch"] = "playlists" if args.playlists_only else "playlists+segments"
        row["server_cpu_share"] = round((c1 - c0) / (t1 - t0), 3)
        row["rss_mib"] = round(rss / MIB, 1)
        row["loadavg"] = [load0, load1]
        return row
    finally:
        server.stop()


def _wrk(url: str, connections: int, seconds: float, threads: int) -> dict[str, Any]:
    """wrk (Debian's `wrk`, C: little CPU of its own next to the server) on one URL."""
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--latency", url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    row: dict[str, Any] = {"wrk": out.strip().splitlines()[-1]}
    for line in out.splitlines():
        words = line.split()
        if line.startswith("Requests/sec:"):
            row["requests_per_s"] = float(words[1])
        elif words[:1] in (["50%"], ["99%"]):
            value = words[1]
            scale = 1000.0 if value.endswith("ms") else 1.0 if value.endswith("us") else 1e6
            number = float(value.rstrip("mus"))
            row[f"latency_ms_p{words[0][:-1]}"] = round(number * scale / 1000, 2)
        elif "Non-2xx" in line:
            row["non_2xx"] = int(words[-1])
    row.setdefault("non_2xx", 0)
    return row


async def scenario_playlists(
    label: str, c: int, args: argparse.Namespace, media: PreparedMedia
) -> dict[str, Any]:
    """As many playlist requests as `c` keep-alive connections get answered (closed loop, wrk)
    while one publisher streams in real time."""
    server = make_server(label)
    server.start()
    try:
        streams = await make_streams(server, 1)
        name = streams[0][1]
        lead = 20.0
        gen = LoadGenerator("127.0.0.1", server.rtmp_port, streams, media, mode="realtime",
                            seconds=lead + args.seconds + 15)  # fmt: skip
        publishing = asyncio.create_task(gen.run())
        url = f"http://127.0.0.1:{server.http_port}/live/{name}/index.m3u8"
        await _wait_playlist(url, 2, lead + 10)
        load0 = loadavg()
        c0, cpu0, t0 = cpu_per_process(server.pid), cpu_seconds(server.pid), time.monotonic()
        stats = await asyncio.to_thread(_wrk, url, c, args.seconds, args.threads)
        c1, cpu1, t1 = cpu_per_process(server.pid), cpu_seconds(server.pid), time.monotonic()
        load1 = loadavg()
        for pub in list(gen.active):
            pub.finish()
        await publishing
        row = {"server": server.label, "connections": c, "seconds": args.seconds, **stats}
        row["server_cpu_share"] = round((cpu1 - cpu0) / (t1 - t0), 3)
        if len(c0) == len(c1):
            row["cpu_share_per_process"] = [round((b - a) / (t1 - t0), 3)
                                            for a, b in zip(c0, c1, strict=True)]  # fmt: skip
        row["loadavg"] = [load0, load1]
        return row
    finally:
        server.stop()


async def origin_counts(base: str) -> dict[str, float]:
    """rtmpd's HLS requests answered so far, by route, from its /metrics."""
    async with aiohttp.ClientSession() as http, http.get(base + "/metrics") as response:
        text = await response.text()
    counts = {"hls_playlist": 0.0, "hls_segment": 0.0}
    for line in text.splitlines():
        if line.startswith("rtmpd_http_requests_total{"):
            for route in counts:
                if f'route="{route}"' in line:
                    counts[route] += float(line.rsplit(" ", 1)[1])
    return counts


async def scenario_edge(
    label: str, m: int, args: argparse.Namespace, media: PreparedMedia
) -> dict[str, Any]:
    """M viewers of one real-time stream of rtmpd: `direct`, or through the nginx edge."""
    from tests.support.engines import nginx  # the very launcher and config the tests use

    server = make_server("rtmpd", **rtmpd_options(args))
    server.start()
    try:
        streams = await make_streams(server, 1)
        name = streams[0][1]
        lead = 20.0
        gen = LoadGenerator("127.0.0.1", server.rtmp_port, streams, media, mode="realtime",
                            seconds=lead + args.seconds + 15)  # fmt: skip
        publishing = asyncio.create_task(gen.run())
        origin = f"http://127.0.0.1:{server.http_port}"
        path = f"/live/{name}/index.m3u8"
        await _wait_playlist(origin + path, 2, lead + 10)
        with contextlib.ExitStack() as stack:
            base = origin
            if label == "edge":
                base = f"http://127.0.0.1:{stack.enter_context(nginx(origin[7:])).port}"
            before = await origin_counts(origin)
            c0, t0 = cpu_seconds(server.pid), time.monotonic()
            stats = await asyncio.to_thread(run_in_processes, base, path, m, args.seconds,
                                            processes=args.procs)  # fmt: skip
            c1, t1 = cpu_seconds(server.pid), time.monotonic()
            after = await origin_counts(origin)
        for pub in list(gen.active):
            pub.finish()
        await publishing
        row = {"server": label, **stats.summary(args.seconds, m)}
        segments_seen = len(stats.segment_ttfb) / m if m else 0.0
        row["origin_playlist_requests"] = after["hls_playlist"] - before["hls_playlist"]
        row["origin_segment_requests"] = after["hls_segment"] - before["hls_segment"]
        row["origin_requests_per_segment"] = (
            round(row["origin_segment_requests"] / segments_seen, 2) if segments_seen else None
        )
        row["origin_cpu_share"] = round((c1 - c0) / (t1 - t0), 3)
        return row
    finally:
        server.stop()


# --- LL-HLS ----------------------------------------------------------------------------------

AnswerRow = tuple[int, int, "int | None", float, bool]  # Answer as a tuple (pickled cheaply)


async def _follow_all(base: str, paths: list[str], seconds: float, spread: float,
                      fetch_parts: bool) -> tuple[list[list[AnswerRow]], dict[str, int],
                                                  list[float]]:  # fmt: skip
    """One follower per path (a path may repeat: viewers of one stream), each on its own
    keep-alive connection, starting at random moments within `spread` seconds."""
    import random

    stop_at = time.monotonic() + seconds
    errors: dict[str, int] = {}
    ttfb: list[float] = []
    results: list[list[Answer]] = [[] for _ in paths]

    async def one(i: int, path: str) -> None:
        await asyncio.sleep(random.uniform(0, spread))
        conn = aiohttp.TCPConnector(limit=1)
        async with aiohttp.ClientSession(base, connector=conn, timeout=TIMEOUT) as http:
            await follow(http, path, stop_at, results[i], errors, fetch_parts=fetch_parts,
                         part_ttfb=ttfb)  # fmt: skip

    await asyncio.gather(*(one(i, path) for i, path in enumerate(paths)))
    rows = [[(a.msn, a.part, a.end_ms, a.at, a.asked) for a in answers] for answers in results]
    return rows, errors, ttfb


def _follow_process(base: str, paths: list[str], seconds: float, spread: float,
                    fetch_parts: bool) -> tuple[list[list[AnswerRow]], dict[str, int],
                                                list[float]]:  # fmt: skip
    return asyncio.run(_follow_all(base, paths, seconds, spread, fetch_parts))


def follow_in_processes(base: str, paths: list[str], seconds: float, *, processes: int,
                        spread: float, fetch_parts: bool
                        ) -> tuple[list[list[Answer]], dict[str, int], list[float]]:  # fmt: skip
    """Blocking: the followers of `paths` split over `processes`; answers in `paths` order."""
    shares = [paths[i::processes] for i in range(processes)]
    answers: list[list[Answer]] = [[] for _ in paths]
    errors: dict[str, int] = {}
    ttfb: list[float] = []
    with ProcessPoolExecutor(processes) as pool:
        futures = [pool.submit(_follow_process, base, share, seconds, spread, fetch_parts)
                   for share in shares if share]  # fmt: skip
        for k, fut in enumerate(futures):
            rows, errs, times = fut.result()
            for j, got in enumerate(rows):
                answers[k + j * processes] = [Answer(*row) for row in got]
            for kind, count in errs.items():
                errors[kind] = errors.get(kind, 0) + count
            ttfb += times
    return answers, errors, ttfb


async def scenario_parts(
    mode: str, n: int, args: argparse.Namespace, media: PreparedMedia
) -> dict[str, Any]:
    """N real-time publishers; `ll`: LL-HLS with one blocking-reload client per stream,
    `ll-idle`: LL-HLS and no client, `ts`: MPEG-TS (same fragment, no client)."""
    hls: dict[str, Any] = {"format": "ts"} if mode == "ts" else {
        "low_latency": True, "part_duration": args.part}  # fmt: skip
    options = rtmpd_options(args)
    options["hls"] = hls
    server = make_server("rtmpd", **options)
    server.start()
    try:
        streams = await make_streams(server, n)
        await asyncio.sleep(1.0)
        base_rss = rss_bytes(server.pid)
        ramp = args.ramp if args.ramp is not None else min(10.0, 0.05 * n)
        total = ramp + args.warm + args.steady + 1
        sampler = Sampler(server.pid)
        sampler.start()
        t0, wall0 = time.monotonic(), time.time()
        gen = LoadGenerator("127.0.0.1", server.rtmp_port, streams, media, mode="realtime",
                            seconds=total, ramp=ramp, frames=mode == "ll")  # fmt: skip
        publishing = asyncio.create_task(gen.run())
        followers = None
        if mode == "ll":
            base = f"http://127.0.0.1:{server.http_port}"
            paths = [f"/live/{name}/index.m3u8" for _, name in streams]
            followers = asyncio.ensure_future(asyncio.to_thread(
                follow_in_processes, base, paths, total, processes=args.procs, spread=0.0,
                fetch_parts=False))  # fmt: skip
        res = await publishing
        answers, errors, _ = await followers if followers is not None else ([], {}, [])
        await sampler.stop()
        steady0, steady1 = t0 + ramp + args.warm, t0 + ramp + args.warm + args.steady
        share, rss_max, span = sampler.window(steady0, steady1)
        s = res.summary()
        row: dict[str, Any] = {
            "mode": mode,
            "publishers": n,
            "fragment_s": args.fragment,
            "part_s": args.part if mode != "ts" else None,
            "steady_s": round(span, 1),
            "cpu_share_of_core": round(share, 3),
            "rss_mib": round(rss_max / MIB, 1),
            "rss_per_publisher_mib": round((rss_max - base_rss) / n / MIB, 2),
            "errors": len(s["errors"]),
            "error_sample": s["errors"][:5],
            "max_send_backlog_kib": s["max_send_backlog_bytes"] // 1024,
            "loadavg_during": round(max(sampler.loads), 2) if sampler.loads else None,
        }
        if mode == "ll":
            w0, w1 = wall0 + steady0 - t0, wall0 + steady1 - t0
            last, cut, unmatched, parts = [], [], 0, 0
            for rec, got in zip(res.records, answers, strict=True):
                if not rec.keyframes:
                    continue
                lags = PartLags(rec.frames, rec.keyframes[0][0])
                for answer in got:
                    if not w0 <= answer.at <= w1:
                        continue
                    parts += 1
                    pair = lags.lags(answer)
                    if pair is None:
                        unmatched += 1
                        continue
                    last.append(pair[0])
                    cut.append(pair[1])
            row.update(summarize(last, "part_lag"))
            row.update(summarize(cut, "cut_frame_lag"))
            row["parts_listed"] = parts
            row["parts_unmatched"] = unmatched
            row["client_errors"] = errors
        return row
    finally:
        server.stop()


async def scenario_llviewers(
    label: str, m: int, args: argparse.Namespace, media: PreparedMedia
) -> dict[str, Any]:
    """M LL-HLS viewers of one real-time stream (blocking reload for the next part, then the
    new parts' bytes), directly or through the nginx edge."""
    from tests.support.engines import nginx  # the very launcher and config the tests use

    options = rtmpd_options(args, low_latency=True, part_duration=args.part)
    server = make_server("rtmpd", **options)
    server.start()
    try:
        streams = await make_streams(server, 1)
        name = streams[0][1]
        lead = 15.0
        gen = LoadGenerator("127.0.0.1", server.rtmp_port, streams, media, mode="realtime",
                            seconds=lead + args.seconds + 15, frames=True)  # fmt: skip
        publishing = asyncio.create_task(gen.run())
        origin = f"http://127.0.0.1:{server.http_port}"
        path = f"/live/{name}/index.m3u8"
        await _wait_playlist(origin + path, 2, lead + 10)
        with contextlib.ExitStack() as stack:
            base = origin
            if label == "edge":
                base = f"http://127.0.0.1:{stack.enter_context(nginx(origin[7:])).port}"
            before = await origin_counts(origin)
            c0, t0, load0 = cpu_seconds(server.pid), time.monotonic(), loadavg()
            answers, errors, ttfb = await asyncio.to_thread(
                follow_in_processes, base, [path] * m, args.seconds, processes=args.procs,
                spread=args.spread, fetch_parts=True)  # fmt: skip
            c1, t1, load1 = cpu_seconds(server.pid), time.monotonic(), loadavg()
            after = await origin_counts(origin)
        for pub in list(gen.active):
            pub.finish()
        res = await publishing
    finally:
        server.stop()
    rec = res.records[0]
    lags = PartLags(rec.frames, rec.keyframes[0][0])
    settle = args.spread + 2.0  # every viewer started and blocking for the next part
    asked = [a for got in answers for a in got if a.asked]
    first_at = min((a.at for a in asked), default=0.0)
    asked = [a for a in asked if a.at >= first_at + settle]
    earliest: dict[tuple[int, int], float] = {}
    for a in asked:
        key = (a.msn, a.part)
        earliest[key] = min(earliest.get(key, a.at), a.at)
    spread = [a.at - earliest[(a.msn, a.part)] for a in asked]
    cut = [pair[1] for a in asked if (pair := lags.lags(a)) is not None]
    ends = {(a.msn, a.part): a.end_ms for a in asked if a.end_ms is not None}
    first_cut = [e - lags.sent[i] for key, e in earliest.items()
                 if key in ends and (i := lags.frame(ends[key])) is not None]  # fmt: skip
    seconds = t1 - t0
    blocking = sum(len(got) for got in answers)
    row: dict[str, Any] = {
        "server": label,
        "viewers": m,
        "part_s": args.part,
        "fragment_s": args.fragment,
        "seconds": round(seconds, 1),
        "blocking_answers": len(asked),
        "parts_seen": len(earliest),
        "blocking_per_s": round(len([a for got in answers for a in got if a.asked]) / seconds, 1),
        "part_fetches_per_s": round(len(ttfb) / seconds, 1),
        **summarize(spread, "after_first_answer"),
        **summarize(cut, "after_cut_frame"),
        **summarize(first_cut, "first_answer_after_cut_frame"),
        **summarize(ttfb, "part_ttfb"),
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "server_cpu_share": round((c1 - c0) / seconds, 3),
        "origin_playlist_requests": after["hls_playlist"] - before["hls_playlist"],
        "origin_part_requests": after["hls_segment"] - before["hls_segment"],
        "loadavg": [load0, load1],
        "answers_total": blocking,
    }
    return row


# --- command line ----------------------------------------------------------------------------


#: The columns of each scenario's summary table.
COLUMNS: dict[str, list[str]] = {
    "flat": [
        "server",
        "media_s",
        "wall_s",
        "speed_x_realtime",
        "server_cpu_s",
        "cpu_s_per_media_hour",
        "pacing",
        "hls_media_seen_s",
        "hls_segments",
        "hls_ts_mb",
        "rss_mib",
        "errors",
    ],
    "realtime": [
        "server",
        "publishers",
        "cpu_share_of_core",
        "rss_mib",
        "rss_per_publisher_mib",
        "lag_ms_p50",
        "lag_ms_p99",
        "late_segments",
        "missing_segments",
        "errors",
        "loadavg_during",
        "publishers_per_process",
        "cpu_share_per_process",
    ],
    "viewers": [
        "server",
        "viewers",
        "fetch",
        "requests_per_s",
        "playlist_ttfb_ms_p50",
        "playlist_ttfb_ms_p99",
        "segment_ttfb_ms_p99",
        "throughput_mbps",
        "errors",
        "server_cpu_share",
    ],
    "parts": [
        "mode",
        "publishers",
        "cpu_share_of_core",
        "rss_mib",
        "part_lag_ms_p50",
        "part_lag_ms_p99",
        "cut_frame_lag_ms_p50",
        "cut_frame_lag_ms_p99",
        "parts_listed",
        "parts_unmatched",
        "errors",
        "loadavg_during",
    ],
    "llviewers": [
        "server",
        "viewers",
        "blocking_per_s",
        "part_fetches_per_s",
        "after_first_answer_ms_p50",
        "after_first_answer_ms_p99",
        "after_cut_frame_ms_p50",
        "after_cut_frame_ms_p99",
        "part_ttfb_ms_p99",
        "errors",
        "server_cpu_share",
        "origin_playlist_requests",
        "origin_part_requests",
    ],
    "playlists": [
        "server",
        "connections",
        "requests_per_s",
        "latency_ms_p50",
        "latency_ms_p99",
        "non_2xx",
        "server_cpu_share",
        "cpu_share_per_process",
        "loadavg",
    ],
    "edge": [
        "server",
        "viewers",
        "requests_per_s",
        "playlist_ttfb_ms_p99",
        "segment_ttfb_ms_p99",
        "errors",
        "origin_playlist_requests",
        "origin_segment_requests",
        "origin_requests_per_segment",
        "origin_cpu_share",
    ],
}


def _media(args: argparse.Namespace) -> PreparedMedia:
    return PreparedMedia(ensure_media(SPECS[args.spec]), chunk_size=args.chunk_size)


async def _main(args: argparse.Namespace) -> int:
    info = machine()
    cmd = "python -m bench.run " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    print(f"# {cmd}\n# {json.dumps(info)}", flush=True)
    media = _media(args)
    servers = getattr(args, "servers", "").split(",")
    runs: list[tuple[Any, Any]]
    if args.scenario == "flat":
        runs = [(None, label) for label in servers]
    elif args.scenario == "realtime":
        runs = [(n, label) for n in args.n for label in servers]
    elif args.scenario == "parts":
        runs = [(n, mode) for n in args.n for mode in args.modes.split(",")]
    elif args.scenario == "playlists":
        runs = [(c, label) for c in args.c for label in servers]
    else:
        runs = [(m, label) for m in args.m for label in servers]
    rows = []
    for size, label in runs:
        if args.scenario == "flat":
            result = await scenario_flat(label, args, media)
        elif args.scenario == "realtime":
            result = await scenario_realtime(label, size, args, media)
        elif args.scenario == "edge":
            result = await scenario_edge(label, size, args, media)
        elif args.scenario == "parts":
            result = await scenario_parts(label, size, args, media)
        elif args.scenario == "llviewers":
            result = await scenario_llviewers(label, size, args, media)
        elif args.scenario == "playlists":
            result = await scenario_playlists(label, size, args, media)
        else:
            result = await scenario_viewers(label, size, args, media)
        row = record(args.scenario, {**result, "command": cmd, "machine": info})
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(table(rows, COLUMNS[args.scenario]))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench.run", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="scenario", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--spec", choices=sorted(SPECS), default="720p30")
    common.add_argument("--chunk-size", type=int, default=4096)
    common.add_argument("--fragment", type=float, default=5.0, help="rtmpd [hls] fragment")
    common.add_argument("--format", choices=["ts", "fmp4", "auto"], help="rtmpd [hls] format")
    common.add_argument("--low-latency", action="store_true", help="rtmpd [hls] low_latency")
    common.add_argument("--part", type=float, default=0.2, help="rtmpd [hls] part_duration")
    flat = sub.add_parser("flat", parents=[common], help="one publisher, flat out")
    flat.add_argument("--servers", default="rtmpd,nginx,pyrtmp")
    flat.add_argument("--seconds", type=float, default=None, help="media seconds (default: file)")
    flat.add_argument("--profile", action="store_true", help="py-spy the rtmpd run")
    flat.add_argument("--native", action="store_true", help="with --profile: C frames too")
    flat.add_argument(
        "--speed", type=float, default=None, help="pace at this many times real time, not flat"
    )
    rt = sub.add_parser("realtime", parents=[common], help="N publishers in real time")
    rt.add_argument("--servers", default="rtmpd,nginx")
    rt.add_argument("-n", type=int, nargs="+", default=[10, 50, 100, 200])
    rt.add_argument("--steady", type=float, default=60.0, help="measured seconds")
    rt.add_argument("--warm", type=float, default=10.0, help="seconds after the ramp, unmeasured")
    rt.add_argument("--ramp", type=float, default=None, help="connects spread (default 0.05 s x N)")
    rt.add_argument("--late", type=float, default=1.0, help="a segment listed later is late")
    rt.add_argument("--profile", action="store_true", help="py-spy the rtmpd runs")
    vw = sub.add_parser("viewers", parents=[common], help="M HLS viewers of one stream")
    vw.add_argument("--servers", default="rtmpd,nginx")
    vw.add_argument("-m", type=int, nargs="+", default=[100, 1000])
    vw.add_argument("--seconds", type=float, default=30.0)
    vw.add_argument("--procs", type=int, default=2, help="viewer processes")
    vw.add_argument(
        "--playlists-only", action="store_true", help="viewers reload playlists, skip segments"
    )
    pl = sub.add_parser("playlists", parents=[common], help="playlist requests/s (wrk)")
    pl.add_argument("--servers", default="rtmpd,rtmpd-w2")
    pl.add_argument("-c", type=int, nargs="+", default=[64], help="keep-alive connections")
    pl.add_argument("--seconds", type=float, default=20.0)
    pl.add_argument("--threads", type=int, default=1, help="wrk threads")
    edge = sub.add_parser("edge", parents=[common], help="M viewers direct or via nginx edge")
    edge.add_argument("--servers", default="direct,edge")
    edge.add_argument("-m", type=int, nargs="+", default=[1000])
    edge.add_argument("--seconds", type=float, default=30.0)
    edge.add_argument("--procs", type=int, default=2, help="viewer processes")
    parts = sub.add_parser("parts", parents=[common], help="LL-HLS part lag, N publishers")
    parts.add_argument("--modes", default="ll,ll-idle,ts", help="ll, ll-idle, ts")
    parts.add_argument("-n", type=int, nargs="+", default=[200])
    parts.add_argument("--steady", type=float, default=60.0, help="measured seconds")
    parts.add_argument("--warm", type=float, default=10.0, help="seconds after the ramp")
    parts.add_argument("--ramp", type=float, default=None, help="connects spread (0.05 s x N)")
    parts.add_argument("--procs", type=int, default=1, help="processes of blocking clients")
    llv = sub.add_parser("llviewers", parents=[common], help="M LL-HLS viewers of one stream")
    llv.add_argument("--servers", default="direct", help="direct, edge")
    llv.add_argument("-m", type=int, nargs="+", default=[1000])
    llv.add_argument("--seconds", type=float, default=30.0)
    llv.add_argument("--spread", type=float, default=2.0, help="viewers start within this")
    llv.add_argument("--procs", type=int, default=2, help="viewer processes")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return asyncio.run(_main(args))


if __name__ == "__main__":
    raise SystemExit(main())
