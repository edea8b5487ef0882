"""RTMPS: FFmpeg publishing over TLS with a certificate made here, the certificate reloaded
while a publish streams (the next connection gets the new one, the running publish goes on),
a failed TLS handshake costing one log line, and the real SIGHUP / SIGUSR1 / SIGTERM of the
`rtmpd` command."""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import signal
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from rtmpd.app import Rtmpd, StartupError
from tests.support.app import HeldPublisher, make_config, media_tags, start_server
from tests.support.m3u8_validator import validate
from tests.support.publisher import run_publisher
from tests.support.tls import client_context, write_certificate

START = "NetStream.Publish.Start"
RTMPD = shutil.which("rtmpd", path=str(Path(sys.executable).parent)) or "rtmpd"


@pytest.fixture
async def tls_server(tmp_path: Path) -> AsyncIterator[tuple[Rtmpd, bytes]]:
    cert, key, der = write_certificate(tmp_path / "tls", "rtmpd-test-a")
    server = await start_server(
        tmp_path, rtmps={"listen": "127.0.0.1:0", "cert": str(cert), "key": str(key)}
    )
    yield server, der
    await server.stop()


async def until(check: object, timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():  # type: ignore[operator]
            await asyncio.sleep(0.05)


def playlist_text(server: Rtmpd, name: str) -> str:
    path = server.hls.playlist_path(name)
    return path.read_text() if path.exists() else ""


async def test_ffmpeg_publishes_over_rtmps(tls_server: tuple[Rtmpd, bytes]) -> None:
    server, _ = tls_server
    key = await server.auth.store.add_user("secure")
    url = f"rtmps://127.0.0.1:{server.rtmp.tls_port}/app/{key}"
    result = await run_publisher(url, seconds=2.0, fps=10, width=160, height=120)
    assert result.returncode == 0, result.stderr
    await until(lambda: "#EXT-X-ENDLIST" in playlist_text(server, "secure"))
    playlist = validate(playlist_text(server, "secure"))
    assert 1.8 <= playlist.duration <= 2.2
    assert server.rtmp.tls_port != server.rtmp.port


async def test_reload_serves_the_new_certificate_and_the_publish_goes_on(
    tmp_path: Path, tls_server: tuple[Rtmpd, bytes], caplog: pytest.LogCaptureFixture
) -> None:
    server, first_der = tls_server
    key = await server.auth.store.add_user("early")
    tags = media_tags(seconds=4, fps=10, width=96, height=64, gop=10)
    running = HeldPublisher(server.rtmp.tls_port, key, tls=client_context())
    assert (await running.start()).code == START and running.peer_cert == first_der
    running.send_tags([t for t in tags if t.timestamp < 2000])
    await until(lambda: ".ts" in playlist_text(server, "early"))

    _, _, second_der = write_certificate(tmp_path / "tls", "rtmpd-test-b")  # same paths
    assert server.reload_tls()  # what SIGHUP calls
    later = HeldPublisher(server.rtmp.tls_port, await server.auth.store.add_user("late"),
                          tls=client_context())  # fmt: skip
    assert (await later.start()).code == START and later.peer_cert == second_der

    (tmp_path / "tls" / "key.pem").write_text("not a key")
    with caplog.at_level(logging.WARNING):
        assert not server.reload_tls()
    assert [r.getMessage() for r in caplog.records if "certificate in use stays" in
            r.getMessage()] != []  # fmt: skip
    again = HeldPublisher(server.rtmp.tls_port, "anykey", tls=client_context())
    await again.start()
    assert again.peer_cert == second_der  # the broken pair changed nothing
    await again.close()

    running.send_tags([t for t in tags if t.timestamp >= 2000])  # the old session goes on
    assert not running.closed.is_set()
    await running.close()
    await later.close()
    await until(lambda: "#EXT-X-ENDLIST" in playlist_text(server, "early"))
    playlist = validate(playlist_text(server, "early"))
    assert 3.8 <= playlist.duration <= 4.2 and "#EXT-X-DISCONTINUITY\n" not in playlist_text(
        server, "early"
    )


async def test_a_failed_tls_handshake_costs_one_log_line(
    tls_server: tuple[Rtmpd, bytes], caplog: pytest.LogCaptureFixture
) -> None:
    server, der = tls_server
    caplog.set_level(logging.DEBUG)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.rtmp.tls_port)
    writer.write(b"\x03" + bytes(1536))  # plain RTMP's C0 + C1 at the RTMPS port
    assert await asyncio.wait_for(reader.read(), 10) == b""  # closed
    writer.close()
    await until(lambda: server.rtmp.connections == 0)
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1 and re.search(r"conn \d+ rtmps 127\.0\.0\.1:\d+: TLS handshake failed",
                                         lines[0]), lines  # fmt: skip
    assert not any("Traceback" in r.getMessage() or r.exc_info for r in caplog.records)
    fine = HeldPublisher(server.rtmp.tls_port, "whatever", tls=client_context())
    await fine.start()  # the listener is unharmed
    assert fine.peer_cert == der
    await fine.close()


async def test_a_missing_or_mismatched_pair_is_a_one_line_startup_error(tmp_path: Path) -> None:
    cert, key, _ = write_certificate(tmp_path / "a", "a")
    other_cert, _, _ = write_certificate(tmp_path / "b", "b")
    for c, k, why in ((tmp_path / "none.pem", key, "No such file"), (other_cert, key, "")):
        config = make_config(tmp_path, rtmps={"cert": str(c), "key": str(k)})
        with pytest.raises(StartupError) as info:
            Rtmpd(config)
        assert str(info.value).startswith("[rtmps] cert/key") and why in str(info.value)
        assert "\n" not in str(info.value)
    assert cert.exists()


async def test_the_rtmpd_command_reloads_on_sighup_and_drains_on_rtmpd_drain(
    tmp_path: Path,
) -> None:
    cert, key, first_der = write_certificate(tmp_path / "tls", "rtmpd-cmd-a")
    config = tmp_path / "rtmpd.toml"
    config.write_text(
        '[rtmp]\nlisten = "127.0.0.1:0"\ndrain_grace = 1.0\n[http]\nlisten = "127.0.0.1:0"\n'
        f'[rtmps]\nlisten = "127.0.0.1:0"\ncert = "{cert}"\nkey = "{key}"\n'
        '[hls]\npath = "hls"\n[database]\npath = "data/db.sqlite3"\n'
    )
    proc = await asyncio.create_subprocess_exec(
        RTMPD, "-c", str(config), "serve", stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stderr is not None
    lines: list[str] = []

    async def wait_for(pattern: str) -> re.Match[str]:
        async with asyncio.timeout(20):
            while True:
                for line in lines:
                    if m := re.search(pattern, line):
                        lines.remove(line)
                        return m
                line = (await proc.stderr.readline()).decode()  # type: ignore[union-attr]
                assert line, "rtmpd exited"
                lines.append(line)

    try:
        port = int((await wait_for(r"RTMPS listening on rtmps://127\.0\.0\.1:(\d+)/app"))[1])
        await wait_for("HTTP listening")
        pid_file = tmp_path / "data" / "rtmpd.pid"
        async with asyncio.timeout(5):  # written just after start-up's last log line
            while not pid_file.exists() or not pid_file.read_text().strip():
                await asyncio.sleep(0.01)
        assert pid_file.read_text().strip() == str(proc.pid)
        first = HeldPublisher(port, "k", tls=client_context())
        await first.start()
        assert first.peer_cert == first_der
        await first.close()
        _, _, second_der = write_certificate(tmp_path / "tls", "rtmpd-cmd-b")
        proc.send_signal(signal.SIGHUP)
        await wait_for("certificate reloaded")
        second = HeldPublisher(port, "k", tls=client_context())
        await second.start()
        assert second.peer_cert == second_der
        await second.close()
        drained = await asyncio.to_thread(
            subprocess.run, [RTMPD, "-c", str(config), "drain"], capture_output=True, text=True,
            timeout=30,
        )  # fmt: skip
        assert drained.returncode == 0, drained.stderr
        assert f"asked rtmpd (process {proc.pid}) to drain" in drained.stdout
        await wait_for("SIGUSR1: draining")
        await wait_for(r"drained: 0 went by themselves, 0 ended")
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
        assert not pid_file.exists()
        gone = subprocess.run([RTMPD, "-c", str(config), "drain"], capture_output=True,
                              text=True, timeout=30)  # fmt: skip
        assert gone.returncode == 1 and "no running server found" in gone.stderr
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_tls_context_is_a_server_context(tmp_path: Path) -> None:
    cert, key, _ = write_certificate(tmp_path, "c")
    server = Rtmpd(make_config(tmp_path, rtmps={"cert": str(cert), "key": str(key)}))
    context = server.rtmp.tls_context
    assert isinstance(context, ssl.SSLContext) and context.minimum_version >= ssl.TLSVersion.TLSv1_2
