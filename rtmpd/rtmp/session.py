"""The server side of one RTMP connection, sans-I/O: bytes and time in, events and bytes out.

ServerSession composes, and holds, the pieces: a ConnectionState (`rtmpd.rtmp.states`: the
states, the transition tables and why they are what they are), the command handlers
(`rtmpd.rtmp.commands`, a table of functions given a small Context), an Output that cuts every
reply into chunks, and the event queue. This module feeds bytes through the handshake and the
chunk reader, dispatches messages, turns media into events (the hot path) and runs the timers.

Timers, with time passed in: the handshake must finish within `handshake_timeout`; from the
handshake (and again from connect, and whenever no publish is active or pending) a publish
must be requested within `publish_timeout`; a publishing stream must send audio or video at
least every `idle_timeout`. Any ProtocolError raised while parsing becomes a ProtocolViolation
event; receive_data never raises it.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from . import amf0, commands, exheader, flv, limits, records
from . import messages as msgs
from .amf_values import TypedObject
from .chunk import ChunkReader, Message, SerializedMessage
from .commands import Context, Peer
from .config import SessionConfig
from .errors import ProtocolError
from .events import (
    Audio,
    AudioConfig,
    AudioMultichannel,
    Event,
    Metadata,
    ProtocolViolation,
    PublishEnd,
    RawKind,
    RawMedia,
    SequenceEnd,
    TimedOut,
    Video,
    VideoConfig,
    VideoMetadata,
)
from .exheader import AudioPacketType as _A
from .exheader import ClientCaps
from .exheader import VideoPacketType as _V
from .handshake import ServerHandshake
from .messages import (
    MessageType,
    UserControlEvent,
    parse_command,
    parse_data,
    parse_u32,
    parse_user_control,
)
from .output import Output
from .states import (
    MEDIA_STATES,
    ConnectionState,
    ConnState,
    ConnTrigger,
    StreamState,
    StreamTrigger,
)

__all__ = ["ConnState", "ServerSession", "StreamState"]

_Buf = bytes | bytearray | memoryview
_DEFAULT_CONFIG = SessionConfig()
# Codec ids and media message types as plain ints, bound once: the media fast paths compare and
# store them per message (an IntEnum member costs a class attribute lookup each time).
_VIDEO = MessageType.VIDEO.value
_AUDIO = MessageType.AUDIO.value
_AVC = flv.VideoCodec.AVC.value
_AAC = flv.SoundFormat.AAC.value
_CODED = _V.CODED_FRAMES.value
_CODED_X = _V.CODED_FRAMES_X.value


#: Header events' part in a RawMedia key: one kept per kind of header and track.
_HEADER_CODES: dict[type, int] = {VideoConfig: 1, AudioConfig: 2, AudioMultichannel: 3,
                                  VideoMetadata: 4}  # fmt: skip


def _config_bytes(data: _Buf, what: str) -> bytes:
    if len(data) > limits.MAX_CONFIG_SIZE:
        raise flv.InvalidConfig(f"{what} configuration too large")
    return bytes(data)


def _metadata(data: _Buf) -> dict[str, Any]:
    """A video Metadata body: AMF0 [name, value] pairs (bounded like a command)."""
    if len(data) > limits.MAX_COMMAND_SIZE:
        raise ProtocolError("video metadata too large")
    values = amf0.decode_all(data)
    return {name: value for name, value in zip(values[::2], values[1::2], strict=False)
            if isinstance(name, str)}  # fmt: skip


class ServerSession:
    """One connection's protocol state: bytes and time in, events and bytes out."""

    def __init__(self, config: SessionConfig = _DEFAULT_CONFIG, now: float = 0.0) -> None:
        self.config = config
        self._cstate = ConnectionState(now)
        self._streams = self._cstate.streams  # read directly on the media hot path
        self._output = Output()
        self._events: deque[Event] = deque()
        self._peer = Peer()
        self._ctx = Context(self._cstate, self._output, self._events, config, self._peer)
        self._handshake = ServerHandshake(now_ms=int(now * 1000) & 0xFFFFFFFF)
        self._reader = ChunkReader()
        self._started = now
        self._last_media = now
        self._media_seen = False  # media arrived during this receive_data call
        self._bytes_received = 0
        self._last_ack = 0
        self._peer_window = 0
        #: Audio/video/data messages dropped because their stream was not publishing.
        self.ignored_media = 0
        self._taps: set[int] = set()  # streams whose media messages also go out raw

    # --- public API -------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._cstate.conn is ConnState.CLOSED

    @property
    def state(self) -> ConnState:
        return self._cstate.conn

    @property
    def bytes_received(self) -> int:
        """Every byte fed so far, handshake included (not wrapped)."""
        return self._bytes_received

    @property
    def peer_caps(self) -> ClientCaps:
        """What the peer said it supports in connect (enhanced RTMP; empty before connect)."""
        return self._peer.caps

    def stream_state(self, stream_id: int) -> StreamState | None:
        stream = self._streams.get(stream_id)
        return stream.state if stream is not None else None

    def receive_data(self, data: bytes | bytearray | memoryview, now: float) -> None:
        """Feed bytes read from the socket. Never raises for anything the peer sends."""
        cstate = self._cstate
        if cstate.conn is ConnState.CLOSED or not data:
            return
        cstate.now = now
        self._bytes_received += len(data)
        try:
            if cstate.conn is ConnState.HANDSHAKE:
                hs = self._handshake
                hs.receive_data(bytes(data))
                out = hs.data_to_send()
                if out:
                    self._output.raw(out)
                if not hs.complete:
                    return
                cstate.conn_to(ConnTrigger.HANDSHAKE_DONE)  # starts the wait for a publish
                data = hs.take_remainder()
            self._feed(data)
            if self._media_seen:  # every message of one call arrives at the same `now`
                self._media_seen = False
                self._last_media = now
            self._maybe_ack()
        except ProtocolError as exc:
            self._fail(ProtocolViolation(str(exc) or type(exc).__name__))

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def data_to_send(self) -> bytes:
        return self._output.take()

    def accept_publish(self, stream_id: int) -> bool:
        """Start the publish: StreamBegin + onStatus NetStream.Publish.Start. False (and
        nothing sent) if the publish is no longer pending; a publish the peer withdrew in the
        meantime is ended at once with a PublishEnd event."""
        stream = self._streams.get(stream_id)
        if self.closed or stream is None:
            return False
        before = stream.state
        if not self._cstate.stream_to(stream, StreamTrigger.ACCEPT):
            return False
        if before is StreamState.WITHDRAWN:
            self._events.append(PublishEnd(stream_id, "unpublished before accept"))
            return True
        self._last_media = self._cstate.now
        self._output.control(msgs.stream_begin(stream_id))
        self._output.status(stream_id, "status", "NetStream.Publish.Start", "Publishing")
        return True

    def reject_publish(self, stream_id: int, code: str, description: str) -> bool:
        """Refuse the publish with onStatus (level error, `code`, `description`), then close."""
        stream = self._streams.get(stream_id)
        if self.closed or stream is None:
            return False
        if not self._cstate.stream_to(stream, StreamTrigger.REJECT):
            return False
        self._output.status(stream_id, "error", code, description)
        self._ctx.end_session("closed")
        # Media the peer pipelined behind `publish` is no one's business now. The queue is
        # shared with the command handlers' Context, so it is filtered in place.
        events = self._events
        kept = [e for e in events if getattr(e, "stream_id", None) != stream_id]
        events.clear()
        events.extend(kept)
        return True

    def end_publish(self, stream_id: int, code: str, description: str) -> bool:
        """End a running publish from our side with onStatus (level error, `code`,
        `description`: what the publisher's software shows), then close the session. The
        publish gets its PublishEnd like any other. False if it is not publishing."""
        stream = self._streams.get(stream_id)
        if self.closed or stream is None or stream.state is not StreamState.PUBLISHING:
            return False
        self._output.status(stream_id, "error", code, description)
        self._ctx.end_session(description)
        return True

    def tap(self, stream_id: int, on: bool = True) -> None:
        """Also hand out each audio and video message of `stream_id` as it came (a RawMedia
        event after its parsed ones), for relays and players. Off by default: a stream
        nobody relays pays nothing for it."""
        if on:
            self._taps.add(stream_id)
        else:
            self._taps.discard(stream_id)

    def accept_play(self, stream_id: int) -> bool:
        """Start playing: StreamBegin, onStatus NetStream.Play.Reset and Play.Start,
        |RtmpSampleAccess; media then goes out with `send_serialized`. False (and nothing
        sent) if the play is no longer pending."""
        stream = self._streams.get(stream_id)
        if self.closed or stream is None or stream.state is not StreamState.PLAY_REQUESTED:
            return False
        self._cstate.stream_to(stream, StreamTrigger.ACCEPT)
        out = self._output
        out.control(msgs.stream_begin(stream_id))
        out.status(stream_id, "status", "NetStream.Play.Reset", "Playing and resetting")
        out.status(stream_id, "status", "NetStream.Play.Start", "Started playing")
        access = msgs.encode_data("|RtmpSampleAccess", True, True)
        out.send(msgs.ChunkStreamId.DATA, MessageType.DATA_AMF0, stream_id, access)
        return True

    def reject_play(self, stream_id: int, code: str, description: str) -> bool:
        """Refuse the play with onStatus (level error), then close the session."""
        stream = self._streams.get(stream_id)
        if self.closed or stream is None or stream.state is not StreamState.PLAY_REQUESTED:
            return False
        self._cstate.stream_to(stream, StreamTrigger.REJECT)
        self._output.status(stream_id, "error", code, description)
        self._ctx.end_session("closed")
        return True

    def end_play(self, stream_id: int, description: str) -> bool:
        """The stream played is over: StreamEOF, onStatus NetStream.Play.UnpublishNotify and
        Play.Stop (players stop there, FFmpeg with end of file), then close the session."""
        stream = self._streams.get(stream_id)
        if self.closed or stream is None or stream.state is not StreamState.PLAYING:
            return False
        out = self._output
        out.control(msgs.stream_eof(stream_id))
        out.status(stream_id, "status", "NetStream.Play.UnpublishNotify", description)
        out.status(stream_id, "status", "NetStream.Play.Stop", description)
        self._ctx.end_session(description)
        return True

    @property
    def chunk_size(self) -> int:
        """The chunk size our messages are cut with (what `send_serialized` needs)."""
        return self._output.chunk_size

    def send_serialized(self, msg: SerializedMessage) -> None:
        """Media to a player, cut once for all of them (`chunk.serialize_message` with this
        session's chunk size and the player's stream id)."""
        if not self.closed:
            self._output.serialized(msg)

    def send_message(self, csid: int, msg_type: int, stream_id: int, payload: bytes) -> None:
        """A message of our own to a player (its metadata, say), timestamp 0."""
        if not self.closed:
            self._output.send(csid, msg_type, stream_id, payload)

    def request_reconnect(self, tc_url: str = "", description: str = "Reconnect, please") -> bool:
        """Enhanced RTMP v2's reconnect request: onStatus NetConnection.Connect.ReconnectRequest
        on stream 0 (with `tc_url`, where to reconnect, when given; else the client uses its
        own). The session goes on as before: the client is to keep sending up to its next
        keyframe, reconnect and then leave. Only to a peer that announced the Reconnect
        capability in connect; False, and nothing sent, otherwise."""
        if self._cstate.conn is not ConnState.CONNECTED or not self._peer.caps.reconnect:
            return False
        extra = {"tcUrl": tc_url} if tc_url else {}
        info = msgs.status_info("status", msgs.RECONNECT_REQUEST, description, **extra)
        self._output.command(0, "onStatus", 0, None, info)
        return True

    def get_timer(self) -> float | None:
        """When handle_timer must next be called, or None."""
        cstate = self._cstate
        if cstate.conn is ConnState.CLOSED:
            return None
        if cstate.conn is ConnState.HANDSHAKE:
            return self._started + self.config.handshake_timeout
        deadline: float | None = None
        if cstate.waiting_since is not None:
            deadline = cstate.waiting_since + self.config.publish_timeout
        if cstate.publishing:
            idle = self._last_media + self.config.idle_timeout
            deadline = idle if deadline is None else min(deadline, idle)
        return deadline

    def handle_timer(self, now: float) -> None:
        cstate = self._cstate
        cstate.now = now
        deadline = self.get_timer()
        if deadline is None or now < deadline:
            return
        cfg = self.config
        waiting_since = cstate.waiting_since
        if cstate.conn is ConnState.HANDSHAKE:
            reason = f"no handshake within {cfg.handshake_timeout:g} s"
        elif waiting_since is not None and now >= waiting_since + cfg.publish_timeout:
            reason = f"no publish within {cfg.publish_timeout:g} s"
        else:
            reason = f"no media for {cfg.idle_timeout:g} s"
        self._fail(TimedOut(reason))

    def close(self) -> None:
        """Close from our side; publishes still running get their PublishEnd("closed")."""
        self._ctx.end_session("closed")

    # --- input --------------------------------------------------------------------------------

    def _fail(self, event: ProtocolViolation | TimedOut) -> None:
        if self.closed:
            return
        self._events.append(event)
        reason = "protocol violation" if isinstance(event, ProtocolViolation) else "timeout"
        self._ctx.end_session(reason)

    def _maybe_ack(self) -> None:
        window = self._peer_window
        if window and self._bytes_received - self._last_ack >= window:
            self._last_ack = self._bytes_received
            self._output.control(
                msgs.acknowledgement(self._bytes_received), MessageType.ACKNOWLEDGEMENT
            )

    def _feed(self, data: bytes | bytearray | memoryview) -> None:
        reader = self._reader
        cstate = self._cstate
        view = memoryview(data)
        for off in range(0, len(view), limits.RECV_SLICE):
            reader.feed(view[off : off + limits.RECV_SLICE])
            while (msg := reader.next_message()) is not None:
                self._dispatch(msg)
                if cstate.conn is ConnState.CLOSED:
                    return

    def _dispatch(self, msg: Message) -> None:
        t = msg.msg_type
        if t == _VIDEO or t == _AUDIO:  # noqa: SIM109 - two int compares beat building a tuple
            if self._taps and msg.stream_id in self._taps:
                self._tapped(t, msg.stream_id, msg.timestamp, msg.payload)
            else:
                self._media(t, msg.stream_id, msg.timestamp, msg.payload)
        elif t == MessageType.COMMAND_AMF0 or t == MessageType.COMMAND_AMF3:
            cmd = parse_command(msg.payload, amf3=t == MessageType.COMMAND_AMF3)
            commands.handle(self._ctx, msg.stream_id, cmd)
        elif t == MessageType.DATA_AMF0 or t == MessageType.DATA_AMF3:
            self._data(msg.stream_id, msg.payload, amf3=t == MessageType.DATA_AMF3)
        elif t == MessageType.USER_CONTROL:
            uc = parse_user_control(msg.payload)
            if uc.event == UserControlEvent.PING_REQUEST:
                self._output.control(msgs.ping_response(uc.value))
        elif t == MessageType.WINDOW_ACK_SIZE:
            self._peer_window = parse_u32(msg.payload, "Window Acknowledgement Size")
        elif t == MessageType.AGGREGATE:
            self._aggregate(msg)
        # Acknowledgement, Set Peer Bandwidth and shared objects need nothing from us.

    def _stream_for_media(self, stream_id: int) -> bool:
        stream = self._streams.get(stream_id)
        if stream is None or stream.state not in MEDIA_STATES:
            self.ignored_media += 1
            return False
        return True

    def _media(self, msg_type: int, stream_id: int, ts: int, payload: _Buf) -> None:
        stream = self._streams.get(stream_id)  # _stream_for_media, inlined: once per message
        if stream is None or stream.state not in MEDIA_STATES:
            self.ignored_media += 1
            return
        n = len(payload)
        if not n:
            return  # some encoders send empty audio/video messages; nothing to do
        self._media_seen = True
        b0 = payload[0]
        # Fast paths for what nearly every message is (AVC NAL units, raw AAC); same results as
        # the general parsers below, without the intermediate tag object.
        if msg_type == _VIDEO:
            # b0 & 0x8F: the enhanced-RTMP bit and the codec id; then a NALU, not an info frame.
            if b0 & 0x8F == _AVC and n >= 5 and payload[1] == 1 and b0 >> 4 != 5:
                cts = (payload[2] << 16) | (payload[3] << 8) | payload[4]
                if cts & 0x800000:
                    cts -= 0x1000000
                kind = b0 >> 4
                view = memoryview(payload)[5:]
                self._events.append(Video(stream_id, ts, _AVC, kind == 1, cts, view, kind))
                return
            if b0 & flv.EX_VIDEO_BIT:
                self._ex_video(stream_id, ts, payload)
                return
            tag = flv.parse_video(payload)
            if tag.is_config:
                # Only bounded here: a record the packager cannot use costs that track (one
                # log line there), not the publish; some encoders send an empty one first.
                data = _config_bytes(tag.data, "video")
                record = records.parse_video_record(tag.codec_id, data)
                self._events.append(VideoConfig(stream_id, ts, tag.codec_id, data, 0, record))
            elif tag.is_end:
                self._events.append(SequenceEnd(stream_id, ts, tag.codec_id, True))
            elif tag.is_frame:
                kind = tag.frame_type
                self._events.append(Video(stream_id, ts, tag.codec_id, kind == 1,
                                          tag.composition_offset, tag.data, kind))  # fmt: skip
        else:
            fmt = b0 >> 4
            if fmt == _AAC and n >= 2 and payload[1] == 1:
                self._events.append(
                    Audio(stream_id, ts, _AAC, flv.SOUND_RATES[(b0 >> 2) & 3], 16 if b0 & 2 else 8,
                          2 if b0 & 1 else 1, memoryview(payload)[2:])
                )  # fmt: skip
                return
            if fmt == flv.EX_AUDIO_FORMAT:
                self._ex_audio(stream_id, ts, payload)
                return
            a = flv.parse_audio(payload)
            if a.packet_type == flv.AacPacketType.SEQUENCE_HEADER:
                data = _config_bytes(a.data, "audio")
                found = records.parse_audio_record(a.sound_format, data)
                self._events.append(AudioConfig(stream_id, ts, a.sound_format, data, 0, found))
            elif a.packet_type is None or a.packet_type == flv.AacPacketType.RAW:
                self._events.append(
                    Audio(
                        stream_id,
                        ts,
                        a.sound_format,
                        a.sound_rate,
                        a.sound_size,
                        a.channels,
                        a.data,
                    )
                )

    def _tapped(self, msg_type: int, stream_id: int, ts: int, payload: _Buf) -> None:
        """`_media`, then the message itself, told apart by the events it made."""
        events = self._events
        before = len(events)
        self._media(msg_type, stream_id, ts, payload)
        made = len(events) - before
        if not made:
            return  # ignored (not publishing) or empty: nothing to relay either
        kind = RawKind.FRAME
        key = msg_type
        for i in range(before, before + made):
            event = events[i]
            if type(event) is Video:
                if event.frame_type == 1 and kind is RawKind.FRAME:
                    kind = RawKind.KEYFRAME
            elif type(event) is Audio:
                pass
            elif type(event) is SequenceEnd:
                kind = RawKind.END
            else:  # a configuration, multichannel layout or video metadata: state to keep
                kind = RawKind.HEADER
                code = _HEADER_CODES.get(type(event), 0)
                key = key * 131 + code * 17 + getattr(event, "track", 0)
        events.append(RawMedia(stream_id, msg_type, ts, payload, kind, key))

    def _ex_video(self, stream_id: int, ts: int, payload: _Buf) -> None:
        """Enhanced RTMP video: one event per track of the message (rtmpd.rtmp.exheader)."""
        events = self._events
        for p in exheader.parse_video(payload):
            kind, code, track = p.packet_type, p.fourcc, p.track
            if kind in (_CODED, _CODED_X):
                frame = p.frame_type
                events.append(Video(stream_id, ts, code, frame == 1, p.composition_offset, p.data,
                                    frame, track))  # fmt: skip
            elif kind == _V.SEQUENCE_START or kind == _V.MPEG2TS_SEQUENCE_START:
                data = _config_bytes(p.data, "video")
                descriptor = kind == _V.MPEG2TS_SEQUENCE_START
                record = None if descriptor else records.parse_video_record(code, data)
                events.append(VideoConfig(stream_id, ts, code, data, track, record, descriptor))
            elif kind == _V.SEQUENCE_END:
                events.append(SequenceEnd(stream_id, ts, code, True, track))
            elif kind == _V.METADATA:
                events.append(VideoMetadata(stream_id, ts, code, _metadata(p.data), track))

    def _ex_audio(self, stream_id: int, ts: int, payload: _Buf) -> None:
        """Enhanced RTMP audio: one event per track of the message (rtmpd.rtmp.exheader)."""
        events = self._events
        for p in exheader.parse_audio(payload):
            kind, code, track = p.packet_type, p.fourcc, p.track
            if kind == _A.CODED_FRAMES:
                events.append(Audio(stream_id, ts, code, 0, 0, 0, p.data, track))
            elif kind == _A.SEQUENCE_START:
                data = _config_bytes(p.data, "audio")
                found = records.parse_audio_record(code, data)
                events.append(AudioConfig(stream_id, ts, code, data, track, found))
            elif kind == _A.SEQUENCE_END:
                events.append(SequenceEnd(stream_id, ts, code, False, track))
            elif kind == _A.MULTICHANNEL_CONFIG:
                config = exheader.parse_multichannel(p.data)
                events.append(AudioMultichannel(stream_id, ts, code, config, track))

    def _data(self, stream_id: int, payload: _Buf, *, amf3: bool) -> None:
        if not self._stream_for_media(stream_id):
            return
        values = parse_data(payload, amf3=amf3)
        if values and values[0] == "@setDataFrame":
            values = values[1:]
        if len(values) >= 2 and values[0] == "onMetaData":
            meta = values[1]
            if isinstance(meta, TypedObject):
                meta = meta.properties
            if isinstance(meta, dict):
                self._events.append(Metadata(stream_id, dict(meta)))

    def _aggregate(self, msg: Message) -> None:
        """The FLV tags of an aggregate message, their timestamps mapped onto the message's."""
        stream_id, base = msg.stream_id, msg.timestamp
        tapped = stream_id in self._taps
        for kind, offset, body in flv.aggregate_tags(msg.payload):
            if kind == MessageType.AUDIO or kind == MessageType.VIDEO:
                if tapped:
                    self._tapped(kind, stream_id, base + offset, body)
                else:
                    self._media(kind, stream_id, base + offset, body)
            elif kind == MessageType.DATA_AMF0:
                self._data(stream_id, body, amf3=False)
