"""ReceiveBuffer: the parse offset, compaction, and the bound on unparsed bytes."""

from __future__ import annotations

import pytest

from rtmpd.rtmp.buffer import ReceiveBuffer
from rtmpd.rtmp.errors import ProtocolError


def test_consume_moves_the_parse_offset() -> None:
    buf = ReceiveBuffer()
    buf.append(b"\x01abcdef")
    assert buf.data[buf.pos] == 1
    buf.consume_to(buf.pos + 4)
    assert buf.unparsed == 3
    assert bytes(buf.data[buf.pos :]) == b"def"
    buf.consume_to(buf.pos + 3)
    assert buf.unparsed == 0


def test_partial_data_then_completion() -> None:
    """A parser that needs 4 bytes leaves them until they are all there."""
    buf = ReceiveBuffer()
    got = []
    for byte in b"\x00\x00\x01\x02":
        buf.append(bytes([byte]))
        if buf.unparsed >= 4:
            got.append(bytes(buf.data[buf.pos : buf.pos + 4]))
            buf.consume_to(buf.pos + 4)
    assert got == [b"\x00\x00\x01\x02"]
    assert buf.unparsed == 0


def test_compaction_keeps_content_and_drops_consumed_bytes() -> None:
    buf = ReceiveBuffer()
    expected = bytearray()
    consumed = bytearray()
    for i in range(2000):
        chunk = bytes([i % 251]) * 37
        buf.append(chunk)
        expected += chunk
        consumed += buf.data[buf.pos : buf.pos + 36]
        buf.consume_to(buf.pos + 36)
    rest = bytes(buf.data[buf.pos :])
    assert len(rest) == buf.unparsed == 2000
    assert consumed + rest == expected
    # Consumed bytes were cut from the front along the way (74000 appended in all).
    assert len(buf.data) < 2 * 2000 + 2 * 4096 + 37


def test_bound_on_unparsed_bytes() -> None:
    buf = ReceiveBuffer(max_unparsed=16)
    buf.append(b"a" * 10)
    with pytest.raises(ProtocolError):
        buf.append(b"b" * 7)
    # Consumed bytes no longer count.
    buf.consume_to(buf.pos + 10)
    buf.append(b"c" * 16)
    assert buf.unparsed == 16
