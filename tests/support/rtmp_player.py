"""Play rtmp:// (or any URL FFmpeg opens: an HLS playlist) with FFmpeg through PyAV, from a
child process (PyAV holds the GIL while it opens rtmp://, see tests/support/publisher.py), and
report what came: packets, keyframes, decoded pictures, the first packet's kind, timestamps.

    python -m tests.support.rtmp_player URL MAX_SECONDS
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from asyncio.subprocess import Process
from dataclasses import dataclass
from typing import Any

import av
import av.logging

from tests.support.publisher import ROOT


@dataclass(frozen=True, slots=True)
class PlayResult:
    returncode: int
    report: dict[str, Any]
    stderr: str


async def start_player(url: str, seconds: float) -> Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.support.rtmp_player", url, str(seconds),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip


async def finish_player(proc: Process, timeout: float = 60.0) -> PlayResult:
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
    text = out.decode(errors="replace").strip().splitlines()
    report = json.loads(text[-1]) if text else {}
    assert proc.returncode is not None
    return PlayResult(proc.returncode, report, err.decode(errors="replace"))


async def play(url: str, seconds: float, timeout: float = 60.0) -> PlayResult:
    return await finish_player(await start_player(url, seconds), timeout)


def _main() -> None:
    av.logging.set_level(av.logging.ERROR)
    url, seconds = sys.argv[1], float(sys.argv[2])
    report: dict[str, Any] = {"video": 0, "audio": 0, "keyframes": 0, "pictures": 0,
                              "first": None, "first_key_index": None, "error": None}  # fmt: skip
    began = time.monotonic()
    try:
        options = {"rw_timeout": "15000000"} if url.startswith("rtmp") else {}
        with av.open(url, options=options, timeout=15) as container:
            video = container.streams.video[0] if container.streams.video else None
            report["width"] = video.codec_context.width if video else None
            report["height"] = video.codec_context.height if video else None
            first_ts = last_ts = None
            for packet in container.demux():
                if packet.size == 0:
                    continue
                kind = packet.stream.type
                if kind == "video":
                    report["video"] += 1
                    if packet.is_keyframe:
                        report["keyframes"] += 1
                        if report["first_key_index"] is None:
                            report["first_key_index"] = report["video"] - 1
                    report["pictures"] += len(packet.decode())
                    if packet.pts is not None:
                        t = float(packet.pts * packet.time_base)
                        first_ts = t if first_ts is None else first_ts
                        last_ts = t
                elif kind == "audio":
                    report["audio"] += 1
                if report["first"] is None:
                    report["first"] = "keyframe" if packet.is_keyframe and kind == "video" else kind
                if time.monotonic() - began > seconds:
                    break
            report["media_seconds"] = (last_ts - first_ts) if first_ts is not None else 0
    except Exception as exc:  # noqa: BLE001 - reported, the parent decides
        report["error"] = f"{type(exc).__name__}: {exc}"
    report["elapsed"] = time.monotonic() - began
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    _main()
