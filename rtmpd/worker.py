"""One worker process of several (`[server] workers`), as the worker sees it.

The supervisor (rtmpd.supervisor) starts `python -m rtmpd --worker FD` with the listening
sockets inherited and FD one end of a private socket pair: the control channel, JSON lines
both ways. The first line the supervisor writes is the hello (`Worker.connect`): the worker's
number, the config as read once, the inherited sockets' descriptors, and where the other
workers' private HTTP sockets are. Afterwards:

- worker -> supervisor: `{"ready": pid}` once every port is up; `{"failed": host}` for each
  failed publish attempt counted here;
- supervisor -> worker: `{"failed": host}` for each one counted by another worker, so that
  the failed-key limit per address holds whichever worker a guesser lands on; `{"died": N}`
  when worker N died, so that its streams' playlists are finished at once (ENDLIST) instead
  of at its restart.

Each worker is a node of the live-record machinery (rtmpd.auth.sqlstore): its publishes are
recorded under its own node name (`<node>.w<N>`), its siblings' records say which worker holds a
stream, and `sibling_path` says where to reach that worker over its private HTTP socket (a unix
socket in a folder only this user can open), for what only the owner has in memory.

Through the same private folder, once a second, each worker writes the facts of its streams
(codecs, bitrates) and its viewer counts for the others' API and pages; and it maps the node's
table of connection and HLS byte counts (rtmpd.node_table), one slot of which is its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

from . import node_table
from .node_table import NodeTable

log = logging.getLogger("rtmpd.worker")

#: The longest control line read (the hello carries the config as read).
MAX_LINE = 1 << 20
#: Seconds a sibling may take to send a thumbnail.
THUMBNAIL_TIMEOUT = 5.0
#: Seconds a sibling's viewer counts stay believed without being rewritten (it writes them
#: every second: older ones are a dead worker's), and how long they are read from memory.
VIEWERS_FRESH = 3.0
VIEWERS_REREAD = 0.5
#: The header naming the worker that answered an HTTP request (`X-Rtmpd-Worker: 2`).
WORKER_HEADER = "X-Rtmpd-Worker"


def worker_node(node: str, index: int) -> str:
    """The node name of worker `index` of node `node` in live records."""
    return f"{node}.w{index}"


def private_path(folder: Path, index: int) -> str:
    """Where worker `index` answers HTTP for its siblings."""
    return str(folder / f"w{index}.sock")


def private_rtmp_path(folder: Path, index: int) -> str:
    """Where worker `index` answers RTMP play for its siblings (rtmpd.pull)."""
    return str(folder / f"w{index}.rtmp")


@dataclass(slots=True)
class Worker:
    """What a worker knows of itself and its siblings, and its control channel."""

    index: int
    count: int
    node: str
    #: The first start of worker 1: it removes HLS leftovers of an earlier run (no other
    #: worker is up yet); a restarted worker must not (its siblings' streams are live).
    cleanup: bool
    rtmp: socket.socket
    http: socket.socket
    rtmps: socket.socket | None
    private: str
    #: The node name of every other worker -> its private HTTP socket.
    siblings: dict[str, str]
    metrics_dir: str
    control: socket.socket
    #: Node-wide connection and HLS byte counts (this worker's slot zeroed: a new start).
    table: NodeTable
    #: Told of each failed publish attempt another worker counted (set by the app).
    on_failed_elsewhere: Callable[[str], None] | None = None
    #: Told the node name of a sibling that died (set by the app).
    on_sibling_died: Callable[[str], None] | None = None
    _writer: asyncio.StreamWriter | None = None
    _reader_task: asyncio.Task[None] | None = None
    _early: list[bytes] = field(default_factory=list)
    _cached: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    _viewers: dict[str, int] = field(default_factory=dict)
    _viewers_read: float = float("-inf")

    @classmethod
    def connect(cls, fd: int) -> tuple[Worker, dict[str, Any]]:
        """Read the hello on control socket `fd`; the worker and the hello's config part."""
        control = socket.socket(fileno=fd)
        line = bytearray()
        while not line.endswith(b"\n"):
            chunk = control.recv(1)
            if not chunk or len(line) > MAX_LINE:
                raise SystemExit("rtmpd worker: no hello from the supervisor")
            line += chunk
        hello = json.loads(line)
        folder = Path(hello["folder"])
        index, count, node = int(hello["index"]), int(hello["count"]), str(hello["node"])
        siblings = {worker_node(node, i): private_path(folder, i)
                    for i in range(1, count + 1) if i != index}  # fmt: skip
        fds = hello["fds"]
        worker = cls(
            index=index,
            count=count,
            node=worker_node(node, index),
            cleanup=bool(hello["cleanup"]),
            rtmp=socket.socket(fileno=fds["rtmp"]),
            http=socket.socket(fileno=fds["http"]),
            rtmps=socket.socket(fileno=fds["rtmps"]) if fds.get("rtmps") is not None else None,
            private=private_path(folder, index),
            siblings=siblings,
            metrics_dir=str(folder / "metrics"),
            control=control,
            table=NodeTable(folder / node_table.FILE, index, count),
        )
        worker.table.clear(index)
        return worker, hello["config"]

    def sibling_node(self, index: int) -> str:
        """The node name of worker `index` of this node."""
        return worker_node(self.node.rpartition(".w")[0], index)

    @property
    def label(self) -> str:
        return str(self.index)

    @property
    def admin_path(self) -> str:
        """Where the dashboard and admin API are answered: worker 1 ("" for worker 1)."""
        return "" if self.index == 1 else private_path(self.folder, 1)

    @property
    def peers(self) -> dict[str, str]:
        """The other workers' private HTTP sockets by number (X-Rtmpd-Worker's)."""
        return {str(i): private_path(self.folder, i)
                for i in range(1, self.count + 1) if i != self.index}  # fmt: skip

    @property
    def folder(self) -> Path:
        return Path(self.private).parent

    @property
    def private_rtmp(self) -> str:
        """Where this worker answers RTMP play for its siblings."""
        return private_rtmp_path(self.folder, self.index)

    def sibling_rtmp(self, node: str) -> str | None:
        """Sibling `node`'s private RTMP socket (None: not a sibling)."""
        if node not in self.siblings:
            return None
        return private_rtmp_path(self.folder, int(node.rpartition(".w")[2]))

    def write_streams(self, streams: dict[str, Any]) -> None:
        """What this worker knows of its streams (codecs, bitrates), for its siblings' API and
        pages: a small JSON file in the private folder, replaced whole once a second."""
        _replace_json(self.folder / f"{self.node}.json", streams)

    def sibling_streams(self, node: str) -> dict[str, Any]:
        """The streams sibling `node` wrote last ({} when it wrote none)."""
        path = self.folder / f"{node}.json"
        try:
            mtime = path.stat().st_mtime_ns
            cached = self._cached.get(node)
            if cached is not None and cached[0] == mtime:
                return cached[1]
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}
        streams = data if isinstance(data, dict) else {}
        self._cached[node] = (mtime, streams)
        return streams

    def write_viewers(self, counts: dict[str, int]) -> None:
        """This worker's viewer count per channel, for its siblings' API and pages: a small
        file in the private folder, replaced whole once a second."""
        _replace_json(self.folder / f"{self.node}.viewers.json", counts)

    def sibling_viewers(self, name: str) -> int:
        """The other workers' viewers of `name`, as they wrote them within VIEWERS_FRESH
        seconds (read again at most every VIEWERS_REREAD seconds)."""
        now = time.monotonic()
        if now - self._viewers_read >= VIEWERS_REREAD:
            self._viewers_read = now
            self._viewers = self._read_viewers()
        return self._viewers.get(name, 0)

    def _read_viewers(self) -> dict[str, int]:
        summed: dict[str, int] = {}
        oldest = time.time() - VIEWERS_FRESH
        for node in self.siblings:
            path = self.folder / f"{node}.viewers.json"
            try:
                if path.stat().st_mtime < oldest:
                    continue  # not rewritten lately: a worker that died (or is stuck)
                counts = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if not isinstance(counts, dict):
                continue
            for name, count in counts.items():
                if isinstance(name, str) and isinstance(count, int) and count > 0:
                    summed[name] = summed.get(name, 0) + count
        return summed

    def sibling_connection(self, node: str) -> HTTPConnection | None:
        """An HTTP connection (not yet open) to sibling `node`'s private socket, or None."""
        path = self.siblings.get(node)
        return None if path is None else _UnixHTTPConnection(path)

    async def ready(self) -> None:
        """Every port is up: tell the supervisor, and start listening to it."""
        reader, self._writer = await asyncio.open_connection(sock=self.control, limit=MAX_LINE)
        self._send({"ready": os.getpid()})
        log.info("pid %d ready: worker %d of %d", os.getpid(), self.index, self.count)
        for data in self._early:
            self._writer.write(data)
        self._early.clear()
        self._reader_task = asyncio.create_task(self._read(reader), name="rtmpd-worker-control")

    def failed(self, host: str) -> None:
        """A failed publish attempt from `host` counted here: the siblings count it too."""
        self._send({"failed": host})

    async def close(self) -> None:
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader_task
        if self._writer is not None:
            self._writer.close()

    def _send(self, message: dict[str, Any]) -> None:
        data = json.dumps(message).encode() + b"\n"
        if self._writer is None:
            self._early.append(data)  # counted during start-up: sent once ready
        elif not self._writer.is_closing():
            self._writer.write(data)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while line := await reader.readline():
            try:
                message = json.loads(line)
            except ValueError:
                log.warning("unreadable line from the supervisor ignored")
                continue
            if not isinstance(message, dict):
                continue
            host = message.get("failed")
            if isinstance(host, str) and self.on_failed_elsewhere is not None:
                self.on_failed_elsewhere(host)
            died = message.get("died")
            if isinstance(died, int) and self.on_sibling_died is not None:
                self.on_sibling_died(self.sibling_node(died))
        # The supervisor is gone (killed): stop as SIGTERM does rather than hold the ports.
        log.warning("the supervisor went away; worker %d stopping", self.index)
        os.kill(os.getpid(), signal.SIGTERM)


def _replace_json(path: Path, data: object) -> None:
    """Write `data` to `path` whole (through a temporary file), so a reader never sees half."""
    temp = path.with_suffix(".tmp")
    try:
        temp.write_text(json.dumps(data))
        temp.replace(path)
    except OSError as exc:
        log.debug("cannot write %s: %s", path, exc)


class _UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP to a sibling's private unix socket."""

    def __init__(self, path: str) -> None:
        super().__init__("worker", timeout=THUMBNAIL_TIMEOUT)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(THUMBNAIL_TIMEOUT)
        sock.connect(self._path)
        self.sock = sock
