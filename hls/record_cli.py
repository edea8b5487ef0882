"""`rtmpd recordings ...`: list and remove recordings from a shell, even while the server runs
(it notices a removal within seconds: rtmpd.hls.recorder's retention pass).

Reads the sidecars under `[record] path` (rtmpd.hls.recording); the table goes to stdout, what
is meant for a human to stderr; bad input is one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from . import recording as rec
from .quota import size_text
from .recording import RecordConfig, RecordingInfo
from .recording_disk import delete_folder
from .storage import check_name

PROG = "rtmpd recordings"
HELP = {
    "list": "list the recordings of NAME (of everyone without NAME), newest first",
    "remove": "remove recording ID of NAME (its playlist, segments, MP4 and thumbnail)",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Recordings of broadcasts ([record])")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    listing = commands.add_parser("list", help=HELP["list"], description=HELP["list"])
    listing.add_argument("name", metavar="NAME", nargs="?")
    remove = commands.add_parser("remove", help=HELP["remove"], description=HELP["remove"])
    remove.add_argument("name", metavar="NAME")
    remove.add_argument("id", metavar="ID")
    return parser


def main_recordings(argv: Sequence[str], config: RecordConfig) -> int:
    args = _parser().parse_args(list(argv))
    root = Path(os.path.abspath(config.path))
    if args.name is not None and not _safe(args.name):
        return _fail(f"{args.name!r} is not a channel name")
    if args.command == "list":
        return _list(root, args.name)
    return _remove(root, args.name, args.id)


def _list(root: Path, name: str | None) -> int:
    names = [name] if name else sorted(p.name for p in _subdirs(root) if _safe(p.name))
    found = [info for n in names for info in _infos(root, n)]
    if not found:
        print(f"no recordings{f' of {name}' if name else ''} under {root}", file=sys.stderr)
        return 0
    print(f"{'NAME':<20} {'ID':<20} {'STARTED':<19} {'DURATION':>9} {'SIZE':>11}  STATE")
    for info in sorted(found, key=lambda i: i.started_at, reverse=True):
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.started_at))
        print(f"{info.name:<20} {info.id:<20} {started:<19} {info.duration_ms / 1000:>8.1f}s "
              f"{size_text(info.bytes):>11}  {_state(info)}")  # fmt: skip
    return 0


def _state(info: RecordingInfo) -> str:
    if info.recording:
        return "recording"
    words = ["mp4" if info.mp4 else "no mp4" if info.mp4_error else "mp4 pending"]
    if info.lost:
        words.append(f"{info.lost} segment(s) lost")
    if info.stopped:
        words.append("stopped early")
    return ", ".join(words)


def _remove(root: Path, name: str, rec_id: str) -> int:
    folder = root / name / rec_id
    if not rec.is_id(rec_id) or not (folder / rec.SIDECAR).is_file():
        return _fail(f"{name} has no recording {rec_id}")
    try:
        info = RecordingInfo.from_json((folder / rec.SIDECAR).read_bytes())
    except (OSError, ValueError) as exc:
        return _fail(f"cannot read {folder / rec.SIDECAR}: {exc}")
    if info.recording:
        return _fail(f"{name} {rec_id} is being recorded; remove it once the broadcast ends "
                     "(after a crash: once the server started again)")  # fmt: skip
    doomed = folder.with_name(f".{rec_id}.removing")
    try:
        os.rename(folder, doomed)
    except OSError as exc:
        return _fail(f"cannot remove {folder}: {exc.strerror}")
    delete_folder(doomed)
    print(f"removed recording {rec_id} of {name} ({size_text(info.bytes)})", file=sys.stderr)
    return 0


def _infos(root: Path, name: str) -> list[RecordingInfo]:
    infos = []
    for folder in _subdirs(root / name):
        if rec.is_id(folder.name):
            try:
                infos.append(RecordingInfo.from_json((folder / rec.SIDECAR).read_bytes()))
            except (OSError, ValueError):
                continue
    return infos


def _subdirs(folder: Path) -> list[Path]:
    try:
        return [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
    except OSError:
        return []


def _safe(name: str) -> bool:
    try:
        check_name(name)
    except ValueError:
        return False
    return True


def _fail(message: str) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return 1
