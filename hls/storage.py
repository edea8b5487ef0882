"""Where HLS files live on disk, atomic playlist writes, and removal of a stream's files.

Nested layout (default): <root>/<name>/index.m3u8 and <root>/<name>/<fragment>.ts.
Flat layout: <root>/<name>.m3u8 and <root>/<name>-<fragment>.ts.
fMP4 segments end in .m4s instead, and the init segment of a run of them is named after the
run's first segment with .mp4. LL-HLS parts live in memory only: their names (`p<life>_<n>`)
never match a file of ours.
Files being written are hidden (`.<file>.tmp`) until complete, then renamed into place, so the
HTTP side only ever sees finished segments and whole playlists.

Only files this module could have written are ever removed: the folder may be shared.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

PLAYLIST = "index.m3u8"
TEMP_SUFFIX = ".tmp"
#: Segments, playlists and their folders are for a web server that may run as another user:
#: readable by everyone, whatever the process umask.
FILE_MODE = 0o644
DIR_MODE = 0o755
# Fragment names: digits, optionally "_<n>" when the plain name was already taken; in the
# nested layout a multitrack rendition's start with "v<track>-" (rtmpd.hls.renditions).
_FRAGMENT = re.compile(r"\d+(?:_\d+)?")
_RENDITION_FRAGMENT = re.compile(r"(?:v\d{1,3}-)?\d+(?:_\d+)?")
_RENDITION_PLAYLIST = re.compile(r"v\d{1,3}\.m3u8")
#: What segment files end in: MPEG-TS and fMP4 media segments, fMP4 init segments.
SEGMENT_EXTENSIONS = ("ts", "m4s", "mp4")
_MAX_NAME = 128


def check_name(name: str) -> str:
    """A public stream name becomes a path component: refuse anything that could escape."""
    if not name or len(name) > _MAX_NAME:
        raise ValueError(f"stream name must be 1 to {_MAX_NAME} characters")
    if name.startswith(".") or any(c in name for c in "/\\:") or not name.isprintable():
        raise ValueError(f"unsafe stream name {name!r}")
    return name


class Layout:
    """Paths for one HLS root folder."""

    __slots__ = ("root", "nested")

    def __init__(self, root: Path, nested: bool) -> None:
        self.root = Path(os.path.abspath(root))
        self.nested = nested

    def stream_dir(self, name: str) -> Path:
        return self.root / name if self.nested else self.root

    def playlist_path(self, name: str, file: str = PLAYLIST) -> Path:
        """`file`: a multitrack rendition's playlist (nested layout only)."""
        return self.root / name / file if self.nested else self.root / f"{name}.m3u8"

    def segment_file(self, name: str, fragment: str, ext: str = "ts") -> str:
        """The segment's file name, which is also its URI relative to the playlist."""
        return f"{fragment}.{ext}" if self.nested else f"{name}-{fragment}.{ext}"

    def segment_path(self, name: str, fragment: str, ext: str = "ts") -> Path:
        return self.stream_dir(name) / self.segment_file(name, fragment, ext)

    @staticmethod
    def temp_path(path: Path) -> Path:
        return path.with_name(f".{path.name}{TEMP_SUFFIX}")

    def ensure_dir(self, name: str) -> None:
        make_dirs(self.stream_dir(name))

    def owner(self, file_name: str, in_stream_dir: str | None = None) -> str | None:
        """The stream a file in the root (flat) or in a stream folder (nested) belongs to."""
        base = file_name
        if base.startswith(".") and base.endswith(TEMP_SUFFIX):
            base = base[1 : -len(TEMP_SUFFIX)]
        stem, dot, ext = base.rpartition(".")
        ours = bool(dot) and ext in SEGMENT_EXTENSIONS
        if self.nested:
            if in_stream_dir is None:
                return None
            if base == PLAYLIST or _RENDITION_PLAYLIST.fullmatch(base):
                return in_stream_dir
            if ours and _RENDITION_FRAGMENT.fullmatch(stem):
                return in_stream_dir
            return None
        if base.endswith(".m3u8"):
            return base[:-5] or None
        if ours and "-" in stem:
            name, fragment = stem.rsplit("-", 1)
            if name and _FRAGMENT.fullmatch(fragment):
                return name
        return None

    def stream_files(self, name: str) -> list[Path]:
        """Every file of ours that belongs to `name`."""
        folder = self.stream_dir(name)
        try:
            entries = os.listdir(folder)
        except OSError:
            return []
        inside = name if self.nested else None
        return [folder / e for e in entries if self.owner(e, inside) == name]

    def remove_stream(self, name: str) -> int:
        """Delete a stream's files (and its folder when nested and empty); returns how many."""
        removed = sum(unlink_quietly(path) for path in self.stream_files(name))
        if self.nested:
            with contextlib.suppress(OSError):
                self.stream_dir(name).rmdir()
        return removed

    def names_on_disk(self) -> set[str]:
        """Streams that have files of ours under the root."""
        try:
            entries = list(os.scandir(self.root))
        except OSError:
            return set()
        names = set()
        for entry in entries:
            if self.nested:
                if (
                    entry.is_dir(follow_symlinks=False)
                    and _is_safe(entry.name)
                    and self.stream_files(entry.name)
                ):
                    names.add(entry.name)
            elif entry.is_file(follow_symlinks=False):
                owner = self.owner(entry.name)
                if owner is not None and _is_safe(owner):
                    names.add(owner)
        return names


def _is_safe(name: str) -> bool:
    try:
        check_name(name)
    except ValueError:
        return False
    return True


def make_dirs(path: Path) -> None:
    """mkdir -p, each folder it makes DIR_MODE whatever the umask."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        os.chmod(folder, DIR_MODE)


def write_atomic(path: Path, text: str | bytes) -> None:
    """Write a small file so readers see the old or the new version, never a mix."""
    temp = Layout.temp_path(path)
    data = text.encode() if isinstance(text, str) else text
    try:
        with open(temp, "wb") as f:
            f.write(data)
        os.chmod(temp, FILE_MODE)
        os.replace(temp, path)
    except BaseException:
        unlink_quietly(temp)
        raise


def unlink_quietly(path: Path) -> bool:
    """Remove a file; a missing one is fine. Returns whether something was removed."""
    try:
        os.unlink(path)
    except OSError:
        return False
    return True
