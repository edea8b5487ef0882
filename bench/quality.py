"""What players say about the HLS output: rtmpd and nginx-rtmp fed the same input at once.

    python -m bench.quality [--specs 720p30,1080p60-bframes,audio-only,720p30-video-only]
                            [--servers rtmpd,nginx] [--seconds 60] [--players ffmpeg,vlc,mpv]

Each spec (bench/media.py) is published in real time to every server in the same run; while
it plays, every version of the playlist is read (EXT-X-TARGETDURATION changes, date-times
going backwards); at the end the segments go through the TS checker (tests/support/tscheck.py:
continuity counters across segment boundaries, PCR interval and lead over DTS, PES late
against PCR) and through real players: FFmpeg (PyAV) reading the playlist, and VLC and mpv
when installed (Debian's vlc-bin and mpv; `apt-get install vlc-bin vlc-plugin-base mpv`),
whose warnings about the stream are counted. nginx-rtmp needs NGINX_RTMP_SH (see
bench/servers.py). Prints a markdown table and appends JSON records to
bench/results/results.jsonl.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import av
import av.logging

from bench.loadgen import LoadGenerator, PreparedMedia
from bench.media import SPECS, ensure_media
from bench.servers import Server, make_server
from tests.support.tscheck import check_stream

RESULTS = Path(__file__).resolve().parent / "results"
#: What the players print about a broken stream (the lines counted per player).
PLAYER_PATTERNS = {
    # Not VLC's "late frames, dropping frame": its decoder falling behind at --rate 4 on a busy
    # machine, which it says of every server's output alike.
    "vlc": re.compile(r"discontinuity received|PCR is called too late|TS discontinuity"),
    "mpv": re.compile(r"[Cc]orrupt|[Ii]nvalid|discontinuit"),
}


@dataclass(slots=True)
class Outcome:
    spec: str
    server: str
    segments: int = 0
    target_changes: int = 0
    pdt_backwards: int = 0
    ffmpeg_warnings: int = 0
    ffmpeg_corrupt: int = 0
    video_frames: int = 0
    cc_errors: int = 0
    boundary_cc_errors: int = 0
    pcr_lead_ms: str = ""
    max_pcr_gap_ms: float = 0.0
    late_pes: int = 0
    players: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


class PlaylistWatcher:
    """Reads a playlist every 100 ms while a stream runs and keeps each distinct version."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.versions: list[str] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        await asyncio.sleep(0.3)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._read()

    async def _run(self) -> None:
        while True:
            self._read()
            await asyncio.sleep(0.1)

    def _read(self) -> None:
        try:
            text = self.path.read_text()
        except OSError:
            return
        if text and (not self.versions or self.versions[-1] != text):
            self.versions.append(text)


def playlist_facts(versions: list[str]) -> tuple[int, int]:
    """(target duration changes, date-times earlier than the one before) over all versions."""
    targets = [int(m[1]) for v in versions if (m := re.search(r"TARGETDURATION:(\d+)", v))]
    changes = sum(1 for a, b in zip(targets, targets[1:], strict=False) if a != b)
    backwards = 0
    for text in versions:
        stamps = re.findall(r"PROGRAM-DATE-TIME:(\S+)", text)
        backwards += sum(1 for a, b in zip(stamps, stamps[1:], strict=False) if b < a)
    return changes, backwards


def ffmpeg_reads(playlist: Path) -> tuple[int, int, int]:
    """(warnings, "corrupt" ones, video frames) as FFmpeg decodes the whole playlist."""
    level = av.logging.get_level()
    av.logging.set_level(av.logging.WARNING)
    frames = 0
    try:
        with av.logging.Capture(local=False) as logs, av.open(str(playlist)) as container:
            for frame in container.decode(*container.streams):
                frames += isinstance(frame, av.VideoFrame)
    finally:  # FFmpeg's log level is the process's: the tests that follow must not inherit it
        av.logging.set_level(level)
    lines = [text for level, _, text in logs if level <= av.logging.WARNING]
    return len(lines), sum("orrupt" in line for line in lines), frames


def player_reads(player: str, playlist: Path) -> tuple[int, list[str]] | None:
    """Lines about a broken stream that VLC or mpv print for this playlist, and the commonest
    kinds of them; None if the player is missing."""
    exe = shutil.which("cvlc" if player == "vlc" else player)
    if exe is None:
        return None
    if player == "vlc":
        command = [exe, "-vvv", "--intf", "dummy", "--vout", "dummy", "--aout", "dummy",
                   "--play-and-exit", "--rate", "4", str(playlist)]  # fmt: skip
        if os.geteuid() == 0:  # VLC refuses to run as root
            command = ["runuser", "-u", "nobody", "--", *command]
    else:
        command = [exe, "--no-config", "--vo=null", "--ao=null", "--untimed",
                   "--msg-level=all=v", str(playlist)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, errors="replace", timeout=300)
    lines = [line for line in (done.stdout + done.stderr).splitlines()
             if PLAYER_PATTERNS[player].search(line)]  # fmt: skip
    kinds = collections.Counter(re.sub(r"\d+", "N", line.split("] ")[-1].strip()) for line in lines)
    return len(lines), [f"{player}: {n} x {kind}" for kind, n in kinds.most_common(3)]


async def run_spec(spec_name: str, servers: list[Server], seconds: float) -> list[Outcome]:
    spec = SPECS[spec_name]
    media = PreparedMedia(ensure_media(spec))
    jobs = []
    for server in servers:
        streams = server.make_streams(1, prefix=f"q{int(time.time()) % 100000}")
        name = streams[0][1]
        assert server.hls_dir is not None
        watcher = PlaylistWatcher(server.hls_dir / name / "index.m3u8")
        gen = LoadGenerator("127.0.0.1", server.rtmp_port, streams, media, seconds=seconds)
        jobs.append((server, name, watcher, gen))
    for _, _, watcher, _ in jobs:
        watcher.start()
    await asyncio.gather(*(gen.run(timeout=seconds + 60) for *_, gen in jobs))
    await asyncio.sleep(3.0)  # the last segments and ENDLIST
    outcomes = []
    with tempfile.TemporaryDirectory() as tmp:
        # Every server's files copied at once: the players' reads of one take minutes, while
        # nginx-rtmp's cleanup removes a finished stream's files behind them.
        snapshots = []
        for index, (server, name, watcher, _) in enumerate(jobs):
            await watcher.stop()
            assert server.hls_dir is not None
            snapshot = Path(tmp) / str(index)
            if (server.hls_dir / name).is_dir():
                shutil.copytree(server.hls_dir / name, snapshot)
            snapshots.append(snapshot)
        for (server, _, watcher, _), snapshot in zip(jobs, snapshots, strict=True):
            outcomes.append(examine(spec_name, server, snapshot, watcher.versions))
    return outcomes


def examine(spec: str, server: Server, folder: Path, versions: list[str]) -> Outcome:
    """The checks and the players on `folder`, a copy of one stream's files at its end."""
    out = Outcome(spec, server.label)
    playlist = folder / "index.m3u8"
    if not versions or not playlist.exists():
        out.notes.append("no playlist")
        return out
    out.target_changes, out.pdt_backwards = playlist_facts(versions)
    uris = [line for line in playlist.read_text().splitlines() if line and line[0] != "#"]
    out.segments = len(uris)
    with tempfile.TemporaryDirectory() as tmp:  # the listed segments alone, readable by VLC
        copy = Path(tmp)
        copy.chmod(0o755)  # readable by the unprivileged user VLC runs as
        for uri in uris:
            shutil.copy(folder / uri, copy / uri)
        text = playlist.read_text()
        if "#EXT-X-ENDLIST" not in text:  # nginx-rtmp never ends its playlists: read them as VOD
            text += "#EXT-X-ENDLIST\n"
        (copy / "index.m3u8").write_text(text)
        report = check_stream([(copy / uri).read_bytes() for uri in uris])
        out.cc_errors = len(report.cc_errors)
        out.boundary_cc_errors = report.boundary_cc_errors
        out.pcr_lead_ms = f"{report.min_pcr_lead_ms:.0f}..{report.max_pcr_lead_ms:.0f}"
        out.max_pcr_gap_ms = round(report.max_pcr_gap_ms, 1)
        out.late_pes = report.late_pes
        out.ffmpeg_warnings, out.ffmpeg_corrupt, out.video_frames = ffmpeg_reads(
            copy / "index.m3u8"
        )
        for player in ("vlc", "mpv"):
            read = player_reads(player, copy / "index.m3u8")
            if read is not None:
                out.players[player], kinds = read
                out.notes += kinds
    return out


COLUMNS = ("spec", "server", "segments", "ffmpeg_warnings", "ffmpeg_corrupt", "cc_errors",
           "boundary_cc_errors", "pcr_lead_ms", "max_pcr_gap_ms", "late_pes", "target_changes",
           "pdt_backwards", "players")  # fmt: skip


def table(outcomes: list[Outcome]) -> str:
    rows = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for o in outcomes:
        values = asdict(o)
        values["players"] = ", ".join(f"{k} {v}" for k, v in o.players.items()) or "-"
        rows.append("| " + " | ".join(str(values[c]) for c in COLUMNS) + " |")
    return "\n".join(rows)


async def main_async(args: argparse.Namespace) -> int:
    servers = [make_server(label) for label in args.servers.split(",")]
    for server in servers:
        server.start()
    try:
        outcomes: list[Outcome] = []
        for spec in args.specs.split(","):
            outcomes += await run_spec(spec, servers, args.seconds)
    finally:
        for server in servers:
            server.stop()
    command = "python -m bench.quality " + " ".join(sys.argv[1:])
    RESULTS.mkdir(exist_ok=True)
    with open(RESULTS / "results.jsonl", "a") as f:
        for o in outcomes:
            f.write(json.dumps({"scenario": "quality", "command": command, **asdict(o)}) + "\n")
    print(f"# {command}")
    print(table(outcomes))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.quality", description=__doc__)
    parser.add_argument("--specs", default="720p30,1080p60-bframes,audio-only,720p30-video-only")
    parser.add_argument("--servers", default="rtmpd,nginx")
    parser.add_argument("--seconds", type=float, default=60.0)
    return asyncio.run(main_async(parser.parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
