"""What a relayed media message is, read from its bytes alone: for media that comes from
another RTMP server (a sibling worker's stream pulled by `ClientSession.play`).

The server session tells a publisher's messages apart by the events it parsed of them
(ServerSession.tap, `RawMedia.kind` and `key`); a puller has only the message, so `classify`
reads the same FLV and enhanced RTMP headers and gives the same kind and key, which lets the
pulled stream go through the same fanout (GOP cache, one header per key) as a local publish.
"""

from __future__ import annotations

from typing import Any

from . import exheader, flv
from .amf_values import TypedObject
from .events import RawKind
from .messages import MessageType, parse_data

_VIDEO = MessageType.VIDEO.value
_AUDIO = MessageType.AUDIO.value
_V = exheader.VideoPacketType
_A = exheader.AudioPacketType
#: As ServerSession's header codes: VideoConfig, AudioConfig, AudioMultichannel, VideoMetadata.
_VIDEO_CONFIG, _AUDIO_CONFIG, _MULTICHANNEL, _VIDEO_METADATA = 1, 2, 3, 4

_Buf = bytes | bytearray | memoryview


def _header(key: int, code: int, track: int) -> int:
    return key * 131 + code * 17 + track


def classify(msg_type: int, payload: _Buf) -> tuple[RawKind, int] | None:
    """(kind, key) of an audio or video message as ServerSession.tap makes them; None for a
    message a publish would not relay (empty, an info frame). Raises ProtocolError for a
    header that does not parse."""
    if not payload:
        return None
    kind = RawKind.FRAME
    key = msg_type
    made = False
    b0 = payload[0]
    if msg_type == _VIDEO:
        if b0 & flv.EX_VIDEO_BIT:
            for p in exheader.parse_video(payload):
                ptype = p.packet_type
                if ptype == _V.CODED_FRAMES or ptype == _V.CODED_FRAMES_X:
                    made = True
                    if p.frame_type == 1 and kind is RawKind.FRAME:
                        kind = RawKind.KEYFRAME
                elif ptype == _V.SEQUENCE_START or ptype == _V.MPEG2TS_SEQUENCE_START:
                    made, kind = True, RawKind.HEADER
                    key = _header(key, _VIDEO_CONFIG, p.track)
                elif ptype == _V.SEQUENCE_END:
                    made, kind = True, RawKind.END
                elif ptype == _V.METADATA:
                    made, kind = True, RawKind.HEADER
                    key = _header(key, _VIDEO_METADATA, p.track)
            return (kind, key) if made else None
        tag = flv.parse_video(payload)
        if tag.is_config:
            return RawKind.HEADER, _header(key, _VIDEO_CONFIG, 0)
        if tag.is_end:
            return RawKind.END, key
        if tag.is_frame:
            return (RawKind.KEYFRAME if tag.frame_type == 1 else RawKind.FRAME), key
        return None
    if msg_type != _AUDIO:
        return None
    if b0 >> 4 == flv.EX_AUDIO_FORMAT:
        for a in exheader.parse_audio(payload):
            ptype = a.packet_type
            if ptype == _A.CODED_FRAMES:
                made = True
            elif ptype == _A.SEQUENCE_START:
                made, kind = True, RawKind.HEADER
                key = _header(key, _AUDIO_CONFIG, a.track)
            elif ptype == _A.SEQUENCE_END:
                made, kind = True, RawKind.END
            elif ptype == _A.MULTICHANNEL_CONFIG:
                made, kind = True, RawKind.HEADER
                key = _header(key, _MULTICHANNEL, a.track)
        return (kind, key) if made else None
    audio = flv.parse_audio(payload)
    if audio.packet_type == flv.AacPacketType.SEQUENCE_HEADER:
        return RawKind.HEADER, _header(key, _AUDIO_CONFIG, 0)
    if audio.packet_type is None or audio.packet_type == flv.AacPacketType.RAW:
        return RawKind.FRAME, key
    return None


def metadata(payload: _Buf) -> dict[str, Any] | None:
    """The values of an onMetaData data message (with or without @setDataFrame), else None."""
    values = parse_data(payload)
    if values and values[0] == "@setDataFrame":
        values = values[1:]
    if len(values) < 2 or values[0] != "onMetaData":
        return None
    meta = values[1]
    if isinstance(meta, TypedObject):
        meta = meta.properties
    return dict(meta) if isinstance(meta, dict) else None
