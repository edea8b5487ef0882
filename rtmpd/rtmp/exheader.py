"""Enhanced RTMP (v2) media headers: the ex video tag header and the ex audio tag header.

A video body whose first bit is set (isExVideoHeader) or an audio body with SoundFormat 9
(ExHeader) carries a packet type in its low nibble instead of a legacy codec id or sound
rate/size/type, then, after any ModEx prefixes, either a FourCC or a Multitrack header. One
message may carry several tracks (Multitrack: OneTrack, ManyTracks with one FourCC,
ManyTracksManyCodecs with one each); every track is parsed, and each becomes one packet here,
so the session makes one event per track. Track 0 is the default track.

ModEx carries modifiers of the packet that follows; the only one defined, TimestampOffsetNano,
is read (`nano_offset`) and otherwise unused: timestamps here are milliseconds. A ModEx of an
unknown type is skipped (its size says how far), as the spec intends. Reserved packet types and
multitrack types cannot be skipped safely (nothing says how the rest is laid out), so they are
a ProtocolError, as is every header that overruns its message: the controlled failure the spec
asks for. FourCCs are not checked here: an unknown one is passed on and named by whoever
drops it (rtmpd.rtmp.flv.codec_name).

CodedFrames of avc1, hvc1 and vvc1 start with an SI24 composition time offset; CodedFramesX
(those codecs only) has none, and no other codec ever carries one. A video Command frame (frame
type 5 with a packet type other than Metadata) carries one command byte and no video: nothing
to pass on.

Also here: the capabilities of enhanced connect (fourCcList, videoFourCcInfoMap,
audioFourCcInfoMap, capsEx) as the client states them, and what rtmpd answers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum, IntFlag
from typing import Any

from .amf_values import TypedObject
from .errors import ProtocolError
from .flv import EX_AUDIO_FORMAT, EX_VIDEO_BIT, fourcc

Buffer = bytes | bytearray | memoryview


class VideoPacketType(IntEnum):
    SEQUENCE_START = 0
    CODED_FRAMES = 1
    SEQUENCE_END = 2
    CODED_FRAMES_X = 3  # CodedFrames with an implied composition time of 0
    METADATA = 4  # AMF-encoded [name, value] pairs (colorInfo)
    MPEG2TS_SEQUENCE_START = 5  # AV1: a video descriptor instead of the configuration record
    MULTITRACK = 6
    MOD_EX = 7


class AudioPacketType(IntEnum):
    SEQUENCE_START = 0
    CODED_FRAMES = 1
    SEQUENCE_END = 2
    MULTICHANNEL_CONFIG = 4
    MULTITRACK = 5
    MOD_EX = 7


class AvMultitrackType(IntEnum):
    ONE_TRACK = 0
    MANY_TRACKS = 1
    MANY_TRACKS_MANY_CODECS = 2


class ModExType(IntEnum):
    TIMESTAMP_OFFSET_NANO = 0


class VideoFourCC(IntEnum):
    AVC = fourcc(b"avc1")
    HEVC = fourcc(b"hvc1")
    AV1 = fourcc(b"av01")
    VP9 = fourcc(b"vp09")
    VP8 = fourcc(b"vp08")
    VVC = fourcc(b"vvc1")


class AudioFourCC(IntEnum):
    OPUS = fourcc(b"Opus")
    FLAC = fourcc(b"fLaC")
    AC3 = fourcc(b"ac-3")
    EAC3 = fourcc(b"ec-3")
    AAC = fourcc(b"mp4a")
    MP3 = fourcc(b".mp3")


class AudioChannelOrder(IntEnum):
    UNSPECIFIED = 0  # only the channel count
    NATIVE = 1  # channels present as a mask (AudioChannelMask), in that order
    CUSTOM = 2  # one AudioChannel byte per channel, in bitstream order


class CapsEx(IntFlag):
    """connect's capsEx bits."""

    RECONNECT = 0x01
    MULTITRACK = 0x02
    MOD_EX = 0x04
    TIMESTAMP_NANO_OFFSET = 0x08


class FourCcInfo(IntFlag):
    """The flags of videoFourCcInfoMap / audioFourCcInfoMap entries."""

    CAN_DECODE = 0x01
    CAN_ENCODE = 0x02
    CAN_FORWARD = 0x04


#: Video codecs whose CodedFrames carry an SI24 composition time offset.
_CTS_CODECS = frozenset((VideoFourCC.AVC.value, VideoFourCC.HEVC.value, VideoFourCC.VVC.value))
_VIDEO_TYPES = frozenset(t.value for t in VideoPacketType)
_AUDIO_TYPES = frozenset(t.value for t in AudioPacketType)
_VIDEO_NESTED = (VideoPacketType.MULTITRACK.value, VideoPacketType.MOD_EX.value)
_AUDIO_NESTED = (AudioPacketType.MULTITRACK.value, AudioPacketType.MOD_EX.value)
_COMMAND_FRAME = 5


@dataclass(frozen=True, slots=True)
class ExVideo:
    """One track's share of an enhanced video message. `data` is what follows the header
    (after the composition time, for CodedFrames of avc1/hvc1/vvc1)."""

    packet_type: int
    frame_type: int
    fourcc: int
    track: int
    composition_offset: int
    data: memoryview
    nano_offset: int = 0


@dataclass(frozen=True, slots=True)
class ExAudio:
    """One track's share of an enhanced audio message; `data` follows the header."""

    packet_type: int
    fourcc: int
    track: int
    data: memoryview
    nano_offset: int = 0


@dataclass(frozen=True, slots=True)
class Multichannel:
    """An AudioPacketType.MultichannelConfig body: the channel order, the count, and either the
    speaker of each channel (CUSTOM) or the mask of the speakers present (NATIVE)."""

    order: int
    channel_count: int
    mapping: bytes = b""
    mask: int = 0


def _truncated(what: str) -> ProtocolError:
    return ProtocolError(f"truncated enhanced {what} header")


def _mod_ex(view: memoryview, pos: int, what: str) -> tuple[int, int, int, memoryview]:
    """One ModEx prefix at `pos`: (position after it, its type, the next packet type, data)."""
    n = len(view)
    if pos >= n:
        raise _truncated(what)
    size = view[pos] + 1
    pos += 1
    if size == 256:
        if pos + 2 > n:
            raise _truncated(what)
        size = ((view[pos] << 8) | view[pos + 1]) + 1
        pos += 2
    end = pos + size
    if end >= n:  # the data, then one byte of ModEx type and packet type
        raise _truncated(what)
    data = view[pos:end]
    b = view[end]
    return end + 1, b >> 4, b & 0x0F, data


def _mod_exes(view: memoryview, ptype: int, mod_ex: int, what: str) -> tuple[int, int, int]:
    """Every ModEx prefix from byte 1: (position after them, packet type, nano offset)."""
    pos = 1
    nano = 0
    while ptype == mod_ex:
        pos, kind, ptype, data = _mod_ex(view, pos, what)
        if kind == ModExType.TIMESTAMP_OFFSET_NANO:
            if len(data) < 3:
                raise ProtocolError("TimestampOffsetNano shorter than 3 bytes")
            nano = (data[0] << 16) | (data[1] << 8) | data[2]
    return pos, ptype, nano


def _u32(view: memoryview, pos: int, what: str) -> int:
    if pos + 4 > len(view):
        raise _truncated(what)
    return (view[pos] << 24) | (view[pos + 1] << 16) | (view[pos + 2] << 8) | view[pos + 3]


def _tracks(
    view: memoryview, pos: int, what: str, nested: tuple[int, int]
) -> tuple[int, list[tuple[int, int, int, int]]]:
    """A Multitrack header at `pos`: (the packet type of every track, [(fourcc, track, start,
    end) of each track's body]). `nested`: the packet types a track may not have (Multitrack
    and ModEx)."""
    n = len(view)
    if pos >= n:
        raise _truncated(what)
    b = view[pos]
    pos += 1
    mtype, ptype = b >> 4, b & 0x0F
    if mtype > AvMultitrackType.MANY_TRACKS_MANY_CODECS:
        raise ProtocolError(f"unknown multitrack type {mtype} in enhanced {what}")
    if ptype in nested:
        raise ProtocolError(f"enhanced {what} multitrack inside multitrack")
    shared = -1
    if mtype != AvMultitrackType.MANY_TRACKS_MANY_CODECS:
        shared = _u32(view, pos, what)
        pos += 4
    tracks: list[tuple[int, int, int, int]] = []
    while True:
        if shared < 0:
            code = _u32(view, pos, what)
            pos += 4
        else:
            code = shared
        if pos >= n:
            raise _truncated(what)
        track = view[pos]
        pos += 1
        if mtype == AvMultitrackType.ONE_TRACK:
            tracks.append((code, track, pos, n))
            break
        if pos + 3 > n:
            raise _truncated(what)
        end = pos + 3 + ((view[pos] << 16) | (view[pos + 1] << 8) | view[pos + 2])
        pos += 3
        if end > n:
            raise ProtocolError(f"enhanced {what} track overruns the message")
        tracks.append((code, track, pos, end))
        pos = end
        if pos >= n:
            break
    return ptype, tracks


def parse_video(body: Buffer) -> list[ExVideo]:
    """The packets of an enhanced video body (one per track; none for a command frame)."""
    view = memoryview(body)
    if len(view) < 1 or not view[0] & EX_VIDEO_BIT:
        raise ProtocolError("not an enhanced video header")
    b0 = view[0]
    frame_type = (b0 >> 4) & 0x07
    pos, ptype, nano = _mod_exes(view, b0 & 0x0F, VideoPacketType.MOD_EX, "video")
    if frame_type == _COMMAND_FRAME and ptype != VideoPacketType.METADATA:
        if pos >= len(view):
            raise _truncated("video")
        return []  # start/end of client-side seeking: no video in it
    if ptype == VideoPacketType.MULTITRACK:
        ptype, tracks = _tracks(view, pos, "video", _VIDEO_NESTED)
    else:
        tracks = [(_u32(view, pos, "video"), 0, pos + 4, len(view))]
    if ptype not in _VIDEO_TYPES:
        raise ProtocolError(f"unknown enhanced video packet type {ptype}")
    out = []
    for code, track, start, end in tracks:
        cts = 0
        if ptype == VideoPacketType.CODED_FRAMES and code in _CTS_CODECS:
            if start + 3 > end:
                raise _truncated("video")
            cts = (view[start] << 16) | (view[start + 1] << 8) | view[start + 2]
            if cts & 0x800000:
                cts -= 0x1000000
            start += 3
        out.append(ExVideo(ptype, frame_type, code, track, cts, view[start:end], nano))
    return out


def parse_audio(body: Buffer) -> list[ExAudio]:
    """The packets of an enhanced audio body (one per track)."""
    view = memoryview(body)
    if len(view) < 1 or view[0] >> 4 != EX_AUDIO_FORMAT:
        raise ProtocolError("not an enhanced audio header")
    pos, ptype, nano = _mod_exes(view, view[0] & 0x0F, AudioPacketType.MOD_EX, "audio")
    if ptype == AudioPacketType.MULTITRACK:
        ptype, tracks = _tracks(view, pos, "audio", _AUDIO_NESTED)
    else:
        tracks = [(_u32(view, pos, "audio"), 0, pos + 4, len(view))]
    if ptype not in _AUDIO_TYPES:
        raise ProtocolError(f"unknown enhanced audio packet type {ptype}")
    return [ExAudio(ptype, code, track, view[s:e], nano) for code, track, s, e in tracks]


def parse_multichannel(data: Buffer) -> Multichannel:
    """An AudioPacketType.MultichannelConfig body."""
    if len(data) < 2:
        raise ProtocolError("truncated multichannel configuration")
    order, count = data[0], data[1]
    if order == AudioChannelOrder.CUSTOM:
        if len(data) < 2 + count:
            raise ProtocolError("truncated multichannel channel mapping")
        return Multichannel(order, count, bytes(data[2 : 2 + count]))
    if order == AudioChannelOrder.NATIVE:
        if len(data) < 6:
            raise ProtocolError("truncated multichannel channel mask")
        return Multichannel(order, count, b"", int.from_bytes(bytes(data[2:6]), "big"))
    if order == AudioChannelOrder.UNSPECIFIED:
        return Multichannel(order, count)
    raise ProtocolError(f"unknown audio channel order {order}")


# --- connect ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClientCaps:
    """What an enhanced client says it supports in connect: FourCCs (from fourCcList and the
    keys of both info maps; "*" is any), the info maps' flags, and capsEx. A client that says
    nothing is a legacy client: all empty."""

    fourccs: frozenset[str] = frozenset()
    video: Mapping[str, int] | None = None
    audio: Mapping[str, int] | None = None
    caps_ex: int = 0

    @property
    def enhanced(self) -> bool:
        return (
            bool(self.fourccs)
            or self.video is not None
            or self.audio is not None
            or (self.caps_ex != 0)
        )

    @property
    def reconnect(self) -> bool:
        return bool(self.caps_ex & CapsEx.RECONNECT)


def _flags(value: Any) -> int | None:
    """A non-negative flag word from an AMF number (which decodes as a float), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 2**31:
        return None  # also NaN, which compares false
    return int(value)


def _info_map(value: Any) -> dict[str, int] | None:
    if isinstance(value, TypedObject):
        value = value.properties
    if not isinstance(value, dict):
        return None
    found = ((str(k)[:16], _flags(v)) for k, v in list(value.items())[:64])
    return {k: v for k, v in found if v is not None}


def parse_client_caps(obj: Mapping[str, Any]) -> ClientCaps:
    """The enhanced capabilities of a connect command object. Values of the wrong type are
    ignored (a client that gets them wrong is treated as not saying them), and everything is
    bounded: a hostile connect costs at most 64 entries per field."""
    listed = obj.get("fourCcList")
    names = (
        {v for v in listed[:64] if isinstance(v, str) and len(v) <= 16}
        if isinstance(listed, list)
        else set()
    )
    video = _info_map(obj.get("videoFourCcInfoMap"))
    audio = _info_map(obj.get("audioFourCcInfoMap"))
    for table in (video, audio):
        if table:
            names.update(table)
    return ClientCaps(frozenset(names), video, audio, _flags(obj.get("capsEx")) or 0)


#: What rtmpd takes at ingest: every codec it parses and passes on (what it packages into HLS
#: is the composition root's business, and grows without a change here). VP8 and VVC are not
#: among them: they are refused by name.
INGEST_VIDEO = (VideoFourCC.AVC, VideoFourCC.HEVC, VideoFourCC.AV1, VideoFourCC.VP9)
INGEST_AUDIO = (AudioFourCC.AAC, AudioFourCC.MP3, AudioFourCC.OPUS, AudioFourCC.FLAC,
                AudioFourCC.AC3, AudioFourCC.EAC3)  # fmt: skip
#: The capsEx rtmpd answers: it sends reconnect requests, parses multitrack (keeping every
#: track's packets apart) and ModEx.
SERVER_CAPS_EX = CapsEx.RECONNECT | CapsEx.MULTITRACK | CapsEx.MOD_EX


def _name(code: int) -> str:
    return code.to_bytes(4, "big").decode("ascii")


def server_caps() -> dict[str, Any]:
    """The enhanced properties of rtmpd's connect `_result` (the spec's "a server SHOULD state
    its support"): fourCcList for clients of the first enhanced RTMP, the info maps (CanForward:
    rtmpd passes media on without decoding it) and capsEx."""
    flag = float(FourCcInfo.CAN_FORWARD)
    video = [_name(c) for c in INGEST_VIDEO]
    audio = [_name(c) for c in INGEST_AUDIO]
    return {
        "fourCcList": video + audio,
        "videoFourCcInfoMap": dict.fromkeys(video, flag),
        "audioFourCcInfoMap": dict.fromkeys(audio, flag),
        "capsEx": float(SERVER_CAPS_EX),
    }
