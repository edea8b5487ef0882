"""AMF3 values, as clients embed them in AMF0 through the avmplus marker (0x11).

Decoding covers every AMF3 type except externalizable objects (their layout is defined by
application code; refused). Mapping: undefined -> UNDEFINED, integer -> int, double -> float,
string -> str, XML -> XmlDocument, date -> Date, array -> list (or EcmaArray when it has named
keys), anonymous object -> dict, named object -> TypedObject, ByteArray -> bytes, vectors ->
list, Dictionary -> dict (hashable keys only). Reference tables (strings, objects, traits) are
per AMF3 value; references to unknown entries or to a container still being decoded are
ProtocolErrors, as are truncation, nesting past MAX_AMF_DEPTH and counts larger than the bytes
left. Nothing in rtmpd sends AMF3, so there is no encoder here (the tests have one).
"""

from __future__ import annotations

import struct
from typing import Any

from . import limits
from .amf_values import UNDEFINED, Date, EcmaArray, TypedObject, XmlDocument
from .errors import ProtocolError

_F64 = struct.Struct(">d")

UNDEFINED_M = 0x00
NULL = 0x01
FALSE = 0x02
TRUE = 0x03
INTEGER = 0x04
DOUBLE = 0x05
STRING = 0x06
XML_DOC = 0x07
DATE = 0x08
ARRAY = 0x09
OBJECT = 0x0A
XML = 0x0B
BYTE_ARRAY = 0x0C
VECTOR_INT = 0x0D
VECTOR_UINT = 0x0E
VECTOR_DOUBLE = 0x0F
VECTOR_OBJECT = 0x10
DICTIONARY = 0x11

_HASHABLE = (str, int, float, bool, type(None))


class _Traits:
    __slots__ = ("class_name", "dynamic", "externalizable", "sealed")

    def __init__(self, class_name: str, dynamic: bool, externalizable: bool, sealed: list[str]):
        self.class_name = class_name
        self.dynamic = dynamic
        self.externalizable = externalizable
        self.sealed = sealed


class Decoder:
    __slots__ = ("data", "pos", "strings", "objects", "traits", "_open")

    def __init__(self, data: bytes | bytearray | memoryview, pos: int = 0) -> None:
        self.data = memoryview(data)
        self.pos = pos
        self.strings: list[str] = []
        self.objects: list[Any] = []
        self.traits: list[_Traits] = []
        self._open: set[int] = set()

    def _need(self, n: int) -> int:
        pos = self.pos
        if pos + n > len(self.data):
            raise ProtocolError("truncated AMF3 value")
        self.pos = pos + n
        return pos

    def _byte(self) -> int:
        return self.data[self._need(1)]

    def _u29(self) -> int:
        result = 0
        for _ in range(3):
            b = self._byte()
            if b < 0x80:
                return (result << 7) | b
            result = (result << 7) | (b & 0x7F)
        return (result << 8) | self._byte()

    def _count(self, n: int, unit: int = 1) -> int:
        if n * unit > len(self.data) - self.pos:
            raise ProtocolError(f"AMF3 count {n} larger than the bytes left")
        return n

    def _string(self) -> str:
        ref = self._u29()
        if not ref & 1:
            index = ref >> 1
            if index >= len(self.strings):
                raise ProtocolError(f"AMF3 string reference {index} unknown")
            return self.strings[index]
        n = ref >> 1
        if n == 0:
            return ""
        text = self._text(n)
        self.strings.append(text)
        return text

    def _text(self, n: int) -> str:
        if n > limits.MAX_AMF_STRING:
            raise ProtocolError(f"AMF3 string of {n} bytes exceeds {limits.MAX_AMF_STRING}")
        pos = self._need(n)
        try:
            return str(self.data[pos : pos + n], "utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError("AMF3 string is not valid UTF-8") from exc

    def _object_ref(self, ref: int) -> Any:
        index = ref >> 1
        if index >= len(self.objects):
            raise ProtocolError(f"AMF3 object reference {index} unknown")
        if index in self._open:
            raise ProtocolError("AMF3 reference cycle")
        return self.objects[index]

    def _open_slot(self) -> int:
        index = len(self.objects)
        self.objects.append(None)
        self._open.add(index)
        return index

    def _close_slot(self, index: int, value: Any) -> Any:
        self.objects[index] = value
        self._open.discard(index)
        return value

    def read_value(self, depth: int = 0) -> Any:
        marker = self._byte()
        if marker == UNDEFINED_M:
            return UNDEFINED
        if marker == NULL:
            return None
        if marker == FALSE:
            return False
        if marker == TRUE:
            return True
        if marker == INTEGER:
            value = self._u29()
            return value - 0x20000000 if value & 0x10000000 else value
        if marker == DOUBLE:
            return _F64.unpack_from(self.data, self._need(8))[0]
        if marker == STRING:
            return self._string()
        if marker in (XML_DOC, XML, DATE, BYTE_ARRAY):
            return self._read_simple_object(marker)
        if depth >= limits.MAX_AMF_DEPTH:
            raise ProtocolError(f"AMF3 nesting deeper than {limits.MAX_AMF_DEPTH}")
        depth += 1
        if marker == ARRAY:
            return self._read_array(depth)
        if marker == OBJECT:
            return self._read_object(depth)
        if marker in (VECTOR_INT, VECTOR_UINT, VECTOR_DOUBLE, VECTOR_OBJECT):
            return self._read_vector(marker, depth)
        if marker == DICTIONARY:
            return self._read_dictionary(depth)
        raise ProtocolError(f"unknown AMF3 marker 0x{marker:02x}")

    def _read_simple_object(self, marker: int) -> Any:
        ref = self._u29()
        if not ref & 1:
            return self._object_ref(ref)
        value: Any
        if marker == DATE:
            value = Date(_F64.unpack_from(self.data, self._need(8))[0])
        elif marker == BYTE_ARRAY:
            n = self._count(ref >> 1)
            pos = self._need(n)
            value = bytes(self.data[pos : pos + n])
        else:
            value = XmlDocument(self._text(ref >> 1))
        self.objects.append(value)
        return value

    def _read_array(self, depth: int) -> Any:
        ref = self._u29()
        if not ref & 1:
            return self._object_ref(ref)
        dense = self._count(ref >> 1)
        slot = self._open_slot()
        named = EcmaArray()
        while True:
            key = self._string()
            if not key:
                break
            named[key] = self.read_value(depth)
        items = [self.read_value(depth) for _ in range(dense)]
        if not named:
            return self._close_slot(slot, items)
        for i, item in enumerate(items):
            named[str(i)] = item
        return self._close_slot(slot, named)

    def _read_object(self, depth: int) -> Any:
        ref = self._u29()
        if not ref & 1:
            return self._object_ref(ref)
        if not ref & 2:
            index = ref >> 2
            if index >= len(self.traits):
                raise ProtocolError(f"AMF3 traits reference {index} unknown")
            traits = self.traits[index]
        else:
            externalizable = bool(ref & 4)
            dynamic = bool(ref & 8)
            count = self._count(ref >> 4)
            class_name = self._string()
            sealed = [self._string() for _ in range(count)]
            traits = _Traits(class_name, dynamic, externalizable, sealed)
            self.traits.append(traits)
        if traits.externalizable:
            raise ProtocolError("AMF3 externalizable objects are not supported")
        slot = self._open_slot()
        props: dict[str, Any] = {}
        for name in traits.sealed:
            props[name] = self.read_value(depth)
        if traits.dynamic:
            while True:
                key = self._string()
                if not key:
                    break
                props[key] = self.read_value(depth)
        if traits.class_name:
            return self._close_slot(slot, TypedObject(traits.class_name, props))
        return self._close_slot(slot, props)

    def _read_vector(self, marker: int, depth: int) -> Any:
        ref = self._u29()
        if not ref & 1:
            return self._object_ref(ref)
        self._byte()  # fixed-length flag
        n = ref >> 1
        items: list[Any]
        if marker == VECTOR_OBJECT:
            self._count(n)
            self._string()  # element type name
            slot = self._open_slot()
            items = [self.read_value(depth) for _ in range(n)]
            return self._close_slot(slot, items)
        unit = 8 if marker == VECTOR_DOUBLE else 4
        pos = self._need(self._count(n, unit) * unit)
        fmt = {VECTOR_INT: "i", VECTOR_UINT: "I", VECTOR_DOUBLE: "d"}[marker]
        items = list(struct.unpack_from(f">{n}{fmt}", self.data, pos))
        self.objects.append(items)
        return items

    def _read_dictionary(self, depth: int) -> Any:
        ref = self._u29()
        if not ref & 1:
            return self._object_ref(ref)
        n = self._count(ref >> 1, 2)
        self._byte()  # weak-keys flag
        slot = self._open_slot()
        result: dict[Any, Any] = {}
        for _ in range(n):
            key = self.read_value(depth)
            if not isinstance(key, _HASHABLE):
                raise ProtocolError("AMF3 dictionary key is not a plain value")
            result[key] = self.read_value(depth)
        return self._close_slot(slot, result)


def decode(data: bytes | bytearray | memoryview, pos: int = 0, depth: int = 0) -> tuple[Any, int]:
    """One AMF3 value from data[pos:] with fresh reference tables; (value, end position)."""
    dec = Decoder(data, pos)
    value = dec.read_value(depth)
    return value, dec.pos
