"""Soak: many publishers for a long time against one rtmpd process, which must stay flat.

    python -m bench.soak [--publishers 20] [--minutes 60] [--sample 30] [--out FILE]

Runs `rtmpd` (bench.servers.RtmpdServer, HLS on disk, log at warning) and publishes, paced in
real time with bench.loadgen: `--publishers` streams of the 720p30 benchmark media from stream
time 0; one stream whose clock starts at 4.65 hours, so it crosses the 24-bit timestamp field
(0xFFFFFF ms, 4.66 h: extended timestamps) and then 4.7 h; and one that starts a minute before
the 32-bit RTMP timestamp wraps (49.7 days). Every `--sample` seconds it records the server's
RSS, CPU time, open file descriptors and the number of files under the HLS folder. At the end
every playlist must be valid and finished, the two late streams' last segments must carry their
late times, and the log must hold no warning or error. It prints a summary and exits 1 if a
check failed; with `--out`, the samples and the summary go to FILE as JSON. The server's
temporary folder (HLS files, database, log) is removed at the end unless `--keep`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import av

from bench.loadgen import LoadGenerator, Loop, PreparedMedia
from bench.media import SPECS, ensure_media
from bench.servers import RtmpdServer, cpu_seconds, loadavg, rss_bytes

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from tests.support.m3u8_validator import validate  # noqa: E402

EXTENDED_START_MS = round(4.65 * 3600 * 1000)  # 0xFFFFFF ms (4.66 h) is crossed after ~36 s
WRAP_START_MS = 2**32 - 60_000  # the 32-bit RTMP clock wraps after a minute
MIB = 1024 * 1024


class ShiftedMedia(PreparedMedia):
    """The same media with every timestamp on the wire `offset_ms` later; pacing (Loop.ts)
    stays relative, so the load generator sends it in real time from the start."""

    def __init__(self, path: Path, offset_ms: int) -> None:
        super().__init__(path)
        self.offset_ms = offset_ms
        self.header_bytes = [self._cut(t, offset_ms) for t in self.headers]

    def loop(self, k: int) -> Loop:
        got = self._loops.get(k)
        if got is None:
            shift = k * self.period_ms
            got = Loop(
                [self._cut(t, t.timestamp + shift + self.offset_ms) for t in self.body],
                [t.timestamp + shift for t in self.body],
                [t.is_keyframe for t in self.body],
            )
            self._loops[k] = got
            self._loops.pop(k - 2, None)
        return got


@dataclass(slots=True)
class Sample:
    t: float  # seconds since the load started
    rss_mib: float
    cpu_s: float
    fds: int
    files: int
    hls_mib: float
    load1: float


def take_sample(server: RtmpdServer, t0: float) -> Sample:
    pid = server.pid
    files = 0
    size = 0
    assert server.hls_dir is not None
    for folder, _, names in os.walk(server.hls_dir):
        files += len(names)
        for name in names:
            with contextlib.suppress(OSError):  # removed by cleanup meanwhile
                size += os.stat(os.path.join(folder, name)).st_size
    return Sample(
        t=round(time.monotonic() - t0, 1),
        rss_mib=round(rss_bytes(pid) / MIB, 1),
        cpu_s=round(cpu_seconds(pid), 2),
        fds=len(os.listdir(f"/proc/{pid}/fd")),
        files=files,
        hls_mib=round(size / MIB, 1),
        load1=loadavg()[0],
    )


def last_pts_seconds(folder: Path) -> float:
    """Stream time at the start of the last listed segment of a playlist."""
    playlist = validate((folder / "index.m3u8").read_text())
    with av.open(str(folder / playlist.segments[-1].uri)) as container:
        packet = next(p for p in container.demux(video=0) if p.pts is not None)
        assert packet.pts is not None and packet.time_base is not None
        return float(packet.pts * packet.time_base)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    media_path = ensure_media(SPECS["720p30"])
    server = RtmpdServer(fragment=args.fragment, playlist_length=30.0)
    server.start()
    samples: list[Sample] = []
    try:
        streams = server.make_streams(args.publishers, prefix="soak")
        late = server.make_streams(1, prefix="late")
        wrap = server.make_streams(1, prefix="wrap")
        seconds = args.minutes * 60
        loads = [
            LoadGenerator("127.0.0.1", server.rtmp_port, streams, PreparedMedia(media_path),
                          seconds=seconds, ramp=min(10.0, seconds / 10)),
            LoadGenerator("127.0.0.1", server.rtmp_port, late,
                          ShiftedMedia(media_path, EXTENDED_START_MS), seconds=seconds),
            LoadGenerator("127.0.0.1", server.rtmp_port, wrap,
                          ShiftedMedia(media_path, WRAP_START_MS), seconds=seconds),
        ]  # fmt: skip
        t0 = time.monotonic()
        tasks = [asyncio.create_task(load.run()) for load in loads]
        while not all(task.done() for task in tasks):
            samples.append(take_sample(server, t0))
            print(json.dumps(asdict(samples[-1])), flush=True)
            await asyncio.wait(tasks, timeout=args.sample)
        results = [task.result() for task in tasks]
        await asyncio.sleep(args.fragment + 2)  # the last segments and ENDLIST
        samples.append(take_sample(server, t0))
        names = [name for _, name in streams + late + wrap]
        assert server.hls_dir is not None
        problems = [e for r in results for e in r.errors]
        for name in names:
            folder = server.hls_dir / name
            try:
                playlist = validate((folder / "index.m3u8").read_text())
            except (OSError, AssertionError) as exc:
                problems.append(f"{name}: playlist: {str(exc).splitlines()[0]}")
                continue
            if not playlist.endlist:
                problems.append(f"{name}: no ENDLIST")
            if any(s.discontinuity for s in playlist.segments):
                problems.append(f"{name}: discontinuity")
        late_end = last_pts_seconds(server.hls_dir / late[0][1])
        wrap_end = last_pts_seconds(server.hls_dir / wrap[0][1])
        if late_end < EXTENDED_START_MS / 1000 + seconds - 60:
            problems.append(f"late stream ends at {late_end:.0f} s of stream time")
        log_lines = server.log.read_text(errors="replace").splitlines()
        noisy = [line for line in log_lines if " WARNING " in line or " ERROR " in line]
        problems += [f"log: {line}" for line in noisy[:20]]
    finally:
        server.stop()
        if not args.keep:
            shutil.rmtree(server.tmp, ignore_errors=True)
    steady = [s for s in samples if s.t >= min(120.0, seconds / 4)] or samples
    third = max(1, len(steady) // 3)
    first_rss = statistics.median(s.rss_mib for s in steady[:third])
    last_rss = statistics.median(s.rss_mib for s in steady[-third:])
    summary = {
        "publishers": args.publishers + 2,
        "minutes": args.minutes,
        "media_hours": round((args.publishers + 2) * seconds / 3600, 2),
        "rss_mib_first_third": first_rss,
        "rss_mib_last_third": last_rss,
        "rss_growth_pct": round((last_rss - first_rss) / first_rss * 100, 1),
        "rss_mib_max": max(s.rss_mib for s in samples),
        "files_max": max(s.files for s in samples),
        "fds_max": max(s.fds for s in samples),
        "hls_mib_max": max(s.hls_mib for s in samples),
        "cpu_s_total": samples[-1].cpu_s,
        "late_stream_last_segment_h": round(late_end / 3600, 3),
        "wrap_stream_last_segment_s": round(wrap_end, 1),
        "warnings_or_errors_logged": len(noisy),
        "problems": problems,
    }
    return {"summary": summary, "samples": [asdict(s) for s in samples]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--publishers", type=int, default=20)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--sample", type=float, default=30.0, help="seconds between samples")
    parser.add_argument("--fragment", type=float, default=5.0)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--keep", action="store_true", help="keep the server's folder")
    args = parser.parse_args()
    report = asyncio.run(run(args))
    summary = report["summary"]
    print("\n| measure | value |\n|---|---|")
    for key, value in summary.items():
        if key != "problems":
            print(f"| {key} | {value} |")
    for problem in summary["problems"]:
        print(f"PROBLEM: {problem}")
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))
    return 1 if summary["problems"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
