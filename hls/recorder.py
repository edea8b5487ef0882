"""Recording broadcasts as VODs: a listener on the packager's finished segments.

Each name's `NameState` tells the `Recorder` when a publish starts, each segment it lists and
when a publish finishes (rtmpd.hls.name_state). A broadcast's recording opens at its first
segment and ends once the [hls] grace after its last publish is over, so takeovers and
reconnects within the grace go on in the same recording (rtmpd.hls.recording has the folder's
layout). Per segment the work is what the packager does per segment: a hard link of the
finished file (a copy across file systems) and one appended playlist entry, on the event loop.

When a broadcast ends, its playlist is rewritten as a VOD and its folder queued for the MP4:
one child process at a time (rtmpd.hls.remux: PyAV, stream copy, faststart, and the
thumbnail), polled from `tick`, so the loop never waits for it and a crash there is only a
missing MP4. Removals (retention, the API, `rtmpd recordings remove`) rename the folder on the
loop and delete its files in a background thread.

Bounds: `[record] max_bytes` is checked before every file is added (a segment, an MP4 about
to be made): the oldest finished recordings make room; if they cannot, a live recording stops
there (the stream goes on) and an MP4 is not made. Lost media (the disk was full) is an
EXT-X-DISCONTINUITY in the recording. A SIGKILL leaves the appended playlist: `start()`
closes every recording left open as a VOD of the segments on disk and makes its MP4.

With workers (`shared`), each worker's recorder holds the recordings it writes and sees the
others' in the shared folder (rtmpd.hls.shared_recordings): the list shows them all, and
max_bytes and keep_days hold for the folder, whoever recorded what (a finished recording of
another worker may be removed to make room, unless its MP4 is being made). `start(claim)`
takes over only the recordings `claim` names: all of them on the first start of worker 1,
a restarted worker's own (closing those its killed run left open).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

from . import recording as rec
from .owner import FinishedSegment
from .playlist import Segment
from .quota import size_text
from .recording import ENDED, RecordConfig, RecordingInfo
from .recording_disk import SIDECAR_BYTES, delete_folder
from .recording_disk import derived as _derived
from .recording_disk import dirs as _dirs
from .recording_disk import folder_size as _folder_size
from .recording_disk import nothing as _nothing
from .recording_disk import sidecar as _sidecar
from .recording_disk import size as _size
from .recording_disk import write_all as _write_all
from .shared_recordings import OtherRecordings
from .storage import check_name, make_dirs, write_atomic

#: Seconds between retention passes (keep_days, and recordings removed by another process).
RETENTION_SECONDS = 10.0
#: Room made for an MP4 beyond its segments' bytes: an MP4 of the same media is smaller than
#: its MPEG-TS segments (their packet overhead outweighs the moov box) and about as large as
#: fMP4 ones.
MP4_MARGIN = 64 * 1024
#: At most this much room is made ahead of max_bytes (a tenth of it when that is less).
HEADROOM = 256 * 1024 * 1024
#: Seconds a remux may take beyond its recording's duration before it is killed.
REMUX_SLACK = 120.0


class RecordListener(Protocol):
    """What a name tells the recorder (rtmpd.hls.name_state)."""

    def publish_started(self, name: str) -> None: ...

    def segment(self, name: str, segment: FinishedSegment, target: int) -> None: ...

    def publish_finished(self, name: str, ended: bool) -> None: ...


@dataclass(slots=True)
class _Open:
    """A recording being written."""

    info: RecordingInfo
    folder: Path
    file: IO[bytes] | None
    size: int = 0  # bytes of the playlist known good (a failed append is cut back to it)
    number: int = 0  # files numbered so far
    entries: list[Segment] = field(default_factory=list)
    map_source: str | None = None  # the packager's init segment in use, and ours
    map_uri: str | None = None
    gap: bool = False  # media was lost since the last entry: the next one is a discontinuity


@dataclass(slots=True)
class _Remux:
    key: tuple[str, str]
    proc: subprocess.Popen[bytes]
    errors: IO[bytes]
    deadline: float
    reserved: int


class Recorder:
    """All recordings under `[record] path`. Not thread-safe: call from the event loop."""

    def __init__(
        self,
        config: RecordConfig,
        *,
        grace: float,
        clock: Callable[[], float] = time.time,
        log: logging.Logger | None = None,
        node: str = "",
        shared: bool = False,
    ) -> None:
        self.config = config
        self.root = Path(os.path.abspath(config.path))
        #: Written into the sidecars of the recordings this recorder holds.
        self.node = node
        #: The other workers' recordings in the shared folder (None: no workers).
        self.others = OtherRecordings(self.root) if shared else None
        self._grace = grace
        self._clock = clock
        self._log = log or logging.getLogger("rtmpd.record")
        self._index: dict[str, dict[str, RecordingInfo]] = {}
        self._open: dict[str, _Open] = {}
        self._ending: dict[str, float] = {}  # name -> when its broadcast ends (grace over)
        self._queue: deque[tuple[str, str]] = deque()  # recordings waiting for their MP4
        self._remux: _Remux | None = None
        self._remover = ThreadPoolExecutor(1, thread_name_prefix="rtmpd-record-remove")
        self._removing = 0  # bytes of removed recordings the remover has not deleted yet
        self._removing_lock = threading.Lock()
        self.total = 0  # bytes of every recording
        self.max_bytes = config.max_bytes
        self._next_retention = 0.0
        self._warned: set[str] = set()

    # -- life ---------------------------------------------------------------------------

    def start(self, claim: Callable[[RecordingInfo], bool] | None = None) -> None:
        """Load the recordings on disk (those `claim` takes, with workers), close those a
        killed run left open, queue the MP4s not made yet, derive max_bytes when 0, apply
        retention."""
        try:
            make_dirs(self.root)
        except OSError as exc:
            self._log.error("recordings folder %s is not usable: %s", self.root, exc)
        for name_dir in _dirs(self.root):
            for entry in _dirs(name_dir, hidden=True):
                if entry.name.endswith(".removing"):
                    if claim is None:  # not another worker's deletion in progress
                        self._delete(entry, _folder_size(entry))
                elif rec.is_id(entry.name):
                    self._load(name_dir.name, entry, claim)
        if self.others is not None:
            self.others.scan(self._ours)
        if not self.max_bytes:
            self.max_bytes = _derived(self.root, self.total + self._others_bytes())
        for infos in self._index.values():
            for info in sorted(infos.values(), key=lambda i: i.started_at):
                if not info.mp4 and info.mp4_error is None:
                    self._queue.append((info.name, info.id))
        self._retention(self._clock())
        count = sum(len(v) for v in self._index.values())
        self._log.info("recordings: %d kept, %s of at most %s under %s", count,
                       size_text(self.total), size_text(self.max_bytes), self.root)  # fmt: skip

    def tick(self, now: float | None = None) -> None:
        """End broadcasts whose grace is over, run the MP4 queue, retention now and then."""
        now = self._clock() if now is None else now
        for name in [n for n, due in self._ending.items() if due <= now]:
            self._finish(name)
        if self.others is not None:  # what the other workers see of ours, and theirs
            for current in self._open.values():
                _sidecar(current.folder, current.info, self._log)
            self.others.scan(self._ours)
        self._poll_remux(now)
        if now >= self._next_retention:
            self._retention(now)

    def close(self) -> None:
        """Server stop: every open recording ends now; an MP4 being made is left for the next
        start (its recording stays a VOD without one until then)."""
        for name in list(self._open):
            self._finish(name, remux=False)
        job = self._remux
        if job is not None:
            self._remux = None
            job.proc.kill()
            job.proc.wait()
            job.errors.close()
        self._remover.shutdown(wait=True)

    # -- RecordListener -----------------------------------------------------------------

    def publish_started(self, name: str) -> None:
        self._ending.pop(name, None)  # a reconnect or takeover within the grace goes on

    def publish_finished(self, name: str, ended: bool) -> None:
        if ended and name in self._open:
            self._ending[name] = self._clock() + self._grace

    def segment(self, name: str, segment: FinishedSegment, target: int) -> None:
        """Add a finished segment to the name's recording (opened at its first)."""
        current = self._open.get(name) or self._begin(name, segment, target)
        if current is None or current.info.stopped is not None:
            return
        if segment.gap:  # lost by the packager (fMP4), listed as a gap there
            self._lost(current)
            return
        new_map = segment.map_uri is not None and segment.map_uri != current.map_source
        init = segment.path.parent / segment.map_uri if new_map and segment.map_uri else None
        needed = segment.size + 512 + (_size(init) if init is not None else 0)
        if not self._room(needed):
            self._stop(current, "the recordings hold [record] max_bytes")
            return
        if init is not None:
            current.number += 1
            uri = rec.init_file(current.number)
            if not self._store(current, init, uri):
                self._lost(current)
                return
            current.map_source, current.map_uri = segment.map_uri, uri
            self._grow(current, _size(current.folder / uri))
        current.number += 1
        uri = rec.segment_file(current.number, segment.path.suffix[1:])
        if not self._store(current, segment.path, uri):
            self._lost(current)
            return
        first = not current.entries
        entry = Segment(
            uri,
            len(current.entries),
            segment.duration_ms,
            discontinuity=not first and (segment.discontinuity or current.gap),
            program_date_time=segment.program_date_time,
            map_uri=current.map_uri,
        )
        data = rec.entry_text(entry, new_map or first).encode()
        if not self._append(current, data):
            with contextlib.suppress(OSError):
                os.unlink(current.folder / uri)
            self._lost(current)
            return
        current.gap = False
        current.entries.append(entry)
        info = current.info
        current.info = info.changed(
            duration_ms=info.duration_ms + segment.duration_ms,
            segments=info.segments + 1,
            discontinuities=info.discontinuities + entry.discontinuity,
        )
        self._grow(current, segment.size + len(data))

    # -- queries --------------------------------------------------------------------------

    def recordings(self, name: str | None = None) -> list[RecordingInfo]:
        """Of `name` (None: every name), newest first; the other workers' too."""
        names = [name] if name is not None else list(self._index)
        found = [i for n in names for i in self._index.get(n, {}).values()]
        if self.others is not None:
            found += self.others.infos(name)
        return sorted(found, key=lambda i: i.started_at, reverse=True)

    def get(self, name: str, rec_id: str) -> RecordingInfo | None:
        found = self._index.get(name, {}).get(rec_id)
        if found is None and self.others is not None:
            return self.others.get(name, rec_id)
        return found

    def remove(self, name: str, rec_id: str) -> bool:
        """Remove a finished recording; False when there is none. ValueError while it is
        being recorded."""
        info = self.get(name, rec_id)
        if info is None:
            return False
        if info.recording:
            raise ValueError("it is being recorded; it can be removed once the broadcast ends")
        if not self._removable(info):
            raise ValueError("its MP4 is being made; it can be removed once that is done")
        self._remove(info, "removed")
        return True

    # -- opening, closing -----------------------------------------------------------------

    def _begin(self, name: str, segment: FinishedSegment, target: int) -> _Open | None:
        started = segment.program_date_time
        taken = set(self._index.get(name, {}))
        with contextlib.suppress(OSError):
            taken |= set(os.listdir(self.root / name))
        rec_id = rec.new_id(started, taken)
        folder = self.root / name / rec_id
        fmp4 = segment.path.suffix == ".m4s"
        info = RecordingInfo(name, rec_id, started, format="fmp4" if fmp4 else "ts",
                             node=self.node)  # fmt: skip
        header = rec.event_header(target, fmp4).encode()
        try:
            check_name(name)
            make_dirs(folder)
            write_atomic(folder / rec.SIDECAR, info.to_json())
            file = open(folder / rec.PLAYLIST, "wb", buffering=0)  # noqa: SIM115 - kept open
            try:
                _write_all(file, header)
            except OSError:
                file.close()
                raise
        except (OSError, ValueError) as exc:
            if name not in self._warned:
                self._warned.add(name)
                self._log.error("recording %s: cannot start (%s); the stream is not recorded",
                                name, exc)  # fmt: skip
            delete_folder(folder)
            return None
        self._warned.discard(name)
        current = _Open(info, folder, file, size=len(header))
        self._open[name] = current
        self._index.setdefault(name, {})[rec_id] = info
        self._grow(current, len(header) + SIDECAR_BYTES)
        self._log.info("recording %s: started %s", name, rec_id)
        return current

    def _finish(self, name: str, remux: bool = True) -> None:
        """The broadcast ended: the playlist becomes a VOD, the MP4 is queued."""
        self._ending.pop(name, None)
        current = self._open.pop(name, None)
        if current is None:
            return
        if current.file is not None:
            current.file.close()
        info = current.info.changed(state=ENDED, ended_at=self._clock())
        try:
            text = rec.vod_text(current.entries).encode()
            write_atomic(current.folder / rec.PLAYLIST, text)
            self._grow(current, len(text) - current.size)
        except OSError as exc:  # the EVENT playlist stays: it plays, and the next start retries
            self._log.error("recording %s: cannot write the VOD playlist: %s", name, exc)
            self._update(info.changed(state=rec.RECORDING))
            return
        self._update(info)
        self._log.info("recording %s: ended %s, %.1f s, %s", name, info.id,
                       info.duration_ms / 1000, size_text(info.bytes))  # fmt: skip
        if remux and info.segments:
            self._queue.append((name, info.id))
            self._poll_remux(self._clock())

    def _load(self, name: str, folder: Path, claim: Callable[[RecordingInfo], bool] | None) -> None:
        try:
            info = RecordingInfo.from_json((folder / rec.SIDECAR).read_bytes())
        except (OSError, ValueError) as exc:
            if claim is None:
                self._log.warning("recordings: %s skipped (%s)", folder, exc)
            return
        if info.name != name or info.id != folder.name:
            self._log.warning("recordings: %s skipped (its sidecar names another)", folder)
            return
        if claim is not None and not claim(info):
            return  # another worker's
        info = info.changed(node=self.node)
        if info.recording:
            info = self._recover(info, folder)
        info = info.changed(bytes=_folder_size(folder))
        self._index.setdefault(name, {})[info.id] = info
        self.total += info.bytes
        _sidecar(folder, info, self._log)

    def _recover(self, info: RecordingInfo, folder: Path) -> RecordingInfo:
        """A recording a killed run left open: a VOD of the segments on disk."""
        path = folder / rec.PLAYLIST
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
            ended = path.stat().st_mtime
        except OSError:
            text, ended = "", info.started_at
        entries = [e for e in rec.parse_entries(text) if (folder / e.uri).is_file()]
        entries = [e for e in entries if e.map_uri is None or (folder / e.map_uri).is_file()]
        if entries:
            entries[0] = dataclasses.replace(entries[0], discontinuity=False)
        try:
            write_atomic(path, rec.vod_text(entries))
        except OSError as exc:
            self._log.error("recording %s: cannot close %s: %s", info.name, info.id, exc)
            return info
        self._log.info("recording %s: %s closed after an interrupted run, %d segment(s)",
                       info.name, info.id, len(entries))  # fmt: skip
        return info.changed(
            state=ENDED,
            ended_at=ended,
            segments=len(entries),
            duration_ms=sum(e.duration_ms for e in entries),
            discontinuities=sum(e.discontinuity for e in entries),
        )

    # -- files ----------------------------------------------------------------------------

    def _store(self, current: _Open, source: Path, uri: str) -> bool:
        """Hard-link `source` into the recording (a copy across file systems)."""
        target = current.folder / uri
        try:
            os.link(source, target)
            return True
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                self._disk_error(current, exc)
                return False
        temp = target.with_name(f".{uri}.tmp")
        try:
            shutil.copyfile(source, temp)
            os.replace(temp, target)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            self._disk_error(current, exc)
            return False
        return True

    def _append(self, current: _Open, data: bytes) -> bool:
        file = current.file
        if file is None:
            return False
        try:
            _write_all(file, data)
        except OSError as exc:
            with contextlib.suppress(OSError):
                file.truncate(current.size)  # never half an entry in the journal
            self._disk_error(current, exc)
            return False
        current.size += len(data)
        return True

    def _disk_error(self, current: _Open, exc: OSError) -> None:
        key = f"disk:{current.info.name}"
        if key not in self._warned:
            self._warned.add(key)
            self._log.error("recording %s: cannot write (%s); lost until it works",
                            current.info.name, exc)  # fmt: skip

    def _lost(self, current: _Open) -> None:
        current.gap = True
        current.info = current.info.changed(lost=current.info.lost + 1)

    def _grow(self, current: _Open, count: int) -> None:
        current.info = current.info.changed(bytes=current.info.bytes + count)
        self.total += count
        self._index.setdefault(current.info.name, {})[current.info.id] = current.info
        if count > 0:
            self._warned.discard(f"disk:{current.info.name}")

    def _stop(self, current: _Open, why: str) -> None:
        current.info = current.info.changed(stopped=why)
        self._index[current.info.name][current.info.id] = current.info
        self._log.warning("recording %s: stopped, %s (the stream goes on)", current.info.name,
                          why)  # fmt: skip

    def _update(self, info: RecordingInfo) -> None:
        old = self._index.get(info.name, {}).get(info.id)
        if old is not None:
            self.total += info.bytes - old.bytes
        self._index.setdefault(info.name, {})[info.id] = info
        _sidecar(self.root / info.name / info.id, info, self._log)

    # -- bounds ---------------------------------------------------------------------------

    def _room(self, needed: int) -> bool:
        """Whether `needed` more bytes fit under max_bytes, once the oldest finished
        recordings made room. Room is made a headroom ahead of the bound, so that the remover
        thread has deleted their files before the bound is reached; only if it has not (the
        bound reached while it still deletes) does the loop wait for it."""
        headroom = min(self.max_bytes // 10, HEADROOM)
        for bound in (self.max_bytes - headroom, self.max_bytes):
            held = self._used() - self._removing  # what is being deleted needs no victim
            victims = rec.to_make_room(self._all(), held, needed, bound)
            if victims is not None:
                for info in victims:
                    self._remove(info, "to stay under [record] max_bytes")
                break
        if self._used() + needed > self.max_bytes and self._removing:
            self._remover.submit(_nothing).result()  # after every deletion queued before it
        return self._used() + needed <= self.max_bytes

    def _used(self) -> int:
        """Bytes on disk, or about to be: the recordings, the MP4 being made, deletions that
        have not happened yet."""
        reserved = self._remux.reserved if self._remux is not None else 0
        return self.total + reserved + self._removing + self._others_bytes()

    def _others_bytes(self) -> int:
        return self.others.bytes if self.others is not None else 0

    def _ours(self, name: str, rec_id: str) -> bool:
        return rec_id in self._index.get(name, {})

    def _removable(self, info: RecordingInfo) -> bool:
        """Not another worker's recording whose MP4 it may be making now."""
        if self._ours(info.name, info.id):
            return True
        return not info.recording and (info.mp4 or info.mp4_error is not None or not info.segments)

    def _delete(self, folder: Path, size: int) -> None:
        """Delete a folder renamed away, in the remover thread; its bytes count until then."""
        with self._removing_lock:
            self._removing += size

        def delete() -> None:
            delete_folder(folder)
            with self._removing_lock:
                self._removing -= size

        self._remover.submit(delete)

    def _retention(self, now: float) -> None:
        self._next_retention = now + RETENTION_SECONDS
        for info in rec.expired(self._all(), now, self.config.keep_days):
            self._remove(info, f"after {self.config.keep_days:g} day(s) ([record] keep_days)")
        for info in self._all():  # removed by another process (rtmpd recordings remove)
            folder = self.root / info.name / info.id
            if not info.recording and not (folder / rec.SIDECAR).exists():
                self._forget(info)

    def _all(self) -> list[RecordingInfo]:
        """What retention and max_bytes may choose from: ours, and the other workers' that
        are done (never one being recorded or remuxed)."""
        ours = [i for infos in self._index.values() for i in infos.values()]
        if self.others is None:
            return ours
        return ours + [i for i in self.others.infos() if self._removable(i)]

    def _remove(self, info: RecordingInfo, why: str) -> None:
        key = (info.name, info.id)
        job = self._remux
        if job is not None and job.key == key:
            self._remux = None
            job.proc.kill()
            job.proc.wait()
            job.errors.close()
        with contextlib.suppress(ValueError):
            self._queue.remove(key)
        folder = self.root / info.name / info.id
        doomed = folder.with_name(f".{info.id}.removing")
        try:
            os.rename(folder, doomed)
        except FileNotFoundError:
            pass
        except OSError as exc:
            self._log.error("recording %s: cannot remove %s: %s", info.name, info.id, exc)
            return
        else:
            self._delete(doomed, info.bytes)
        self._forget(info)
        if self.others is not None:
            self.others.discard(info)
        self._log.info("recording %s: %s removed %s", info.name, info.id, why)

    def _forget(self, info: RecordingInfo) -> None:
        infos = self._index.get(info.name, {})
        if infos.pop(info.id, None) is not None:
            self.total -= info.bytes
        if not infos:
            self._index.pop(info.name, None)

    # -- the MP4 queue --------------------------------------------------------------------

    def _poll_remux(self, now: float) -> None:
        job = self._remux
        if job is not None:
            code = job.proc.poll()
            if code is None and now < job.deadline:
                return
            if code is None:
                job.proc.kill()
                code = job.proc.wait()
            self._remux = None
            self._remuxed(job, code)
        while self._remux is None and self._queue:
            self._start_remux(*self._queue.popleft(), now)

    def _start_remux(self, name: str, rec_id: str, now: float) -> None:
        info = self.get(name, rec_id)
        if info is None or info.recording or info.mp4:
            return
        estimate = info.bytes + MP4_MARGIN
        if not self._room(estimate):
            self._update(info.changed(mp4_error="no room under [record] max_bytes"))
            self._log.warning("recording %s: %s has no MP4: no room under [record] max_bytes",
                              name, rec_id)  # fmt: skip
            return
        errors = tempfile.TemporaryFile()  # noqa: SIM115 - closed when the job is done
        folder = self.root / name / rec_id
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "rtmpd.hls.remux", str(folder)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors,
            )  # fmt: skip
        except OSError as exc:
            errors.close()
            self._update(info.changed(mp4_error=f"cannot start the remux: {exc}"))
            return
        deadline = now + info.duration_ms / 1000 + REMUX_SLACK
        self._remux = _Remux((name, rec_id), proc, errors, deadline, estimate)

    def _remuxed(self, job: _Remux, code: int) -> None:
        job.errors.seek(0)
        output = job.errors.read()[-2000:].decode(errors="replace").strip()
        job.errors.close()
        info = self.get(*job.key)
        if info is None:
            return
        folder = self.root / info.name / info.id
        mp4 = (folder / rec.MP4).is_file()
        error = None
        if code != 0 or not mp4:
            error = (output.splitlines() or [f"exit status {code}"])[-1][:300]
            self._log.error("recording %s: %s has no MP4: %s", info.name, info.id, error)
        self._update(
            info.changed(
                mp4=mp4 and code == 0,
                mp4_error=error,
                thumbnail=(folder / rec.THUMB).is_file(),
                bytes=_folder_size(folder),
            )
        )
