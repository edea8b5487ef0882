"""HLS output that players accept without a warning, on the real output of real publishes.

FFmpeg's RTMP client (PyAV, in a child process) publishes to a running rtmpd; every version of
the playlist it writes is checked (target duration never changes, date-times contiguous), the
segments go through the TS checker (continuity across files, PCR interval and lead, PAT/PMT and
IDR first), and FFmpeg's HLS demuxer reads the whole playlist with its warnings captured.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import av
import av.logging
import pytest
from rtmpd.hls import name_state as name_state_module

from rtmpd import publish as publish_module
from rtmpd.app import Rtmpd
from tests.support.app import HeldPublisher, start_server
from tests.support.m3u8_validator import MediaPlaylist, PlaylistHistory
from tests.support.media import TAG_AUDIO, TAG_VIDEO, make_flv, read_flv_tags
from tests.support.publisher import run_publisher
from tests.support.tscheck import check_stream

SMALL: dict[str, Any] = {"seconds": 8.0, "fps": 25, "gop": 50, "width": 320, "height": 240}


@pytest.fixture
def written(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, list[str]]]:
    """Every version of every playlist rtmpd writes, by file name, in order."""
    versions: dict[str, list[str]] = defaultdict(list)
    write = name_state_module.write_atomic

    def recording(path: Path, text: str | bytes) -> None:
        if isinstance(text, str):  # not an fMP4 init segment
            versions[path.parent.name].append(text)
        write(path, text)

    monkeypatch.setattr(name_state_module, "write_atomic", recording)
    yield versions


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Rtmpd]:
    srv = await start_server(tmp_path, hls={"fragment": 2.0, "playlist_length": 60.0})
    yield srv
    await srv.stop()


async def publish(server: Rtmpd, name: str, **media: Any) -> str:
    key = await server.auth.store.add_user(name)
    result = await run_publisher(f"rtmp://127.0.0.1:{server.rtmp.port}/app/{key}", **media)
    assert result.returncode == 0, result.stderr
    async with asyncio.timeout(10):
        while not (server.hls.playlist_path(name).exists() and not server.hls.playing(name)):
            await asyncio.sleep(0.05)
    return key


def every_version(written: dict[str, list[str]], name: str) -> MediaPlaylist:
    history = PlaylistHistory(playlist_length=60.0)
    for text in written[name]:
        history.check(text)
    assert history.last.endlist
    return history.last


def decode_playlist(path: Path) -> tuple[int, int, list[str]]:
    """Video and audio frames FFmpeg's HLS demuxer decodes from the playlist, and every
    warning or error it logged on the way."""
    level = av.logging.get_level()
    av.logging.set_level(av.logging.WARNING)
    video = audio = 0
    try:
        with av.logging.Capture(local=False) as logs, av.open(str(path)) as container:
            for frame in container.decode(*container.streams):
                if isinstance(frame, av.VideoFrame):
                    video += 1
                else:
                    audio += 1
    finally:
        av.logging.set_level(level)
    return (
        video,
        audio,
        [f"{name}: {text}" for lvl, name, text in logs if lvl <= av.logging.WARNING],
    )


@pytest.mark.parametrize(
    "media",
    [
        pytest.param({}, id="h264-aac"),
        pytest.param({"bframes": 2}, id="b-frames"),
        pytest.param({"video": False}, id="audio-only"),
        pytest.param({"audio": False}, id="video-only"),
    ],
)
async def test_players_accept_every_segment_boundary(
    server: Rtmpd, written: dict[str, list[str]], media: dict[str, Any]
) -> None:
    await publish(server, "benw", **SMALL, **media)
    playlist = every_version(written, "benw")
    assert len(playlist.segments) >= 3
    folder = server.hls.segment_dir("benw")
    report = check_stream([(folder / s.uri).read_bytes() for s in playlist.segments])
    assert report.cc_errors == [], report.cc_errors[:5]
    assert all(report.starts_cleanly(i) for i in range(len(playlist.segments)))
    assert report.max_pcr_gap_ms <= 100 and report.late_pes == 0
    assert 600 <= report.min_pcr_lead_ms <= report.max_pcr_lead_ms <= 1000
    video, audio, warnings = decode_playlist(server.hls.playlist_path("benw"))
    assert warnings == []
    assert video == (0 if media.get("video") is False else 200)
    assert (audio > 0) == (media.get("audio") is not False)


@pytest.mark.parametrize(
    ("media", "codec", "rate", "channels"),
    [
        pytest.param({"audio_codec": "libmp3lame", "sample_rate": 44100}, "mp4a.40.34", 44100, 2,
                     id="mp3-44k"),
        pytest.param({"audio_codec": "libmp3lame", "sample_rate": 22050, "channels": 1},
                     "mp4a.40.34", 22050, 1, id="mp3-22k-mono"),
        pytest.param({"sample_rate": 44100, "channels": 1}, "mp4a.40.2", 44100, 1, id="aac-mono"),
        pytest.param({"sample_rate": 22050}, "mp4a.40.2", 22050, 2, id="aac-22k"),
    ],
)  # fmt: skip
async def test_audio_that_real_encoders_send(
    server: Rtmpd, written: dict[str, list[str]], media: dict[str, Any], codec: str, rate: int,
    channels: int,
) -> None:  # fmt: skip
    await publish(server, "benw", **{**SMALL, "seconds": 4.0}, **media)
    playlist = every_version(written, "benw")
    folder = server.hls.segment_dir("benw")
    report = check_stream([(folder / s.uri).read_bytes() for s in playlist.segments])
    assert report.cc_errors == []
    if media.get("audio_codec") == "libmp3lame":  # MPEG-1 audio, or MPEG-2 below 32 kHz
        assert (0x03 if rate >= 32000 else 0x04) in report.stream_types.values()
    _, audio, warnings = decode_playlist(server.hls.playlist_path("benw"))
    assert warnings == [] and audio > 0
    info = server.hls.stream_info("benw")
    assert info is not None
    assert (info.audio_codec, info.sample_rate, info.channels) == (codec, rate, channels)


async def test_a_publish_with_nothing_to_package_is_told_why(
    server: Rtmpd, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Sorenson H.263 + Nellymoser (FLV's own old codecs, which no HLS player takes): no
    playlist, never shown live, and the publisher gets an onStatus error naming the codecs;
    the log names them too (never `video codec 2`)."""
    monkeypatch.setattr(publish_module, "NO_TRACK_TIMEOUT", 0.5)
    key = await server.auth.store.add_user("benw")
    flv = make_flv(seconds=3.0, fps=10, width=160, height=120, video_codec="flv",
                   audio_codec="nellymoser", sample_rate=22050, channels=1)  # fmt: skip
    tags = [t for t in read_flv_tags(flv) if t.kind in (TAG_AUDIO, TAG_VIDEO)]
    publisher = HeldPublisher(server.rtmp.port, key)
    assert (await publisher.start()).code == "NetStream.Publish.Start"
    try:
        for tag in tags:
            publisher.send_tags([tag])
            await asyncio.sleep(0.01)
            if publisher.closed.is_set():
                break
            channel = await server.directory.channel("benw")
            assert channel is not None and not channel.live
        await publisher.wait_closed(5)
    finally:
        await publisher.close()
    error = publisher.statuses[-1]
    assert (error.level, error.code) == ("error", "NetStream.Failed")
    assert "video Sorenson H.263" in error.description
    assert "audio Nellymoser" in error.description
    assert "H.264" in error.description
    assert not server.hls.playlist_path("benw").exists()
    text = caplog.text
    assert "video Sorenson H.263 is not packaged" in text
    assert "audio Nellymoser is not packaged" in text
    assert "codec 2" not in text and "codec 6" not in text
