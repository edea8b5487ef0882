"""Codec parameters for the muxers, made from what the publisher sent: no decoding, no encoding.

PyAV has no setter for a mux-only stream's extradata, so a sequence header is wrapped in a
two-tag in-memory FLV and demuxed once per configuration; the stream's parameters (extradata
included) are then copied onto a stream of an output container that is never started, and the
demuxer is closed: it keeps FFmpeg's probing state (about 2 MiB a track), the copy next to
nothing for the rest of the publish. Muxers add their streams with `add_stream_from_template`.
MP3, AC-3 and E-AC-3 have no sequence header: their template is a bare stream of the right
sample rate, which is all the MPEG-TS muxer needs (MP3: stream type 0x03 for 32 kHz and up,
0x04 below; AC-3 0x81, E-AC-3 0x87).
"""

from __future__ import annotations

import io

import av
from av.stream import Stream

_FLV_HEADER = b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00"
_FLV_VIDEO, _FLV_AUDIO = 9, 8


def _flv_tag(kind: int, body: bytes) -> bytes:
    size = len(body)
    head = bytes([kind]) + size.to_bytes(3, "big") + bytes(7)
    return head + body + (11 + size).to_bytes(4, "big")


class Template:
    """Codec parameters (with extradata) for one track, ready to add to output containers.
    `config` is the sequence header it was made from, to spot repeats. A bare template (MP3)
    has no stream, only a codec name and a sample rate for `add_mux_stream`."""

    __slots__ = ("config", "stream", "kind", "codec", "rate", "_holder")

    def __init__(
        self,
        config: bytes,
        stream: Stream | None,
        holder: av.container.OutputContainer | None,
        kind: str,
        *,
        codec: str = "",
        rate: int = 0,
    ) -> None:
        self.config = config
        self.stream = stream
        self.kind = kind  # "video" or "audio"
        self.codec = codec
        self.rate = rate
        self._holder = holder  # the never-started container that owns `stream`


def video_template(avcc: bytes) -> Template:
    """Template for H.264 with this AVCDecoderConfigurationRecord; ValueError if FFmpeg balks."""
    return _from_flv(_FLV_VIDEO, b"\x17\x00\x00\x00\x00", avcc)


def audio_template(asc: bytes) -> Template:
    """Template for AAC with this AudioSpecificConfig; ValueError if FFmpeg balks."""
    return _from_flv(_FLV_AUDIO, b"\xaf\x00", asc)


def hevc_template(hvcc: bytes) -> Template:
    """Template for HEVC with this HEVCDecoderConfigurationRecord (in an enhanced RTMP tag:
    FFmpeg's flv demuxer reads those); ValueError if FFmpeg balks."""
    return _from_flv(_FLV_VIDEO, b"\x90hvc1", hvcc)


def mp3_template(sample_rate: int) -> Template:
    """Template for MPEG-1/2 Layer III audio at `sample_rate` Hz."""
    if not 8000 <= sample_rate <= 48000:
        raise ValueError(f"no MP3 at {sample_rate} Hz")
    return bare_audio_template("mp3", sample_rate)


def bare_audio_template(codec: str, sample_rate: int) -> Template:
    """Template for a codec whose frames carry their configuration (MP3, AC-3, E-AC-3): the
    MPEG-TS muxer needs only its name and rate."""
    return Template(b"", None, None, "audio", codec=codec, rate=sample_rate)


def _from_flv(kind: int, prefix: bytes, config: bytes) -> Template:
    data = _FLV_HEADER + _flv_tag(kind, prefix + config)
    try:
        container = av.open(io.BytesIO(data), "r", format="flv")
    except av.FFmpegError as exc:
        raise ValueError(f"FFmpeg refused the sequence header: {exc}") from exc
    with container:
        streams = container.streams.video if kind == _FLV_VIDEO else container.streams.audio
        if len(streams) != 1 or streams[0].codec_context is None:
            raise ValueError("FFmpeg found no stream in the sequence header")
        holder = av.open(io.BytesIO(), "w", format="mpegts")
        stream = holder.add_stream_from_template(streams[0], opaque=True)
    return Template(bytes(config), stream, holder, "video" if kind == _FLV_VIDEO else "audio")
