"""RTMP message types, protocol control / user control payloads, and command messages.

Builders return message payloads (bytes); the chunk writer adds headers. Parsers take a
payload and raise ProtocolError when it is too short or not what the type promises. Only what
rtmpd sends or reads is here; the tests build the rest themselves (tests/support/wire.py).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from . import amf0, limits
from .errors import ProtocolError

_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")
_PEER_BW = struct.Struct(">IB")
_UC_U32 = struct.Struct(">HI")
_UC_BUFLEN = struct.Struct(">HII")


class MessageType(IntEnum):
    SET_CHUNK_SIZE = 1
    ABORT = 2
    ACKNOWLEDGEMENT = 3
    USER_CONTROL = 4
    WINDOW_ACK_SIZE = 5
    SET_PEER_BANDWIDTH = 6
    AUDIO = 8
    VIDEO = 9
    DATA_AMF3 = 15
    SHARED_OBJECT_AMF3 = 16
    COMMAND_AMF3 = 17
    DATA_AMF0 = 18
    SHARED_OBJECT_AMF0 = 19
    COMMAND_AMF0 = 20
    AGGREGATE = 22


class UserControlEvent(IntEnum):
    STREAM_BEGIN = 0
    STREAM_EOF = 1
    STREAM_DRY = 2
    SET_BUFFER_LENGTH = 3
    STREAM_IS_RECORDED = 4
    PING_REQUEST = 6
    PING_RESPONSE = 7


class PeerBandwidthLimit(IntEnum):
    HARD = 0
    SOFT = 1
    DYNAMIC = 2


class ChunkStreamId(IntEnum):
    """The chunk streams we send on (peers may use any)."""

    CONTROL = 2
    COMMAND = 3
    DATA = 5
    AUDIO = 6
    VIDEO = 7


# --- protocol control -----------------------------------------------------------------------


def set_chunk_size(size: int) -> bytes:
    return _U32.pack(size & 0x7FFFFFFF)


def acknowledgement(sequence: int) -> bytes:
    """Sequence number = bytes received so far, modulo 2**32."""
    return _U32.pack(sequence & 0xFFFFFFFF)


def window_ack_size(size: int) -> bytes:
    return _U32.pack(size)


def set_peer_bandwidth(size: int, limit: PeerBandwidthLimit) -> bytes:
    return _PEER_BW.pack(size, limit)


def parse_u32(payload: bytes | bytearray | memoryview, what: str) -> int:
    """The 4-byte big-endian value of a Set Chunk Size / Ack / Window Ack Size message."""
    if len(payload) < 4:
        raise ProtocolError(f"short {what} message ({len(payload)} bytes)")
    return int(_U32.unpack_from(payload)[0])


# --- user control -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UserControl:
    """A parsed user control message; `value` is the stream id or ping timestamp."""

    event: int
    value: int
    buffer_length: int = 0


def _user_control(event: UserControlEvent, value: int) -> bytes:
    return _UC_U32.pack(event, value & 0xFFFFFFFF)


def stream_begin(stream_id: int) -> bytes:
    return _user_control(UserControlEvent.STREAM_BEGIN, stream_id)


def stream_eof(stream_id: int) -> bytes:
    return _user_control(UserControlEvent.STREAM_EOF, stream_id)


def ping_response(timestamp: int) -> bytes:
    return _user_control(UserControlEvent.PING_RESPONSE, timestamp)


def parse_user_control(payload: bytes | bytearray | memoryview) -> UserControl:
    if len(payload) < 2:
        raise ProtocolError("short user control message")
    (event,) = _U16.unpack_from(payload)
    if event == UserControlEvent.SET_BUFFER_LENGTH:
        if len(payload) < 10:
            raise ProtocolError("short Set Buffer Length message")
        _, value, buffer_length = _UC_BUFLEN.unpack_from(payload)
        return UserControl(event, value, buffer_length)
    if len(payload) < 6:
        # Unknown events may carry anything; the ones we act on carry 4 bytes.
        if event in (UserControlEvent.PING_REQUEST, UserControlEvent.STREAM_BEGIN):
            raise ProtocolError(f"short user control message (event {event})")
        return UserControl(event, 0)
    _, value = _UC_U32.unpack_from(payload)
    return UserControl(event, value)


# --- commands and data ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Command:
    """A command message: name, transaction id, command object, then any further arguments."""

    name: str
    transaction_id: float
    command_object: Any = None
    args: list[Any] = field(default_factory=list)


def _amf_payload(payload: bytes | bytearray | memoryview, amf3: bool) -> memoryview:
    if len(payload) > limits.MAX_COMMAND_SIZE:
        raise ProtocolError(f"command/data message of {len(payload)} bytes is too large")
    view = memoryview(payload)
    # AMF3 command/data messages start with a format byte (0) and then AMF0 values, which may
    # switch to AMF3 per value with the avmplus marker.
    if amf3 and len(view) and view[0] == 0:
        view = view[1:]
    return view


def parse_command(payload: bytes | bytearray | memoryview, *, amf3: bool = False) -> Command:
    values = amf0.decode_all(_amf_payload(payload, amf3))
    if len(values) < 2:
        raise ProtocolError("command message without name and transaction id")
    name, tid = values[0], values[1]
    if not isinstance(name, str):
        raise ProtocolError("command name is not a string")
    if isinstance(tid, bool) or not isinstance(tid, int | float):
        raise ProtocolError("command transaction id is not a number")
    obj = values[2] if len(values) > 2 else None
    return Command(name, float(tid), obj, values[3:])


def encode_command(
    name: str, transaction_id: float, command_object: Any = None, *args: Any
) -> bytes:
    return amf0.encode_all(name, float(transaction_id), command_object, *args)


def parse_data(payload: bytes | bytearray | memoryview, *, amf3: bool = False) -> list[Any]:
    """The AMF values of a data message (@setDataFrame, onMetaData, ...)."""
    return amf0.decode_all(_amf_payload(payload, amf3))


def encode_data(*values: Any) -> bytes:
    return amf0.encode_all(*values)


#: The onStatus code of enhanced RTMP v2's reconnect request (on stream 0, level status).
RECONNECT_REQUEST = "NetConnection.Connect.ReconnectRequest"


def status_info(level: str, code: str, description: str, **extra: Any) -> dict[str, Any]:
    """The info object of onStatus / _result / _error."""
    info: dict[str, Any] = {"level": level, "code": code, "description": description}
    info.update(extra)
    return info
