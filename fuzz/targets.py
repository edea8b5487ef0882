"""Fuzz targets: one function per parser, bytes in, and a bug is any exception that escapes.

A target returns normally for every input the code handles as designed: parsed, or refused
with the parser's own error (`ProtocolError` in the RTMP core, `ValueError` in rtmpd.hls).
Anything else (another exception, a broken invariant checked with `check`) is a finding.
The same functions run under atheris (fuzz/run.py, coverage-guided, for minutes) and under
Hypothesis and a corpus replay in the test suite (tests/test_hostile_fuzz.py).

Most targets read a first "flags" byte that picks how the rest is cut into reads, so one input
also exercises every way a stream can be split across socket reads.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Callable
from typing import Any

from rtmpd.hls import codecs
from rtmpd.hls.segmenter import Action, Segmenter, Track

from rtmpd.rtmp import amf0, amf3, exheader, flv, limits, records
from rtmpd.rtmp.chunk import ChunkReader
from rtmpd.rtmp.errors import ProtocolError
from rtmpd.rtmp.events import ProtocolViolation, PublishEnd, PublishRequest, TimedOut
from rtmpd.rtmp.handshake import (
    CLIENT_PARTIAL_KEY,
    PACKET_SIZE,
    SERVER_PARTIAL_KEY,
    ClientHandshake,
    ServerHandshake,
    find_digest,
)
from rtmpd.rtmp.messages import MessageType, parse_command, parse_data, parse_user_control
from rtmpd.rtmp.session import ServerSession
from tests.support.amf3_encode import encode_amf3
from tests.support.pieces import mode_from_flags, pieces

#: What one connection may make the parser hold: partial chunk header, and preallocated
#: payload of the messages being assembled.
MAX_HEADER_LEFTOVER = 18
#: Handshake: C0 + C1 + C2 is all the server ever reads before chunks.
HANDSHAKE_BYTES = 1 + 2 * PACKET_SIZE


class Finding(AssertionError):
    """A broken invariant (as opposed to an exception that escaped on its own)."""


def check(condition: bool, what: str) -> None:
    if not condition:
        raise Finding(what)


# --- chunk stream + session -----------------------------------------------------------------


def _handshaken(now: float = 0.0) -> ServerSession:
    server = ServerSession(now=now)
    client = ClientHandshake(digest=True)
    server.receive_data(client.data_to_send(), now)
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send(), now)
    server.data_to_send()
    check(client.complete, "our own handshake did not complete")
    return server


def _read_messages(reader: ChunkReader, data: bytes) -> None:
    """The bare chunk parser over the same bytes, and the message parsers over its output."""
    reader.feed(data)
    while (msg := reader.next_message()) is not None:
        check(len(msg.payload) <= limits.MAX_MESSAGE_SIZE, "message over the size cap")
        payload, kind = msg.payload, msg.msg_type
        try:
            if kind in (MessageType.COMMAND_AMF0, MessageType.COMMAND_AMF3):
                parse_command(payload, amf3=kind == MessageType.COMMAND_AMF3)
            elif kind in (MessageType.DATA_AMF0, MessageType.DATA_AMF3):
                parse_data(payload, amf3=kind == MessageType.DATA_AMF3)
            elif kind == MessageType.USER_CONTROL:
                parse_user_control(payload)
            elif kind == MessageType.VIDEO:
                flv.parse_video(payload)
            elif kind == MessageType.AUDIO:
                flv.parse_audio(payload)
        except ProtocolError:
            pass
    check(reader.buffered <= MAX_HEADER_LEFTOVER, f"{reader.buffered} unparsed bytes held")
    check(0 <= reader.pending <= limits.MAX_PENDING_PAYLOAD, "pending payload out of bounds")


def session(data: bytes) -> None:
    """Bytes after a completed handshake, into the session (and a bare chunk reader).

    Flags: bits 0-1 the publish decision (accept now, reject, accept one read later, never);
    bits 2-3 how reads are cut. Invariants: the session never raises; it closes only with a
    ProtocolViolation or TimedOut; every accepted publish ends exactly once."""
    if not data:
        return
    flags, body = data[0], data[1:]
    decision = flags & 3
    server = _handshaken()
    reader = ChunkReader()
    reader_ok = True
    accepted = ends = 0
    late: list[int] = []
    closing_events: list[object] = []
    now = 0.0
    for piece in pieces(body, mode_from_flags(flags)):
        now += 0.01
        server.receive_data(piece, now)
        if reader_ok:
            try:
                _read_messages(reader, piece)
            except ProtocolError:
                reader_ok = False
        for stream_id in late:
            accepted += server.accept_publish(stream_id)
        late.clear()
        while (event := server.next_event()) is not None:
            if isinstance(event, PublishRequest):
                if decision == 0:
                    accepted += server.accept_publish(event.stream_id)
                elif decision == 1:
                    server.reject_publish(event.stream_id, "NetStream.Publish.Denied", "no")
                elif decision == 2:
                    late.append(event.stream_id)
            elif isinstance(event, PublishEnd):
                ends += 1
            elif isinstance(event, ProtocolViolation | TimedOut):
                closing_events.append(event)
        server.data_to_send()
    if server.closed:
        check(bool(closing_events) or decision == 1, "closed without saying why")
    server.handle_timer(now + 3600.0)  # every timeout is due
    server.close()
    while (event := server.next_event()) is not None:
        ends += isinstance(event, PublishEnd)
    check(server.closed and server.get_timer() is None, "still open after close()")
    check(ends == accepted, f"{accepted} publishes accepted, {ends} ended")


# --- handshake ------------------------------------------------------------------------------


def handshake(data: bytes) -> None:
    """Raw bytes from the first byte of a connection, server and client side.

    Invariants: the server answers exactly S0+S1+S2 (3073 bytes) once C0+C1 are in, completes
    after C2 and hands every byte past C2 on untouched; the session turns handshake trouble
    into a ProtocolViolation."""
    if not data:
        return
    flags, body = data[0], data[1 : 1 + 16384]
    hs = ServerHandshake(now_ms=12345)
    out = b""
    try:
        for piece in pieces(body, mode_from_flags(flags)):
            hs.receive_data(piece)
            out += hs.data_to_send()
    except ProtocolError:
        pass
    else:
        if len(body) > 1 + PACKET_SIZE:
            check(len(out) == HANDSHAKE_BYTES, f"answered {len(out)} bytes")
        if hs.complete:
            check(hs.take_remainder() == body[HANDSHAKE_BYTES:], "bytes after C2 changed")
        else:
            check(len(body) < HANDSHAKE_BYTES, "complete handshake not recognised")

    server = ServerSession()
    for piece in pieces(body, mode_from_flags(flags)):
        server.receive_data(piece, 0.0)
    events = []
    while (event := server.next_event()) is not None:
        events.append(event)
    if len(body) < HANDSHAKE_BYTES:
        check(all(isinstance(e, ProtocolViolation) for e in events), "event before handshake")
        check(server.closed == bool(events), "closed without a violation")

    client = ClientHandshake(digest=bool(flags & 16))
    client.data_to_send()
    try:
        for piece in pieces(body, mode_from_flags(flags)):
            client.receive_data(piece)
            client.data_to_send()
    except ProtocolError:
        pass
    packet = body[:PACKET_SIZE].ljust(PACKET_SIZE, b"\0")
    for key in (CLIENT_PARTIAL_KEY, SERVER_PARTIAL_KEY):
        found = find_digest(packet, key)
        if found is not None:
            scheme, offset = found
            check(0 <= offset <= PACKET_SIZE - 32, f"digest offset {offset} out of the packet")


# --- AMF --------------------------------------------------------------------------------------


def amf0_values(data: bytes) -> None:
    """AMF0 decoding; what decodes and re-encodes must re-encode to the same bytes."""
    try:
        values = amf0.decode_all(data)
    except ProtocolError:
        return
    try:
        encoded = amf0.encode_all(*values)
    except (TypeError, ValueError):
        return  # a value our writer does not produce (e.g. deeper than it writes)
    again = amf0.decode_all(encoded)
    check(amf0.encode_all(*again) == encoded, "AMF0 re-encoding is not stable")


def amf3_values(data: bytes) -> None:
    """AMF3 decoding (alone and behind the AMF0 avmplus marker), then the same round trip."""
    try:
        value, end = amf3.decode(data)
    except ProtocolError:
        value = end = None
    with contextlib.suppress(ProtocolError):
        amf0.decode(b"\x11" + data)
    if end is None:
        return
    check(0 < end <= len(data), f"decoder ended at {end} of {len(data)}")
    try:
        encoded = encode_amf3(value)
    except (TypeError, ValueError):
        return
    again, used = amf3.decode(encoded)
    check(used == len(encoded), "AMF3 re-decoding did not use every byte")
    check(encode_amf3(again) == encoded, "AMF3 re-encoding is not stable")


# --- FLV bodies -----------------------------------------------------------------------------


def flv_bodies(data: bytes) -> None:
    """Audio/video message bodies and codec configuration records, as the core parses them
    and as the packager parses them again before muxing."""
    for parse in (flv.parse_video, flv.parse_audio):
        with contextlib.suppress(ProtocolError):
            parse(data)
    try:
        tag = flv.parse_video(data)
    except ProtocolError:
        tag = None
    if tag is not None:
        check(len(tag.data) <= len(data), "video payload longer than the body")
    for hls_parse in (codecs.parse_avcc, codecs.parse_asc, codecs.parse_sps):
        with contextlib.suppress(ValueError):
            hls_parse(data)
    try:
        avc = codecs.parse_avcc(data)
    except ValueError:
        return
    check(avc.nal_length_size in (1, 2, 4), f"NAL length size {avc.nal_length_size}")
    if avc.width is not None and avc.height is not None:
        check(avc.width > 0 and avc.height > 0, f"picture size {avc.width}x{avc.height}")


# --- enhanced RTMP ---------------------------------------------------------------------------

_VIDEO_CODES = (7, *(c.value for c in exheader.VideoFourCC))
_AUDIO_CODES = (10, *(c.value for c in exheader.AudioFourCC))


def ex_headers(data: bytes) -> None:
    """Enhanced RTMP bodies (flags bit 0: video or audio), as the session parses them: the ex
    header into packets, then each packet's record or multichannel configuration; and the
    whole body as every codec's record, and (AMF0-decoded) as connect's capabilities.

    Invariants: packets lie within the body, track ids are bytes, composition times SI24;
    records parse or are None (never an exception); capabilities are bounded."""
    if not data:
        return
    flags, body = data[0], data[1:]
    video = not flags & 1
    try:
        packets: list[exheader.ExVideo] | list[exheader.ExAudio] = (
            exheader.parse_video(body) if video else exheader.parse_audio(body)
        )
    except ProtocolError:
        packets = []
    total = 0
    for p in packets:
        total += len(p.data)
        check(0 <= p.track <= 255 and 0 <= p.nano_offset < 2**24, "track or nano offset")
        if isinstance(p, exheader.ExVideo):
            check(-(2**23) <= p.composition_offset < 2**23, "composition time past SI24")
            if p.packet_type == exheader.VideoPacketType.SEQUENCE_START:
                records.parse_video_record(p.fourcc, p.data)
        elif p.packet_type == exheader.AudioPacketType.SEQUENCE_START:
            records.parse_audio_record(p.fourcc, p.data)
        elif p.packet_type == exheader.AudioPacketType.MULTICHANNEL_CONFIG:
            with contextlib.suppress(ProtocolError):
                config = exheader.parse_multichannel(p.data)
                check(len(config.mapping) == config.channel_count or not config.mapping, "map")
    check(total <= len(body), "packets longer than the body")
    for code in _VIDEO_CODES:
        records.parse_video_record(code, body)
    for code in _AUDIO_CODES:
        records.parse_audio_record(code, body)
    try:
        value, _ = amf0.decode(body)
    except ProtocolError:
        return
    if isinstance(value, dict):
        caps = exheader.parse_client_caps(value)
        check(len(caps.fourccs) <= 192 and 0 <= caps.caps_ex < 2**31, "unbounded capabilities")


# --- segmenter --------------------------------------------------------------------------------

_OP = struct.Struct(">BhB")


def segmenter(data: bytes) -> None:
    """A program of frames and sequence headers for the segmenter, 4 bytes per step.

    Step: kind byte (bits 0-1: video frame, audio frame, video header, audio header; bit 2
    keyframe; bit 3 header changed; bit 4 mark a discontinuity; bit 5 the time step is in
    seconds; bit 6 the time step sets an absolute time, up to 2**35 ms), a signed 16-bit time
    step, a size byte. Invariants: actions agree with the open/closed state; a closed segment
    has a positive duration; no written frame lies max_fragment or more after its segment's
    start; no segment grows past the size cap by more than one frame; after a STOP (breaks
    too often) every frame is dropped."""
    fragment, max_fragment, max_bytes = 1000, 4000, 20000
    seg = Segmenter(fragment, max_fragment, max_bytes)
    dts = 0
    for i in range(0, len(data) - 3, 4):
        kind, step, size_byte = _OP.unpack_from(data, i)
        if kind & 64:
            dts = (step & 0xFFFF) << 19
        else:
            dts += step * (1000 if kind & 32 else 1)
        if kind & 16:
            seg.mark_discontinuity()
        op = kind & 3
        if op >= 2:
            seg.configure(Track.VIDEO if op == 2 else Track.AUDIO, changed=bool(kind & 8))
            continue
        track = Track.VIDEO if op == 0 else Track.AUDIO
        size = size_byte * 97 + 1
        was_open, start, before = seg.open, seg.start, seg.bytes
        action = seg.frame(track, dts, bool(kind & 4) and track is Track.VIDEO, size)
        if action is Action.WRITE:
            check(was_open and seg.open and seg.start == start, "WRITE changed the segment")
            check(seg.bytes == before + size, "WRITE did not count the frame")
            check(dts - start < max_fragment, f"frame {dts - start} ms into a segment")
            check(seg.bytes <= max_bytes or before == 0, f"segment of {seg.bytes} bytes")
        elif action is Action.CUT:
            check(seg.open and seg.start == dts and seg.bytes == size, "CUT did not start here")
            if was_open:
                check((seg.closed_duration or 0) >= 1, "closed segment without a duration")
            else:
                check(seg.closed_duration is None, "duration for a segment never opened")
        elif action is Action.CLOSE:
            check(was_open and not seg.open, "CLOSE without an open segment")
            check((seg.closed_duration or 0) >= 1, "closed segment without a duration")
        elif action is Action.STOP:
            check(was_open and not seg.open, "STOP without an open segment")
            check(seg.stopped is not None, "STOP without a reason")
            check((seg.closed_duration or 0) >= 1, "closed segment without a duration")
        else:
            check(seg.stopped is None or action is Action.DROP, "a frame taken after STOP")
            check(seg.open == was_open and seg.bytes == before, "DROP changed the segment")
        check(seg.elapsed() >= 0, "negative elapsed time")
    duration = seg.finish()
    check(duration is None or duration >= 1, f"final duration {duration}")


TARGETS: dict[str, Callable[[bytes], Any]] = {
    "session": session,
    "handshake": handshake,
    "amf0": amf0_values,
    "amf3": amf3_values,
    "flv": flv_bodies,
    "exheader": ex_headers,
    "segmenter": segmenter,
}
