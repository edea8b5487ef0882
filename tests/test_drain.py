"""Draining with enhanced RTMP v2 reconnect requests: a publisher that announced the Reconnect
capability reconnects at its next keyframe and takes over its own name (the playlist goes on
with one discontinuity, every media sequence number in order); one that did not is ended when
the grace runs out; SIGTERM's drain stops listening and can send publishers to another node."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from rtmpd.auth import keys

from rtmpd.app import Rtmpd
from tests.support.app import HeldPublisher, ReconnectingPublisher, media_tags, start_server
from tests.support.m3u8_validator import validate

START = "NetStream.Publish.Start"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Rtmpd]:
    srv = await start_server(tmp_path, hls={"playlist_length": 60.0},
                             rtmp={"drain_grace": 5.0})  # fmt: skip
    yield srv
    await srv.stop()


async def until(check: object, timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():  # type: ignore[operator]
            await asyncio.sleep(0.05)


def playlist_text(server: Rtmpd, name: str) -> str:
    path = server.hls.playlist_path(name)
    return path.read_text() if path.exists() else ""


def date_times(text: str) -> list[float]:
    """Each segment's EXT-X-PROGRAM-DATE-TIME, as unix seconds."""
    from datetime import datetime

    return [datetime.fromisoformat(m).timestamp()
            for m in re.findall(r"#EXT-X-PROGRAM-DATE-TIME:(\S+)", text)]  # fmt: skip


async def test_a_capable_publisher_reconnects_and_the_playlist_goes_on(
    server: Rtmpd, record_property: pytest.RecordProperty
) -> None:
    key = await server.auth.store.add_user("mover")
    tags = media_tags(seconds=6, fps=25, width=96, height=64, gop=25)  # a keyframe a second
    publisher = ReconnectingPublisher(server.rtmp.port, key)
    streaming = asyncio.create_task(publisher.run(tags, pace=1.0))
    await until(lambda: playlist_text(server, "mover").count(".ts") >= 2)
    result = await server.drain()  # what SIGUSR1 (rtmpd drain) runs
    assert result is not None and (result.asked, result.left, result.ended) == (1, 1, 0)
    await streaming
    await publisher.close()
    await until(lambda: "#EXT-X-ENDLIST" in playlist_text(server, "mover"))

    old, new = publisher.connections
    assert [r.tc_url for r in old.reconnect_requests] == [""]  # reconnect where it was
    assert new.reconnect_requests == [] and len(publisher.reconnects) == 1
    text = playlist_text(server, "mover")
    playlist = validate(text)
    sequences = [s.sequence for s in playlist.segments]
    assert sequences == list(range(sequences[0], sequences[0] + len(sequences)))
    assert [s.discontinuity for s in playlist.segments].count(True) == 1
    assert 5.6 <= playlist.duration <= 6.2  # one timeline, nothing of it lost at the seam
    # The gap a viewer sees: from the end of the last segment before the discontinuity to
    # the start of the first one after it, in the playlist's own date-times.
    at = next(i for i, s in enumerate(playlist.segments) if s.discontinuity)
    stamps = date_times(text)
    gap = stamps[at] - (stamps[at - 1] + playlist.segments[at - 1].duration)
    switch, took = publisher.reconnects[0]
    record_property("playlist_gap_seconds", round(gap, 3))
    record_property("reconnect_seconds", round(took, 3))
    print(f"\nreconnect at media {switch} ms took {took * 1000:.0f} ms; playlist gap "
          f"{gap * 1000:.0f} ms (GOP 1000 ms)")  # fmt: skip
    channel = await server.auth.channel("mover")
    assert channel is not None and channel.live_since is None


async def test_without_the_capability_the_publish_ends_when_the_grace_runs_out(
    tmp_path: Path,
) -> None:
    server = await start_server(tmp_path, rtmp={"drain_grace": 0.5})
    try:
        key = await server.auth.store.add_user("legacy")
        publisher = HeldPublisher(server.rtmp.port, key)  # no capsEx
        assert (await publisher.start()).code == START
        publisher.send_tags(media_tags(seconds=1, fps=10, width=96, height=64))
        result = await server.drain()
        assert result is not None and (result.asked, result.left, result.ended) == (0, 0, 1)
        await publisher.wait_closed(5)
        assert publisher.reconnect_requests == []
        later = HeldPublisher(server.rtmp.port, key)  # the server goes on after a drain
        assert (await later.start()).code == START
        await later.close()
        await publisher.close()
    finally:
        await server.stop()


async def test_drain_grace_zero_is_off(tmp_path: Path) -> None:
    server = await start_server(tmp_path, rtmp={"drain_grace": 0.0})
    try:
        key = await server.auth.store.add_user("stays")
        publisher = HeldPublisher(server.rtmp.port, key, caps_ex=1)
        assert (await publisher.start()).code == START
        assert await server.drain() is None
        await asyncio.sleep(0.2)
        assert not publisher.closed.is_set() and publisher.reconnect_requests == []
        await publisher.close()
    finally:
        await server.stop()


async def test_sigterm_drain_sends_publishers_to_another_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = keys.new_key()  # one streamer known to both nodes, with the same key
    monkeypatch.setattr(keys, "new_key", lambda: key)
    other = await start_server(tmp_path / "b", hls={"playlist_length": 60.0})
    await other.auth.store.add_user("roamer")
    redirect = f"rtmp://127.0.0.1:{other.rtmp.port}/app"
    leaving = await start_server(tmp_path / "a", rtmp={"drain_grace": 5.0,
                                                       "drain_redirect": redirect})  # fmt: skip
    try:
        await leaving.auth.store.add_user("roamer")
        tags = media_tags(seconds=4, fps=25, width=96, height=64, gop=25)
        publisher = ReconnectingPublisher(leaving.rtmp.port, key)
        streaming = asyncio.create_task(publisher.run(tags, pace=1.0))
        await until(lambda: ".ts" in playlist_text(leaving, "roamer"))
        await leaving.shutdown()  # what SIGTERM runs: stop listening, drain, stop
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", leaving.rtmp.port)
        await streaming
        await publisher.close()
        old, new = publisher.connections
        assert [r.tc_url for r in old.reconnect_requests] == [redirect]
        assert new.port == other.rtmp.port
        await until(lambda: "#EXT-X-ENDLIST" in playlist_text(other, "roamer"))
        assert validate(playlist_text(other, "roamer")).duration >= 1.0
    finally:
        await leaving.stop()
        await other.stop()
