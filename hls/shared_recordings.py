"""The recordings other processes hold in a shared `[record]` folder (rtmpd workers).

With `[server] workers`, each worker records the publishes it holds into the same folder, and
keeps only those in its `Recorder`'s index. What the others recorded is read from the folder
itself, from each recording's sidecar (its owner rewrites the sidecars of the recordings it is
writing once a second, so sizes and durations move while they record): the list, the API and
the page show every worker's recordings, and the folder's bound counts every byte in it, on
whichever worker asks. A sidecar is read again only when it changed (its mtime).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from . import recording as rec
from .recording import RecordingInfo

_Key = tuple[str, str]


class OtherRecordings:
    """The recordings under `root` that this process does not hold, as their sidecars say."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._found: dict[_Key, tuple[int, RecordingInfo]] = {}
        self.bytes = 0

    def scan(self, ours: Callable[[str, str], bool]) -> None:
        """Read the folder again; `ours(name, id)`: a recording of this process, skipped."""
        found: dict[_Key, tuple[int, RecordingInfo]] = {}
        for name in _entries(self.root):
            for rec_id in _entries(self.root / name):
                if not rec.is_id(rec_id) or ours(name, rec_id):
                    continue
                key = (name, rec_id)
                sidecar = self.root / name / rec_id / rec.SIDECAR
                try:
                    mtime = sidecar.stat().st_mtime_ns
                except OSError:
                    continue
                cached = self._found.get(key)
                if cached is not None and cached[0] == mtime:
                    found[key] = cached
                    continue
                try:
                    info = RecordingInfo.from_json(sidecar.read_bytes())
                except (OSError, ValueError):
                    continue
                if (info.name, info.id) == key:
                    found[key] = (mtime, info)
        self._found = found
        self.bytes = sum(info.bytes for _, info in found.values())

    def infos(self, name: str | None = None) -> list[RecordingInfo]:
        return [i for _, i in self._found.values() if name is None or i.name == name]

    def get(self, name: str, rec_id: str) -> RecordingInfo | None:
        found = self._found.get((name, rec_id))
        return found[1] if found is not None else None

    def discard(self, info: RecordingInfo) -> None:
        """Removed here (renamed away): no longer counted."""
        found = self._found.pop((info.name, info.id), None)
        if found is not None:
            self.bytes -= found[1].bytes


def _entries(folder: Path) -> list[str]:
    try:
        with os.scandir(folder) as entries:
            return [e.name for e in entries
                    if not e.name.startswith(".") and e.is_dir(follow_symlinks=False)]  # fmt: skip
    except OSError:
        return []
