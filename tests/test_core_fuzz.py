"""Property tests: whatever bytes arrive, the chunk parser, AMF decoders, FLV parsers and the
session either succeed or raise ProtocolError (the session: a ProtocolViolation event), never
another exception, with memory bounded; and what the writers produce reads back unchanged."""

from __future__ import annotations

import contextlib
import math
from typing import Any

from hypothesis import HealthCheck, given, settings, target
from hypothesis import event as note_event
from hypothesis import strategies as st

from rtmpd.rtmp import amf0, amf3, flv, limits
from rtmpd.rtmp.chunk import ChunkReader, ChunkWriter
from rtmpd.rtmp.client import ClientSession
from rtmpd.rtmp.errors import ProtocolError
from rtmpd.rtmp.events import ProtocolViolation, PublishEnd, PublishRequest, TimedOut
from rtmpd.rtmp.handshake import ClientHandshake
from rtmpd.rtmp.messages import MessageType, set_chunk_size
from rtmpd.rtmp.session import ServerSession
from tests.support.amf3_encode import encode_amf3
from tests.support.core import RawClient, drain, pump
from tests.support.pieces import cut

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- chunk stream -----------------------------------------------------------------------------


@st.composite
def chunky(draw: st.DrawFn) -> bytes:
    """Bytes that look like chunk headers often enough to get deep into the parser."""
    parts = []
    for _ in range(draw(st.integers(1, 12))):
        if draw(st.booleans()):
            parts.append(draw(st.binary(max_size=40)))
            continue
        fmt = draw(st.integers(0, 3))
        csid = draw(st.sampled_from([0, 1, 2, 3, 4, 63]))
        head = bytes([(fmt << 6) | csid]) + draw(st.binary(min_size=0, max_size=2))
        size = (11, 7, 3, 0)[fmt]
        ts = draw(st.sampled_from([b"\x00\x00\x10", b"\xff\xff\xff", b"\x00\x00\x00"]))
        length = draw(st.integers(0, 300)).to_bytes(3, "big")
        mtype = bytes([draw(st.sampled_from([1, 2, 3, 4, 5, 8, 9, 18, 20, 22]))])
        fields = (ts + length + mtype + draw(st.binary(min_size=4, max_size=4)))[:size]
        parts.append(head + fields + draw(st.binary(max_size=300)))
    return b"".join(parts)


@FUZZ
@given(st.one_of(st.binary(max_size=3000), chunky()), st.lists(st.integers(0, 10**6), max_size=8))
def test_chunk_reader_never_crashes(data: bytes, cuts: list[int]) -> None:
    reader = ChunkReader(max_pending=1 << 20)
    try:
        for piece in cut(data, cuts):
            reader.feed(piece)
            while (msg := reader.next_message()) is not None:
                assert len(msg.payload) <= limits.MAX_MESSAGE_SIZE
            assert reader.buffered <= 18  # at most one partial chunk header is ever held
            assert 0 <= reader.pending <= 1 << 20
    except ProtocolError:
        pass


@st.composite
def message_runs(draw: st.DrawFn) -> tuple[int, list[tuple[int, int, int, int, bytes]], list[int]]:
    chunk_size = draw(st.sampled_from([1, 2, 7, 128, 4096]))
    ts = draw(st.integers(0, 2**32 - 1))
    msgs = []
    for _ in range(draw(st.integers(1, 25))):
        ts += draw(st.sampled_from([0, 0, 1, 23, 40, 0xFFFFFF, 2**24]))
        csid = draw(st.sampled_from([3, 4, 6, 64, 319, 320, 65599]))
        mtype = draw(st.sampled_from([8, 9, 18, 20]))
        msid = draw(st.integers(0, 2))
        payload = draw(st.binary(max_size=600))
        msgs.append((csid, mtype, msid, ts, payload))
    new_sizes = draw(
        st.lists(
            st.sampled_from([0, 0, 0, 1, 3, 129, 5000]), min_size=len(msgs), max_size=len(msgs)
        )
    )
    return chunk_size, msgs, new_sizes


@FUZZ
@given(message_runs(), st.lists(st.integers(0, 10**6), max_size=10))
def test_writer_then_reader_round_trip(run: Any, cuts: list[int]) -> None:
    chunk_size, msgs, new_sizes = run
    writer = ChunkWriter(chunk_size)
    reader = ChunkReader()
    reader.set_chunk_size(chunk_size)
    data = b""
    for msg, new_size in zip(msgs, new_sizes, strict=True):
        data += writer.write(*msg)
        if new_size:  # announce a new chunk size in the middle of the stream
            data += writer.write(2, MessageType.SET_CHUNK_SIZE, 0, 0, set_chunk_size(new_size))
            writer.set_chunk_size(new_size)
    got = []
    for piece in cut(data, cuts):
        reader.feed(piece)
        while (m := reader.next_message()) is not None:
            got.append((m.csid, m.msg_type, m.stream_id, m.timestamp, bytes(m.payload)))
    # Each message stream's clock starts from the 32 bits it first sees: earlier epochs are
    # unknowable, later wraps are counted.
    base: dict[int, int] = {}
    for _, _, s, ts, _ in msgs:
        base.setdefault(s, ts - ts % 2**32)
    assert got == [(c, t, s, ts - base[s], p) for c, t, s, ts, p in msgs]


# --- AMF ----------------------------------------------------------------------------------------

AMF_MARKERS = st.sampled_from(list(range(0x13)))


@st.composite
def amfish(draw: st.DrawFn) -> bytes:
    """Marker bytes with short lengths in between: reaches nested structures quickly."""
    out = b""
    for _ in range(draw(st.integers(1, 30))):
        out += bytes([draw(AMF_MARKERS)])
        out += draw(
            st.sampled_from(
                [b"", b"\x00", b"\x00\x01a", b"\x00\x00\x00\x02", b"\x00\x00\x09", b"\x01", b"\x03"]
            )
        )
    return out


@FUZZ
@given(st.one_of(st.binary(max_size=500), amfish()))
def test_amf0_decoder_never_crashes(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        amf0.decode_all(data)


@FUZZ
@given(st.one_of(st.binary(max_size=500), amfish()))
def test_amf3_decoder_never_crashes(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        amf3.decode(data)


floats = st.floats(allow_nan=False)
keys = st.text(min_size=1, max_size=8)
amf0_values = st.recursive(
    st.none() | st.booleans() | floats | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(keys, inner, max_size=4)
        | st.dictionaries(keys, inner, max_size=4).map(amf0.EcmaArray)
    ),
    max_leaves=20,
)


@FUZZ
@given(st.lists(amf0_values, max_size=4))
def test_amf0_round_trip(values: list[Any]) -> None:
    assert amf0.decode_all(amf0.encode_all(*values)) == values


amf3_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**28), 2**28 - 1)
    | st.floats(allow_nan=False).filter(lambda x: not x.is_integer() or math.isinf(x))
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=20,
)


@FUZZ
@given(amf3_values)
def test_amf3_round_trip(value: Any) -> None:
    data = encode_amf3(value)
    assert amf3.decode(data) == (value, len(data))
    assert amf0.decode(b"\x11" + data) == (value, len(data) + 1)


# --- FLV ------------------------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=64))
def test_flv_parsers_never_crash(data: bytes) -> None:
    for parse in (flv.parse_video, flv.parse_audio):
        with contextlib.suppress(ProtocolError):
            parse(data)


# --- session --------------------------------------------------------------------------------------


def _published() -> tuple[ClientSession, ServerSession]:
    client = ClientSession(chunk_size=128)
    server = ServerSession()
    client.connect("live", "rtmp://localhost/live")
    client.create_stream()
    client.publish("key1234")
    pump(client, server)
    server.accept_publish(1)
    pump(client, server)
    return client, server


def _check_closed_cleanly(server: ServerSession, events: list[Any]) -> None:
    if server.closed:
        kinds = {type(e) for e in events}
        assert kinds & {ProtocolViolation, TimedOut} or server.get_timer() is None
        assert sum(isinstance(e, PublishEnd) for e in events) <= 1


@FUZZ
@given(st.one_of(st.binary(max_size=2000), chunky()), st.lists(st.integers(0, 10**6), max_size=6))
def test_session_never_raises_after_publish(data: bytes, cuts: list[int]) -> None:
    _, server = _published()
    events = []
    for piece in cut(data, cuts):
        server.receive_data(piece, 1.0)
        events += drain(server)
    _check_closed_cleanly(server, events)
    if server.closed:
        assert any(isinstance(e, ProtocolViolation) for e in events) or not data


@FEW
@given(st.binary(max_size=4000))
def test_session_never_raises_from_the_first_byte(data: bytes) -> None:
    server = ServerSession()
    server.receive_data(data, 0.0)
    events = drain(server)
    assert all(isinstance(e, ProtocolViolation) for e in events)
    assert server.closed == bool(events)


@FUZZ
@given(
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=6),
    st.booleans(),
)
def test_session_survives_mutated_client_streams(
    flips: list[tuple[int, int]], insert: bool
) -> None:
    client, server = _published()
    client.send_metadata({"width": 160.0})
    client.send_video(0, b"\x17\x01\x00\x00\x00" + bytes(300))
    client.send_audio(0, b"\xaf\x01" + bytes(50))
    client.call("FCUnpublish", "key1234")
    data = bytearray(client.data_to_send())
    for pos, value in flips:
        pos %= len(data)
        if insert:
            data.insert(pos, value)
        else:
            data[pos] = value
    server.receive_data(bytes(data), 2.0)
    _check_closed_cleanly(server, drain(server))


@FUZZ
@given(chunky(), st.lists(st.integers(0, 10**6), max_size=4))
def test_session_never_raises_before_connect(data: bytes, cuts: list[int]) -> None:
    hs = ClientHandshake()
    server = ServerSession()
    server.receive_data(hs.data_to_send(), 0.0)
    hs.receive_data(server.data_to_send())
    server.receive_data(hs.data_to_send(), 0.0)
    events = []
    for piece in cut(data, cuts):
        server.receive_data(piece, 0.5)
        events += drain(server)
    assert all(isinstance(e, ProtocolViolation) for e in events)
    assert server.closed == bool(events)


NAMES = st.sampled_from(
    ["connect", "releaseStream", "FCPublish", "createStream", "publish", "play", "FCUnpublish",
     "closeStream", "deleteStream", "_checkbw", "onStatus", "_result", "whatever"]
)  # fmt: skip
ARG = st.one_of(
    st.none(),
    st.sampled_from(
        [
            0.0,
            1.0,
            2.0,
            3.0,
            1.5,
            -1.0,
            math.inf,
            math.nan,
            1e300,
            True,
            "key",
            "key?x=1",
            "",
            "k" * 300,
        ]
    ),
    st.fixed_dictionaries(
        {},
        optional={
            "app": st.sampled_from(["live", "", 5.0]),
            "objectEncoding": st.sampled_from([0.0, 3.0, "x"]),
            "tcUrl": st.just("rtmp://h/live"),
        },
    ),
)
ACTION = st.sampled_from(["none", "accept", "reject", "media", "late-accept"])
RANDOM_STEP = st.tuples(NAMES, st.sampled_from([0.0, 1.0, 7.0]), ARG, st.lists(ARG, max_size=3),
                        st.integers(0, 3), ACTION)  # fmt: skip
# The happy path's steps, so that random sequences reach publishing often.
TEMPLATE_STEP = st.one_of(
    st.tuples(st.just("createStream"), st.just(2.0), st.none(), st.just([]), st.just(0), ACTION),
    st.tuples(st.just("publish"), st.just(0.0), st.none(), st.just(["key", "live"]),
              st.integers(1, 2), ACTION),
    st.tuples(st.just("FCUnpublish"), st.just(0.0), st.none(), st.just(["key"]), st.just(0),
              ACTION),
    st.tuples(st.just("deleteStream"), st.just(0.0), st.none(), st.sampled_from([[1.0], [2.0]]),
              st.just(0), ACTION),
    st.tuples(st.just("closeStream"), st.just(0.0), st.none(), st.just([]), st.integers(1, 2),
              ACTION),
)  # fmt: skip
STEP = st.one_of(TEMPLATE_STEP, TEMPLATE_STEP, RANDOM_STEP)
HAPPY_START = [
    ("createStream", 2.0, None, [], 0, "none"),
    ("publish", 0.0, None, ["key", "live"], 1, "accept"),
]


@FUZZ
@given(st.lists(STEP, max_size=20), st.booleans() | st.just(True), st.booleans())
def test_session_state_machine(steps: list[Any], connect_first: bool, happy: bool) -> None:
    """Random command sequences and decisions: never an exception, and every accepted publish
    gets exactly one PublishEnd (close() ends whatever is still running)."""
    client = RawClient(ServerSession())
    server = client.server
    if connect_first:
        client.connect()
    accepted = ends = 0
    pending: list[int] = []
    for name, tid, obj, args, msid, action in (HAPPY_START if happy else []) + steps:
        client.command(name, tid, obj, *args, stream_id=msid)
        if action == "media":
            client.send(MessageType.VIDEO, b"\x17\x01\x00\x00\x00\x00", msid, 0, 7)
        for ev in drain(server):
            if isinstance(ev, PublishRequest):
                pending.append(ev.stream_id)
            ends += isinstance(ev, PublishEnd)
        while pending and action in ("accept", "reject", "late-accept"):
            stream_id = pending.pop(0)
            if action == "reject":
                server.reject_publish(stream_id, "NetStream.Publish.Denied", "no")
            elif action == "accept" or server.stream_state(stream_id) is not None:
                accepted += server.accept_publish(stream_id)
        client.collect()
    server.close()
    ends += sum(isinstance(e, PublishEnd) for e in drain(server))
    note_event(f"accepted {min(accepted, 2)}")
    target(float(accepted))
    assert ends == accepted
