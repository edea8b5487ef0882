"""What a streamer with a valid key can make the HLS packager keep: one attack at a time
against an in-process HlsService (real clock, real files), with an honest stream beside it.

    python -m bench.abuse [--seconds 10] [--attack NAME ...] [--set KEY=VALUE ...]

Attacks (the issue "Abuse by a streamer with a valid key"): `zero` (every timestamp 0, 1 MiB
keyframes), `back` (timestamps going back 200 ms per frame), `forward` (a day forward per
frame), `headers` (a new sequence header before every frame), `fast` (2 Mb/s media sent as
fast as it can be packaged), `bitrate` (103 Mb/s in real time), and `honest` (3 Mb/s in real
time, for comparison). Each runs for `--seconds` wall seconds or until the packager ends it;
cleanup runs four times a second, as the server's tick would (it runs once a second). Every
quarter second the bench measures the files of ours under the folder; it prints the peaks,
what was still held at the end, and how the publish ended. `--set` overrides [hls] keys
(`--set max_segment_bytes=1048576`); the defaults are the server's.

Media is real H.264 (64x48, from tests.support.media) with filler NAL units to reach a bitrate;
no audio.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from rtmpd.hls import HlsConfig, HlsService  # noqa: E402

from tests.support.hls import events_from_flv  # noqa: E402
from tests.support.media import make_flv  # noqa: E402

FPS = 25
DAY_MS = 86_400_000
Frame = tuple[int, bool, bytes, bytes | None]  # dts, keyframe, payload, new avcc before it


def _clip(width: int, height: int) -> tuple[bytes, bytes, bytes]:
    """(avcc, keyframe, inter frame) of a real H.264 stream."""
    events = events_from_flv(make_flv(seconds=1, fps=FPS, width=width, height=height, gop=FPS,
                                      audio=False))  # fmt: skip
    avcc = next(e[2] for e in events if e[0] == "video_config")
    frames = [e for e in events if e[0] == "video"]
    key = next(e[4] for e in frames if e[3])
    inter = next(e[4] for e in frames if not e[3])
    return bytes(avcc), bytes(key), bytes(inter)


def _padded(payload: bytes, size: int) -> bytes:
    """The frame with a filler NAL unit (type 12) making it `size` bytes."""
    extra = size - len(payload) - 5
    if extra <= 0:
        return payload
    return payload + (extra + 1).to_bytes(4, "big") + b"\x0c" + b"\xff" * extra


@dataclass(frozen=True)
class Attack:
    frames: Callable[[], Iterator[Frame]]
    paced: bool  # sent in real time (else as fast as the packager takes it)


def attacks(avcc: bytes, other: bytes, key: bytes, inter: bytes) -> dict[str, Attack]:
    def steady(bitrate: int, *, gop: int = 2 * FPS) -> Iterator[Frame]:
        size = bitrate // 8 // FPS
        big_key, big_inter = _padded(key, size), _padded(inter, size)
        for i in range(1 << 40):
            first = i % gop == 0
            yield i * 1000 // FPS, first, big_key if first else big_inter, None

    def zero() -> Iterator[Frame]:
        frame = _padded(key, 1 << 20)
        while True:
            yield 0, True, frame, None

    def back() -> Iterator[Frame]:
        for i in range(1 << 40):
            yield 10**9 - 200 * i, True, key, None

    def forward() -> Iterator[Frame]:
        for i in range(1 << 40):
            yield i * DAY_MS, True, key, None

    def headers() -> Iterator[Frame]:
        for i in range(1 << 40):
            yield i * 1000 // FPS, True, key, other if i % 2 else avcc

    return {
        "zero": Attack(zero, paced=False),
        "back": Attack(back, paced=False),
        "forward": Attack(forward, paced=False),
        "headers": Attack(headers, paced=False),
        "fast": Attack(lambda: steady(2_000_000), paced=False),
        "bitrate": Attack(lambda: steady(103_000_000), paced=True),
        "honest": Attack(lambda: steady(3_000_000), paced=True),
    }


@dataclass
class Peaks:
    bytes: int = 0
    files: int = 0
    listed: int = 0
    playlist: int = 0


def measure(folder: Path, name: str, peaks: Peaks) -> tuple[int, int]:
    total = files = 0
    for root, _, names in os.walk(folder):
        for file in names:
            try:
                total += os.stat(os.path.join(root, file)).st_size
            except OSError:
                continue
            files += 1
    try:
        text = (folder / name / "index.m3u8").read_text()
    except OSError:
        text = ""
    peaks.bytes = max(peaks.bytes, total)
    peaks.files = max(peaks.files, files)
    peaks.listed = max(peaks.listed, text.count("#EXTINF"))
    peaks.playlist = max(peaks.playlist, len(text))
    return total, files


def run(name: str, attack: Attack, media: tuple[bytes, bytes, bytes, bytes], seconds: float,
        settings: dict[str, Any]) -> str:  # fmt: skip
    avcc, _, key, inter = media
    folder = Path(tempfile.mkdtemp(prefix="rtmpd-abuse-"))
    try:
        service = HlsService(HlsConfig(folder, **settings))
        packager = service.open_stream("abuser")
        honest = service.open_stream("honest")
        honest.video_config(0, avcc)
        packager.video_config(0, avcc)
        peaks = Peaks()
        start = time.monotonic()
        next_tick = next_honest = start
        honest_i = 0
        outcome = "still publishing"
        frames = attack.frames()
        pending: Frame | None = None
        first: int | None = None
        while (now := time.monotonic()) - start < seconds:
            if now >= next_tick:
                service.tick(time.time())
                measure(folder, "abuser", peaks)
                next_tick = now + 0.25
            while now >= next_honest:  # the honest neighbour, in real time
                keyframe = honest_i % FPS == 0
                honest.video(honest_i * 40, 0, keyframe, key if keyframe else inter)
                honest_i += 1
                next_honest = start + honest_i / FPS
            pending = pending or next(frames)
            dts, keyframe, payload, config = pending
            if attack.paced:
                first = dts if first is None else first
                due = start + (dts - first) / 1000
                if due > now:
                    time.sleep(min(due, next_tick, next_honest) - now)
                    continue
            pending = None
            if config is not None:
                packager.video_config(dts, config)
            packager.video(dts, 0, keyframe, payload)
            violation = getattr(packager, "violation", None)
            if violation is not None:
                outcome = f"ended after {time.monotonic() - start:.1f} s: {violation.description}"
                break
        measure(folder, "abuser", peaks)
        packager.close()
        held, files = measure(folder, "abuser", peaks)
        honest.close()
        return (
            f"{name:8} peak {peaks.bytes / 1e6:9.1f} MB {peaks.files:6} files, listed at most "
            f"{peaks.listed:5} segments, playlist at most {peaks.playlist / 1000:7.1f} KB; "
            f"{held / 1e6:.1f} MB in {files} files at the end; {outcome}"
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--attack", action="append", default=[])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    settings: dict[str, Any] = {}
    for item in args.set:
        key, _, value = item.partition("=")
        settings[key] = float(value) if "." in value else int(value)
    avcc, key, inter = _clip(64, 48)
    other, _, _ = _clip(48, 32)
    table = attacks(avcc, other, key, inter)
    for name in args.attack or list(table):
        print(run(name, table[name], (avcc, other, key, inter), args.seconds, settings),
              flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
