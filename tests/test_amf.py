"""AMF0 and AMF3: byte vectors for every type in both directions, truncation, bounds, and
interoperability with pyrtmp's AMF0 serializer."""

from __future__ import annotations

import logging
import struct
from typing import Any

import pytest

from rtmpd.rtmp import amf0, amf3, limits
from rtmpd.rtmp.amf0 import UNDEFINED, UNSUPPORTED, Date, EcmaArray, TypedObject, XmlDocument
from rtmpd.rtmp.errors import ProtocolError
from rtmpd.rtmp.messages import parse_command
from tests.support.amf3_encode import encode_amf3


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def f64(x: float) -> str:
    return struct.pack(">d", x).hex()


# (encoded bytes, value): both directions hold.
AMF0_BOTH = {
    "number": (h("00" + f64(1.5)), 1.5),
    "true": (h("01 01"), True),
    "false": (h("01 00"), False),
    "string": (h("02 0002 6869"), "hi"),
    "utf8": (h("02 0003 e282ac"), "\u20ac"),
    "object": (h("03 0001 61" + "00" + f64(1.0) + "000009"), {"a": 1.0}),
    "null": (h("05"), None),
    "undefined": (h("06"), UNDEFINED),
    "ecma": (h("08 00000001 0001 78 02 0001 79 000009"), EcmaArray(x="y")),
    "strict": (h("0a 00000002" + "00" + f64(1.0) + "02 0001 61"), [1.0, "a"]),
    "date": (h("0b" + f64(1.6e12) + "0000"), Date(1.6e12, 0)),
    "unsupported": (h("0d"), UNSUPPORTED),
    "xml": (h("0f 00000004 3c612f3e"), XmlDocument("<a/>")),
    "typed": (h("10 0003 466f6f 0001 78 05 000009"), TypedObject("Foo", {"x": None})),
    "nested": (
        h("03 0001 6f 03 0001 6c 0a 00000001 05 000009 000009"),
        {"o": {"l": [None]}},
    ),
}


@pytest.mark.parametrize("name", sorted(AMF0_BOTH))
def test_amf0_vectors(name: str) -> None:
    data, value = AMF0_BOTH[name]
    decoded, end = amf0.decode(data)
    assert decoded == value
    assert type(decoded) is type(value)
    assert end == len(data)
    assert amf0.encode(value) == data


def test_amf0_long_string_both_ways() -> None:
    text = "a" * 70000
    data = amf0.encode(text)
    assert data[:5] == h("0c 00011170")
    assert amf0.decode(data) == (text, len(data))


def test_amf0_int_encodes_as_number() -> None:
    assert amf0.encode(3) == h("00" + f64(3.0))


def test_amf0_reference_resolves_to_the_same_object() -> None:
    # strict array (ref 0) holding an object (ref 1) and a reference to it
    data = h("0a 00000002 03 0001 61 05 000009 07 0001")
    value, _ = amf0.decode(data)
    assert value == [{"a": None}, {"a": None}]
    assert value[0] is value[1]


def test_amf0_avmplus_switch() -> None:
    assert amf0.decode(h("11 04 7f")) == (127, 3)
    assert amf0.decode_all(h("02 0001 61 11 06 05 6869 05")) == ["a", "hi", None]


def test_amf0_ecma_count_is_only_a_hint() -> None:
    assert amf0.decode(h("08 00000063 0001 6b 05 000009"))[0] == {"k": None}


AMF0_BAD = {
    "movieclip": "04",
    "recordset": "0e",
    "unknown marker": "12",
    "object end at top level": "09",
    "reference unknown": "07 0000",
    "reference cycle": "03 0001 61 07 0000 000009",
    "strict array count too big": "0a 00000005 05",
    "invalid utf-8": "02 0001 ff",
    "end marker after key": "03 0001 61 09",
}


@pytest.mark.parametrize("name", sorted(AMF0_BAD))
def test_amf0_rejects(name: str) -> None:
    with pytest.raises(ProtocolError):
        amf0.decode_all(h(AMF0_BAD[name]))


@pytest.mark.parametrize("name", sorted(AMF0_BOTH))
def test_amf0_every_truncation_is_a_protocol_error(name: str) -> None:
    data, _ = AMF0_BOTH[name]
    for cut in range(len(data)):
        with pytest.raises(ProtocolError):
            amf0.decode(data[:cut])


def _nested(depth: int) -> bytes:
    return h("03 0001 61") * depth + h("05") + h("000009") * depth


def test_amf0_nesting_limit() -> None:
    assert amf0.decode(_nested(limits.MAX_AMF_DEPTH))[1] == len(_nested(limits.MAX_AMF_DEPTH))
    with pytest.raises(ProtocolError, match="nesting"):
        amf0.decode(_nested(limits.MAX_AMF_DEPTH + 1))
    deep: Any = None
    for _ in range(limits.MAX_AMF_DEPTH + 2):
        deep = [deep]
    with pytest.raises(ValueError):
        amf0.encode(deep)


def test_amf0_string_length_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "MAX_AMF_STRING", 10)
    assert amf0.decode(h("0c 0000000a") + b"x" * 10)[0] == "x" * 10
    with pytest.raises(ProtocolError, match="exceeds"):
        amf0.decode(h("0c 0000000b") + b"x" * 11)


def test_amf0_encoder_refuses_unknown_types() -> None:
    with pytest.raises(TypeError):
        amf0.encode(object())


# --- AMF3 -----------------------------------------------------------------------------------

AMF3_VECTORS: dict[str, tuple[str, Any]] = {
    "undefined": ("00", UNDEFINED),
    "null": ("01", None),
    "false": ("02", False),
    "true": ("03", True),
    "int 0": ("04 00", 0),
    "int 127": ("04 7f", 127),
    "int 128": ("04 81 00", 128),
    "int 16383": ("04 ff 7f", 16383),
    "int 16384": ("04 81 80 00", 16384),
    "int 2^21-1": ("04 ff ff 7f", 2**21 - 1),
    "int 2^21": ("04 80 c0 80 00", 2**21),
    "int max": ("04 bf ff ff ff", 2**28 - 1),
    "int -1": ("04 ff ff ff ff", -1),
    "int min": ("04 c0 80 80 00", -(2**28)),
    "double": ("05" + f64(-2.5), -2.5),
    "string": ("06 05 6869", "hi"),
    "empty string": ("06 01", ""),
    "xml": ("0b 09 3c612f3e", XmlDocument("<a/>")),
    "date": ("08 01" + f64(1.6e12), Date(1.6e12)),
    "dense array": ("09 05 01 04 01 04 02", [1, 2]),
    "anonymous object": ("0a 0b 01 03 61 04 01 01", {"a": 1}),
    "byte array": ("0c 07 010203", b"\x01\x02\x03"),
}
AMF3_DECODE_ONLY: dict[str, tuple[str, Any]] = {
    "xml document": ("07 09 3c612f3e", XmlDocument("<a/>")),
    "string reference": ("09 05 01 06 05 6869 06 00", ["hi", "hi"]),
    "mixed array": ("09 03 03 6b 04 01 01 03", EcmaArray(k=1, **{"0": True})),
    "sealed typed object": (
        "0a 23 03 50 03 78 03 79 04 01 04 02",
        TypedObject("P", {"x": 1, "y": 2}),
    ),
    "traits reference": (
        "09 05 01 0a 23 03 50 03 78 03 79 04 01 04 02 0a 01 04 03 04 04",
        [TypedObject("P", {"x": 1, "y": 2}), TypedObject("P", {"x": 3, "y": 4})],
    ),
    "vector int": ("0d 05 00 ffffffff 00000002", [-1, 2]),
    "vector uint": ("0e 05 00 ffffffff 00000002", [2**32 - 1, 2]),
    "vector double": ("0f 03 00" + f64(0.5), [0.5]),
    "vector object": ("10 05 00 01 04 01 06 05 6869", [1, "hi"]),
    "dictionary": ("11 03 00 06 03 6b 04 01", {"k": 1}),
}


@pytest.mark.parametrize("name", sorted(AMF3_VECTORS))
def test_amf3_vectors_both_ways(name: str) -> None:
    text, value = AMF3_VECTORS[name]
    data = h(text)
    assert amf3.decode(data) == (value, len(data))
    assert encode_amf3(value) == data


@pytest.mark.parametrize("name", sorted(AMF3_DECODE_ONLY))
def test_amf3_decode_vectors(name: str) -> None:
    text, value = AMF3_DECODE_ONLY[name]
    data = h(text)
    decoded, end = amf3.decode(data)
    assert decoded == value
    assert type(decoded) is type(value)
    assert end == len(data)


def test_amf3_object_reference_is_the_same_object() -> None:
    value, _ = amf3.decode(h("09 05 01 0a 0b 01 01 0a 02"))
    assert value == [{}, {}]
    assert value[0] is value[1]


AMF3_BAD = {
    "externalizable": "0a 07 03 58",
    "string reference unknown": "06 02",
    "object reference unknown": "0a 04",
    "traits reference unknown": "0a 05",
    "reference cycle": "09 03 01 09 00",
    "unhashable dictionary key": "11 03 00 09 01 01 04 01",
    "unknown marker": "12",
    "array count too big": "09 7f 01",
    "byte array too long": "0c 7f 00",
    "sealed count too big": "0a 7f 01",
    "invalid utf-8": "06 03 ff",
}


@pytest.mark.parametrize("name", sorted(AMF3_BAD))
def test_amf3_rejects(name: str) -> None:
    with pytest.raises(ProtocolError):
        amf3.decode(h(AMF3_BAD[name]))


@pytest.mark.parametrize("name", sorted(AMF3_VECTORS) + sorted(AMF3_DECODE_ONLY))
def test_amf3_every_truncation_is_a_protocol_error(name: str) -> None:
    text, _ = {**AMF3_VECTORS, **AMF3_DECODE_ONLY}[name]
    data = h(text)
    for cut in range(len(data)):
        with pytest.raises(ProtocolError):
            amf3.decode(data[:cut])


def test_amf3_nesting_limit() -> None:
    def nested(depth: int) -> bytes:
        return h("09 03 01") * depth + h("01")

    assert amf3.decode(nested(limits.MAX_AMF_DEPTH))[1] == len(nested(limits.MAX_AMF_DEPTH))
    with pytest.raises(ProtocolError, match="nesting"):
        amf3.decode(nested(limits.MAX_AMF_DEPTH + 1))


def test_amf3_depth_counts_from_the_amf0_context() -> None:
    """An AMF3 value switched into from deep AMF0 nesting cannot nest past the limit."""
    depth = limits.MAX_AMF_DEPTH
    data = h("03 0001 61") * depth + h("11 09 03 01 01") + h("000009") * depth
    with pytest.raises(ProtocolError, match="nesting"):
        amf0.decode(data)


def test_amf3_command_message() -> None:
    """Type 17: a 0x00 format byte, then AMF0 values that switch to AMF3 with 0x11."""
    payload = (
        h("00") + amf0.encode_all("connect", 1.0) + h("11 0a 0b 01 07 617070 06 09 6c697665 01")
    )
    cmd = parse_command(payload, amf3=True)
    assert (cmd.name, cmd.transaction_id, cmd.command_object) == ("connect", 1.0, {"app": "live"})


# --- pyrtmp interoperability ----------------------------------------------------------------


@pytest.fixture
def pyrtmp_amf() -> Any:
    root = logging.getLogger()
    level = root.level
    from pyrtmp.amf import serializers

    yield serializers
    root.setLevel(level)


def test_pyrtmp_serialized_values_decode(pyrtmp_amf: Any) -> None:
    from bitstring import BitStream

    stream = BitStream()
    values = [
        "connect",
        1,
        {"app": "live", "tcUrl": "rtmp://h/live", "fpad": False, "audioCodecs": 3191.0},
        None,
        [{"a": 1.0}, {"b": "x"}],
    ]
    for value in values:
        pyrtmp_amf.AMF0Serializer.create_object(stream, value)
    decoded = amf0.decode_all(stream.bytes)
    assert decoded[:4] == ["connect", 1.0, values[2], None]
    # pyrtmp writes a list of dicts as an ECMA array of their members.
    assert decoded[4] == EcmaArray(a=1.0, b="x")


def test_our_values_decode_with_pyrtmp(pyrtmp_amf: Any) -> None:
    from bitstring import BitStream

    values = ["onStatus", 0.0, None, {"level": "status", "code": "NetStream.Publish.Start"}]
    stream = BitStream(amf0.encode_all(*values))
    assert [pyrtmp_amf.AMF0Deserializer.from_stream(stream) for _ in values] == values
