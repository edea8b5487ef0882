"""ReceiveBuffer: transactional reads, compaction, and the bound on unparsed bytes."""

from __future__ import annotations

import pytest

from rtmpd.rtmp.buffer import ReceiveBuffer
from rtmpd.rtmp.errors import ProtocolError


def test_reads_and_commit() -> None:
    buf = ReceiveBuffer()
    buf.append(b"\x01abcdef")
    assert buf.read_u8() == 1
    assert buf.read_exactly(3) == b"abc"
    buf.commit()
    assert len(buf) == 3
    assert buf.unparsed == 3
    assert buf.read_exactly(3) == b"def"
    assert buf.read_u8() is None


def test_rollback_returns_to_last_commit() -> None:
    buf = ReceiveBuffer()
    buf.append(b"xyz")
    assert buf.read_exactly(2) == b"xy"
    assert buf.read_exactly(5) is None  # not enough: nothing consumed
    assert len(buf) == 1
    buf.rollback()
    assert len(buf) == 3
    assert buf.read_exactly(3) == b"xyz"


def test_partial_data_then_completion() -> None:
    """A parser that needs 4 bytes rolls back until they are all there."""
    buf = ReceiveBuffer()
    got = []
    for byte in b"\x00\x00\x01\x02":
        buf.append(bytes([byte]))
        value = buf.read_exactly(4)
        if value is None:
            buf.rollback()
        else:
            buf.commit()
            got.append(value)
    assert got == [b"\x00\x00\x01\x02"]
    assert buf.unparsed == 0


def test_read_into_copies_what_is_there() -> None:
    buf = ReceiveBuffer()
    target = bytearray(10)
    buf.append(b"hello")
    assert buf.read_into(target, 2, 8) == 5
    assert target == bytearray(b"\x00\x00hello\x00\x00\x00")
    assert buf.read_into(target, 0, 8) == 0
    buf.append(b"0123456789")
    assert buf.read_into(target, 0, 3) == 3
    assert target[:3] == b"012"


def test_compaction_keeps_content_and_drops_consumed_bytes() -> None:
    buf = ReceiveBuffer()
    expected = bytearray()
    consumed = bytearray()
    for i in range(2000):
        chunk = bytes([i % 251]) * 37
        buf.append(chunk)
        expected += chunk
        value = buf.read_exactly(36)
        assert value is not None
        consumed += value
        buf.commit()
    rest = buf.read_exactly(len(buf))
    assert rest is not None
    assert consumed + rest == expected
    # Committed bytes were cut from the front along the way (74000 appended in all).
    assert len(buf.data) < 2 * 2000 + 2 * 4096 + 37


def test_bound_on_unparsed_bytes() -> None:
    buf = ReceiveBuffer(max_unparsed=16)
    buf.append(b"a" * 10)
    with pytest.raises(ProtocolError):
        buf.append(b"b" * 7)
    # Committed bytes no longer count.
    assert buf.read_exactly(10) is not None
    buf.commit()
    buf.append(b"c" * 16)
    assert buf.unparsed == 16
