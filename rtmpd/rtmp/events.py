"""Events a ServerSession hands to the socket layer (see docs/architecture.md).

Frozen and slotted: safe to pass around. Media timestamps are milliseconds, already unwrapped
past 32 bits. Media payloads may be memoryviews into the message buffer (no copy);
configurations are bytes.

Media events say their codec as `codec_id`: the legacy FLV id (7 H.264, 10 AAC, 2 MP3, ...)
or, for enhanced RTMP, the FourCC as a 32-bit int (rtmpd.rtmp.exheader.VideoFourCC and
AudioFourCC; rtmpd.rtmp.flv.codec_name names either). `track` is the enhanced multitrack id;
0, the default track, for everything else. Configuration events carry the record as sent and
what rtmpd.rtmp.records could read of it (`record`, None when there is none or it does not
parse: whether a record is usable is the packager's call).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, TypeVar

from .exheader import ClientCaps, Multichannel
from .records import AudioRecord, VideoRecord

Payload = bytes | bytearray | memoryview
_T = TypeVar("_T")


def _quick_init(cls: type[_T]) -> type[_T]:
    """The same __init__ with the setter bound once. A frozen dataclass's generated __init__
    looks object.__setattr__ up again for every field, which is a third of what making a media
    event costs, and one is made per message. Only for frozen slotted dataclasses whose
    defaults are plain constants (checked)."""
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    params = []
    for f in fields:
        if f.default is dataclasses.MISSING:
            params.append(f.name)
        else:
            assert isinstance(f.default, int | str | None), f.name
            params.append(f"{f.name}={f.default!r}")
    body = "".join(f"        _set(self, {f.name!r}, {f.name})\n" for f in fields)
    signature = ", ".join(params)
    source = f"def make(_set):\n    def __init__(self, {signature}):\n{body}    return __init__\n"
    namespace: dict[str, Any] = {}
    exec(source, {}, namespace)  # noqa: S102 - our own field names, checked above
    init = namespace["make"](object.__setattr__)
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    cls.__init__ = init  # type: ignore[method-assign]
    return cls


@dataclass(frozen=True, slots=True)
class Connect:
    app: str
    tc_url: str
    flashver: str
    swf_url: str
    page_url: str
    object_encoding: int
    properties: dict[str, Any] = field(default_factory=dict)
    #: What an enhanced RTMP client said it supports (empty for a legacy client).
    caps: ClientCaps = ClientCaps()


@dataclass(frozen=True, slots=True)
class PublishRequest:
    """Answer with ServerSession.accept_publish / reject_publish. `name` is the stream key."""

    stream_id: int
    name: str
    query: str
    publish_type: str


@dataclass(frozen=True, slots=True)
class PlayRequest:
    """Answer with ServerSession.accept_play / reject_play. `name` is what the player asked
    for (rtmpd plays public names only), `query` what followed a "?" in it."""

    stream_id: int
    name: str
    query: str = ""
    start: float = -2.0  # as the play command says: -2 live or recorded, -1 live, else seconds
    duration: float = -1.0
    reset: bool = False


@dataclass(frozen=True, slots=True)
class PlayEnd:
    """Sent exactly once for every accepted play, whatever ended it."""

    stream_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class Metadata:
    stream_id: int
    values: dict[str, Any]


@dataclass(frozen=True, slots=True)
class VideoConfig:
    """A video sequence start: AVCDecoderConfigurationRecord (7, avc1),
    HEVCDecoderConfigurationRecord (hvc1), AV1CodecConfigurationRecord (av01),
    VPCodecConfigurationRecord (vp09, vp08). With `ts_descriptor` (MPEG2TSSequenceStart), data
    is AV1's MPEG-2 TS video descriptor instead of its record."""

    stream_id: int
    timestamp: int
    codec_id: int
    data: bytes
    track: int = 0
    record: VideoRecord | None = None
    ts_descriptor: bool = False


@_quick_init
@dataclass(frozen=True, slots=True)
class Video:
    """One coded frame. data: length-prefixed NAL units for H.264/HEVC/VVC (after the
    composition time), OBUs of one temporal unit for AV1, a frame for VP8/VP9, the body after
    the header for legacy codecs. frame_type is the FLV VideoFrameType (1 key, 2 inter,
    3 disposable inter, 4 generated key); `keyframe` is frame_type 1."""

    stream_id: int
    timestamp: int
    codec_id: int
    keyframe: bool
    composition_offset: int
    data: Payload
    frame_type: int
    track: int = 0


@dataclass(frozen=True, slots=True)
class AudioConfig:
    """An audio sequence start: AudioSpecificConfig (10, mp4a), the Opus ID header, FLAC's
    "fLaC" and metadata blocks (or FFmpeg's bare STREAMINFO); empty for AC-3, E-AC-3 and MP3
    (their frames carry their sync headers)."""

    stream_id: int
    timestamp: int
    codec_id: int
    data: bytes
    track: int = 0
    record: AudioRecord | None = None


@_quick_init
@dataclass(frozen=True, slots=True)
class Audio:
    """One coded audio packet: the raw frame after the header. sound_rate in Hz, sound_size in
    bits, channels 1 or 2 as a legacy FLV header says (for AAC the AudioSpecificConfig is
    authoritative); 0 for enhanced RTMP, whose header has no such fields (see the config)."""

    stream_id: int
    timestamp: int
    codec_id: int
    sound_rate: int
    sound_size: int
    channels: int
    data: Payload
    track: int = 0


@dataclass(frozen=True, slots=True)
class AudioMultichannel:
    """Enhanced RTMP's MultichannelConfig: the speaker layout, for codecs whose stream does
    not say it."""

    stream_id: int
    timestamp: int
    codec_id: int
    config: Multichannel
    track: int = 0


@dataclass(frozen=True, slots=True)
class SequenceEnd:
    """The end of a track's sequence (legacy AVC end of sequence, enhanced SequenceEnd)."""

    stream_id: int
    timestamp: int
    codec_id: int
    video: bool
    track: int = 0


@dataclass(frozen=True, slots=True)
class VideoMetadata:
    """Enhanced RTMP's video Metadata packet: AMF [name, value] pairs, in the video timeline
    (today "colorInfo", HDR colour information, which applies from the next frame on)."""

    stream_id: int
    timestamp: int
    codec_id: int
    values: dict[str, Any]
    track: int = 0


class RawKind(IntEnum):
    """What a relayed media message is to someone joining a stream: a header (a codec
    configuration, kept and sent first), a keyframe (where a joiner may start), a frame, or the
    end of a track's sequence."""

    FRAME = 0
    KEYFRAME = 1
    HEADER = 2
    END = 3


@_quick_init
@dataclass(frozen=True, slots=True)
class RawMedia:
    """One audio or video message exactly as the publisher sent it (the FLV tag body, legacy
    or enhanced), after its parsed events, for streams the caller asked to tap
    (ServerSession.tap): what relays and players get. `key` tells headers apart (message type
    and tracks), so that one per key is kept for late joiners."""

    stream_id: int
    msg_type: int
    timestamp: int
    payload: Payload
    kind: int
    key: int = 0


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


@dataclass(frozen=True, slots=True)
class ProtocolWarning:
    """Something the peer sent that could not be understood and was ignored; the session goes
    on (a ProtocolViolation ends it)."""

    reason: str


Event = (
    Connect
    | PublishRequest
    | PlayRequest
    | PlayEnd
    | RawMedia
    | Metadata
    | VideoConfig
    | Video
    | AudioConfig
    | Audio
    | AudioMultichannel
    | SequenceEnd
    | VideoMetadata
    | PublishEnd
    | ProtocolViolation
    | ProtocolWarning
    | TimedOut
)
