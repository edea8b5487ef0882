"""HLS packaging: pure segmenting and playlist decisions, the PyAV muxer, storage on disk.

Takes ints, bytes and paths only: it never imports the RTMP core, auth or web.
"""

from .config import Format, HlsConfig, Naming
from .model import CODEC_NAMES, Bound, Codec, Keyframe, SegmentWritten, StreamInfo, Violation
from .packager import StreamPackager
from .service import HlsService
from .thumbnail import keyframe_to_jpeg

__all__ = [
    "CODEC_NAMES",
    "Bound",
    "Codec",
    "Format",
    "HlsConfig",
    "HlsService",
    "Keyframe",
    "Naming",
    "SegmentWritten",
    "StreamInfo",
    "StreamPackager",
    "Violation",
    "keyframe_to_jpeg",
]
