"""Events a ServerSession hands to the socket layer (see docs/architecture.md).

Frozen and slotted: cheap to make on the media hot path and safe to pass around. Media
timestamps are milliseconds, already unwrapped past 32 bits. Media payloads may be memoryviews
into the message buffer (no copy); configurations are bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Payload = bytes | bytearray | memoryview


@dataclass(frozen=True, slots=True)
class Connect:
    app: str
    tc_url: str
    flashver: str
    swf_url: str
    page_url: str
    object_encoding: int
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PublishRequest:
    """Answer with ServerSession.accept_publish / reject_publish. `name` is the stream key."""

    stream_id: int
    name: str
    query: str
    publish_type: str


@dataclass(frozen=True, slots=True)
class PlayRequest:
    stream_id: int
    name: str


@dataclass(frozen=True, slots=True)
class Metadata:
    stream_id: int
    values: dict[str, Any]


@dataclass(frozen=True, slots=True)
class VideoConfig:
    """codec_id 7 = AVC (data is an AVCDecoderConfigurationRecord); enhanced RTMP passes the
    FourCC as an int."""

    stream_id: int
    timestamp: int
    codec_id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Video:
    """data: AVCC NAL units after the 5-byte header for AVC; the body after the 1-byte header
    for other codecs."""

    stream_id: int
    timestamp: int
    codec_id: int
    keyframe: bool
    composition_offset: int
    data: Payload


@dataclass(frozen=True, slots=True)
class AudioConfig:
    """codec_id 10 = AAC (data is an AudioSpecificConfig)."""

    stream_id: int
    timestamp: int
    codec_id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Audio:
    """sound_rate in Hz, sound_size in bits, channels 1 or 2 (as the FLV header says; for AAC
    the AudioSpecificConfig is authoritative). data: the raw frame after the header."""

    stream_id: int
    timestamp: int
    codec_id: int
    sound_rate: int
    sound_size: int
    channels: int
    data: Payload


@dataclass(frozen=True, slots=True)
class PublishEnd:
    """Sent exactly once for every accepted publish, whatever ended it."""

    stream_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class ProtocolViolation:
    reason: str


@dataclass(frozen=True, slots=True)
class TimedOut:
    reason: str


Event = (
    Connect
    | PublishRequest
    | PlayRequest
    | Metadata
    | VideoConfig
    | Video
    | AudioConfig
    | Audio
    | PublishEnd
    | ProtocolViolation
    | TimedOut
)
