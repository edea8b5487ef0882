"""Message payloads only the tests build or parse: the server never sends these, and reads
Set Peer Bandwidth from no one, so they have no place in rtmpd.rtmp.messages."""

from __future__ import annotations

import struct

from rtmpd.rtmp.errors import ProtocolError
from rtmpd.rtmp.messages import UserControlEvent

_U32 = struct.Struct(">I")
_PEER_BW = struct.Struct(">IB")
_UC_U32 = struct.Struct(">HI")
_UC_BUFLEN = struct.Struct(">HII")


def abort(csid: int) -> bytes:
    return _U32.pack(csid)


def parse_set_peer_bandwidth(payload: bytes | bytearray | memoryview) -> tuple[int, int]:
    if len(payload) < 5:
        raise ProtocolError(f"short Set Peer Bandwidth message ({len(payload)} bytes)")
    size, limit = _PEER_BW.unpack_from(payload)
    return int(size), int(limit)


def stream_eof(stream_id: int) -> bytes:
    return _UC_U32.pack(UserControlEvent.STREAM_EOF, stream_id & 0xFFFFFFFF)


def ping_request(timestamp: int) -> bytes:
    return _UC_U32.pack(UserControlEvent.PING_REQUEST, timestamp & 0xFFFFFFFF)


def set_buffer_length(stream_id: int, milliseconds: int) -> bytes:
    return _UC_BUFLEN.pack(UserControlEvent.SET_BUFFER_LENGTH, stream_id, milliseconds)
