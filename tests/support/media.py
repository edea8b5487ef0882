"""Test media made with PyAV (libx264 + aac), so no system ffmpeg is needed.

`make_flv` encodes a synthetic stream into an in-memory FLV file; `read_flv_tags` splits
such a file into its tags, whose bodies are exactly the payloads an RTMP publisher sends as
audio (type 8) and video (type 9) messages. `publish` pushes media to an RTMP URL with
FFmpeg's own RTMP client, through PyAV.
"""

from __future__ import annotations

import io
import struct
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import numpy as np

TAG_AUDIO = 8
TAG_VIDEO = 9
TAG_SCRIPT = 18


@dataclass(frozen=True, slots=True)
class FlvTag:
    kind: int
    timestamp: int
    body: bytes

    @property
    def is_keyframe(self) -> bool:
        return self.kind == TAG_VIDEO and (self.body[0] >> 4) == 1

    @property
    def is_sequence_header(self) -> bool:
        if self.kind == TAG_VIDEO:
            return (self.body[0] & 0x0F) == 7 and self.body[1] == 0
        if self.kind == TAG_AUDIO:
            return (self.body[0] >> 4) == 10 and self.body[1] == 0
        return False


def _frames(width: int, height: int, count: int) -> list[np.ndarray]:
    """Moving gradient frames: cheap to make, and they change so the encoder has work."""
    base = np.add.outer(np.arange(height, dtype=np.uint16), np.arange(width, dtype=np.uint16))
    frames = []
    for i in range(count):
        y = ((base + 4 * i) % 256).astype(np.uint8)
        rgb = np.stack([y, np.roll(y, i, axis=1), 255 - y], axis=-1)
        frames.append(rgb)
    return frames


def encode_into(
    container: av.container.OutputContainer,
    *,
    seconds: float = 4.0,
    fps: int = 25,
    width: int = 320,
    height: int = 240,
    gop: int | None = None,
    audio: bool = True,
    video: bool = True,
    sample_rate: int = 44100,
    bitrate: int = 300_000,
    video_codec: str = "libx264",
    audio_codec: str = "aac",
    channels: int = 2,
    bframes: int = 0,
    pace: float = 0.0,
    renditions: list[list[int]] | None = None,
) -> None:
    """Encode `seconds` of video (H.264 by default; libx265, libsvtav1, libvpx-vp9 too) and/or
    audio (AAC by default; libmp3lame, libopus, ac3, eac3, flac too) into an open output
    container and close it. With `pace`, frames go out at that many times real time (1.0 is
    real time), as an encoder would send them; 0 is as fast as they are made.

    `renditions`: more video streams of the same pictures, [width, height] or [width, height,
    gop] each, which FFmpeg's flv muxer writes as enhanced RTMP multitrack video (tracks 1, 2,
    ...; track 0 is the main stream), as OBS's multitrack video sends them."""
    gop = gop or fps
    started = time.monotonic()
    vstream = astream = None
    extra: list[Any] = []
    if video:
        vstream = _video_stream(container, video_codec, fps, width, height, bitrate, gop, bframes)
        for spec in renditions or ():
            w, h = spec[0], spec[1]
            rate = max(bitrate * w * h // (width * height), 50_000)
            extra.append(_video_stream(container, video_codec, fps, w, h, rate,
                                       spec[2] if len(spec) > 2 else gop, bframes))  # fmt: skip
    if audio:
        astream = container.add_stream(audio_codec, rate=sample_rate)
        astream.layout = "stereo" if channels == 2 else "mono"
        astream.bit_rate = 64_000
        astream.codec_context.open(strict=False)
    nframes = int(seconds * fps)
    samples_per_frame = (astream.codec_context.frame_size if astream else 0) or 1024
    nsamples_total = int(seconds * sample_rate)
    pending_audio = 0
    pictures = _frames(width, height, min(nframes, 50)) if video else []
    t = np.arange(samples_per_frame) / sample_rate
    apts = 0
    for i in range(max(nframes, 1) if video else 0):
        if pace:
            time.sleep(max(0.0, started + i / fps / pace - time.monotonic()))
        frame = av.VideoFrame.from_ndarray(pictures[i % len(pictures)], format="rgb24")
        frame.pts = i
        frame.time_base = Fraction(1, fps)
        for packet in vstream.encode(frame):  # type: ignore[union-attr]
            container.mux(packet)
        for stream in extra:
            scaled = frame.reformat(width=stream.width, height=stream.height)
            scaled.pts, scaled.time_base = i, frame.time_base
            for packet in stream.encode(scaled):
                container.mux(packet)
        if astream is not None:
            pending_audio += sample_rate / fps
            while pending_audio >= samples_per_frame and apts < nsamples_total:
                pending_audio -= samples_per_frame
                apts = _mux_audio(container, astream, apts, t, sample_rate)
    if astream is not None:
        while apts < nsamples_total:
            apts = _mux_audio(container, astream, apts, t, sample_rate)
        for packet in astream.encode(None):
            container.mux(packet)
    for stream in [vstream, *extra] if vstream is not None else ():
        for packet in stream.encode(None):
            container.mux(packet)
    container.close()


def _video_stream(container: Any, codec: str, fps: int, width: int, height: int, bitrate: int,
                  gop: int, bframes: int) -> Any:  # fmt: skip
    vstream = container.add_stream(codec, rate=fps)
    vstream.width = width
    vstream.height = height
    vstream.pix_fmt = "yuv420p"
    vstream.bit_rate = bitrate
    vstream.codec_context.gop_size = gop
    vstream.codec_context.options = _VIDEO_OPTIONS.get(codec, _x264(gop, bframes))
    return vstream


def _x264(gop: int, bframes: int) -> dict[str, str]:
    # zerolatency turns B-frames off: ask for them with a tune that keeps them.
    tune = "film" if bframes else "zerolatency"
    return {"preset": "ultrafast", "tune": tune, "keyint_min": str(gop), "sc_threshold": "0",
            "bf": str(bframes)}  # fmt: skip


_VIDEO_OPTIONS = {
    "libx265": {"preset": "ultrafast", "x265-params": "log-level=error:bframes=0:scenecut=0"},
    "libsvtav1": {"preset": "12"},
    "libvpx-vp9": {"deadline": "realtime", "cpu-used": "8"},
}


def _mux_audio(container, astream, apts: int, t: np.ndarray, sample_rate: int) -> int:
    tone = (0.2 * np.sin(2 * np.pi * 440 * (t + apts / sample_rate))).astype(np.float32)
    layout = astream.layout.name
    planes = np.stack([tone, tone]) if layout == "stereo" else tone.reshape(1, -1)
    aframe = av.AudioFrame.from_ndarray(planes, format="fltp", layout=layout)
    aframe.sample_rate = sample_rate
    aframe.pts = apts
    aframe.time_base = Fraction(1, sample_rate)
    for packet in astream.encode(aframe):
        container.mux(packet)
    return apts + len(t)


def make_flv(**kwargs: object) -> bytes:
    """An FLV file of generated media (see `encode_into` for the knobs)."""
    buf = io.BytesIO()
    container = av.open(buf, "w", format="flv")
    encode_into(container, **kwargs)  # type: ignore[arg-type]
    return buf.getvalue()


def read_flv_tags(data: bytes) -> list[FlvTag]:
    """Split an FLV file into tags (header and previous-tag-size fields skipped)."""
    if data[:3] != b"FLV":
        raise ValueError("not an FLV file")
    offset = struct.unpack_from(">I", data, 5)[0] + 4
    tags = []
    while offset + 11 <= len(data):
        kind = data[offset] & 0x1F
        size = int.from_bytes(data[offset + 1 : offset + 4], "big")
        ts = int.from_bytes(data[offset + 4 : offset + 7], "big") | (data[offset + 7] << 24)
        body = data[offset + 11 : offset + 11 + size]
        tags.append(FlvTag(kind, ts, body))
        offset += 11 + size + 4
    return tags


def publish(url: str, **kwargs: object) -> None:
    """Publish generated media to `url` (rtmp://...) flat out, with FFmpeg's RTMP client."""
    container = av.open(url, "w", format="flv")
    encode_into(container, **kwargs)  # type: ignore[arg-type]
