"""Chunk stream reader and writer: byte vectors in both directions, each fed whole, one byte at a
time and in 7-byte pieces; limits; frames cut by pyrtmp's own writer."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from rtmpd.rtmp import limits
from rtmpd.rtmp.chunk import ChunkReader, ChunkWriter, basic_header, serialize_message
from rtmpd.rtmp.errors import ProtocolError
from tests.support.core import as_tuples, read_messages
from tests.support.pieces import FEEDS

P300 = bytes(i % 256 for i in range(300))
P200 = bytes((i * 7) % 256 for i in range(200))
A200 = bytes((i * 3 + 1) % 256 for i in range(200))


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


# Hand-assembled vectors: (bytes, [(csid, type, stream id, timestamp, payload)])
FMT0_SINGLE = (
    h("03 0003e8 000005 14 00000000") + b"hello",
    [(3, 20, 0, 1000, b"hello")],
)
FMT0_MULTI = (
    h("04 000000 00012c 09 01000000") + P300[:128] + h("c4") + P300[128:256] + h("c4")
    + P300[256:],
    [(4, 9, 1, 0, P300)],
)  # fmt: skip
COMPRESSED = (
    h("06 000064 000003 08 01000000") + b"aaa"  # fmt 0, ts 100
    + h("46 000028 000002 09") + b"bb"  # fmt 1: delta 40, new length and type
    + h("86 000014") + b"cc"  # fmt 2: delta 20
    + h("c6") + b"dd",  # fmt 3 starting a message: delta 20 again
    [(6, 8, 1, 100, b"aaa"), (6, 9, 1, 140, b"bb"), (6, 9, 1, 160, b"cc"), (6, 9, 1, 180, b"dd")],
)  # fmt: skip
FMT3_AFTER_FMT0 = (
    h("05 0000c8 000001 12 00000000") + b"A" + h("c5") + b"B",
    [(5, 18, 0, 200, b"A"), (5, 18, 0, 400, b"B")],  # the delta after fmt 0 is its timestamp
)
EXTENDED = (
    h("04 ffffff 0000c8 09 01000000 01000000") + P200[:128] + h("c4 01000000") + P200[128:],
    [(4, 9, 1, 0x01000000, P200)],
)
EXTENDED_DELTA_FMT3 = (
    h("04 000000 000001 08 01000000") + b"a"
    + h("84 ffffff 01000000") + b"b"
    + h("c4 01000000") + b"c",
    [(4, 8, 1, 0, b"a"), (4, 8, 1, 0x01000000, b"b"), (4, 8, 1, 0x02000000, b"c")],
)  # fmt: skip
CSIDS = (
    h("00 00 000000 000001 08 00000000") + b"1"
    + h("00 ff 000000 000001 08 00000000") + b"2"
    + h("01 00 01 000000 000001 08 00000000") + b"3"
    + h("01 ff ff 000000 000001 08 00000000") + b"4",
    [(64, 8, 0, 0, b"1"), (319, 8, 0, 0, b"2"), (320, 8, 0, 0, b"3"), (65599, 8, 0, 0, b"4")],
)  # fmt: skip
INTERLEAVED = (
    h("04 000000 0000c8 08 01000000") + A200[:128]
    + h("06 000000 0000c8 09 01000000") + P200[:128]
    + h("c4") + A200[128:]
    + h("c6") + P200[128:],
    [(4, 8, 1, 0, A200), (6, 9, 1, 0, P200)],
)  # fmt: skip
SET_CHUNK_SIZE = (
    h("02 000000 000004 01 00000000 00001000") + h("04 000000 00012c 09 01000000") + P300,
    [(4, 9, 1, 0, P300)],
)
ABORT = (
    h("04 000000 00012c 09 01000000") + P300[:128]
    + h("02 000000 000004 02 00000000 00000004")
    + h("04 000005 000003 09 01000000") + b"new",
    [(4, 9, 1, 5, b"new")],
)  # fmt: skip
WRAP = (
    h("04 ffffff 000001 08 01000000 fffffff0") + b"a" + h("44 000020 000001 08") + b"b",
    [(4, 8, 1, 0xFFFFFFF0, b"a"), (4, 8, 1, 2**32 + 0x10, b"b")],
)
ZERO_LENGTH = (
    h("04 000010 000000 08 01000000") + h("c4") + h("44 000001 000001 08") + b"z",
    [(4, 8, 1, 16, b""), (4, 8, 1, 32, b""), (4, 8, 1, 33, b"z")],
)

VECTORS = {
    "fmt0_single": FMT0_SINGLE,
    "fmt0_multi": FMT0_MULTI,
    "compressed": COMPRESSED,
    "fmt3_after_fmt0": FMT3_AFTER_FMT0,
    "extended": EXTENDED,
    "extended_delta_fmt3": EXTENDED_DELTA_FMT3,
    "csids": CSIDS,
    "interleaved": INTERLEAVED,
    "set_chunk_size": SET_CHUNK_SIZE,
    "abort": ABORT,
    "wrap": WRAP,
    "zero_length": ZERO_LENGTH,
}


@pytest.mark.parametrize("mode", FEEDS)
@pytest.mark.parametrize("name", sorted(VECTORS))
def test_reader_vectors(name: str, mode: str) -> None:
    data, expected = VECTORS[name]
    reader = ChunkReader()
    assert as_tuples(read_messages(data, mode, reader)) == expected
    assert reader.buffered == 0


# Vectors the writer must produce byte for byte (it picks the same header types).
WRITER_CASES = {
    "fmt0_single": ([(3, 20, 0, 1000, b"hello")], FMT0_SINGLE[0]),
    "fmt0_multi": ([(4, 9, 1, 0, P300)], FMT0_MULTI[0]),
    "compressed": (COMPRESSED[1], COMPRESSED[0]),
    "fmt3_after_fmt0": (FMT3_AFTER_FMT0[1], FMT3_AFTER_FMT0[0]),
    "extended": (EXTENDED[1], EXTENDED[0]),
    "extended_delta_fmt3": (EXTENDED_DELTA_FMT3[1], EXTENDED_DELTA_FMT3[0]),
    "csids": (CSIDS[1], CSIDS[0]),
}


@pytest.mark.parametrize("name", sorted(WRITER_CASES))
def test_writer_vectors(name: str) -> None:
    messages, expected = WRITER_CASES[name]
    writer = ChunkWriter(128)
    out = b"".join(writer.write(c, t, s, ts, p) for c, t, s, ts, p in messages)
    assert out == expected


def test_writer_sends_timestamps_modulo_32_bits_and_reader_unwraps() -> None:
    writer = ChunkWriter(128)
    # Steps stay below 2**31: a larger jump cannot be told from a wrap, by design.
    times = [2**32 - 40, 2**32 - 20, 2**32, 2**32 + 2**30, 2**32 + 2**31, 2**33 - 2**30, 2**33 + 5]
    data = b"".join(writer.write(4, 8, 1, t, b"x") for t in times)
    assert [m.timestamp for m in read_messages(data, "whole")] == times


def test_writer_falls_back_to_fmt0_when_time_goes_back_or_stream_changes() -> None:
    writer = ChunkWriter(128)
    writer.write(4, 8, 1, 100, b"x")
    assert writer.write(4, 8, 1, 50, b"x")[0] >> 6 == 0
    assert writer.write(4, 8, 2, 60, b"x")[0] >> 6 == 0
    assert writer.write(4, 8, 2, 70, b"x")[0] >> 6 == 2


@pytest.mark.parametrize("chunk_size", [1, 128, 4096, 65536])
def test_writer_chunk_sizes_round_trip(chunk_size: int) -> None:
    payload = bytes(range(256)) * 300  # 76800 bytes
    writer = ChunkWriter(chunk_size)
    data = writer.write(6, 9, 1, 0x1234567, payload)
    # Continuation chunks: one basic header + extended timestamp (field 0x1234567 >= 0xFFFFFF).
    chunks = -(-len(payload) // chunk_size)
    assert len(data) == len(payload) + 12 + 4 + (chunks - 1) * 5
    reader = ChunkReader()
    reader.set_chunk_size(chunk_size)
    got = []
    for i in range(0, len(data), 65536):
        reader.feed(data[i : i + 65536])
        while (m := reader.next_message()) is not None:
            got.append(m)
    assert as_tuples(got) == [(6, 9, 1, 0x1234567, payload)]


def test_serialize_message_is_stateless_fmt0() -> None:
    msg = serialize_message(4, 9, 1, 0, P300, 128)
    assert msg.data == FMT0_MULTI[0]
    assert (msg.csid, msg.msg_type, msg.stream_id, msg.length, msg.chunk_size) == (
        4,
        9,
        1,
        300,
        128,
    )
    again = serialize_message(4, 9, 1, 0, P300, 128)
    assert again.data == msg.data


def test_note_sent_lets_the_writer_compress_after_a_shared_message() -> None:
    writer = ChunkWriter(128)
    msg = serialize_message(6, 9, 1, 1000, b"abc", 128)
    writer.note_sent(msg)
    follow = writer.write(6, 9, 1, 1040, b"xyz")
    assert follow == h("86 000028") + b"xyz"  # fmt 2: same stream, length and type
    messages = read_messages(msg.data + follow, "whole")
    assert [m.timestamp for m in messages] == [1000, 1040]
    with pytest.raises(ValueError):
        writer.note_sent(serialize_message(6, 9, 1, 0, b"abc", 4096))


def test_basic_header_ranges() -> None:
    assert basic_header(0, 2) == b"\x02"
    assert basic_header(3, 63) == b"\xff"
    assert basic_header(1, 64) == b"\x40\x00"
    assert basic_header(0, 65599) == b"\x01\xff\xff"
    for bad in (0, 1, 65600):
        with pytest.raises(ValueError):
            basic_header(0, bad)


# --- timestamps ---------------------------------------------------------------------------


def _ts_messages(stream_id: int, times: list[int]) -> bytes:
    out = b""
    for t in times:
        f = min(t, 0xFFFFFF)
        out += h(f"04 {f:06x} 000001 08") + stream_id.to_bytes(4, "little")
        if f == 0xFFFFFF:
            out += t.to_bytes(4, "big")
        out += b"x"
    return out


def test_unwrap_forward_jump_is_taken_literally() -> None:
    """Commands at 0, then media starting high: no wrap is invented."""
    got = read_messages(_ts_messages(1, [0, 0xFFFFFF00, 0x10]), "whole")
    assert [m.timestamp for m in got] == [0, 0xFFFFFF00, 2**32 + 0x10]


def test_unwrap_small_step_back_and_straggler_across_the_wrap() -> None:
    got = read_messages(_ts_messages(1, [0xFFFFFFF0, 0xFFFFFFE0, 0x10, 0xFFFFFFF8, 0x20]), "whole")
    assert [m.timestamp for m in got] == [
        0xFFFFFFF0, 0xFFFFFFE0, 2**32 + 0x10, 0xFFFFFFF8, 2**32 + 0x20,
    ]  # fmt: skip


def test_unwrap_is_per_message_stream() -> None:
    data = _ts_messages(1, [0xFFFFFFF0]) + _ts_messages(2, [5]) + _ts_messages(1, [0x10])
    got = read_messages(data, "whole")
    assert [(m.stream_id, m.timestamp) for m in got] == [
        (1, 0xFFFFFFF0), (2, 5), (1, 2**32 + 0x10),
    ]  # fmt: skip


# --- errors and limits ----------------------------------------------------------------------


def test_first_chunk_must_be_fmt0() -> None:
    for first in ("44 000000 000001 08", "84 000000", "c4"):
        with pytest.raises(ProtocolError, match="starts with"):
            read_messages(h(first) + b"x", "whole")


@pytest.mark.parametrize("value", ["00000000", "80000000", "ffffffff"])
def test_invalid_set_chunk_size(value: str) -> None:
    with pytest.raises(ProtocolError, match="chunk size"):
        read_messages(h("02 000000 000004 01 00000000" + value), "whole")


def test_short_control_messages() -> None:
    with pytest.raises(ProtocolError, match="Set Chunk Size"):
        read_messages(h("02 000000 000002 01 00000000 0010"), "whole")
    with pytest.raises(ProtocolError, match="Abort"):
        read_messages(h("02 000000 000001 02 00000000 04"), "whole")


def test_huge_chunk_size_is_clamped() -> None:
    reader = ChunkReader()
    read_messages(h("02 000000 000004 01 00000000 7fffffff"), "whole", reader)
    assert reader.chunk_size == limits.MAX_CHUNK_SIZE


def test_message_length_cap() -> None:
    reader = ChunkReader(max_message_size=100)
    with pytest.raises(ProtocolError, match="exceeds"):
        read_messages(h("04 000000 000065 09 01000000"), "whole", reader)
    ok = ChunkReader(max_message_size=100)
    assert len(read_messages(h("04 000000 000064 09 01000000") + bytes(100), "whole", ok)) == 1


def test_chunk_stream_count_is_bounded() -> None:
    reader = ChunkReader(max_chunk_streams=3)
    data = b"".join(h(f"{c:02x} 000000 000001 08 00000000") + b"x" for c in (3, 4, 5))
    assert len(read_messages(data, "whole", reader)) == 3
    with pytest.raises(ProtocolError, match="chunk streams"):
        read_messages(h("06 000000 000001 08 00000000") + b"x", "whole", reader)


def test_message_stream_count_is_bounded() -> None:
    reader = ChunkReader(max_message_streams=2)
    read_messages(_ts_messages(1, [0]) + _ts_messages(2, [0]), "whole", reader)
    with pytest.raises(ProtocolError, match="message streams"):
        read_messages(_ts_messages(3, [0]), "whole", reader)


def test_unfinished_payload_bytes_are_bounded() -> None:
    """Headers alone cannot make us allocate more than max_pending."""
    reader = ChunkReader(max_pending=100)
    reader.set_chunk_size(10)
    read_messages(h("04 000000 00003c 09 01000000") + bytes(10), "whole", reader)  # 60 promised
    with pytest.raises(ProtocolError, match="unfinished"):
        read_messages(h("06 000000 00003c 09 01000000"), "whole", reader)


def test_pending_bytes_are_released_by_abort_and_completion() -> None:
    reader = ChunkReader(max_pending=100)
    reader.set_chunk_size(60)
    data = h("04 000000 000050 09 01000000") + bytes(60)  # 80 promised, 60 sent
    data += h("02 000000 000004 02 00000000 00000004")  # abort it
    data += h("06 000000 000050 09 01000000") + bytes(60) + h("c6") + bytes(20)
    data += h("04 000000 000050 09 01000000") + bytes(60) + h("c4") + bytes(20)
    assert [m.csid for m in read_messages(data, "whole", reader)] == [6, 4]


def test_new_header_mid_message_drops_the_partial_one() -> None:
    data = (
        h("04 000000 00012c 09 01000000") + P300[:128] + h("04 000007 000002 08 01000000") + b"ok"
    )
    assert as_tuples(read_messages(data, "whole")) == [(4, 8, 1, 7, b"ok")]


def test_unparsed_bytes_are_bounded() -> None:
    reader = ChunkReader(max_unparsed=64)
    with pytest.raises(ProtocolError, match="unparsed"):
        reader.feed(bytes(65))


def test_large_chunks_stream_into_the_message_without_buffering() -> None:
    """With a 64 KiB chunk size, a 60 KB chunk fed in pieces never piles up in the buffer."""
    payload = bytes(60000)
    reader = ChunkReader(max_unparsed=4096)
    reader.set_chunk_size(65536)
    data = ChunkWriter(65536).write(6, 9, 1, 0, payload)
    got = []
    for i in range(0, len(data), 1000):
        reader.feed(data[i : i + 1000])
        while (m := reader.next_message()) is not None:
            got.append(m)
        assert reader.buffered < 20
    assert as_tuples(got) == [(6, 9, 1, 0, payload)]


# --- frames cut by pyrtmp -------------------------------------------------------------------


@pytest.fixture
def pyrtmp_messages() -> Iterator[object]:
    root = logging.getLogger()
    level = root.level
    import pyrtmp.messages

    yield pyrtmp.messages
    root.setLevel(level)


@pytest.mark.parametrize("mode", FEEDS)
def test_pyrtmp_chunks_parse(pyrtmp_messages: object, mode: str) -> None:
    from pyrtmp.messages import Chunk, RawChunk

    big = Chunk(
        chunk_type=0, chunk_id=6, timestamp=0, msg_length=300, msg_type_id=9,
        msg_stream_id=1, payload=P300,
    )  # fmt: skip
    data = b"".join(raw.to_bytes() for raw in big.to_raw_chunks(128))
    # Hand-picked header types: fmt 1 and 2 deltas, fmt 3 with an extended timestamp.
    data += RawChunk(1, 6, 40, 2, 8, 1, b"ab").to_bytes()
    data += RawChunk(2, 6, 0x1000000, 2, 8, 1, b"cd").to_bytes()
    data += RawChunk(3, 6, 0x1000000, 2, 8, 1, b"ef").to_bytes()
    # pyrtmp writes 3-byte chunk stream ids big-endian (the spec says little): use a symmetric one.
    data += RawChunk(0, 65599, 0x2000000, 3, 20, 0, b"ghi").to_bytes()
    assert as_tuples(read_messages(data, mode)) == [
        (6, 9, 1, 0, P300),
        (6, 8, 1, 40, b"ab"),
        (6, 8, 1, 40 + 0x1000000, b"cd"),
        (6, 8, 1, 40 + 0x2000000, b"ef"),
        (65599, 20, 0, 0x2000000, b"ghi"),
    ]
