"""AMF0: the value encoding of RTMP command and data messages.

Mapping: number <-> float (ints encode as numbers), boolean <-> bool, string/long string <->
str, object <-> dict, ECMA array <-> EcmaArray (a dict), strict array <-> list, null <-> None,
undefined <-> UNDEFINED, unsupported <-> UNSUPPORTED, date <-> Date, XML document <->
XmlDocument, typed object <-> TypedObject (those types live in amf_values, shared with AMF3, and
are re-exported here). References resolve to the same Python object; a reference to an object
still being decoded (a cycle) is refused. The avmplus marker (0x11) switches one value to AMF3
(see amf3.py). Everything a peer sends is bounded: nesting depth,
string lengths, counts that cannot exceed the bytes left; truncation is a ProtocolError.
"""

from __future__ import annotations

import struct
from enum import IntEnum
from typing import Any

from . import amf3, limits
from .amf_values import UNDEFINED as UNDEFINED
from .amf_values import UNSUPPORTED as UNSUPPORTED
from .amf_values import Date as Date
from .amf_values import EcmaArray as EcmaArray
from .amf_values import TypedObject as TypedObject
from .amf_values import XmlDocument as XmlDocument
from .errors import ProtocolError

_F64 = struct.Struct(">d")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_DATE = struct.Struct(">dh")

Buffer = bytes | bytearray | memoryview


class Marker(IntEnum):
    NUMBER = 0x00
    BOOLEAN = 0x01
    STRING = 0x02
    OBJECT = 0x03
    MOVIECLIP = 0x04
    NULL = 0x05
    UNDEFINED = 0x06
    REFERENCE = 0x07
    ECMA_ARRAY = 0x08
    OBJECT_END = 0x09
    STRICT_ARRAY = 0x0A
    DATE = 0x0B
    LONG_STRING = 0x0C
    UNSUPPORTED = 0x0D
    RECORDSET = 0x0E
    XML_DOCUMENT = 0x0F
    TYPED_OBJECT = 0x10
    AVMPLUS = 0x11


# --- decoding ---------------------------------------------------------------------------------


class Decoder:
    """Decodes AMF0 values from `data` starting at `pos`; one reference table per message."""

    __slots__ = ("data", "pos", "refs", "_open")

    def __init__(self, data: Buffer, pos: int = 0) -> None:
        self.data = memoryview(data)
        self.pos = pos
        self.refs: list[Any] = []
        self._open: set[int] = set()  # reference indexes of containers being decoded

    def at_end(self) -> bool:
        return self.pos >= len(self.data)

    def _need(self, n: int) -> int:
        pos = self.pos
        if pos + n > len(self.data):
            raise ProtocolError("truncated AMF0 value")
        self.pos = pos + n
        return pos

    def _u16(self) -> int:
        return int(_U16.unpack_from(self.data, self._need(2))[0])

    def _u32(self) -> int:
        return int(_U32.unpack_from(self.data, self._need(4))[0])

    def _text(self, n: int) -> str:
        if n > limits.MAX_AMF_STRING:
            raise ProtocolError(f"AMF0 string of {n} bytes exceeds {limits.MAX_AMF_STRING}")
        pos = self._need(n)
        try:
            return str(self.data[pos : pos + n], "utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError("AMF0 string is not valid UTF-8") from exc

    def read_value(self, depth: int = 0) -> Any:
        marker = self.data[self._need(1)]
        if marker == Marker.NUMBER:
            return _F64.unpack_from(self.data, self._need(8))[0]
        if marker == Marker.BOOLEAN:
            return self.data[self._need(1)] != 0
        if marker == Marker.STRING:
            return self._text(self._u16())
        if marker == Marker.NULL:
            return None
        if marker == Marker.UNDEFINED:
            return UNDEFINED
        if marker in (Marker.OBJECT, Marker.ECMA_ARRAY, Marker.TYPED_OBJECT):
            return self._read_object(marker, depth)
        if marker == Marker.STRICT_ARRAY:
            return self._read_strict_array(depth)
        if marker == Marker.REFERENCE:
            index = self._u16()
            if index >= len(self.refs):
                raise ProtocolError(f"AMF0 reference {index} to an unknown object")
            if index in self._open:
                raise ProtocolError("AMF0 reference cycle")
            return self.refs[index]
        if marker == Marker.DATE:
            ms, tz = _DATE.unpack_from(self.data, self._need(10))
            return Date(ms, tz)
        if marker == Marker.LONG_STRING:
            return self._text(self._u32())
        if marker == Marker.UNSUPPORTED:
            return UNSUPPORTED
        if marker == Marker.XML_DOCUMENT:
            return XmlDocument(self._text(self._u32()))
        if marker == Marker.AVMPLUS:
            value, self.pos = amf3.decode(self.data, self.pos, depth)
            return value
        if marker == Marker.OBJECT_END:
            raise ProtocolError("AMF0 object end marker outside an object")
        raise ProtocolError(f"unsupported AMF0 marker 0x{marker:02x}")

    def _enter(self, depth: int) -> int:
        if depth >= limits.MAX_AMF_DEPTH:
            raise ProtocolError(f"AMF0 nesting deeper than {limits.MAX_AMF_DEPTH}")
        return depth + 1

    def _read_object(self, marker: int, depth: int) -> Any:
        depth = self._enter(depth)
        result: Any
        props: dict[str, Any]
        if marker == Marker.TYPED_OBJECT:
            class_name = self._text(self._u16())
            props = {}
            result = TypedObject(class_name, props)
        elif marker == Marker.ECMA_ARRAY:
            self._u32()  # the count is only a hint; the end marker is authoritative
            result = props = EcmaArray()
        else:
            result = props = {}
        index = len(self.refs)
        self.refs.append(result)
        self._open.add(index)
        while True:
            key = self._text(self._u16())
            if self.pos < len(self.data) and self.data[self.pos] == Marker.OBJECT_END:
                self.pos += 1
                if key:
                    raise ProtocolError("AMF0 object end marker after a non-empty key")
                break
            props[key] = self.read_value(depth)
        self._open.discard(index)
        return result

    def _read_strict_array(self, depth: int) -> list[Any]:
        depth = self._enter(depth)
        count = self._u32()
        if count > len(self.data) - self.pos:  # every value takes at least one byte
            raise ProtocolError(f"AMF0 strict array claims {count} items, too few bytes left")
        items: list[Any] = []
        index = len(self.refs)
        self.refs.append(items)
        self._open.add(index)
        for _ in range(count):
            items.append(self.read_value(depth))
        self._open.discard(index)
        return items


def decode(data: Buffer, pos: int = 0) -> tuple[Any, int]:
    """One value from data[pos:]; returns (value, position after it)."""
    dec = Decoder(data, pos)
    value = dec.read_value()
    return value, dec.pos


def decode_all(data: Buffer) -> list[Any]:
    """Every value in `data` (a command or data message body), sharing one reference table."""
    dec = Decoder(data)
    values = []
    while not dec.at_end():
        values.append(dec.read_value())
    return values


# --- encoding ---------------------------------------------------------------------------------


def _encode_key(out: bytearray, key: str) -> None:
    raw = key.encode()
    if len(raw) > 0xFFFF:
        raise ValueError("AMF0 object key longer than 65535 bytes")
    out += _U16.pack(len(raw))
    out += raw


def _encode_props(out: bytearray, props: dict[str, Any], depth: int) -> None:
    for key, item in props.items():
        _encode_key(out, str(key))
        _encode(out, item, depth)
    out += b"\x00\x00\x09"


def _encode(out: bytearray, value: Any, depth: int) -> None:
    if depth > limits.MAX_AMF_DEPTH:
        raise ValueError(f"AMF0 value nested deeper than {limits.MAX_AMF_DEPTH}")
    depth += 1
    if value is None:
        out.append(Marker.NULL)
    elif value is UNDEFINED:
        out.append(Marker.UNDEFINED)
    elif value is UNSUPPORTED:
        out.append(Marker.UNSUPPORTED)
    elif isinstance(value, bool):
        out += bytes((Marker.BOOLEAN, 1 if value else 0))
    elif isinstance(value, int | float):
        out.append(Marker.NUMBER)
        out += _F64.pack(value)
    elif isinstance(value, str):
        raw = value.encode()
        if len(raw) <= 0xFFFF:
            out.append(Marker.STRING)
            out += _U16.pack(len(raw))
        else:
            out.append(Marker.LONG_STRING)
            out += _U32.pack(len(raw))
        out += raw
    elif isinstance(value, EcmaArray):
        out.append(Marker.ECMA_ARRAY)
        out += _U32.pack(len(value))
        _encode_props(out, value, depth)
    elif isinstance(value, dict):
        out.append(Marker.OBJECT)
        _encode_props(out, value, depth)
    elif isinstance(value, list | tuple):
        out.append(Marker.STRICT_ARRAY)
        out += _U32.pack(len(value))
        for item in value:
            _encode(out, item, depth)
    elif isinstance(value, Date):
        out.append(Marker.DATE)
        out += _DATE.pack(value.milliseconds, value.timezone)
    elif isinstance(value, XmlDocument):
        raw = value.text.encode()
        out.append(Marker.XML_DOCUMENT)
        out += _U32.pack(len(raw))
        out += raw
    elif isinstance(value, TypedObject):
        out.append(Marker.TYPED_OBJECT)
        _encode_key(out, value.class_name)
        _encode_props(out, value.properties, depth)
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as AMF0")


def encode(value: Any) -> bytes:
    out = bytearray()
    _encode(out, value, 0)
    return bytes(out)


def encode_all(*values: Any) -> bytes:
    out = bytearray()
    for value in values:
        _encode(out, value, 0)
    return bytes(out)
