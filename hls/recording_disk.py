"""The recorder's disk helpers (rtmpd.hls.recorder): folder listings and sizes, sidecar
writes, the derived bound, and deleting a recording's own files only."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from pathlib import Path
from typing import IO

from . import recording as rec
from .recording import RecordingInfo
from .storage import write_atomic

#: What a sidecar counts for (it is smaller: it cannot count its own exact size).
SIDECAR_BYTES = 1024


def nothing() -> None:
    return None


def write_all(file: IO[bytes], data: bytes) -> None:
    written = file.write(data)
    if written != len(data):
        raise OSError(errno.ENOSPC, "short write")


def dirs(folder: Path, hidden: bool = False) -> list[Path]:
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    return [
        Path(e.path) for e in entries
        if e.is_dir(follow_symlinks=False) and (hidden or not e.name.startswith("."))
    ]  # fmt: skip


def folder_size(folder: Path) -> int:
    """Its files' bytes, the sidecar counted as SIDECAR_BYTES."""
    total = SIDECAR_BYTES
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        if entry.name == rec.SIDECAR:
            continue
        with contextlib.suppress(OSError):
            total += entry.stat(follow_symlinks=False).st_size
    return total


def size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def sidecar(folder: Path, info: RecordingInfo, log: logging.Logger) -> None:
    try:
        write_atomic(folder / rec.SIDECAR, info.to_json())
    except OSError as exc:
        log.error("recording %s: cannot write %s: %s", info.name, rec.SIDECAR, exc)


def derived(root: Path, ours: int) -> int:
    """max_bytes when it is 0: DERIVED_SHARE of the free space plus what recordings hold."""
    try:
        stat = os.statvfs(root)
    except OSError:
        return 1 << 62  # not usable: writes fail and say so
    return int(rec.DERIVED_SHARE * (stat.f_bavail * stat.f_frsize + ours))


def delete_folder(folder: Path) -> None:
    """Remove a recording folder: only the files a recording holds, then the folder."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for file_name in names:
        if rec.is_ours(file_name):
            with contextlib.suppress(OSError):
                os.unlink(folder / file_name)
    with contextlib.suppress(OSError):
        folder.rmdir()
