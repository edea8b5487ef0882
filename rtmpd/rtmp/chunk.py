"""RTMP chunk stream: reassemble messages from chunks, and cut messages into chunks.

Reading: a chunk is a basic header (fmt + chunk stream id in 1-3 bytes), a message header of
11/7/3/0 bytes for fmt 0/1/2/3, an optional 4-byte extended timestamp, then at most
`chunk_size` payload bytes. Headers are parsed atomically (nothing changes until the whole
header is buffered); payload bytes are copied straight into one bytearray preallocated per
message, as they arrive, so a large chunk never has to sit in the receive buffer and no object
is made per chunk. Set Chunk Size and Abort are chunk-layer business and handled here.

Timestamps: fmt 0 carries an absolute 32-bit time, fmt 1/2 a delta, and a fmt 3 header that
starts a message reuses the stream's last delta (after a fmt 0 header that is the absolute
time, as the spec says). A field of 0xFFFFFF means "see the 4-byte extended timestamp", and
fmt 3 chunks of such a stream carry that field too. The resulting 32-bit time is unwrapped per
message stream into an unbounded int: going back by more than 2**31 means it wrapped.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from . import limits
from .buffer import ReceiveBuffer
from .errors import ProtocolError

_HDR = struct.Struct(">BHBHB")  # timestamp (24 bit), length (24 bit), type
_TS = struct.Struct(">BH")
_U32 = struct.Struct(">I")
_LE32 = struct.Struct("<I")
_MASK32 = 0xFFFFFFFF
_HALF = 1 << 31
_WRAP = 1 << 32
_SET_CHUNK_SIZE = 1
_ABORT = 2


class Message:
    """One reassembled RTMP message; `payload` belongs to the receiver from now on."""

    __slots__ = ("csid", "msg_type", "stream_id", "timestamp", "payload")

    def __init__(
        self, csid: int, msg_type: int, stream_id: int, timestamp: int, payload: bytearray
    ) -> None:
        self.csid = csid
        self.msg_type = msg_type
        self.stream_id = stream_id
        self.timestamp = timestamp
        self.payload = payload

    def __repr__(self) -> str:
        return (
            f"Message(csid={self.csid}, type={self.msg_type}, stream={self.stream_id}, "
            f"ts={self.timestamp}, len={len(self.payload)})"
        )


class _InStream:
    """What the previous header on one chunk stream said, and the message being assembled."""

    __slots__ = ("ts", "delta", "length", "msg_type", "msid", "ext", "payload", "filled")

    def __init__(self) -> None:
        self.ts = 0  # 32-bit timestamp of the current (or last) message
        self.delta = 0
        self.length = 0
        self.msg_type = 0
        self.msid = 0
        self.ext = False  # the last fmt 0/1/2 header used the extended timestamp
        self.payload: bytearray | None = None
        self.filled = 0


class ChunkReader:
    """Sans-I/O chunk stream parser: `feed(bytes)`, then `next_message()` until None."""

    def __init__(
        self,
        *,
        max_message_size: int = limits.MAX_MESSAGE_SIZE,
        max_chunk_streams: int = limits.MAX_CHUNK_STREAMS,
        max_message_streams: int = limits.MAX_MESSAGE_STREAMS,
        max_pending: int = limits.MAX_PENDING_PAYLOAD,
        max_unparsed: int = limits.MAX_UNPARSED_BYTES,
    ) -> None:
        self._buf = ReceiveBuffer(max_unparsed)
        self._streams: dict[int, _InStream] = {}
        self._clocks: dict[int, list[int]] = {}  # msid -> [last 32-bit ts, epoch]
        self._chunk_size = limits.DEFAULT_CHUNK_SIZE
        self._cur: _InStream | None = None  # stream whose chunk payload is being copied
        self._cur_csid = 0
        self._left = 0  # payload bytes still to come in the current chunk
        self._pending = 0  # bytes preallocated for messages not yet complete
        self._max_message = max_message_size
        self._max_streams = max_chunk_streams
        self._max_clocks = max_message_streams
        self._max_pending = max_pending

    @property
    def chunk_size(self) -> int:
        """The peer's current chunk size."""
        return self._chunk_size

    @property
    def buffered(self) -> int:
        """Bytes fed but not yet parsed (a partial header at most, between calls)."""
        return self._buf.unparsed

    @property
    def pending(self) -> int:
        """Bytes preallocated for messages not yet complete (bounded by max_pending)."""
        return self._pending

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        self._buf.append(data)

    def set_chunk_size(self, size: int) -> None:
        """Apply the peer's Set Chunk Size (1..2**31-1; clamped to MAX_CHUNK_SIZE)."""
        if size <= 0 or size & 0x80000000:
            raise ProtocolError(f"invalid chunk size {size}")
        self._chunk_size = min(size, limits.MAX_CHUNK_SIZE)

    def abort(self, csid: int) -> None:
        """Drop the partly received message on chunk stream `csid` (Abort Message)."""
        st = self._streams.get(csid)
        if st is not None and st.payload is not None:
            self._pending -= len(st.payload)
            st.payload = None
            st.filled = 0

    def next_message(self) -> Message | None:
        """The next complete message, or None when more bytes are needed."""
        buf = self._buf
        data = buf.data  # not resized while we parse: feed() is never called from here
        end = len(data)
        with memoryview(data) as view:
            while True:
                st = self._cur
                if st is None:
                    found = self._read_header()
                    if found is None:
                        return None
                    st, csid = found
                    payload = st.payload
                    assert payload is not None
                    remaining = len(payload) - st.filled
                    if remaining == 0:  # zero-length message: complete on its header
                        msg = self._finish(csid, st)
                        if msg is not None:
                            return msg
                        continue
                    self._cur = st
                    self._cur_csid = csid
                    self._left = remaining if remaining < self._chunk_size else self._chunk_size
                payload = st.payload
                assert payload is not None
                pos = buf.pos
                left = self._left
                filled = st.filled
                size = len(payload)
                csid = self._cur_csid
                fast = 0xC0 | csid if csid < 64 and not st.ext else -1
                while True:  # copy this chunk, then any 1-byte type 3 continuations
                    n = end - pos
                    if n > left:
                        n = left
                    payload[filled : filled + n] = view[pos : pos + n]
                    pos += n
                    filled += n
                    left -= n
                    if left or filled == size or pos >= end or data[pos] != fast:
                        break
                    pos += 1
                    left = size - filled
                    if left > self._chunk_size:
                        left = self._chunk_size
                st.filled = filled
                self._left = left
                buf.consume_to(pos)
                if left:
                    return None
                self._cur = None
                if filled == size:
                    msg = self._finish(csid, st)
                    if msg is not None:
                        return msg

    def _read_header(self) -> tuple[_InStream, int] | None:
        """Parse one chunk header if it is all buffered; start a message when it says so."""
        buf = self._buf
        data = buf.data
        pos = buf.pos
        avail = len(data) - pos
        if avail <= 0:
            return None
        b0 = data[pos]
        fmt = b0 >> 6
        csid = b0 & 0x3F
        p = pos + 1
        if csid == 0:
            if avail < 2:
                return None
            csid = data[p] + 64
            p += 1
        elif csid == 1:
            if avail < 3:
                return None
            csid = data[p] + (data[p + 1] << 8) + 64
            p += 2
        end = pos + avail
        st = self._streams.get(csid)
        if st is None and fmt != 0:
            raise ProtocolError(f"chunk stream {csid} starts with a type {fmt} header")
        if fmt == 0:
            if p + 11 > end:
                return None
            th, tl, lh, ll, mtype = _HDR.unpack_from(data, p)
            (msid,) = _LE32.unpack_from(data, p + 7)
            p += 11
            field = (th << 16) | tl
            ext = field == 0xFFFFFF
            if ext:
                if p + 4 > end:
                    return None
                (field,) = _U32.unpack_from(data, p)
                p += 4
            if st is None:
                if len(self._streams) >= self._max_streams:
                    raise ProtocolError(f"more than {self._max_streams} chunk streams")
                st = self._streams[csid] = _InStream()
            st.msid = msid
            ts = field
        elif fmt == 1:
            assert st is not None
            if p + 7 > end:
                return None
            th, tl, lh, ll, mtype = _HDR.unpack_from(data, p)
            p += 7
            field = (th << 16) | tl
            ext = field == 0xFFFFFF
            if ext:
                if p + 4 > end:
                    return None
                (field,) = _U32.unpack_from(data, p)
                p += 4
            ts = (st.ts + field) & _MASK32
        elif fmt == 2:
            assert st is not None
            if p + 3 > end:
                return None
            th, tl = _TS.unpack_from(data, p)
            p += 3
            field = (th << 16) | tl
            ext = field == 0xFFFFFF
            if ext:
                if p + 4 > end:
                    return None
                (field,) = _U32.unpack_from(data, p)
                p += 4
            ts = (st.ts + field) & _MASK32
            lh, ll, mtype = st.length >> 16, st.length & 0xFFFF, st.msg_type
        else:
            assert st is not None
            if st.ext:
                if p + 4 > end:
                    return None
                p += 4  # repeats the field we already know
            buf.consume_to(p)
            if st.payload is None:  # a new message with everything as before
                self._begin(st, (st.ts + st.delta) & _MASK32)
            return st, csid
        buf.consume_to(p)
        st.ext = ext
        st.delta = field
        st.length = (lh << 16) | ll
        st.msg_type = mtype
        self._begin(st, ts)
        return st, csid

    def _begin(self, st: _InStream, ts: int) -> None:
        if st.payload is not None:  # a new header mid-message: drop the partial one
            self._pending -= len(st.payload)
        length = st.length
        if length > self._max_message:
            raise ProtocolError(f"message of {length} bytes exceeds {self._max_message}")
        if self._pending + length > self._max_pending:
            raise ProtocolError("too many bytes of unfinished messages")
        self._pending += length
        st.payload = bytearray(length)
        st.filled = 0
        st.ts = ts

    def _finish(self, csid: int, st: _InStream) -> Message | None:
        payload = st.payload
        assert payload is not None
        st.payload = None
        self._pending -= len(payload)
        mtype = st.msg_type
        if mtype == _SET_CHUNK_SIZE:
            if len(payload) < 4:
                raise ProtocolError("short Set Chunk Size message")
            self.set_chunk_size(_U32.unpack_from(payload)[0])
            return None
        if mtype == _ABORT:
            if len(payload) < 4:
                raise ProtocolError("short Abort message")
            self.abort(_U32.unpack_from(payload)[0])
            return None
        return Message(csid, mtype, st.msid, self._unwrap(st.msid, st.ts), payload)

    def _unwrap(self, msid: int, ts: int) -> int:
        clock = self._clocks.get(msid)
        if clock is None:
            if len(self._clocks) >= self._max_clocks:
                raise ProtocolError(f"more than {self._max_clocks} message streams")
            self._clocks[msid] = [ts, 0]
            return ts
        last, epoch = clock
        if ts < last:
            if last - ts > _HALF:  # went back by more than half the range: it wrapped
                epoch += _WRAP
                clock[1] = epoch
            clock[0] = ts
        elif ts - last > _HALF and epoch:  # a straggler from just before the last wrap
            return ts + epoch - _WRAP
        else:
            clock[0] = ts
        return ts + epoch


# --- writing ----------------------------------------------------------------------------------


def basic_header(fmt: int, csid: int) -> bytes:
    """The 1-3 byte basic header for chunk stream `csid` (2..65599)."""
    if 2 <= csid <= 63:
        return bytes(((fmt << 6) | csid,))
    if 64 <= csid <= 319:
        return bytes((fmt << 6, csid - 64))
    if 320 <= csid <= 65599:
        v = csid - 64
        return bytes(((fmt << 6) | 1, v & 0xFF, v >> 8))
    raise ValueError(f"chunk stream id {csid} out of range")


def _serialize(
    fmt: int,
    csid: int,
    field: int,
    msg_type: int,
    stream_id: int,
    payload: bytes | bytearray | memoryview,
    chunk_size: int,
) -> bytes:
    length = len(payload)
    ext = field >= 0xFFFFFF
    f24 = 0xFFFFFF if ext else field
    head = basic_header(fmt, csid)
    if fmt == 0:
        head += _HDR.pack(f24 >> 16, f24 & 0xFFFF, length >> 16, length & 0xFFFF, msg_type)
        head += _LE32.pack(stream_id)
    elif fmt == 1:
        head += _HDR.pack(f24 >> 16, f24 & 0xFFFF, length >> 16, length & 0xFFFF, msg_type)
    elif fmt == 2:
        head += _TS.pack(f24 >> 16, f24 & 0xFFFF)
    ext_bytes = _U32.pack(field) if ext else b""
    if length <= chunk_size:
        return b"".join((head, ext_bytes, payload))
    cont = basic_header(3, csid) + ext_bytes
    view = memoryview(payload)
    parts: list[bytes | memoryview] = [head, ext_bytes, view[:chunk_size]]
    for off in range(chunk_size, length, chunk_size):
        parts.append(cont)
        parts.append(view[off : off + chunk_size])
    return b"".join(parts)


def _check(timestamp: int, payload: bytes | bytearray | memoryview, chunk_size: int) -> None:
    if timestamp < 0:
        raise ValueError("negative timestamp")
    if len(payload) > 0xFFFFFF:
        raise ValueError("message longer than 0xFFFFFF bytes")
    if not 1 <= chunk_size <= 0x7FFFFFFF:
        raise ValueError(f"invalid chunk size {chunk_size}")


@dataclass(frozen=True, slots=True)
class SerializedMessage:
    """A message cut into chunks once, with a full (fmt 0) header, so it can be sent as-is on
    any connection whose outgoing chunk size and stream id match (the load generator shares
    one per frame among many publishers)."""

    csid: int
    msg_type: int
    stream_id: int
    timestamp: int
    length: int
    chunk_size: int
    data: bytes


def serialize_message(
    csid: int,
    msg_type: int,
    stream_id: int,
    timestamp: int,
    payload: bytes | bytearray | memoryview,
    chunk_size: int,
) -> SerializedMessage:
    """Stateless serialization with a fmt 0 header (timestamp sent modulo 2**32)."""
    _check(timestamp, payload, chunk_size)
    data = _serialize(0, csid, timestamp & _MASK32, msg_type, stream_id, payload, chunk_size)
    return SerializedMessage(csid, msg_type, stream_id, timestamp, len(payload), chunk_size, data)


class _OutStream:
    __slots__ = ("timestamp", "delta", "length", "msg_type", "msid")

    def __init__(self, timestamp: int, delta: int, length: int, msg_type: int, msid: int):
        self.timestamp = timestamp  # unbounded int as given by the caller
        self.delta = delta  # what the receiver will add for a fmt 3 header
        self.length = length
        self.msg_type = msg_type
        self.msid = msid


class ChunkWriter:
    """Cuts messages into chunks, compressing headers against the previous message on the same
    chunk stream (fmt 1 same stream, fmt 2 same length/type, fmt 3 same delta too)."""

    def __init__(self, chunk_size: int = limits.DEFAULT_CHUNK_SIZE) -> None:
        self._chunk_size = chunk_size
        self._streams: dict[int, _OutStream] = {}

    @property
    def chunk_size(self) -> int:
        return self._chunk_size

    def set_chunk_size(self, size: int) -> None:
        """Use `size` from the next message on (after sending Set Chunk Size to the peer)."""
        if not 1 <= size <= 0x7FFFFFFF:
            raise ValueError(f"invalid chunk size {size}")
        self._chunk_size = size

    def write(
        self,
        csid: int,
        msg_type: int,
        stream_id: int,
        timestamp: int,
        payload: bytes | bytearray | memoryview,
    ) -> bytes:
        """The chunks of one message (timestamps are unbounded ints, sent modulo 2**32)."""
        _check(timestamp, payload, self._chunk_size)
        length = len(payload)
        prev = self._streams.get(csid)
        if (
            prev is None
            or prev.msid != stream_id
            or timestamp < prev.timestamp
            or timestamp - prev.timestamp > _MASK32
        ):
            fmt = 0
            field = timestamp & _MASK32
            self._streams[csid] = _OutStream(timestamp, field, length, msg_type, stream_id)
        else:
            field = timestamp - prev.timestamp
            if length != prev.length or msg_type != prev.msg_type:
                fmt = 1
            elif field != prev.delta:
                fmt = 2
            else:
                fmt = 3
            prev.timestamp = timestamp
            prev.delta = field
            prev.length = length
            prev.msg_type = msg_type
        return _serialize(fmt, csid, field, msg_type, stream_id, payload, self._chunk_size)

    def note_sent(self, msg: SerializedMessage) -> None:
        """Account for a pre-serialized message the caller sent on this connection."""
        if msg.chunk_size != self._chunk_size:
            raise ValueError(
                f"message cut for chunk size {msg.chunk_size}, connection uses {self._chunk_size}"
            )
        self._streams[msg.csid] = _OutStream(
            msg.timestamp, msg.timestamp & _MASK32, msg.length, msg.msg_type, msg.stream_id
        )
