"""Faults, whole server: publishers that vanish, go silent or reconnect; rtmpd killed with
SIGKILL; the database locked by another writer; the disk full; broken media. In every case the
other streams keep going and nothing already accepted is lost."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from rtmpd.hls import muxer as muxer_module
from rtmpd.hls import name_state as name_state_module

from rtmpd.app import Rtmpd
from rtmpd.rtmp.config import SessionConfig
from rtmpd.rtmp.limits import MAX_CONFIG_SIZE
from tests.support import exmedia
from tests.support.app import make_config, start_server
from tests.support.hls import decode_segment
from tests.support.hostile import (
    Publisher,
    Stream,
    lines,
    processed,
    received_bytes,
    shifted,
    small_tags,
    split_at,
    tags_of,
    until,
)
from tests.support.m3u8_validator import validate
from tests.support.media import TAG_AUDIO, TAG_VIDEO, FlvTag

RTMPD = shutil.which("rtmpd", path=str(Path(sys.executable).parent)) or "rtmpd"
START = "NetStream.Publish.Start"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Rtmpd]:
    srv = await start_server(tmp_path, hls={"playlist_length": 60.0})
    yield srv
    await srv.stop()


async def publish(server: Rtmpd, name: str, source: str = "127.0.0.1") -> Publisher:
    key = await server.auth.store.add_user(name)
    publisher = Publisher(server.rtmp.port, key, source=source)
    assert (await publisher.start()).code == START
    return publisher


def decodes(stream: Stream) -> None:
    """Every listed segment decodes without an FFmpeg error."""
    folder = stream.server.hls.segment_dir(stream.name)
    for segment in stream.playlist().segments:
        assert decode_segment(folder / segment.uri).errors == [], segment.uri


# -- publishers that vanish, go silent, reconnect ----------------------------------------------


async def test_publisher_vanishing_mid_segment(
    server: Rtmpd, caplog: pytest.LogCaptureFixture
) -> None:
    """A reset in the middle of a GOP: the partial segment is finished and listed, ENDLIST is
    written, live state cleared; another publisher's stream goes on untouched."""
    caplog.set_level(logging.INFO)
    other = await publish(server, "other", source="127.0.0.2")
    other_tags = small_tags(6.0)
    first, rest = split_at(other_tags, 3000)
    other.send_tags(first)
    await processed(server, 0, first)
    gone = await publish(server, "gone")
    tags = list(small_tags(2.5))  # keyframes every second: it stops half way into a GOP
    base = received_bytes(server)
    gone.send_tags(tags)
    await processed(server, base, tags)
    gone.vanish()
    stream = Stream(server, "gone")
    await until(stream.ended)
    playlist = stream.playlist()
    assert 2.3 <= playlist.duration <= 2.6  # the half GOP is there too
    decodes(stream)
    assert stream.leftovers() == []
    assert not await stream.live()
    assert any("publish of gone ended" in line for line in lines(caplog, logging.INFO))

    before = Stream(server, "other").segments()
    other.send_tags(rest)
    await until(lambda: Stream(server, "other").segments() > before)
    assert not other.closed.is_set() and await Stream(server, "other").live()
    await other.close()
    await until(Stream(server, "other").ended)
    assert 5.8 <= Stream(server, "other").playlist().duration <= 6.2
    assert lines(caplog, logging.ERROR) == []
    await gone.close()


async def test_silent_publisher_is_dropped_after_the_idle_timeout(
    server: Rtmpd, caplog: pytest.LogCaptureFixture
) -> None:
    """A half-open connection (the network went away, no FIN) sends nothing more: the idle
    timeout ends the publish and the stream is finished as above."""
    server.rtmp.session_config = SessionConfig(idle_timeout=0.5)
    silent = await publish(server, "silent")
    silent.send_tags(list(small_tags(1.5)))
    stream = Stream(server, "silent")
    await until(stream.ended)
    await silent.wait_closed(5)
    assert 1.3 <= stream.playlist().duration <= 1.6
    assert not await stream.live()
    assert any("no media for 0.5 s" in line for line in lines(caplog))
    await silent.close()


async def test_reconnect_within_a_second_continues_one_playlist(server: Rtmpd) -> None:
    """OBS reconnects while its old connection is still half-open: the new publish takes over
    the name, the old connection is closed, the media sequence runs on with a discontinuity."""
    key = await server.auth.store.add_user("obs")
    old = Publisher(server.rtmp.port, key)
    assert (await old.start()).code == START
    tags = list(small_tags(3.0))
    base = received_bytes(server)
    old.send_tags(tags)
    await processed(server, base, tags)  # then it goes silent: half-open
    new = Publisher(server.rtmp.port, key)
    assert (await new.start()).code == START
    await old.wait_closed(5)
    new.send_tags(tags)  # an encoder restarts its clock at 0
    await new.close()
    stream = Stream(server, "obs")
    await until(stream.ended)
    playlist = stream.playlist()
    sequences = [s.sequence for s in playlist.segments]
    assert sequences == list(range(sequences[0], sequences[0] + len(sequences)))
    assert [s.discontinuity for s in playlist.segments].count(True) == 1
    assert 5.8 <= playlist.duration <= 6.2  # both publishes, nothing lost at the seam
    assert [p.name for p in server.config.hls_path.iterdir()] == ["obs"]
    decodes(stream)
    assert not await stream.live()
    await old.close()


# -- rtmpd killed with SIGKILL -------------------------------------------------------------------


class RtmpdProcess:
    """`rtmpd -c FILE serve` in a child process; its ports come from its log lines."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.proc: asyncio.subprocess.Process | None = None
        self.stderr: list[str] = []
        self.rtmp_port = self.http_port = 0
        self._drain: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            RTMPD, "-c", str(self.config), "serve",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert self.proc.stderr is not None
        async with asyncio.timeout(30):
            while not (self.rtmp_port and self.http_port):
                line = (await self.proc.stderr.readline()).decode()
                if not line:
                    raise AssertionError("rtmpd exited:\n" + "".join(self.stderr))
                self.stderr.append(line)
                if m := re.search(r"RTMP listening on rtmp://[\d.]+:(\d+)/", line):
                    self.rtmp_port = int(m.group(1))
                if m := re.search(r"HTTP listening on http://[\d.]+:(\d+)/", line):
                    self.http_port = int(m.group(1))
        self._drain = asyncio.create_task(self._read_rest())

    async def _read_rest(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            self.stderr.append(line.decode())

    async def stop(self, sig: int) -> int:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(sig)
        code = await asyncio.wait_for(self.proc.wait(), 30)
        if self._drain is not None:
            await asyncio.wait_for(self._drain, 10)
        return code


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RTMPD, "users", "-c", str(config), *args], capture_output=True, text=True, timeout=60
    )


async def test_sigkill_and_restart(tmp_path: Path) -> None:
    """Killed mid-stream: the restarted server clears the stale live flag, removes the files
    the dead run left (the unfinished segment too), and the same key publishes again."""
    config = tmp_path / "rtmpd.toml"
    config.write_text(
        '[rtmp]\nlisten = "127.0.0.1:0"\n[http]\nlisten = "127.0.0.1:0"\n'
        '[hls]\npath = "hls"\nfragment = 1.0\n[database]\npath = "db.sqlite3"\n'
    )
    added = cli(config, "add", "benw")
    assert added.returncode == 0, added.stderr
    key = added.stdout.strip()
    first = RtmpdProcess(config)
    await first.start()
    publisher = Publisher(first.rtmp_port, key)
    assert (await publisher.start()).code == START
    publisher.send_tags(list(small_tags(2.5)))
    folder = tmp_path / "hls" / "benw"

    def mid_segment() -> bool:
        names = [p.name for p in folder.glob("*")] + [p.name for p in folder.glob(".*")]
        return "index.m3u8" in names and any(n.endswith(".ts.tmp") for n in names)

    await until(mid_segment)
    assert await first.stop(signal.SIGKILL) == -signal.SIGKILL
    await publisher.close()
    with sqlite3.connect(tmp_path / "db.sqlite3") as db:
        assert db.execute("SELECT live_since FROM users").fetchone()[0] is not None  # stale

    second = RtmpdProcess(config)
    await second.start()
    listed = cli(config, "list")
    assert listed.returncode == 0 and re.search(r"^benw\s+yes\s+-\s", listed.stdout, re.M)
    assert not folder.exists() or list(folder.iterdir()) == []  # leftovers of the dead run
    again = Publisher(second.rtmp_port, key)
    assert (await again.start()).code == START
    again.send_tags(list(small_tags(1.5)))
    await again.close()
    await until(lambda: "#EXT-X-ENDLIST" in _read(folder / "index.m3u8"))
    playlist = validate(_read(folder / "index.m3u8"))
    assert 1.3 <= playlist.duration <= 1.6
    assert await second.stop(signal.SIGTERM) == 0
    output = "".join(first.stderr + second.stderr)
    assert "cleared 1 stale live flag" in output and "Traceback" not in output
    assert key not in output and key[:8] not in output
    assert listed.stdout.count("\n") == 2  # the header and benw: nobody lost, nobody added


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


# -- the database locked by another writer -----------------------------------------------------


async def test_database_locked_by_another_writer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """While another process holds the write lock: a new publish is refused after the busy
    timeout with a clear log line, a running stream goes on, a publish that ends keeps its
    live flag for a retry; once the lock goes, the flag is cleared and publishes work."""
    caplog.set_level(logging.INFO)
    server = Rtmpd(make_config(tmp_path, hls={"playlist_length": 60.0}))
    server.auth.store.busy_timeout = 0.3  # the default waits 5 s for the lock
    await server.start()
    try:
        alice = await publish(server, "alice")
        bob_key = await server.auth.store.add_user("bob")
        first, second = split_at(small_tags(4.0), 2000)
        alice.send_tags(first)
        lock = sqlite3.connect(server.config.database_path, isolation_level=None, timeout=0)
        lock.execute("BEGIN IMMEDIATE")
        lock.execute("UPDATE users SET created = created")

        bob = Publisher(server.rtmp.port, bob_key)
        status = await bob.start()
        assert (status.level, status.description) == (
            "error", "authorization temporarily unavailable"
        )  # fmt: skip
        await bob.wait_closed(5)
        assert any(
            "bob" in line and "locked by another writer" in line
            for line in lines(caplog, logging.ERROR)
        )
        stream = Stream(server, "alice")
        before = stream.segments()
        alice.send_tags(second)
        await until(lambda: stream.segments() > before)  # media goes on under the lock
        await alice.close()
        await until(stream.ended)
        assert 3.8 <= stream.playlist().duration <= 4.2
        await until(lambda: any("kept for a retry" in line for line in lines(caplog)))

        def live_flags() -> int:
            with sqlite3.connect(server.config.database_path) as db:
                return int(db.execute("SELECT count(live_since) FROM users").fetchone()[0])

        assert live_flags() == 1  # alice's flag could not be cleared yet
        lock.execute("ROLLBACK")
        lock.close()
        await until(lambda: live_flags() == 0)
        bob = Publisher(server.rtmp.port, bob_key)
        assert (await bob.start()).code == START
        await bob.close()
    finally:
        await server.stop()


# -- the disk full -----------------------------------------------------------------------------


class SmallDisk:
    """A 4 MiB tmpfs for the HLS folder, filled and emptied on demand. Where mounting is not
    allowed, a stand-in makes every segment and playlist write fail with ENOSPC."""

    def __init__(self, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.folder = folder
        self.filler = folder / "filler"
        folder.mkdir()
        mount = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(folder)], capture_output=True
        )
        self.mounted = mount.returncode == 0
        self.full = False
        if not self.mounted:
            self._stand_in(monkeypatch)

    def fill(self) -> None:
        self.full = True
        if not self.mounted:
            return
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            for block in (1 << 16, 1 << 12, 1):
                with contextlib.suppress(OSError):
                    while os.write(fd, bytes(block)):
                        pass
        finally:
            os.close(fd)
        with pytest.raises(OSError, match="No space left"):
            (self.folder / "probe").write_bytes(b"x")

    def free(self) -> None:
        self.full = False
        for path in (self.filler, self.folder / "probe"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def close(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.folder)], check=True)

    def _stand_in(self, monkeypatch: pytest.MonkeyPatch) -> None:
        disk = self

        def no_space() -> OSError:
            return OSError(errno.ENOSPC, "No space left on device")

        class FullFile:
            """Stands in for `open` in the muxer module: writes fail while the disk is full."""

            def __init__(self, path: Path, mode: str) -> None:
                if disk.full:
                    raise no_space()
                self._file = open(path, mode)  # noqa: SIM115 - closed below

            def write(self, data: bytes) -> int:
                if disk.full:
                    raise no_space()
                return self._file.write(data)

            def close(self) -> None:
                self._file.close()

        write_atomic = name_state_module.write_atomic

        def full_write(path: Path, text: str) -> None:
            if disk.full:
                raise no_space()
            write_atomic(path, text)

        monkeypatch.setattr(muxer_module, "open", FullFile, raising=False)
        monkeypatch.setattr(name_state_module, "write_atomic", full_write)


@pytest.fixture
def small_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SmallDisk]:
    disk = SmallDisk(tmp_path / "hls", monkeypatch)
    yield disk
    disk.close()


async def test_disk_full(
    tmp_path: Path, small_disk: SmallDisk, caplog: pytest.LogCaptureFixture
) -> None:
    """ENOSPC in the middle of a stream: the publisher stays connected, the segments that
    cannot be written are dropped with one log line, writing resumes (with a discontinuity)
    once space returns, and every segment listed is whole."""
    caplog.set_level(logging.INFO)
    server = await start_server(
        tmp_path, hls={"path": str(small_disk.folder), "playlist_length": 60.0}
    )
    try:
        publisher = await publish(server, "benw")
        stream = Stream(server, "benw")
        before, during, after = split_at(small_tags(9.0, width=320, height=240), 3000, 6000)
        base = received_bytes(server)
        publisher.send_tags(before)
        await processed(server, base, before)
        await until(lambda: stream.segments() >= 2)
        small_disk.fill()
        publisher.send_tags(during)
        await processed(server, base, before + during)
        errors = [line for line in lines(caplog, logging.ERROR) if "cannot write segments" in line]
        assert len(errors) == 1 and "No space left" in errors[0]
        assert not publisher.closed.is_set()
        small_disk.free()
        publisher.send_tags(after)
        await publisher.close()
        await until(stream.ended)
    finally:
        await server.stop()
    assert any("writing segments again" in line for line in lines(caplog, logging.INFO))
    playlist = stream.playlist()
    resumed = [s for s in playlist.segments if s.discontinuity]
    assert len(resumed) == 1
    # Before the disk filled: at least the segments already finished (the one open then may
    # still have had bytes in FFmpeg's buffer).
    assert sum(s.duration for s in playlist.segments if s.sequence < resumed[0].sequence) >= 1.8
    assert sum(s.duration for s in playlist.segments if s.sequence >= resumed[0].sequence) >= 2.8
    assert playlist.duration < 7.5  # some of the middle third is lost, and only that
    assert stream.leftovers() == []
    decodes(stream)


# -- broken media --------------------------------------------------------------------------------


async def stream_through(server: Rtmpd, name: str, tags: list[FlvTag]) -> Stream:
    """Publish `tags` flat out, disconnect, and wait for the finished playlist."""
    publisher = await publish(server, name)
    publisher.send_tags(tags)
    await publisher.close()
    stream = Stream(server, name)
    await until(stream.ended)
    assert not await stream.live()
    return stream


def discontinuities(stream: Stream) -> int:
    return [s.discontinuity for s in stream.playlist().segments].count(True)


@pytest.mark.parametrize("jump", [60_000, -2_000, 2**31])
async def test_timestamp_jumps(server: Rtmpd, caplog: pytest.LogCaptureFixture, jump: int) -> None:
    """Stream time leaps forward or back half way: a new timeline (one discontinuity), and
    the playlist lists the media's real length, not the leap."""
    first, second = split_at(small_tags(4.0), 2000)
    stream = await stream_through(server, "jumpy", first + shifted(second, jump))
    assert discontinuities(stream) == 1
    assert 3.8 <= stream.playlist().duration <= 4.2
    decodes(stream)
    assert lines(caplog) == []


async def test_timestamps_crossing_the_32_bit_wrap(
    server: Rtmpd, caplog: pytest.LogCaptureFixture
) -> None:
    """49.7 days in, the 32-bit RTMP timestamp wraps: one continuous timeline."""
    stream = await stream_through(server, "wrap", shifted(small_tags(4.0), 2**32 - 2000))
    assert discontinuities(stream) == 0
    assert 3.8 <= stream.playlist().duration <= 4.2
    decodes(stream)
    assert lines(caplog) == []


async def test_audio_before_video(server: Rtmpd, caplog: pytest.LogCaptureFixture) -> None:
    """A second of audio before the first video message: it is packaged audio-only, then
    video joins at its first keyframe."""
    tags = list(small_tags(4.0))
    early = [t for t in tags if t.kind == TAG_AUDIO and t.timestamp < 1000]
    rest = [t for t in tags if t not in early and (t.kind == TAG_VIDEO or t.timestamp >= 1000)]
    stream = await stream_through(server, "audiofirst", early + rest)
    playlist = stream.playlist()
    assert 3.8 <= playlist.duration <= 4.2
    folder = server.hls.segment_dir("audiofirst")
    last = decode_segment(folder / playlist.segments[-1].uri)
    assert last.first_video_key and last.audio_frames and last.errors == []
    assert lines(caplog) == []


async def test_no_keyframe_for_20_seconds(server: Rtmpd) -> None:
    """An encoder that sends one keyframe and then 20 s of inter frames: segments are cut at
    max_fragment (ten fragments) instead of growing without end."""
    tags = list(tags_of(seconds=21.0, fps=5, width=96, height=64, gop=250))
    assert sum(t.is_keyframe and t.body[1] == 1 for t in tags) == 1  # NAL units, not headers
    stream = await stream_through(server, "nokey", tags)
    playlist = stream.playlist()
    assert len(playlist.segments) >= 3
    assert all(s.duration <= 10.3 for s in playlist.segments)
    assert 20.5 <= playlist.duration <= 21.5


async def test_sequence_header_change_mid_stream(server: Rtmpd) -> None:
    """The encoder changes resolution: a new segment (and timeline) starts at the new
    configuration's first keyframe; both halves are listed and decode."""
    big = list(small_tags(2.0))
    small = shifted(tags_of(seconds=2.0, fps=25, width=96, height=64, gop=25), 2000)
    stream = await stream_through(server, "resize", big + small)
    playlist = stream.playlist()
    assert discontinuities(stream) == 1
    assert 3.8 <= playlist.duration <= 4.2
    folder = server.hls.segment_dir("resize")
    sizes = [decode_segment(folder / s.uri).size for s in playlist.segments]
    assert sizes[0] == (160, 120) and sizes[-1] == (96, 64)
    decodes(stream)


def vp6(tag: FlvTag) -> FlvTag:
    frame_type = tag.body[0] >> 4
    return FlvTag(TAG_VIDEO, tag.timestamp, bytes([frame_type << 4 | 4, 0]) + tag.body[5:])


def speex(tag: FlvTag) -> FlvTag:
    return FlvTag(TAG_AUDIO, tag.timestamp, b"\xb6" + tag.body[2:])


def ex_video(code: bytes) -> Any:
    """Legacy H.264 frames re-labelled as another enhanced RTMP codec (dropped unread)."""

    def convert(tag: FlvTag) -> FlvTag:
        return FlvTag(TAG_VIDEO, tag.timestamp, exmedia.video(1, code, tag.body[5:],
                                                              frame=tag.body[0] >> 4))  # fmt: skip

    return convert


def as_enhanced(tag: FlvTag) -> FlvTag:
    """The same H.264 or AAC in enhanced RTMP's headers (avc1, mp4a)."""
    b = tag.body
    if tag.kind == TAG_AUDIO:
        return FlvTag(TAG_AUDIO, tag.timestamp, exmedia.audio(b[1], b"mp4a", b[2:]))
    ptype = {0: 0, 1: 1, 2: 2}[b[1]]
    body = b[2:] if ptype == 1 else b[5:]  # CodedFrames keep their composition time
    return FlvTag(TAG_VIDEO, tag.timestamp, exmedia.video(ptype, b"avc1", body, frame=b[0] >> 4))


PACKAGED = (
    "(rtmpd packages H.264, HEVC, AV1 or VP9 video and AAC, MP3, Opus, FLAC, AC-3 or "
    "E-AC-3 audio into HLS)"
)
REFUSED = "(refused: not supported by rtmpd)"


@pytest.mark.parametrize(
    ("kind", "convert", "warning"),
    [
        (TAG_VIDEO, vp6, f"video On2 VP6 is not packaged {PACKAGED}; dropped"),
        (TAG_AUDIO, speex, f"audio Speex is not packaged {PACKAGED}; dropped"),
        (TAG_VIDEO, ex_video(b"vp08"), f"video VP8 {REFUSED} is not packaged {PACKAGED}; dropped"),
        (TAG_VIDEO, ex_video(b"vvc1"), f"video VVC {REFUSED} is not packaged {PACKAGED}; dropped"),
    ],
)
async def test_codecs_hls_cannot_carry_are_dropped(
    server: Rtmpd, caplog: pytest.LogCaptureFixture, kind: int, convert: Any, warning: str
) -> None:
    """VP6 video (or Speex audio) from an old encoder: that track is dropped with one clear log
    line naming the codec, the publish goes on and the other track is packaged."""
    tags = []
    for tag in small_tags(3.0):
        if tag.kind != kind:
            tags.append(tag)
        elif not tag.is_sequence_header and not (kind == TAG_VIDEO and tag.body[1] == 2):
            tags.append(convert(tag))
    stream = await stream_through(server, "legacy", tags)
    assert [line for line in lines(caplog) if "not pack" in line] == [f"rtmpd: legacy: {warning}"]
    playlist = stream.playlist()
    assert 2.8 <= playlist.duration <= 3.2
    segment = decode_segment(server.hls.segment_dir("legacy") / playlist.segments[0].uri)
    assert (segment.video_frames > 0) == (kind == TAG_AUDIO)
    assert (segment.audio_frames > 0) == (kind == TAG_VIDEO)


async def test_enhanced_h264_and_aac_are_packaged_as_legacy(
    server: Rtmpd, caplog: pytest.LogCaptureFixture
) -> None:
    """avc1 and mp4a in enhanced RTMP headers carry the same bitstreams: packaged the same."""
    stream = await stream_through(server, "exavc", [as_enhanced(t) for t in small_tags(3.0)])
    playlist = stream.playlist()
    assert 2.8 <= playlist.duration <= 3.2
    segment = decode_segment(server.hls.segment_dir("exavc") / playlist.segments[0].uri)
    assert segment.video_frames > 0 and segment.audio_frames > 0 and segment.errors == []
    assert lines(caplog) == []


async def test_tracks_beyond_the_default_are_named_once_and_left_out(
    server: Rtmpd, caplog: pytest.LogCaptureFixture
) -> None:
    """A multitrack publish: track 0 (legacy H.264 + AAC) goes to HLS; HEVC frames on video
    track 1 with no sequence header (no rendition can be made of them) and Opus on audio
    track 2 are named once each, however many messages they send."""
    tags = []
    for tag in small_tags(3.0):
        tags.append(tag)
        if tag.kind == TAG_VIDEO:
            extra = exmedia.multitrack(0x96, 1, 1, [(b"hvc1", 1, b"\0\0\0" + tag.body[5:])])
        else:
            extra = exmedia.multitrack(0x95, 1, 1, [(b"Opus", 2, tag.body[2:])])
        tags.append(FlvTag(tag.kind, tag.timestamp, extra))
    stream = await stream_through(server, "multi", tags)
    assert [line for line in lines(caplog) if "not pack" in line] == [
        "rtmpd.hls: HLS multi: video track 1 is not packaged: no sequence header came before "
        "its frames; dropped",
        "rtmpd: multi: audio track 2 (Opus) is not packaged: track 0's audio is in every "
        "rendition; dropped",
    ]
    playlist = stream.playlist()
    assert 2.8 <= playlist.duration <= 3.2
    decodes(stream)


def with_config(tags: list[FlvTag], kind: int, body: bytes) -> list[FlvTag]:
    return [FlvTag(kind, t.timestamp, body) if t.is_sequence_header and t.kind == kind else t
            for t in tags]  # fmt: skip


# AAC object type 7 (TwinVQ) at 44.1 kHz, stereo: a valid AudioSpecificConfig, but not AAC
# that ADTS (and so MPEG-TS) can carry. An AVC record whose "SPS" is a slice NAL unit.
TWINVQ = b"\xaf\x00\x3a\x10"
NOT_AN_SPS = b"\x17\x00\x00\x00\x00" + bytes.fromhex("0164001fffe100040164001f01000368ee3c")


@pytest.mark.parametrize(
    ("kind", "body", "warning"),
    [
        (TAG_AUDIO, TWINVQ, "unusable AAC sequence header"),
        (TAG_VIDEO, NOT_AN_SPS, "unusable H.264 sequence header"),
        # Empty or garbage records: the core only bounds their size, so they cost that track
        # too, never the publish (some encoders send an empty record before the real one).
        (TAG_VIDEO, b"\x17\x00\x00\x00\x00", "unusable H.264 sequence header"),
        (TAG_VIDEO, b"\x17\x00\x00\x00\x00\x02garbage", "unusable H.264 sequence header"),
        (TAG_AUDIO, b"\xaf\x00", "unusable AAC sequence header"),
        (TAG_AUDIO, b"\xaf\x00\x16\x90", "unusable AAC sequence header"),
    ],
)
async def test_configs_the_packager_cannot_use_drop_that_track(
    server: Rtmpd, caplog: pytest.LogCaptureFixture, kind: int, body: bytes, warning: str
) -> None:
    tags = with_config(list(small_tags(3.0)), kind, body)
    stream = await stream_through(server, "oddconfig", tags)
    messages = lines(caplog)
    assert any(warning in line for line in messages), messages
    assert len(messages) == 2  # the header, then "dropping ..." once, however many frames
    playlist = stream.playlist()
    assert 2.8 <= playlist.duration <= 3.2
    segment = decode_segment(server.hls.segment_dir("oddconfig") / playlist.segments[0].uri)
    assert (segment.video_frames > 0) == (kind == TAG_AUDIO)


async def test_oversized_codec_config_costs_that_publish_only(
    server: Rtmpd, caplog: pytest.LogCaptureFixture
) -> None:
    """A configuration record past the core's size bound is a protocol violation: that
    connection is closed with one log line saying why; another stream goes on."""
    other = await publish(server, "other", source="127.0.0.2")
    first, second = split_at(small_tags(4.0), 2000)
    other.send_tags(first)
    broken = await publish(server, "broken")
    huge = b"\x17\x00\x00\x00\x00" + bytes(MAX_CONFIG_SIZE + 1)
    broken.send_tags(with_config(list(small_tags(2.0)), TAG_VIDEO, huge))
    await broken.wait_closed(5)
    violations = [line for line in lines(caplog) if "protocol violation" in line]
    assert len(violations) == 1
    assert "configuration too large" in violations[0]
    assert not await Stream(server, "broken").live()
    other.send_tags(second)
    await other.close()
    stream = Stream(server, "other")
    await until(stream.ended)
    assert 3.8 <= stream.playlist().duration <= 4.2
    await broken.close()
