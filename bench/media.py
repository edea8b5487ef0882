"""Benchmark media: synthetic H.264 (or HEVC, AV1: enhanced FLV) + AAC in FLV, encoded once
with PyAV and cached.

The picture is a panning noise texture with fresh per-frame grain on top, so the encoder cannot
compress it away and the stream really carries its nominal bitrate (libx264 in constant-rate
mode: bitrate = maxrate, a one-second VBV buffer). Keyframes come every `gop_seconds` exactly
(no scene-cut keyframes), as a streaming encoder is set up. Audio is AAC with noise under a
tone, for the same reason. Frames are made as yuv420p arrays directly: no colour conversion.

    python -m bench.media [--spec 720p30|1080p60] [--seconds S]
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

CACHE_DIR = Path(__file__).resolve().parent / ".cache"


@dataclass(frozen=True, slots=True)
class MediaSpec:
    width: int
    height: int
    fps: int
    seconds: float
    video_bitrate: int
    gop_seconds: float = 2.0
    audio_bitrate: int = 128_000
    sample_rate: int = 48_000
    preset: str = "veryfast"
    bframes: int = 0
    video: bool = True
    audio: bool = True
    codec: str = "h264"  # or "hevc" (libx265), "av1" (libsvtav1): enhanced RTMP
    #: More video tracks of the same pictures, (width, height, bitrate) each: FFmpeg's flv
    #: muxer writes them as enhanced RTMP multitrack video (OBS's multitrack video).
    renditions: tuple[tuple[int, int, int], ...] = ()

    @property
    def name(self) -> str:
        """File name that changes whenever any parameter does."""
        tracks = "" if self.video and self.audio else ("-vonly" if self.video else "-aonly")
        return (
            f"{self.width}x{self.height}p{self.fps}-{self.video_bitrate // 1000}k-"
            f"g{self.gop_seconds:g}-a{self.audio_bitrate // 1000}k{self.sample_rate // 1000}-"
            f"{self.seconds:g}s-{self.preset}{f'-b{self.bframes}' if self.bframes else ''}"
            f"{tracks}{'' if self.codec == 'h264' else '-' + self.codec}"
            f"{''.join(f'-mt{w}x{h}-{b // 1000}k' for w, h, b in self.renditions)}.flv"
        )


SPECS: dict[str, MediaSpec] = {
    "720p30": MediaSpec(1280, 720, 30, 60.0, 3_000_000),
    "1080p60": MediaSpec(1920, 1080, 60, 60.0, 6_000_000),
    "1080p60-bframes": MediaSpec(1920, 1080, 60, 60.0, 6_000_000, bframes=3),
    "720p30-hevc": MediaSpec(1280, 720, 30, 60.0, 3_000_000, codec="hevc"),
    "720p30-av1": MediaSpec(1280, 720, 30, 60.0, 3_000_000, codec="av1"),
    "720p30-multitrack": MediaSpec(
        1280, 720, 30, 60.0, 3_000_000, renditions=((640, 360, 1_000_000),)
    ),  # fmt: skip
    "720p30-video-only": MediaSpec(1280, 720, 30, 60.0, 3_000_000, audio=False),
    "audio-only": MediaSpec(1280, 720, 30, 60.0, 3_000_000, video=False),
}


def _texture(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Noise at a few scales, twice the frame in each direction, to pan across."""
    out = np.zeros((2 * height, 2 * width), dtype=np.float32)
    for scale, weight in ((1, 0.35), (4, 0.35), (16, 0.3)):
        small = rng.random((2 * height // scale + 1, 2 * width // scale + 1), dtype=np.float32)
        big = np.repeat(np.repeat(small, scale, axis=0), scale, axis=1)
        out += weight * big[: 2 * height, : 2 * width]
    return (out * 200 + 28).astype(np.uint8)


class _Pictures:
    """yuv420p frames: a panning texture plus grain drawn from a pool at random offsets."""

    def __init__(self, width: int, height: int, seed: int = 1) -> None:
        self.w, self.h = width, height
        self.rng = np.random.default_rng(seed)
        self.luma = _texture(height, width, self.rng)
        self.chroma = _texture(height // 2, width // 2, self.rng)
        self.grain = self.rng.integers(-10, 11, size=(height + 64, width + 64), dtype=np.int16)

    def frame(self, i: int) -> np.ndarray:
        h, w = self.h, self.w
        x, y = (7 * i) % w, (3 * i) % h
        luma = self.luma[y : y + h, x : x + w].astype(np.int16)
        gx, gy = self.rng.integers(0, 64, size=2)
        luma += self.grain[gy : gy + h, gx : gx + w]
        out = np.empty((h * 3 // 2, w), dtype=np.uint8)
        out[:h] = np.clip(luma, 0, 255)
        cy, cx = (i // 2) % (h // 2), (5 * i // 2) % (w // 2)
        u = self.chroma[cy : cy + h // 2, cx : cx + w // 2]
        v = self.chroma[h // 2 - cy : h - cy, w // 2 - cx : w - cx]
        # yuv420p as one plane: U then V, each h/4 rows of w (two chroma rows per row).
        out[h : h + h // 4] = u.reshape(h // 4, w)
        out[h + h // 4 :] = v.reshape(h // 4, w)
        return out


def encode_flv(spec: MediaSpec, path: Path) -> None:
    """Encode `spec` into an FLV file at `path` (written in place: callers rename)."""
    container = av.open(str(path), "w", format="flv")
    try:
        video = _video_stream(container, spec) if spec.video else None
        extra = [_video_stream(container, spec, w, h, b) for w, h, b in spec.renditions]
        audio = None
        if spec.audio:
            audio = container.add_stream("aac", rate=spec.sample_rate)
            audio.layout = "stereo"
            audio.bit_rate = spec.audio_bitrate
        pictures = _Pictures(spec.width, spec.height)
        frames = round(spec.seconds * spec.fps)
        sr = spec.sample_rate
        samples_total = round(spec.seconds * sr)
        arng = np.random.default_rng(2)
        apts = 0
        for i in range(frames):
            if video is not None:
                frame = av.VideoFrame.from_ndarray(pictures.frame(i), format="yuv420p")
                frame.pts, frame.time_base = i, Fraction(1, spec.fps)
                for packet in video.encode(frame):
                    container.mux(packet)
                for stream in extra:
                    scaled = frame.reformat(width=stream.width, height=stream.height)
                    scaled.pts, scaled.time_base = i, frame.time_base
                    for packet in stream.encode(scaled):
                        container.mux(packet)
            if audio is None:
                continue
            # audio up to the end of this video frame, 1024 samples at a time
            until = min(samples_total, round((i + 1) * sr / spec.fps))
            while apts + 1024 <= until or (i == frames - 1 and apts < samples_total):
                t = (apts + np.arange(1024)) / sr
                tone = 0.2 * np.sin(2 * np.pi * (220 + 110 * np.sin(t)) * t)
                noise = 0.05 * arng.standard_normal(1024)
                left = (tone + noise).astype(np.float32)
                right = (tone - noise).astype(np.float32)
                aframe = av.AudioFrame.from_ndarray(
                    np.stack([left, right]), format="fltp", layout="stereo"
                )
                aframe.sample_rate, aframe.pts, aframe.time_base = sr, apts, Fraction(1, sr)
                for packet in audio.encode(aframe):
                    container.mux(packet)
                apts += 1024
        for stream in (video, *extra, audio):
            for packet in stream.encode(None) if stream is not None else ():
                container.mux(packet)
    finally:
        container.close()


def _video_stream(container: av.container.OutputContainer, spec: MediaSpec, width: int = 0,
                  height: int = 0, bitrate: int = 0) -> av.VideoStream:  # fmt: skip
    encoder = {"h264": "libx264", "hevc": "libx265", "av1": "libsvtav1"}[spec.codec]
    video = container.add_stream(encoder, rate=spec.fps)
    video.width, video.height = width or spec.width, height or spec.height
    video.pix_fmt = "yuv420p"
    video.bit_rate = bitrate or spec.video_bitrate
    ctx = video.codec_context
    gop = round(spec.gop_seconds * spec.fps)
    ctx.gop_size = gop
    kbps = (bitrate or spec.video_bitrate) // 1000
    if spec.codec == "hevc":  # the same rate control and keyframes, as x265 spells them
        ctx.options = {
            "preset": spec.preset,
            "x265-params": (
                f"log-level=error:keyint={gop}:min-keyint={gop}:scenecut=0:bframes=0:"
                f"bitrate={kbps}:vbv-maxrate={kbps}:vbv-bufsize={kbps}:repeat-headers=0"
            ),
        }
        return video
    if spec.codec == "av1":  # SVT-AV1's real-time preset, CBR, a keyframe every GOP
        ctx.options = {
            "preset": "10",
            "svtav1-params": f"keyint={gop}:rc=1:scd=0",
        }
        return video
    ctx.options = {
        "preset": spec.preset,
        # zerolatency turns B-frames off; "film" keeps them when they are asked for
        "tune": "film" if spec.bframes else "zerolatency",
        "x264-params": (
            f"keyint={gop}:min-keyint={gop}:scenecut=0:bitrate={kbps}:"
            f"vbv-maxrate={kbps}:vbv-bufsize={kbps}:nal-hrd=cbr:force-cfr=1:"
            f"bframes={spec.bframes}"
        ),
    }
    return video


def ensure_media(spec: MediaSpec, cache_dir: Path = CACHE_DIR, *, quiet: bool = False) -> Path:
    """The cached FLV for `spec`, encoding it first when missing."""
    path = cache_dir / spec.name
    if path.exists():
        return path
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    started = time.monotonic()
    if not quiet:
        print(f"encoding {spec.name} ...", flush=True)
    try:
        encode_flv(spec, tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    if not quiet:
        size = path.stat().st_size
        print(
            f"encoded {spec.name}: {size / 1e6:.1f} MB, {size * 8 / spec.seconds / 1e6:.2f} Mb/s "
            f"in {time.monotonic() - started:.0f} s",
            flush=True,
        )
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.media", description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", choices=sorted(SPECS), default="720p30")
    parser.add_argument("--seconds", type=float, help="override the length")
    args = parser.parse_args(argv)
    spec = SPECS[args.spec]
    if args.seconds:
        spec = replace(spec, seconds=args.seconds)
    print(ensure_media(spec))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
