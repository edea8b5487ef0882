"""HEVC, AV1, VP9, Opus, FLAC, AC-3 and E-AC-3 from a real publisher into HLS and back.

FFmpeg's RTMP client (PyAV, in a child process) publishes enhanced RTMP; rtmpd packages each
stream into the segments its tracks need (`format = "auto"`: MPEG-TS where every track fits,
fMP4 otherwise) or the ones it is told to; every version of the playlist passes the validator,
MPEG-TS segments say the right stream types, and FFmpeg's HLS client (a child process, over
rtmpd's own HTTP) decodes the whole stream with the right codecs and not one warning. The API
gives the CODECS strings, and a configuration that cannot carry a track ends the publish with
an error that names it.
"""

from __future__ import annotations

import asyncio
import io
import logging
from pathlib import Path
from typing import Any

import aiohttp
import av
import pytest
from rtmpd.hls import Codec, HlsConfig, HlsService

from tests.support.app import HeldPublisher, media_tags, start_server
from tests.support.hls import Event, decode_fmp4, feed, media, shift
from tests.support.m3u8_validator import PlaylistHistory
from tests.support.media import TAG_AUDIO, TAG_VIDEO, FlvTag, make_flv, read_flv_tags
from tests.support.player import play
from tests.support.publisher import run_publisher
from tests.support.tscheck import check_stream
from tests.test_hls_quality import every_version, written  # noqa: F401 - the fixture

MEDIA: dict[str, Any] = {"seconds": 3.0, "fps": 10, "gop": 10, "width": 160, "height": 120,
                         "sample_rate": 48000}  # fmt: skip
#: MPEG-TS stream types (ISO/IEC 13818-1 table 2-34; AC-3 and E-AC-3 as ATSC A/52 has them).
H264, HEVC, AAC, AC3, EAC3 = 0x1B, 0x24, 0x0F, 0x81, 0x87


@pytest.mark.parametrize(
    ("media", "fmt", "ext", "codecs", "strings", "types"),
    [
        pytest.param({"video_codec": "libx265"}, "auto", "ts", ["hevc", "aac"],
                     ("hev1.1.6.L", "mp4a.40.2"), {HEVC, AAC}, id="hevc-aac-ts"),
        pytest.param({"video_codec": "libx265", "audio_codec": "ac3"}, "fmp4", "m4s",
                     ["hevc", "ac3"], ("hvc1.1.6.L", "ac-3"), None, id="hevc-ac3-fmp4"),
        pytest.param({"video_codec": "libsvtav1", "audio_codec": "libopus"}, "auto", "m4s",
                     ["av1", "opus"], ("av01.0.", "opus"), None, id="av1-opus"),
        pytest.param({"video_codec": "libx265", "audio_codec": "libopus"}, "ll", "m4s",
                     ["hevc", "opus"], ("hvc1.1.6.L", "opus"), None, id="hevc-opus-llhls"),
        pytest.param({"video_codec": "libvpx-vp9", "audio_codec": "libopus"}, "auto", "m4s",
                     ["vp9", "opus"], ("vp09.00.", "opus"), None, id="vp9-opus"),
        pytest.param({"audio_codec": "ac3"}, "auto", "ts", ["h264", "ac3"],
                     ("avc1.", "ac-3"), {H264, AC3}, id="h264-ac3-ts"),
        pytest.param({"audio_codec": "eac3"}, "ts", "ts", ["h264", "eac3"],
                     ("avc1.", "ec-3"), {H264, EAC3}, id="h264-eac3-ts"),
        pytest.param({"video_codec": "libvpx-vp9", "audio_codec": "flac"}, "auto", "m4s",
                     ["vp9", "flac"], ("vp09.00.", "fLaC"), None, id="vp9-flac"),
    ],
)  # fmt: skip
async def test_modern_codecs_are_packaged_and_decode_back(
    tmp_path: Path, written: dict[str, list[str]], media: dict[str, Any], fmt: str, ext: str,  # noqa: F811
    codecs: list[str], strings: tuple[str, str], types: set[int] | None,
) -> None:  # fmt: skip
    hls = {"low_latency": True} if fmt == "ll" else {"format": fmt}  # ll: LL-HLS, fMP4
    server = await start_server(tmp_path, hls={"fragment": 1.0, "playlist_length": 60.0, **hls})
    try:
        key = await server.auth.store.add_user("benw")
        url = f"rtmp://127.0.0.1:{server.rtmp.port}/app/{key}"
        result = await run_publisher(url, **MEDIA, **media)
        assert result.returncode == 0, result.stderr
        async with asyncio.timeout(10):
            while not server.hls.playlist_path("benw").exists() or server.hls.playing("benw"):
                await asyncio.sleep(0.05)
        playlist = every_version(written, "benw")
        assert len(playlist.segments) >= 2
        assert {Path(s.uri).suffix for s in playlist.segments} == {f".{ext}"}
        if types is not None:
            folder = server.hls.segment_dir("benw")
            report = check_stream([(folder / s.uri).read_bytes() for s in playlist.segments])
            assert set(report.stream_types.values()) == types and report.cc_errors == []
        played = await play(f"http://127.0.0.1:{server.http_port}/live/benw/index.m3u8")
        assert played.warnings == []
        assert played.codecs == codecs
        assert played.video == 30 and played.audio > 0 and played.size == [160, 120]
        info = server.hls.stream_info("benw")  # of the publish that just ended
        assert info is not None and info.video_codec is not None
        assert info.video_codec.startswith(strings[0]) and info.audio_codec == strings[1]
        assert (info.width, info.height, info.sample_rate, info.channels) == (160, 120, 48000, 2)
        assert info.fmp4 == (ext == "m4s")
    finally:
        await server.stop()


async def test_a_track_mpeg_ts_cannot_carry_ends_the_publish_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`format = "ts"` and Opus audio: FFmpeg, the publisher, shows the streamer the onStatus
    error, which names the codec and what to change; nothing is listed, one warning."""
    server = await start_server(tmp_path, hls={"format": "ts"})
    try:
        key = await server.auth.store.add_user("benw")
        result = await run_publisher(
            f"rtmp://127.0.0.1:{server.rtmp.port}/app/{key}", **{**MEDIA, "seconds": 4.0},
            video_codec="libx265", audio_codec="libopus", pace=1.0,
        )  # fmt: skip
        assert result.returncode != 0
        assert "MPEG-TS cannot carry Opus audio" in result.stderr
        assert 'format = "auto"' in result.stderr
        assert not server.hls.playing("benw")
        warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warned) == 1 and "MPEG-TS cannot carry Opus audio" in warned[0]
    finally:
        await server.stop()


@pytest.mark.parametrize(
    ("media", "names", "strings"),
    [
        pytest.param({"video_codec": "libx265"}, ("HEVC", "AAC"), ("hev1.1.6.L", "mp4a.40.2"),
                     id="hevc"),
        pytest.param({"video_codec": "libsvtav1", "audio_codec": "libopus"}, ("AV1", "Opus"),
                     ("av01.0.", "opus"), id="av1"),
        pytest.param({"video_codec": "libvpx-vp9", "audio_codec": "ac3"}, ("VP9", "AC-3"),
                     ("vp09.00.", "ac-3"), id="vp9"),
    ],
)  # fmt: skip
async def test_the_api_names_the_codecs_and_the_thumbnail_decodes(
    tmp_path: Path, media: dict[str, Any], names: tuple[str, str], strings: tuple[str, str]
) -> None:
    """While the publish is live: the API's codec names and CODECS strings, and a thumbnail
    decoded from the stream's latest keyframe (in a worker thread) at the stream's size."""
    server = await start_server(tmp_path)
    key = await server.auth.store.add_user("benw")
    publisher = HeldPublisher(server.rtmp.port, key)
    try:
        assert (await publisher.start()).code == "NetStream.Publish.Start"
        publisher.send_tags(media_tags(**{**MEDIA, "seconds": 2.5}, **media))
        async with asyncio.timeout(10):
            while not server.hls.playing("benw"):
                await asyncio.sleep(0.05)
        base = f"http://127.0.0.1:{server.http_port}"
        async with aiohttp.ClientSession() as client:
            async with client.get(f"{base}/api/streams/benw") as response:
                info = await response.json()
            async with client.get(f"{base}/thumb/benw.jpg") as response:
                assert response.status == 200
                jpeg = await response.read()
        assert (info["video"]["name"], info["audio"]["name"]) == names
        assert info["video"]["codec"].startswith(strings[0])
        assert info["audio"]["codec"] == strings[1]
        assert (info["video"]["width"], info["video"]["height"]) == (160, 120)
        with av.open(io.BytesIO(jpeg), "r", format="mjpeg") as container:
            frame = next(container.decode(video=0))
        assert (frame.width, frame.height) == (160, 120)
    finally:
        await publisher.close()
        await server.stop()


def opus_publish_events(seconds: float) -> list[Event]:
    """H.264 in legacy FLV tags with Opus in enhanced ones, as FFmpeg writes them."""
    flv = make_flv(**{**MEDIA, "seconds": seconds}, audio_codec="libopus")
    events: list[Event] = []
    for tag in read_flv_tags(flv):
        body = tag.body
        if tag.kind == TAG_VIDEO:
            events.extend(events_from_flv_tag(tag))
        elif tag.kind == TAG_AUDIO and body[0] & 0x0F == 0:
            events.append(("audio_config", tag.timestamp, body[5:], Codec.OPUS))
        elif tag.kind == TAG_AUDIO and body[0] & 0x0F == 1:
            events.append(("audio", tag.timestamp, body[5:]))
    return events


def events_from_flv_tag(tag: FlvTag) -> list[Event]:
    body = tag.body
    if body[1] == 0:
        return [("video_config", tag.timestamp, body[5:])]
    cto = int.from_bytes(body[2:5], "big", signed=True)
    return [("video", tag.timestamp, cto, tag.is_keyframe, body[5:])] if body[1] == 1 else []


def test_after_fmp4_segments_a_republish_stays_fmp4(tmp_path: Path) -> None:
    """format = "auto": H.264 + Opus goes into fMP4; H.264 + AAC published next under the same
    name would fit MPEG-TS, but an EXT-X-MAP holds for every segment after it, so while the
    playlist lists fMP4 segments the new publish is fMP4 too, after a discontinuity."""
    service = HlsService(HlsConfig(tmp_path, fragment=1.0, playlist_length=60.0))
    first = opus_publish_events(3.0)
    packager = service.open_stream("benw")
    feed(packager, first)
    packager.close()
    packager = service.open_stream("benw")
    feed(packager, shift(media(**{**MEDIA, "sample_rate": 44100}), first[-1][1] + 100))
    packager.close()
    text = service.playlist_path("benw").read_text()
    playlist = PlaylistHistory().check(text)
    assert len(playlist.segments) >= 4
    assert {Path(s.uri).suffix for s in playlist.segments} == {".m4s"}
    assert text.count("#EXT-X-DISCONTINUITY") == 1 and text.count("#EXT-X-MAP") == 2
    folder, last = service.segment_dir("benw"), playlist.segments[-1]
    assert last.map_uri is not None
    decoded = decode_fmp4((folder / last.map_uri).read_bytes() + (folder / last.uri).read_bytes())
    assert decoded.warnings == [] and decoded.video > 0 and decoded.audio > 0
