"""A small AMF3 writer (no references) for the round-trip tests and the fuzz seeds.

rtmpd itself never sends AMF3, so the encoder lives with the tests rather than in the core.
"""

from __future__ import annotations

import struct
from typing import Any

from rtmpd.rtmp import amf3, limits
from rtmpd.rtmp.amf_values import UNDEFINED, Date, TypedObject, XmlDocument

_F64 = struct.Struct(">d")


def _u29(n: int) -> bytes:
    if n < 0 or n > 0x1FFFFFFF:
        raise ValueError(f"{n} does not fit in U29")
    if n < 0x80:
        return bytes((n,))
    if n < 0x4000:
        return bytes(((n >> 7) | 0x80, n & 0x7F))
    if n < 0x200000:
        return bytes(((n >> 14) | 0x80, ((n >> 7) & 0x7F) | 0x80, n & 0x7F))
    return bytes(((n >> 22) | 0x80, ((n >> 15) & 0x7F) | 0x80, ((n >> 8) & 0x7F) | 0x80, n & 0xFF))


def _str(out: bytearray, text: str) -> None:
    raw = text.encode()
    out += _u29((len(raw) << 1) | 1)
    out += raw


def _encode(out: bytearray, value: Any, depth: int) -> None:
    if depth > limits.MAX_AMF_DEPTH:
        raise ValueError(f"AMF3 value nested deeper than {limits.MAX_AMF_DEPTH}")
    depth += 1
    if value is UNDEFINED:
        out.append(amf3.UNDEFINED_M)
    elif value is None:
        out.append(amf3.NULL)
    elif isinstance(value, bool):
        out.append(amf3.TRUE if value else amf3.FALSE)
    elif isinstance(value, int) and -0x10000000 <= value <= 0x0FFFFFFF:
        out.append(amf3.INTEGER)
        out += _u29(value & 0x1FFFFFFF)
    elif isinstance(value, int | float):
        out.append(amf3.DOUBLE)
        out += _F64.pack(value)
    elif isinstance(value, str):
        out.append(amf3.STRING)
        _str(out, value)
    elif isinstance(value, bytes | bytearray):
        out.append(amf3.BYTE_ARRAY)
        out += _u29((len(value) << 1) | 1)
        out += value
    elif isinstance(value, Date):
        out.append(amf3.DATE)
        out += b"\x01" + _F64.pack(value.milliseconds)
    elif isinstance(value, XmlDocument):
        out.append(amf3.XML)
        _str(out, value.text)
    elif isinstance(value, list | tuple):
        out.append(amf3.ARRAY)
        out += _u29((len(value) << 1) | 1)
        out.append(0x01)  # no named keys
        for item in value:
            _encode(out, item, depth)
    elif isinstance(value, dict | TypedObject):
        props = value.properties if isinstance(value, TypedObject) else value
        out.append(amf3.OBJECT)
        out += b"\x0b"  # inline traits, dynamic, no sealed members
        _str(out, value.class_name if isinstance(value, TypedObject) else "")
        for key, item in props.items():
            if not key:
                raise ValueError("AMF3 dynamic member names must be non-empty")
            _str(out, str(key))
            _encode(out, item, depth)
        out.append(0x01)
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as AMF3")


def encode_amf3(value: Any) -> bytes:
    out = bytearray()
    _encode(out, value, 0)
    return bytes(out)
