"""FFmpeg's HLS client (PyAV) in a child process: decode a playlist URL end to end.

A child process for the same reason as tests.support.publisher: PyAV holds the GIL while its
HTTP client waits for the server, which here runs in the test's own event loop. Run as a
script, it prints one JSON object: frames decoded per kind and FFmpeg's warnings.

    python -m tests.support.player URL
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import dataclass

import av
import av.logging

from tests.support.publisher import ROOT


@dataclass(frozen=True, slots=True)
class Played:
    video: int
    audio: int
    warnings: list[str]


async def play(url: str, timeout: float = 60.0) -> Played:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.support.player", url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"player of {url} still running after {timeout} s") from None
    assert proc.returncode == 0, err.decode(errors="replace")
    return Played(**json.loads(out))


def _main() -> None:
    av.logging.set_level(av.logging.WARNING)
    video = audio = 0
    with av.logging.Capture(local=False) as logs, av.open(sys.argv[1]) as container:
        for frame in container.decode(*container.streams):
            video += isinstance(frame, av.VideoFrame)
            audio += isinstance(frame, av.AudioFrame)
    warnings = [text for level, _, text in logs if level <= av.logging.WARNING]
    print(json.dumps({"video": video, "audio": audio, "warnings": warnings}))


if __name__ == "__main__":
    _main()
