"""The installed `rtmpd` console script, run as a user runs it: in a child process."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

RTMPD = shutil.which("rtmpd", path=str(Path(sys.executable).parent)) or "rtmpd"


def run(*args: str, cwd: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RTMPD, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def write_config(folder: Path, rtmp: str = "127.0.0.1:0", http: str = "127.0.0.1:0") -> Path:
    path = folder / "rtmpd.toml"
    path.write_text(f'[rtmp]\nlisten = "{rtmp}"\n[http]\nlisten = "{http}"\n')
    return path


def test_help_explains_the_commands(tmp_path: Path) -> None:
    out = run("--help", cwd=tmp_path)
    assert out.returncode == 0
    assert "serve" in out.stdout and "users" in out.stdout
    serve = run("serve", "--help", cwd=tmp_path)
    assert serve.returncode == 0 and "--config" in serve.stdout
    users = run("users", "--help", cwd=tmp_path)
    assert users.returncode == 0 and "rotate-key" in users.stdout
    tokens = run("tokens", "--help", cwd=tmp_path)
    assert tokens.returncode == 0 and "remove" in tokens.stdout and "API token" in tokens.stdout


def test_python_dash_m_is_the_same_command(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "rtmpd", "--help"], capture_output=True, text=True, cwd=tmp_path
    )
    assert out.returncode == 0 and "serve" in out.stdout


@pytest.mark.parametrize(
    "text", ["[hls]\nfragmet = 1\n", '[rtmp]\nlisten = "nope"\n', "not toml at all ["]
)
def test_bad_config_is_one_line_and_status_2(tmp_path: Path, text: str) -> None:
    (tmp_path / "bad.toml").write_text(text)
    out = run("-c", "bad.toml", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert out.stderr.startswith("rtmpd: config error:")


def test_port_in_use_is_one_line_and_status_2(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        write_config(tmp_path, rtmp=f"127.0.0.1:{port}")
        out = run(cwd=tmp_path)
    assert out.returncode == 2
    assert "address already in use" in out.stderr and "Traceback" not in out.stderr
    assert str(port) in out.stderr


def test_serve_logs_listeners_manages_users_and_stops_cleanly(tmp_path: Path) -> None:
    write_config(tmp_path)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [RTMPD, "serve"], cwd=tmp_path, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        lines: list[str] = []
        deadline = time.monotonic() + 20
        assert proc.stderr is not None
        while not any("HTTP listening" in line for line in lines):
            assert time.monotonic() < deadline, lines
            line = proc.stderr.readline()
            assert line, f"rtmpd exited: {lines}"
            lines.append(line)
        assert any(re.search(r"RTMP listening on rtmp://127\.0\.0\.1:\d+/app", x) for x in lines)
        assert any(re.search(r"HTTP listening on http://127\.0\.0\.1:\d+/", x) for x in lines)

        # The CLI writes the same database while the server runs.
        added = run("users", "add", "benw", cwd=tmp_path)
        assert added.returncode == 0, added.stderr
        key = added.stdout.strip()
        assert re.fullmatch(r"[A-Za-z0-9_-]{32}", key)
        assert key not in added.stderr and "rtmp://" in added.stderr
        listed = run("users", "list", cwd=tmp_path)
        assert "benw" in listed.stdout and key not in listed.stdout
        taken = run("-c", "rtmpd.toml", "users", "add", "benw", cwd=tmp_path)
        assert taken.returncode == 1 and taken.stderr.count("\n") == 1
        rotated = run("users", "rotate-key", "benw", cwd=tmp_path)
        assert rotated.returncode == 0 and rotated.stdout.strip() not in ("", key)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=20)
    assert proc.returncode == 0, rest
    assert "Traceback" not in rest
