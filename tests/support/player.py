"""FFmpeg's HLS client (PyAV) in a child process: decode a playlist URL end to end.

A child process for the same reason as tests.support.publisher: PyAV holds the GIL while its
HTTP client waits for the server, which here runs in the test's own event loop. Run as a
script, it prints one JSON object: frames decoded per kind, the codecs FFmpeg found and its
warnings.

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
    codecs: list[str]  # FFmpeg's names of the streams' codecs ("hevc", "av1", "opus", ...)
    size: list[int]  # the first decoded picture's width and height ([] without video)


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
    size: list[int] = []
    with av.logging.Capture(local=False) as logs, av.open(sys.argv[1]) as container:
        codecs = [s.codec_context.codec.canonical_name for s in container.streams]
        for frame in container.decode(*container.streams):
            if isinstance(frame, av.VideoFrame):
                video += 1
                size = size or [frame.width, frame.height]
            else:
                audio += isinstance(frame, av.AudioFrame)
    warnings = [text for level, _, text in logs if level <= av.logging.WARNING]
    print(json.dumps({"video": video, "audio": audio, "warnings": warnings, "codecs": codecs,
                      "size": size}))  # fmt: skip


if __name__ == "__main__":
    _main()
