"""Helpers for whole-server fault and hostile-input tests (test_faults, test_hostile_*).

`Publisher` is app_fixtures.HeldPublisher that can connect from a chosen local address and
vanish (reset the connection) or just stop sending. `processed(server, baseline, tags)` waits
until the server has consumed given media, read from its own byte counter, so a test can act
(fill the disk, take a lock) at a known point of a stream that is fed flat out.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rtmpd.app import Rtmpd
from tests.support.app import HeldPublisher, media_tags
from tests.support.m3u8_validator import MediaPlaylist, validate
from tests.support.media import TAG_AUDIO, TAG_VIDEO, FlvTag

SMALL: dict[str, Any] = {"fps": 25, "width": 160, "height": 120, "gop": 25}


@functools.cache
def tags_of(**kwargs: Any) -> tuple[FlvTag, ...]:
    """Generated audio/video tags (cached: encoding is the slow part of these tests)."""
    return tuple(media_tags(**kwargs))


def small_tags(seconds: float, **kwargs: Any) -> tuple[FlvTag, ...]:
    return tags_of(seconds=seconds, **{**SMALL, **kwargs})


def shifted(tags: tuple[FlvTag, ...] | list[FlvTag], offset: int) -> list[FlvTag]:
    return [FlvTag(t.kind, t.timestamp + offset, t.body) for t in tags]


def split_at(tags: tuple[FlvTag, ...] | list[FlvTag], *ms: int) -> list[list[FlvTag]]:
    """Cut a tag list at stream times (sequence headers stay in the first part)."""
    parts: list[list[FlvTag]] = [[] for _ in range(len(ms) + 1)]
    for tag in tags:
        index = sum(tag.timestamp >= m for m in ms) if not tag.is_sequence_header else 0
        parts[index].append(tag)
    return parts


def media_bytes(tags: list[FlvTag] | tuple[FlvTag, ...]) -> int:
    """What the server's received-bytes counter adds for these tags: audio and video frames
    (sequence headers and the AVC end-of-sequence marker are not frames)."""
    total = 0
    for tag in tags:
        if tag.kind not in (TAG_AUDIO, TAG_VIDEO) or tag.is_sequence_header:
            continue
        if tag.kind == TAG_VIDEO and (tag.body[0] & 0x0F) == 7 and tag.body[1] == 2:
            continue
        total += len(tag.body)
    return total


def received_bytes(server: Rtmpd) -> int:
    text = server.metrics.render().decode()
    match = re.search(r"^rtmpd_received_bytes_total (\S+)$", text, re.M)
    return int(float(match.group(1))) if match else 0


async def until(check: Callable[[], bool], timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.02)


async def processed(server: Rtmpd, baseline: int, tags: list[FlvTag]) -> None:
    """Wait until the server has taken in `tags` (counted from `baseline`)."""
    want = baseline + media_bytes(tags)
    await until(lambda: received_bytes(server) >= want)


class Publisher(HeldPublisher):
    """A held publish from `source` (a 127.x address), which can also vanish or go silent."""

    def vanish(self) -> None:
        """The connection drops: a reset, no FIN, no deleteStream."""
        if self._writer is not None:
            self._writer.transport.abort()


class Stream:
    """One user's HLS output on a running server."""

    def __init__(self, server: Rtmpd, name: str) -> None:
        self.server = server
        self.name = name

    @property
    def path(self) -> Path:
        return Path(self.server.hls.playlist_path(self.name))

    def text(self) -> str:
        try:
            return self.path.read_text()
        except FileNotFoundError:
            return ""

    def playlist(self) -> MediaPlaylist:
        return validate(self.text())

    def segments(self) -> int:
        return self.text().count("#EXTINF")

    def ended(self) -> bool:
        return "#EXT-X-ENDLIST" in self.text()

    def leftovers(self) -> list[str]:
        """Unfinished (temporary) files in the stream's folder."""
        folder = self.server.hls.segment_dir(self.name)
        return sorted(p.name for p in folder.glob(".*")) if folder.exists() else []

    async def live(self) -> bool:
        channel = await self.server.auth.channel(self.name)
        return channel is not None and channel.live_since is not None


def lines(caplog: pytest.LogCaptureFixture, level: int = logging.WARNING) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= level]
