"""Run FFmpeg's RTMP publisher (PyAV) in a child process, and make time-shifted test media.

Why a process and not a thread: PyAV opens the output (`avio_open`, which for rtmp:// runs the
whole handshake/connect/publish exchange) while holding the GIL, so an asyncio server in the
same process could never answer it. Run as a script, this module publishes once:

    python -m tests.support.publisher URL '{"seconds": 1, ...}' [OFFSET_MS]
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sys
from asyncio.subprocess import Process
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.logging

from tests.support.media import encode_into

ROOT = Path(__file__).resolve().parents[2]


class _Shifted:
    """Stands in for an output container and moves every packet `offset_ms` later."""

    def __init__(self, container: Any, offset_ms: int) -> None:
        self._container = container
        self._offset = Fraction(offset_ms, 1000)

    def add_stream(self, *args: Any, **kwargs: Any) -> Any:
        return self._container.add_stream(*args, **kwargs)

    def mux(self, packet: Any) -> None:
        shift = int(self._offset / packet.time_base)
        if packet.pts is not None:
            packet.pts += shift
        if packet.dts is not None:
            packet.dts += shift
        self._container.mux(packet)

    def close(self) -> None:
        self._container.close()


def make_flv_shifted(offset_ms: int, **media: Any) -> bytes:
    """Like media.make_flv, with every timestamp `offset_ms` later."""
    buf = io.BytesIO()
    encode_into(_Shifted(av.open(buf, "w", format="flv"), offset_ms), **media)  # type: ignore[arg-type]
    return buf.getvalue()


@dataclass(frozen=True, slots=True)
class PublishResult:
    returncode: int
    stderr: str


async def start_publisher(url: str, *, offset_ms: int = 0, **media: Any) -> Process:
    """Start publishing generated media to `url` from a child process (stderr piped)."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.support.publisher",
        url,
        json.dumps(media),
        str(offset_ms),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )


async def run_publisher(
    url: str, *, offset_ms: int = 0, timeout: float = 60.0, **media: Any
) -> PublishResult:
    """Publish generated media to `url` from a child process; kill it if it hangs."""
    proc = await start_publisher(url, offset_ms=offset_ms, **media)
    try:
        _, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"publisher to {url} still running after {timeout} s") from None
    assert proc.returncode is not None
    return PublishResult(proc.returncode, err.decode(errors="replace"))


def _main() -> None:
    # FFmpeg's own errors on stderr, as the ffmpeg command prints them ("Server error: ...").
    logging.basicConfig(level=logging.ERROR, format="%(name)s: %(message)s")
    av.logging.set_level(av.logging.ERROR)
    url, media_json, offset = sys.argv[1], sys.argv[2], int(sys.argv[3])
    container = av.open(url, "w", format="flv")
    target: Any = _Shifted(container, offset) if offset else container
    encode_into(target, **json.loads(media_json))


if __name__ == "__main__":
    _main()
