"""The servers under test, started and measured the same way: rtmpd, nginx-rtmp, pyrtmp.

Each `Server` knows its RTMP and HTTP ports, where its HLS files land, the PID whose CPU time
and RSS count (nginx: the worker, which does all the work), and how to make stream keys.
CPU is utime + stime from /proc/<pid>/stat; memory is VmRSS from /proc/<pid>/status.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: The reference nginx-rtmp script (start|stop|status), given by the environment.
NGINX_ENV = "NGINX_RTMP_SH"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def rtmpd_command() -> list[str]:
    """The installed `rtmpd` next to this interpreter, else `python -m rtmpd`."""
    exe = Path(sys.executable).with_name("rtmpd")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "rtmpd"]


def children(pid: int) -> list[int]:
    """The live child processes of `pid` (rtmpd's workers under its supervisor)."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found += [int(c) for c in f.read().split()]
    return found


def _own_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process and its live children (rtmpd's workers), in seconds."""
    total = _own_cpu(pid)
    for child in children(pid):
        with contextlib.suppress(OSError):
            total += _own_cpu(child)
    return total


def cpu_per_process(pid: int) -> list[float]:
    """CPU seconds of `pid`'s children (its workers) one by one, else of `pid` alone."""
    pids = children(pid) or [pid]
    out = []
    for one in pids:
        with contextlib.suppress(OSError):
            out.append(_own_cpu(one))
    return out


def _own_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def rss_bytes(pid: int) -> int:
    """Resident memory of one process and its live children (rtmpd's workers)."""
    total = _own_rss(pid)
    for child in children(pid):
        with contextlib.suppress(OSError):
            total += _own_rss(child)
    return total


def connections_per_process(pid: int, port: int) -> list[int]:
    """Established TCP connections to local `port` held by each child of `pid` (each rtmpd
    worker), else by `pid`: how the connections were spread."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                if int(cols[1].rsplit(":", 1)[1], 16) == port and cols[3] == "01":
                    inodes.add(cols[9])
    counts = []
    for one in children(pid) or [pid]:
        n = 0
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{one}/fd"):
                with contextlib.suppress(OSError):
                    target = os.readlink(f"/proc/{one}/fd/{fd}")
                    if target.startswith("socket:[") and target[8:-1] in inodes:
                        n += 1
        counts.append(n)
    return counts


def loadavg() -> list[float]:
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def _own_env() -> dict[str, str]:
    """The environment without the bench's PYTHONPATH: another build of rtmpd (an earlier
    version to compare with) must import its own package, not this checkout's."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 15.0, alive: Callable[[], bool] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if alive is not None and not alive():
            raise TimeoutError(f"the server exited before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on port {port}") from None
            time.sleep(0.1)


def wait_idle(
    pid: int, *, quiet: float = 0.3, threshold: float = 0.02, timeout: float = 60.0
) -> float:
    """Wait until `pid` burns less than `threshold` CPU seconds per `quiet` seconds; returns its
    CPU time then (so work queued in socket buffers is counted)."""
    deadline = time.monotonic() + timeout
    last = cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = cpu_seconds(pid)
        if now - last < threshold:
            return now
        last = now
    return last


@dataclass(slots=True)
class Server:
    """Common shape; subclasses start/stop and make keys."""

    label: str
    rtmp_port: int = 0
    http_port: int = 0
    hls_dir: Path | None = None
    app: str = "app"

    @property
    def pid(self) -> int:
        raise NotImplementedError

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def make_streams(self, count: int, prefix: str = "bench") -> list[tuple[str, str]]:
        """`count` (stream key, public name) pairs the server accepts."""
        raise NotImplementedError


class RtmpdServer(Server):
    """`rtmpd -c <generated toml>` in a temporary folder, HLS written, logs at warning."""

    def __init__(
        self,
        *,
        fragment: float = 5.0,
        playlist_length: float = 30.0,
        command: list[str] | None = None,
        label: str = "rtmpd",
        max_speed: float = 2.0,
        hls: dict[str, object] | None = None,
        hlsjs_file: Path | None = None,
        extra: str = "",
        workers: int = 1,
        balance: str = "reuseport",
    ) -> None:
        """`hls`: more [hls] keys (format, low_latency, part_duration); `hlsjs_file`: a local
        hls.min.js for the channel pages ([web] hlsjs_file); `extra`: more sections, as TOML."""
        super().__init__(label)
        self.workers = workers
        self.command = command or rtmpd_command()
        self.tmp = Path(tempfile.mkdtemp(prefix="rtmpd-bench-"))
        self.rtmp_port, self.http_port = free_port(), free_port()
        self.hls_dir = self.tmp / "hls"
        self.config = self.tmp / "rtmpd.toml"
        server = f'[server]\nworkers = {workers}\nbalance = "{balance}"\n' if workers > 1 else ""
        speed = f"max_speed = {max_speed}\n" if max_speed != 2.0 else ""  # older builds lack it
        self.config.write_text(
            server + f'[rtmp]\nlisten = "127.0.0.1:{self.rtmp_port}"\n'
            "max_connections = 5000\nmax_connections_per_ip = 5000\n"
            f'[http]\nlisten = "127.0.0.1:{self.http_port}"\naccess_log = false\n'
            # every simulated viewer comes from 127.0.0.1
            "max_connections = 8192\nmax_connections_per_ip = 8192\n"
            f'[hls]\npath = "hls"\nfragment = {fragment}\nplaylist_length = {playlist_length}\n'
            f"{speed}"
            + "".join(f"{k} = {_toml(v)}\n" for k, v in (hls or {}).items())
            + (f"[web]\nhlsjs_file = {_toml(str(hlsjs_file))}\n" if hlsjs_file else "")
            + '[database]\npath = "rtmpd.sqlite3"\n'
            "[auth]\nmax_failures = 1000\n"
            '[log]\nlevel = "warning"\n' + extra
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.tmp / "rtmpd.log"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [*self.command, "-c", str(self.config)], stdout=log, stderr=log, cwd=self.tmp,
                env=_own_env(),
            )  # fmt: skip
        try:
            wait_port(
                self.rtmp_port, alive=lambda: self.proc is not None and self.proc.poll() is None
            )
            wait_port(self.http_port)
            deadline = time.monotonic() + 30
            while self.workers > 1 and not (self.tmp / "rtmpd.pid").exists():  # all workers up
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise TimeoutError("the workers did not start")
                time.sleep(0.1)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"rtmpd did not start: {self.log_tail()}") from None

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop rtmpd and remove its folder (set BENCH_KEEP=1 to keep it, log included)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(self.tmp, ignore_errors=True)

    def add_user(self, name: str) -> str:
        """`rtmpd users add NAME`; returns the key it prints."""
        done = subprocess.run(
            [*self.command, "-c", str(self.config), "users", "add", name],
            capture_output=True,
            text=True,
            cwd=self.tmp,
            env=_own_env(),
        )
        lines = done.stdout.strip().splitlines()
        if done.returncode != 0 or not lines:
            raise RuntimeError(f"users add {name}: {done.stderr.strip()}")
        return lines[-1].strip()

    def make_streams(self, count: int, prefix: str = "bench") -> list[tuple[str, str]]:
        names = [f"{prefix}{i:04d}" for i in range(count)]
        return [(self.add_user(name), name) for name in names]


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(value)


class NginxServer(Server):
    """The shared reference nginx-rtmp (the seed's configuration), driven by its script (path in
    $NGINX_RTMP_SH): ports and folder come from `status`, stream keys go into its keys.txt."""

    def __init__(self) -> None:
        script = os.environ.get(NGINX_ENV)
        if not script:
            raise RuntimeError(f"set {NGINX_ENV} to the reference nginx-rtmp.sh to compare with it")
        self.script = Path(script)
        status = self._run("status").split()
        info = dict(zip(status[::2], status[1::2], strict=False))
        self.ref_dir = Path(info["dir"])
        super().__init__("nginx-rtmp", int(info["rtmp"]), int(info["http"]), self.ref_dir / "live")
        self._added: list[str] = []

    def _run(self, command: str) -> str:
        done = subprocess.run(
            ["bash", str(self.script), command], check=True, capture_output=True, text=True
        )
        return done.stdout

    @property
    def pid(self) -> int:
        return int((self.ref_dir / "worker.pid").read_text().split()[0])

    def start(self) -> None:
        """Start it unless it runs; left running afterwards (other people use it too)."""
        worker = self.ref_dir / "worker.pid"
        if not worker.exists() or not Path(f"/proc/{self.pid}").exists():
            self._run("start")
        wait_port(self.rtmp_port)

    def stop(self) -> None:
        """Drop only the keys this run added."""
        keys = self.ref_dir / "keys.txt"
        if self._added and keys.exists():
            drop_lists = [[k] for k in self._added]
            kept = [ln for ln in keys.read_text().splitlines() if ln.split()[:1] not in drop_lists]
            keys.write_text("".join(f"{ln}\n" for ln in kept))
        self._added = []

    def make_streams(self, count: int, prefix: str = "") -> list[tuple[str, str]]:
        """Names are new for every run: nginx-rtmp continues an old playlist of the same name."""
        prefix = prefix or f"b{int(time.time() * 10) % 1_000_000}_"
        out = [(secrets.token_urlsafe(15), f"{prefix}{i:04d}") for i in range(count)]
        with open(self.ref_dir / "keys.txt", "a") as f:
            for key, name in out:
                f.write(f"{key} {name}\n")
        self._added += [k for k, _ in out]
        return out


class PyrtmpServer(Server):
    """pyrtmp accepting any publish and discarding the media (ingest only, no HLS)."""

    def __init__(self) -> None:
        super().__init__("pyrtmp", free_port())
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.pyrtmp_sink", str(self.rtmp_port)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_port(self.rtmp_port)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def make_streams(self, count: int, prefix: str = "bench") -> list[tuple[str, str]]:
        return [(secrets.token_urlsafe(15), f"{prefix}{i:04d}") for i in range(count)]


#: Another rtmpd to compare with (an earlier version, say): its `rtmpd` command.
BASE_ENV = "BENCH_RTMPD_BASE"


def make_server(label: str, **rtmpd: Any) -> Server:
    """A server by label; `rtmpd` holds RtmpdServer's keywords (fragment, hls, max_speed: the
    [hls] bound on media ahead of real time, which flat out needs lifted, ...)."""
    if label == "rtmpd":
        return RtmpdServer(**rtmpd)
    if label == "rtmpd-record":  # the same with every broadcast recorded ([record])
        record = '[record]\nenabled = true\npath = "recordings"\n'
        return RtmpdServer(label="rtmpd (record on)", extra=record, **rtmpd)
    if label == "rtmpd-base":
        base = os.environ.get(BASE_ENV)
        if not base:
            raise RuntimeError(f"set {BASE_ENV} to the `rtmpd` command of the build to compare")
        # An earlier build knows none of the newer [hls] keys, nor the pace bound they lift.
        older = {k: v for k, v in rtmpd.items() if k not in ("hls", "max_speed", "hlsjs_file")}
        return RtmpdServer(command=[base], label="rtmpd (before)", **older)
    if label.startswith("rtmpd-w"):  # rtmpd-w2: two workers (reuseport); rtmpd-w2-shared
        count, _, balance = label.removeprefix("rtmpd-w").partition("-")
        balance = balance or "reuseport"
        return RtmpdServer(workers=int(count), balance=balance, **rtmpd,
                           label=f"rtmpd {count} workers ({balance})")  # fmt: skip
    if label == "nginx":
        return NginxServer()
    if label == "pyrtmp":
        return PyrtmpServer()
    raise ValueError(f"unknown server {label!r}")
