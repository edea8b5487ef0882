"""Shared helpers for the HLS tests: publisher media as packager calls, a settable clock, a
recorder that validates every playlist version written, and a segment decoder."""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.logging
import numpy as np
from rtmpd.hls import Codec, HlsService, SegmentWritten

from tests.support.m3u8_validator import MediaPlaylist, PlaylistHistory
from tests.support.media import TAG_AUDIO, TAG_VIDEO, make_flv, read_flv_tags

#: ("video", ts, cto, key, data) | ("video_config", ts, avcc) | ... and for FFmpeg's multitrack
#: video (tracks 1, 2, ...) ("track_config", ts, track, avcc, codec) | ("track_video", ts, track,
#: cto, key, data)
Event = tuple[Any, ...]


def events_from_flv(flv: bytes, offset: int = 0) -> list[Event]:
    """The calls an RTMP session makes on a packager for this FLV (tag bodies as RTMP sends)."""
    events: list[Event] = []
    for tag in read_flv_tags(flv):
        body, ts = tag.body, tag.timestamp + offset
        if tag.kind == TAG_VIDEO and body[0] & 0x8F == 0x86:  # enhanced Multitrack, OneTrack
            ptype, track, data = body[1] & 0x0F, body[6], body[7:]
            key = (body[0] >> 4) & 7 == 1
            if ptype == 0:
                events.append(("track_config", ts, track, data, Codec.H264))
            elif ptype == 1:
                cto = int.from_bytes(data[:3], "big", signed=True)
                events.append(("track_video", ts, track, cto, key, data[3:]))
            elif ptype == 3:
                events.append(("track_video", ts, track, 0, key, data))
        elif tag.kind == TAG_VIDEO:
            if body[1] == 0:
                events.append(("video_config", ts, body[5:]))
            elif body[1] == 1:
                cto = int.from_bytes(body[2:5], "big", signed=True)
                events.append(("video", ts, cto, tag.is_keyframe, body[5:]))
        elif tag.kind == TAG_AUDIO:
            if body[1] == 0:
                events.append(("audio_config", ts, body[2:]))
            else:
                events.append(("audio", ts, body[2:]))
    return events


@functools.cache
def media(**kwargs: Any) -> tuple[Event, ...]:
    """Encoded once per parameter set: encoding is the slow part of these tests."""
    return tuple(events_from_flv(make_flv(**kwargs)))


def shift(events: tuple[Event, ...] | list[Event], offset: int) -> list[Event]:
    return [(e[0], e[1] + offset, *e[2:]) for e in events]


def feed(packager: Any, events: tuple[Event, ...] | list[Event]) -> None:
    for event in events:
        if event[0].startswith("track_"):  # (track, timestamp, ...) in the call
            getattr(packager, event[0])(event[2], event[1], *event[3:])
        else:
            getattr(packager, event[0])(*event[1:])


def feed_in_time(
    packager: Any, events: tuple[Event, ...] | list[Event], clock: FakeClock, speed: float = 1.0
) -> None:
    """Feed as a publisher sending `speed` times real time would: the clock moves to each
    event's time (from the first event's) before it is fed."""
    start, first = clock.now, events[0][1]
    for event in events:
        clock.now = max(clock.now, start + (event[1] - first) / 1000 / speed)
        getattr(packager, event[0])(*event[1:])


def span_ms(events: tuple[Event, ...] | list[Event]) -> int:
    """Media length as the packager sees it: first video keyframe (or first audio frame when
    there is no video) to the end of the last frame of the longer track."""
    video: list[int] = [e[1] for e in events if e[0] == "video"]
    audio: list[int] = [e[1] for e in events if e[0] == "audio"]
    start: int = next(e[1] for e in events if e[0] == "video" and e[3]) if video else audio[0]
    end = 0
    for times in (video, audio):
        times = [t for t in times if t >= start]
        if len(times) > 1:
            end = max(end, times[-1] + (times[-1] - times[-2]))
    return end - start


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Recorder:
    """`on_segment` callback that validates each playlist version as it is written."""

    def __init__(self, *, playlist_length: float | None = None) -> None:
        self.playlist_length = playlist_length
        self.service: HlsService | None = None
        self.events: list[SegmentWritten] = []
        self.histories: dict[str, PlaylistHistory] = {}
        self.failures: list[Exception] = []

    def __call__(self, event: SegmentWritten) -> None:
        # The service logs and swallows callback errors, so keep them for the test to see.
        self.events.append(event)
        try:
            playlist = self.check(event.name)
            # The segment just listed is complete on disk: whole transport packets, final name.
            assert self.service is not None
            newest = playlist.segments[-1]
            assert newest.sequence == event.sequence
            path = self.service.playlist_path(event.name).parent / newest.uri
            size = path.stat().st_size
            assert size == event.size and size % 188 == 0, f"{path} is not a whole segment"
        except Exception as exc:  # noqa: BLE001
            self.failures.append(exc)

    def check(self, name: str) -> MediaPlaylist:
        """Validate the playlist of `name` as it is on disk now."""
        assert self.service is not None
        text = self.service.playlist_path(name).read_text()
        history = self.histories.setdefault(
            name, PlaylistHistory(playlist_length=self.playlist_length)
        )
        return history.check(text)


@dataclass
class DecodedFmp4:
    video: int
    audio: int
    warnings: list[str]


def decode_fmp4(data: bytes) -> DecodedFmp4:
    """Decode an init segment followed by fragments; FFmpeg's warnings are kept."""
    level = av.logging.get_level()
    av.logging.set_level(av.logging.WARNING)
    video = audio = 0
    try:
        with av.logging.Capture(local=False) as logs, av.open(io.BytesIO(data)) as container:
            for frame in container.decode(*container.streams):
                video += isinstance(frame, av.VideoFrame)
                audio += isinstance(frame, av.AudioFrame)
    finally:
        av.logging.set_level(level)
    warnings = [text for lvl, _, text in logs if lvl <= av.logging.WARNING]
    return DecodedFmp4(video, audio, warnings)


@dataclass
class DecodedSegment:
    video_frames: int = 0
    audio_frames: int = 0
    first_video_key: bool | None = None
    size: tuple[int, int] | None = None
    video_pts: list[int] = field(default_factory=list)  # 90 kHz, unwrapped by the demuxer
    audio_pts: list[int] = field(default_factory=list)
    first_video_packet: bytes = b""
    first_audio_packet: bytes = b""
    errors: list[str] = field(default_factory=list)


def decode_segment(path: Path) -> DecodedSegment:
    """Decode one segment on its own, collecting FFmpeg's error messages."""
    result = DecodedSegment()
    level = av.logging.get_level()
    av.logging.set_level(av.logging.ERROR)
    try:
        with av.logging.Capture(local=False) as logs, av.open(str(path)) as container:
            for packet in container.demux():
                if packet.size == 0:
                    continue
                kind = packet.stream.type
                assert packet.pts is not None
                if kind == "video":
                    result.video_pts.append(packet.pts)
                    result.first_video_packet = result.first_video_packet or bytes(packet)
                else:
                    result.audio_pts.append(packet.pts)
                    result.first_audio_packet = result.first_audio_packet or bytes(packet)
                try:
                    frames = packet.decode()
                except av.FFmpegError as exc:
                    result.errors.append(f"decode: {exc}")
                    continue
                for frame in frames:
                    if isinstance(frame, av.VideoFrame):
                        if result.first_video_key is None:
                            result.first_video_key = frame.key_frame
                            result.size = (frame.width, frame.height)
                        result.video_frames += 1
                    else:
                        result.audio_frames += 1
            for stream in container.streams:
                for frame in stream.codec_context.decode(None):  # type: ignore[attr-defined]
                    if isinstance(frame, av.VideoFrame):
                        result.video_frames += 1
                    else:
                        result.audio_frames += 1
    finally:
        av.logging.set_level(level)
    result.errors += [
        f"{name}: {message}" for lvl, name, message in logs if lvl <= av.logging.ERROR
    ]
    return result


def nal_types(annexb: bytes) -> list[int]:
    """NAL unit types in an Annex-B byte stream, in order."""
    types = []
    i = annexb.find(b"\x00\x00\x01")
    while i >= 0:
        types.append(annexb[i + 3] & 0x1F)
        i = annexb.find(b"\x00\x00\x01", i + 3)
    return types


def encode_h264(
    width: int,
    height: int,
    *,
    profile: str = "high",
    pix_fmt: str = "yuv420p",
    x264_params: str = "",
    frames: int = 3,
) -> list[Event]:
    """A short H.264 stream with chosen coding tools, as packager calls (via an FLV muxer, so
    the config is a real AVCDecoderConfigurationRecord)."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="flv") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        options = {"profile": profile, "preset": "veryfast", "bf": "0"}
        if x264_params:
            options["x264-params"] = x264_params
        stream.codec_context.options = options
        for i in range(frames):
            pixels = np.full((height, width, 3), (i * 40) % 256, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 25)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return events_from_flv(buf.getvalue())
