"""One MPEG-TS segment file, muxed by FFmpeg through PyAV: no decoding, no re-encoding.

Packets go in as they arrive: the AVCC-framed H.264 and raw AAC payloads, timestamps in
milliseconds. FFmpeg's mpegts muxer does the format work: it inserts `h264_mp4toannexb`
(AVCC -> Annex-B, SPS/PPS in front of every IDR from the extradata), access unit delimiters,
and ADTS headers for AAC from the AudioSpecificConfig; it writes PAT/PMT at the start of each
file. A muxer per segment keeps every segment decodable on its own. Timestamps are passed
through absolute: the mpegts muxer writes stream milliseconds x 90 modulo 2^33, so segment N+1
starts exactly where N ended and a stream past 26.5 hours wraps the way MPEG-TS players expect.

Streams are created from a template: PyAV has no setter for a mux-only stream's extradata, so
the sequence header is wrapped in a two-tag in-memory FLV and demuxed once per configuration;
`add_stream_from_template` then copies codec parameters (extradata included) without opening
any codec.
"""

from __future__ import annotations

import contextlib
import io
import os
from fractions import Fraction
from pathlib import Path

import av
from av.stream import Stream

TIME_BASE = Fraction(1, 1000)
# Bound what FFmpeg's interleaving queue holds when a declared track goes silent (default 10 s).
_OPTIONS = {"max_interleave_delta": "1000000"}
_FLV_HEADER = b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00"


def _flv_tag(kind: int, body: bytes) -> bytes:
    size = len(body)
    head = bytes([kind]) + size.to_bytes(3, "big") + bytes(7)
    return head + body + (11 + size).to_bytes(4, "big")


class Template:
    """Codec parameters (with extradata) for one track, ready to add to output containers."""

    __slots__ = ("config", "stream", "_holder")

    def __init__(self, config: bytes, stream: Stream, holder: av.container.OutputContainer) -> None:
        self.config = config
        self.stream = stream
        self._holder = holder  # the never-started container that owns `stream`


def video_template(avcc: bytes) -> Template:
    """Template for H.264 with this AVCDecoderConfigurationRecord; ValueError if FFmpeg balks."""
    return _template(9, b"\x17\x00\x00\x00\x00", avcc)


def audio_template(asc: bytes) -> Template:
    """Template for AAC with this AudioSpecificConfig; ValueError if FFmpeg balks."""
    return _template(8, b"\xaf\x00", asc)


def _template(kind: int, prefix: bytes, config: bytes) -> Template:
    """Demux the sequence header once, then copy its parameters onto a stream of an output
    container that is never started, and close the demuxer: the demuxer keeps FFmpeg's probing
    state (about 2 MiB a track), the copy costs next to nothing for the rest of the publish."""
    data = _FLV_HEADER + _flv_tag(kind, prefix + config)
    try:
        container = av.open(io.BytesIO(data), "r", format="flv")
    except av.FFmpegError as exc:
        raise ValueError(f"FFmpeg refused the sequence header: {exc}") from exc
    with container:
        streams = container.streams.video if kind == 9 else container.streams.audio
        if len(streams) != 1 or streams[0].codec_context is None:
            raise ValueError("FFmpeg found no stream in the sequence header")
        holder = av.open(io.BytesIO(), "w", format="mpegts")
        stream = holder.add_stream_from_template(streams[0], opaque=True)
    return Template(bytes(config), stream, holder)


class SegmentMuxer:
    """Writes one segment to `path` as packets come. Disk errors raise OSError (FFmpeg's carry
    errno), malformed payloads raise av.FFmpegError; either way the caller decides what is lost."""

    __slots__ = ("path", "_out", "_video", "_audio", "_last_video", "_last_audio", "_mux")

    def __init__(self, path: Path, video: Template | None, audio: Template | None) -> None:
        if video is None and audio is None:
            raise ValueError("a segment needs at least one track")
        self.path = path
        self._out = av.open("file:" + os.fspath(path), "w", format="mpegts", options=_OPTIONS)
        try:
            self._video = self._add(video)
            self._audio = self._add(audio)
            self._out.start_encoding()  # opens the file now, so open errors surface here
        except BaseException:
            self.abort()
            raise
        self._last_video = -(1 << 62)
        self._last_audio = -(1 << 62)
        self._mux = self._out.mux_one

    def _add(self, template: Template | None) -> Stream | None:
        if template is None:
            return None
        stream = self._out.add_stream_from_template(template.stream, opaque=True)
        stream.time_base = TIME_BASE
        return stream

    def video(self, dts: int, pts: int, keyframe: bool, data: bytes) -> None:
        if self._video is None:
            return  # the track appeared after this segment started
        # FFmpeg refuses a DTS that does not increase; the segmenter lets small jitter through.
        if dts <= self._last_video:
            dts = self._last_video + 1
        self._last_video = dts
        packet = av.Packet(data)
        packet.stream = self._video
        packet.time_base = TIME_BASE
        packet.dts = dts
        packet.pts = pts if pts >= dts else dts
        if keyframe:
            packet.is_keyframe = True
        self._mux(packet)

    def audio(self, ts: int, data: bytes) -> None:
        if self._audio is None:
            return
        if ts <= self._last_audio:
            ts = self._last_audio + 1
        self._last_audio = ts
        packet = av.Packet(data)
        packet.stream = self._audio
        packet.time_base = TIME_BASE
        packet.dts = ts
        packet.pts = ts
        self._mux(packet)

    def close(self) -> int:
        """Flush the interleaving queue and the trailer; returns the file size in bytes."""
        self._out.close()
        return os.stat(self.path).st_size

    def abort(self) -> None:
        """Give up on this segment: close quietly and remove the partial file."""
        with contextlib.suppress(OSError, av.FFmpegError):
            self._out.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)
