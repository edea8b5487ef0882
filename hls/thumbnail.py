"""A JPEG still from the latest keyframe (for channel pages), made with PyAV.

Decodes one keyframe with FFmpeg's decoder for its codec (h264, hevc, libdav1d for AV1, vp9),
scales it down and encodes it as MJPEG.
This costs a few milliseconds of CPU; callers that care run it in an executor.
"""

from __future__ import annotations

from fractions import Fraction
from typing import cast

import av
from av.video.codeccontext import VideoCodecContext


def keyframe_to_jpeg(
    avcc: bytes, keyframe: bytes, max_width: int = 320, decoder_name: str = "h264"
) -> bytes:
    """JPEG bytes of the picture in `keyframe` (a keyframe as RTMP brings it; `avcc` its
    decoder's extradata: avcC, hvcC, av1C, or nothing for VP9), no wider than `max_width`.
    Raises ValueError when the data does not decode to a picture."""
    if max_width < 16:
        raise ValueError("max_width must be at least 16")
    decoder = cast(VideoCodecContext, av.CodecContext.create(decoder_name, "r"))
    if avcc:
        decoder.extradata = bytes(avcc)
    try:
        frames = decoder.decode(av.Packet(bytes(keyframe)))
        frames += decoder.decode(None)
    except av.FFmpegError as exc:
        raise ValueError(f"keyframe does not decode: {exc}") from exc
    if not frames:
        raise ValueError("keyframe does not decode to a picture")
    frame = frames[0]
    width, height = frame.width, frame.height
    if width > max_width:
        height = max(2, round(height * max_width / width))
        width = max_width
    width -= width % 2
    height -= height % 2
    picture = frame.reformat(width=width, height=height, format="yuvj420p")
    encoder = av.CodecContext.create("mjpeg", "w")
    encoder.width = width
    encoder.height = height
    encoder.pix_fmt = "yuvj420p"
    encoder.time_base = Fraction(1, 25)
    packets = encoder.encode(picture)
    packets += encoder.encode(None)
    return b"".join(bytes(p) for p in packets)
