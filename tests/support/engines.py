"""The real servers rtmpd runs beside in production, started by the tests themselves on
loopback, in temp folders: HAProxy, PostgreSQL (a throwaway cluster made with initdb) and
nginx. They come from Debian (tests/setup_servers.sh installs them); a missing binary fails
the test that needs it, it is never skipped.

The config files are the ones under deploy/ that docs/deploy.md shows; the tests only fill in
their ports (HAProxy reads them from the environment, nginx's are put in with `template`).
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def binary(name: str, *folders: str) -> str:
    """The path of a server binary; AssertionError (a failure, not a skip) when it is not
    installed: tests/setup_servers.sh installs every one of them."""
    for folder in folders:
        for candidate in sorted(glob.glob(os.path.join(folder, name)), reverse=True):
            if os.access(candidate, os.X_OK):
                return candidate
    found = shutil.which(name)
    assert found, f"{name} is not installed: run bash tests/setup_servers.sh"
    return found


def wait_port(
    port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 15.0
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"server exited with status {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port} after {timeout:g} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


# -- HAProxy ---------------------------------------------------------------------------------


@contextlib.contextmanager
def haproxy(env: dict[str, str], ports: list[int], config: Path = DEPLOY / "haproxy.cfg"
            ) -> Iterator[subprocess.Popen[bytes]]:  # fmt: skip
    """HAProxy on `config` with `env` (its "${VAR}"s), until the `ports` it binds answer."""
    exe = binary("haproxy", "/usr/sbin")
    proc = subprocess.Popen([exe, "-db", "-f", str(config)], env={**os.environ, **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:
        for port in ports:
            wait_port(port, proc)
        yield proc
    finally:
        stop(proc)


# -- PostgreSQL ------------------------------------------------------------------------------

PG_BIN = "/usr/lib/postgresql/*/bin"


@dataclass(frozen=True, slots=True)
class Postgres:
    """A running throwaway cluster: `url` reaches its `rtmpd` database over TCP."""

    folder: Path
    port: int
    url: str


def _as_user(user: str, *args: str) -> list[str]:
    """initdb refuses root: the cluster is run by an unprivileged user."""
    return ["runuser", "-u", user, "--", *args] if os.geteuid() == 0 else list(args)


@contextlib.contextmanager
def postgres(user: str = "postgres") -> Iterator[Postgres]:
    """initdb in a fresh folder under /tmp (which the server's unprivileged user can reach,
    unlike pytest's 0700 basetemp), pg_ctl start on a free loopback port (fsync off: a
    throwaway), the superuser `rtmpd` with password `rtmpd`; stopped and removed after."""
    initdb, pg_ctl = binary("initdb", PG_BIN), binary("pg_ctl", PG_BIN)
    folder = Path(tempfile.mkdtemp(prefix="rtmpd-pg-"))
    data, run, pwfile = folder / "pgdata", folder / "run", folder / "pw"
    run.mkdir()
    pwfile.write_text("rtmpd\n")
    if os.geteuid() == 0:
        for path in (folder, run, pwfile):
            shutil.chown(path, user)
    port = free_port()
    started = False
    try:
        subprocess.run(_as_user(user, initdb, "-D", str(data), "-U", "rtmpd", "--pwfile",
                                str(pwfile), "-A", "scram-sha-256", "-E", "UTF8", "--no-sync"),
                       check=True, capture_output=True, timeout=120)  # fmt: skip
        options = (f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={run}"
                   " -c fsync=off -c synchronous_commit=off -c full_page_writes=off")  # fmt: skip
        subprocess.run(_as_user(user, pg_ctl, "-D", str(data), "-o", options, "-l",
                                str(folder / "log"), "-w", "-t", "60", "start"),
                       check=True, capture_output=True, timeout=90)  # fmt: skip
        started = True
        yield Postgres(folder, port, f"postgresql://rtmpd:rtmpd@127.0.0.1:{port}/postgres")
    finally:
        if started:
            subprocess.run(_as_user(user, pg_ctl, "-D", str(data), "-m", "immediate", "-w",
                                    "stop"), capture_output=True, timeout=60)  # fmt: skip
        shutil.rmtree(folder, ignore_errors=True)


def database_url(cluster: Postgres, name: str) -> str:
    """A fresh, empty database `name` in `cluster` (one per test keeps tests apart)."""
    psql = binary("psql", PG_BIN)
    subprocess.run([psql, "-h", "127.0.0.1", "-p", str(cluster.port), "-U", "rtmpd", "-d",
                    "postgres", "-c", f'DROP DATABASE IF EXISTS "{name}"', "-c",
                    f'CREATE DATABASE "{name}"'], env={**os.environ, "PGPASSWORD": "rtmpd"},
                   check=True, capture_output=True, timeout=30)  # fmt: skip
    return cluster.url.rsplit("/", 1)[0] + "/" + name


_databases = itertools.count(1)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Postgres]:
    """One PostgreSQL cluster for the whole session."""
    with postgres() as cluster:
        yield cluster


@pytest.fixture
def pg_url(pg_cluster: Postgres) -> str:
    """The URL of a database of its own for this test."""
    return database_url(pg_cluster, f"t{os.getpid()}_{next(_databases)}")


# -- nginx -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Nginx:
    port: int
    prefix: Path


@contextlib.contextmanager
def nginx(
    origin: str, config: Path = DEPLOY / "nginx-edge.conf", *, writable: tuple[str, ...] = ()
) -> Iterator[Nginx]:
    """nginx on `config` with its @WORDS@ filled in: a free loopback port, `origin`, a prefix
    folder under /tmp (its worker runs as nobody when we are root, and must reach the cache;
    `writable`: folders of the prefix the worker writes in)."""
    exe = binary("nginx", "/usr/sbin")
    prefix = Path(tempfile.mkdtemp(prefix="rtmpd-edge-"))
    prefix.chmod(0o755)
    for folder in writable:
        (prefix / folder).mkdir()
        (prefix / folder).chmod(0o777)
    port = free_port()
    user = "nobody nogroup" if os.geteuid() == 0 else os.environ.get("USER", "nobody")
    text = config.read_text()
    for word, value in (("LISTEN", f"127.0.0.1:{port}"), ("ORIGIN", origin),
                        ("PREFIX", str(prefix)), ("USER", user)):  # fmt: skip
        text = text.replace(f"@{word}@", value)
    code = [line.split("#", 1)[0] for line in text.splitlines()]
    assert not any(re.search(r"@[A-Z]+@", line) for line in code), "an @WORD@ left unfilled"
    conf = prefix / "nginx.conf"
    conf.write_text(text)
    proc = subprocess.Popen([exe, "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:
        wait_port(port, proc)
        yield Nginx(port, prefix)
    finally:
        stop(proc)
        shutil.rmtree(prefix, ignore_errors=True)
