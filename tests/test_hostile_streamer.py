"""Abuse by a streamer with a valid key, whole server: the HLS bounds. Each attack is ended
with an onStatus error naming its bound and one log line, the bound holds on disk, and an
honest publisher streaming meanwhile keeps a fresh playlist (new segments after the attacker
is gone) and is never disconnected. Small media and small bounds keep each test to seconds."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from rtmpd.app import Rtmpd
from tests.support.app import start_server
from tests.support.hostile import Publisher, Stream, lines, small_tags, until
from tests.support.m3u8_validator import validate
from tests.support.media import TAG_VIDEO, FlvTag

START = "NetStream.Publish.Start"
DAY_MS = 86_400_000


async def publish(server: Rtmpd, name: str, source: str = "127.0.0.1") -> Publisher:
    key = await server.auth.store.add_user(name)
    publisher = Publisher(server.rtmp.port, key, source=source)
    assert (await publisher.start()).code == START
    return publisher


class Honest:
    """A publisher beside the attack, sending a second of media every 0.6 s (under the 2x
    max_speed) until stopped."""

    def __init__(self, server: Rtmpd, publisher: Publisher) -> None:
        self.server = server
        self.publisher = publisher
        self.stream = Stream(server, "honest")
        self.task = asyncio.create_task(self._send())

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        await self.publisher.close()

    async def _send(self) -> None:
        tags = small_tags(4.0)
        second = 0
        while True:
            low = second % 4 * 1000
            part = [t for t in tags if low <= t.timestamp < low + 1000 or t.is_sequence_header]
            if second:
                part = [t for t in part if not t.is_sequence_header]
            self.publisher.send_tags(part, offset_ms=second // 4 * 4000)
            second += 1
            await asyncio.sleep(0.6)

    def listed(self) -> int:
        """The media sequence number after the newest listed segment."""
        text = self.stream.text()
        if not text:
            return 0
        playlist = validate(text)
        return playlist.media_sequence + len(playlist.segments)

    async def goes_on(self) -> None:
        """New segments after this point, and still connected."""
        before = self.listed()
        await until(lambda: self.listed() >= before + 2)
        assert not self.publisher.closed.is_set()
        assert self.publisher.statuses[-1].code == START


@contextlib.asynccontextmanager
async def honest_beside(server: Rtmpd) -> AsyncIterator[Honest]:
    honest = Honest(server, await publish(server, "honest", source="127.0.0.2"))
    try:
        await until(lambda: honest.listed() >= 1)
        yield honest
    finally:
        await honest.stop()


async def ended_with(attacker: Publisher, *words: str) -> str:
    """The attacker was told why (an onStatus error) and disconnected."""
    await attacker.wait_closed(15)
    error = attacker.statuses[-1]
    assert (error.level, error.code) == ("error", "NetStream.Failed")
    for word in words:
        assert word in error.description
    await attacker.close()
    return error.description


def warned_once(caplog: pytest.LogCaptureFixture, name: str, description: str) -> None:
    """One log line (rtmpd's WARNING), and no disk error for anyone."""
    found = [line for line in lines(caplog) if f"{name}: {description}" in line]
    assert len(found) == 1, lines(caplog)
    assert not [line for line in lines(caplog, logging.ERROR) if "cannot write" in line]


def bytes_of(server: Rtmpd, name: str) -> int:
    folder = server.hls.segment_dir(name)
    return sum(p.stat().st_size for p in folder.iterdir()) if folder.exists() else 0


def video(timestamp: int, body: bytes) -> FlvTag:
    return FlvTag(TAG_VIDEO, timestamp, body)


def config_and_keyframe(**media: Any) -> tuple[FlvTag, bytes]:
    tags = small_tags(1.0, **media)
    config = next(t for t in tags if t.kind == TAG_VIDEO and t.is_sequence_header)
    key = next(t for t in tags if t.is_keyframe and not t.is_sequence_header)
    return config, key.body


def padded(body: bytes, size: int) -> bytes:
    """A video tag body made `size` bytes with a filler NAL unit (type 12)."""
    extra = size - len(body) - 5
    return body + (extra + 1).to_bytes(4, "big") + b"\x0c" + b"\xff" * extra


# -- breaks over and over ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "step", [-200, DAY_MS], ids=["back-200ms-a-frame", "forward-a-day-a-frame"]
)
async def test_a_jump_every_frame(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, step: int
) -> None:
    """Was one segment and one discontinuity per frame: 5,619 segments in 30 s."""
    server = await start_server(tmp_path)
    try:
        async with honest_beside(server) as honest:
            attacker = await publish(server, "jumpy")
            config, key = config_and_keyframe()
            start = 10**9 if step < 0 else 0
            attacker.send_tags([config] + [video(start + step * i, key) for i in range(2000)])
            description = await ended_with(attacker, "timestamps jump", "fix the encoder")
            await honest.goes_on()
        playlist = Stream(server, "jumpy").playlist()
        assert playlist.endlist and len(playlist.segments) <= 5
        assert len(list(server.hls.segment_dir("jumpy").iterdir())) <= 6
        warned_once(caplog, "jumpy", description)
    finally:
        await server.stop()


async def test_a_new_sequence_header_every_frame(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Was about 6,000 files more."""
    server = await start_server(tmp_path)
    try:
        async with honest_beside(server) as honest:
            attacker = await publish(server, "headers")
            (big, key), (small, _) = config_and_keyframe(), config_and_keyframe(width=96, height=64)
            tags = []
            for i in range(1000):
                tags += [FlvTag(TAG_VIDEO, i * 40, (big, small)[i % 2].body), video(i * 40, key)]
            attacker.send_tags(tags)
            description = await ended_with(attacker, "sequence headers")
            await honest.goes_on()
        assert len(list(server.hls.segment_dir("headers").iterdir())) <= 6
        warned_once(caplog, "headers", description)
    finally:
        await server.stop()


# -- the disk ---------------------------------------------------------------------------------


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path | None]:
    """A 4 MiB tmpfs for the HLS folder, or None where mounting is not allowed."""
    folder = tmp_path / "hls"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(folder)], capture_output=True
    )
    yield folder if mounted.returncode == 0 else None
    if mounted.returncode == 0:
        subprocess.run(["umount", "-l", str(folder)], check=True)


async def test_every_timestamp_zero_never_fills_the_disk(
    tmp_path: Path, tmpfs: Path | None, caplog: pytest.LogCaptureFixture
) -> None:
    """Was 16 segments of 64 MiB listed as #EXTINF:0.001, a 1 GiB tmpfs full in 3 s. On a
    4 MiB tmpfs (max_total_bytes derived: 90% of it) with 1 MiB segments: the folder never
    holds more than the bound, the attacker is ended at it (before its fifth size cut), the
    honest stream never misses a write."""
    hls: dict[str, Any] = {"max_segment_bytes": 1 << 20}
    if tmpfs is None:  # no mount here: the same bound, set
        hls["max_total_bytes"] = round(0.9 * 4 * 1024 * 1024)
    else:
        hls["path"] = str(tmpfs)
    server = await start_server(tmp_path, hls=hls)
    limit = server.hls.quota.max_total
    assert limit <= 0.9 * 4 * 1024 * 1024
    try:
        async with honest_beside(server) as honest:
            attacker = await publish(server, "zero")
            config, key = config_and_keyframe()
            frame = padded(key, 64 * 1024)
            most = 0
            for _ in range(20):  # 1.25 MiB a burst, up to 25 MiB
                attacker.send_tags([config] + [video(0, frame)] * 20)
                await asyncio.sleep(0.05)
                most = max(most, bytes_of(server, "zero") + bytes_of(server, "honest"))
                if attacker.closed.is_set():
                    break
            description = await ended_with(attacker, "max_total_bytes")
            await honest.goes_on()
        assert most <= limit + (1 << 20)
        assert server.hls.quota.total <= limit
        warned_once(caplog, "zero", description)
    finally:
        await server.stop()


async def test_a_high_bitrate_is_ended_at_the_stream_bound(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A real-time 103 Mb/s publisher kept 783 MB. Here 8 Mb/s against a 2 MB bound."""
    bound = 2_000_000
    server = await start_server(
        tmp_path, hls={"max_stream_bytes": bound, "max_segment_bytes": 1_000_000}
    )
    try:
        async with honest_beside(server) as honest:
            attacker = await publish(server, "loud")
            tags = [
                FlvTag(t.kind, t.timestamp, padded(t.body, 40_000))
                if t.kind == TAG_VIDEO and t.body[1] == 1  # frames, not headers or markers
                else t
                for t in small_tags(4.0)
            ]
            most = 0
            for second in range(8):  # a second of media every 0.6 s
                low = second % 4 * 1000
                part = [t for t in tags if low <= t.timestamp < low + 1000 or
                        (second == 0 and t.is_sequence_header)]  # fmt: skip
                attacker.send_tags(part, offset_ms=second // 4 * 4000)
                await asyncio.sleep(0.6)
                most = max(most, bytes_of(server, "loud"))
                if attacker.closed.is_set():
                    break
            description = await ended_with(attacker, "max_stream_bytes", "lower the bitrate")
            await honest.goes_on()
        assert most <= bound + 4 * 40_000  # the frame that crossed, FFmpeg's queue
        warned_once(caplog, "loud", description)
    finally:
        await server.stop()


# -- time -------------------------------------------------------------------------------------


async def test_faster_than_real_time_is_ended(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Was: everything kept, cleanup waiting media seconds in wall seconds (6.6 GB in 20 s).
    40 s of media at once against a 3 s burst."""
    server = await start_server(tmp_path, hls={"speed_burst": 3.0})
    try:
        async with honest_beside(server) as honest:
            attacker = await publish(server, "fast")
            tags = small_tags(4.0)
            for k in range(10):
                attacker.send_tags([t for t in tags if not k or not t.is_sequence_header],
                                   offset_ms=4000 * k)  # fmt: skip
            description = await ended_with(attacker, "faster than real time", "-re")
            await honest.goes_on()
        playlist = Stream(server, "fast").playlist()
        # 1 s segments: the 3 s burst, twice the second or so it took, one more (not 40).
        assert playlist.endlist and playlist.media_sequence + len(playlist.segments) <= 7
        warned_once(caplog, "fast", description)
    finally:
        await server.stop()


async def test_a_fuzzed_51_s_segment_does_not_keep_the_next_life_at_target_51(
    tmp_path: Path,
) -> None:
    """The target duration is decided once per playlist life: a first segment of 51 s makes
    it 51 for that life (re-publishes within the grace included); once the grace is over and
    the files are gone, the next life decides anew from its own first segment."""
    server = await start_server(
        tmp_path, hls={"max_fragment": 60.0, "speed_burst": 120.0, "grace": 0.1}
    )
    try:
        key = await server.auth.store.add_user("fuzzed")
        publisher = Publisher(server.rtmp.port, key)
        assert (await publisher.start()).code == START
        tags = small_tags(2.0)
        headers = [t for t in tags if t.is_sequence_header]
        first = next(t for t in tags if t.is_keyframe and not t.is_sequence_header)
        publisher.send_tags(headers + [first])  # then nothing for 51 s of stream time
        publisher.send_tags([t for t in tags if not t.is_sequence_header], offset_ms=51_000)
        await publisher.close()
        stream = Stream(server, "fuzzed")
        await until(stream.ended)
        assert stream.playlist().target_duration == 51
        await until(lambda: not server.hls.playlist_path("fuzzed").exists())  # grace over
        again = Publisher(server.rtmp.port, key)
        assert (await again.start()).code == START
        again.send_tags(list(tags))
        await again.close()
        await until(stream.ended)
        playlist = stream.playlist()
        assert playlist.target_duration == 1 and playlist.segments[0].discontinuity
    finally:
        await server.stop()
