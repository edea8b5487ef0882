"""The supervisor of `[server] workers` > 1: it opens the public ports, starts one rtmpd worker
process per worker (rtmpd.worker), restarts one that dies, and passes signals on.

Ports: the supervisor binds RTMP, RTMPS and HTTP itself, so that a port in use is one line at
start-up and a dying worker loses no connection waiting to be accepted; workers inherit the
sockets. `[server] balance` says how connections are spread:

- `reuseport` (the default): one SO_REUSEPORT socket per worker and port; the kernel hashes
  each new connection to one of them, so connections spread evenly (docs/BENCHMARKS.md). The
  supervisor keeps every worker's socket open, so connections hashed to a dead worker wait in
  its queue for the restarted one instead of being refused.
- `shared`: one listening socket per port that every worker accepts from. The worker that wakes
  first takes every connection waiting (asyncio accepts up to the backlog per wake-up), so a
  burst of connections (a player's, a load balancer's pool) lands on one worker; a dead worker
  takes nothing, the others accept everything meanwhile.

Start-up: worker 1 first (it migrates the database and removes HLS leftovers of an earlier
run), then the others together; the pid file (for `rtmpd drain`) is written once all are up.
A worker that dies is restarted after a pause that grows while it keeps dying (0.5 s to 10 s);
its publishers reconnect (to any worker) and take their streams over. The others are told
(`{"died": N}`): whichever clears a dead worker's live record of a stream first lists ENDLIST in
its playlist (players stop waiting), and the restarted worker does the same for any left; a
stream its streamer already took over on another worker has that worker's record, so it goes
on. SIGTERM, SIGINT, SIGUSR1 and SIGHUP go to every worker (SIGTERM: each
drains and stops; the supervisor exits once all have).

The node-wide caps (connections, [hls] max_total_bytes) are counted in a table in shared memory
(rtmpd.node_table): the supervisor creates it, each worker writes its own slot, and the
supervisor zeroes a dead worker's.

/metrics is prometheus-client's multiprocess mode: each worker writes its values to files in
the supervisor's private folder, and whichever worker is asked reads them all; the supervisor
marks a dead worker's live gauges gone (`mark_process_dead`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import multiprocess

from . import node_table
from .config import Address, Balance, Config
from .startup import listen_error
from .worker import MAX_LINE

log = logging.getLogger("rtmpd.supervisor")

#: Pending connections per listening socket (nginx's default on Linux).
BACKLOG = 511
#: Seconds before restarting a worker that died, doubled while it keeps dying, and the cap.
RESTART_PAUSE = 0.5
RESTART_PAUSE_MAX = 10.0
#: A worker that ran this long before dying is restarted after the shortest pause again.
STABLE_SECONDS = 30.0
#: Seconds the workers get after SIGTERM beyond [rtmp] drain_grace before they are killed.
STOP_MARGIN = 20.0


class ListenError(Exception):
    """A public port could not be opened (the message names it)."""


def _bind(address: Address, reuse_port: bool, port: int) -> socket.socket:
    host = address.host
    if host in ("::", "") and socket.has_dualstack_ipv6():
        return socket.create_server((host, port), family=socket.AF_INET6, backlog=BACKLOG,
                                    dualstack_ipv6=True, reuse_port=reuse_port)  # fmt: skip
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    return socket.create_server((host, port), family=family, backlog=BACKLOG,
                                reuse_port=reuse_port)  # fmt: skip


def open_port(what: str, address: Address, count: int, balance: Balance) -> list[socket.socket]:
    """`count` sockets for `address` (one socket shared, or one SO_REUSEPORT socket each)."""
    reuse = balance is Balance.REUSEPORT
    sockets: list[socket.socket] = []
    port = address.port
    try:
        for _ in range(count if reuse else 1):
            sock = _bind(address, reuse, port)
            port = int(sock.getsockname()[1])  # port 0: the others take the same one
            sockets.append(sock)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise ListenError(f"cannot listen for {what} on {address}: {listen_error(exc)}") from None
    return sockets if reuse else sockets * count


@dataclass(slots=True)
class _Child:
    """One worker slot: its sockets and the process running in it now."""

    index: int
    fds: dict[str, int | None]
    inherit: list[int]
    proc: asyncio.subprocess.Process | None = None
    writer: asyncio.StreamWriter | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    starts: int = 0


class Supervisor:
    def __init__(self, config: Config, ports: dict[str, list[socket.socket]]) -> None:
        self.config = config
        self.count = config.server.worker_count
        self.ports = ports
        self.folder = Path(tempfile.mkdtemp(prefix="rtmpd-workers-"))
        (self.folder / "metrics").mkdir()
        node_table.create(self.folder / node_table.FILE, self.count)
        self.table = node_table.NodeTable(self.folder / node_table.FILE, 1, self.count)
        self.children = [self._child(i) for i in range(1, self.count + 1)]
        self._stopping = False
        self._stopped = asyncio.Event()
        self._failed_start = False

    def _child(self, index: int) -> _Child:
        fds: dict[str, int | None] = {"rtmps": None}
        for what, sockets in self.ports.items():
            fds[what] = sockets[index - 1].fileno()
        return _Child(index, fds, [fd for fd in fds.values() if fd is not None])

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGHUP):
            loop.add_signal_handler(sig, self._signal, sig)
        keepers: list[asyncio.Task[None]] = []
        try:
            first, rest = self.children[0], self.children[1:]
            keepers.append(asyncio.create_task(self._keep(first)))
            if await self._started([first]):
                keepers += [asyncio.create_task(self._keep(child)) for child in rest]
                if await self._started(rest):
                    pid_file = self._write_pid()
                    pids = ", ".join(str(c.proc.pid) for c in self.children if c.proc)
                    log.info("%d workers up (processes %s), balance = %s", self.count, pids,
                             self.config.server.balance.value)  # fmt: skip
                    await self._stopped.wait()
                    if pid_file is not None:
                        with contextlib.suppress(OSError):
                            pid_file.unlink()
            await asyncio.gather(*keepers)
        finally:
            for task in keepers:
                task.cancel()
            for child in self.children:
                if child.proc is not None and child.proc.returncode is None:
                    child.proc.kill()
                    await child.proc.wait()
            self.table.close()
            shutil.rmtree(self.folder, ignore_errors=True)
            for sockets in self.ports.values():
                for sock in set(sockets):
                    sock.close()
        return 2 if self._failed_start else 0

    async def _started(self, children: list[_Child]) -> bool:
        """Wait until `children` are ready; False if stopping meanwhile (or one failed)."""
        waits = [asyncio.create_task(c.ready.wait()) for c in children]
        stop = asyncio.create_task(self._stopped.wait())
        try:
            pending = {stop, *waits}
            while not stop.done() and not all(w.done() for w in waits):
                _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            for wait in waits:
                wait.cancel()
        return not self._stopping

    def _signal(self, sig: signal.Signals) -> None:
        if sig in (signal.SIGTERM, signal.SIGINT):
            if not self._stopping:
                log.info("%s: stopping the workers", sig.name)
            self._stopping = True
            self._stopped.set()
        for child in self.children:
            if child.proc is not None and child.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    child.proc.send_signal(sig)

    async def _keep(self, child: _Child) -> None:
        """Run worker `child.index` until stopping, restarting it when it dies."""
        pause = RESTART_PAUSE
        while not self._stopping:
            loop = asyncio.get_running_loop()
            started = loop.time()
            code = await self._run_once(child)
            if self._stopping:
                break
            if not child.ready.is_set() and child.starts == 1:
                log.error("worker %d did not start (exit status %s); stopping", child.index, code)
                self._failed_start = True
                self._signal(signal.SIGTERM)
                break
            how = f"signal {-code}" if code < 0 else f"exit status {code}"
            pause = RESTART_PAUSE if loop.time() - started > STABLE_SECONDS else pause
            log.warning("worker %d died (%s); restarting it in %g s", child.index, how, pause)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), pause)
            pause = min(pause * 2, RESTART_PAUSE_MAX)
        if child.proc is not None and child.proc.returncode is None:
            grace = self.config.rtmp.drain_grace + STOP_MARGIN
            try:
                await asyncio.wait_for(child.proc.wait(), grace)
            except TimeoutError:
                log.warning("worker %d still running %g s after SIGTERM; killed", child.index,
                            grace)  # fmt: skip
                child.proc.kill()
                await child.proc.wait()

    async def _run_once(self, child: _Child) -> int:
        ours, theirs = socket.socketpair()
        child.starts += 1
        child.ready.clear()
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "rtmpd", "--worker", str(theirs.fileno()),
                pass_fds=[theirs.fileno(), *child.inherit],
            )  # fmt: skip
        finally:
            theirs.close()
        child.proc = proc
        reader, writer = await asyncio.open_connection(sock=ours, limit=MAX_LINE)
        child.writer = writer
        writer.write(json.dumps(self._hello(child)).encode() + b"\n")
        listen = asyncio.create_task(self._listen(child, reader))
        code = await proc.wait()
        listen.cancel()
        child.writer = None
        writer.close()
        self.table.clear(child.index)  # its connections are gone; its HLS files get counted
        if not self._stopping:  # by whoever finishes its streams' playlists
            self._tell_others(child, {"died": child.index})
        folder = str(self.folder / "metrics")
        multiprocess.mark_process_dead(proc.pid, folder)  # type: ignore[no-untyped-call]
        return code

    def _hello(self, child: _Child) -> dict[str, Any]:
        return {
            "index": child.index,
            "count": self.count,
            "node": self.config.database.node_name,
            "cleanup": child.index == 1 and child.starts == 1,
            "folder": str(self.folder),
            "fds": child.fds,
            "config": {
                "data": self.config.data,
                "base_dir": str(self.config.base_dir),
                "source": None if self.config.source is None else str(self.config.source),
            },
        }

    async def _listen(self, child: _Child, reader: asyncio.StreamReader) -> None:
        while line := await reader.readline():
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if not isinstance(message, dict):
                continue
            if "ready" in message:
                log.debug("worker %d (process %s) ready", child.index, message["ready"])
                child.ready.set()
            host = message.get("failed")
            if isinstance(host, str):  # the others count it too
                self._tell_others(child, {"failed": host})

    def _tell_others(self, child: _Child, message: dict[str, Any]) -> None:
        """`message` to every worker that is up but `child`."""
        data = json.dumps(message).encode() + b"\n"
        for other in self.children:
            if other is not child and other.writer is not None and other.ready.is_set():
                other.writer.write(data)

    def _write_pid(self) -> Path | None:
        path = self.config.pid_file
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"{os.getpid()}\n")
        except OSError as exc:
            log.warning("cannot write %s (rtmpd drain needs it): %s", path, exc.strerror)
            return None
        return path


def supervise(config: Config) -> int:
    """Open the ports and run the workers until SIGTERM or SIGINT; the exit status."""
    count = config.server.worker_count
    balance = config.server.balance
    ports: dict[str, list[socket.socket]] = {}
    try:
        ports["rtmp"] = open_port("RTMP", config.rtmp_address, count, balance)
        if config.rtmps.enabled:
            ports["rtmps"] = open_port("RTMPS", config.rtmps.address, count, balance)
        ports["http"] = open_port("HTTP", config.http_address, count, balance)
    except ListenError as exc:
        for sockets in ports.values():
            for sock in set(sockets):
                sock.close()
        print(f"rtmpd: {exc}", file=sys.stderr)
        return 2
    rtmp_port = ports["rtmp"][0].getsockname()[1]
    http_port = ports["http"][0].getsockname()[1]
    log.info("starting %d workers on RTMP port %d and HTTP port %d", count, rtmp_port, http_port)
    try:
        return asyncio.run(Supervisor(config, ports).run())
    except KeyboardInterrupt:
        return 0
