"""RTMP load generator: N concurrent publishers of one FLV file, in one asyncio process.

The file is parsed once and every media message is cut into chunks once
(`rtmpd.rtmp.chunk.serialize_message`: a fmt 0 header with the absolute timestamp, so the same bytes
are valid on every connection); all publishers write those shared bytes. The control exchange
(handshake, connect, createStream, publish) runs through rtmpd's sans-I/O `ClientSession`;
after NetStream.Publish.Start the publisher writes the pre-cut media straight to the socket
(the session only writes on the control and command chunk streams, so the two never mix).

Pacing: "realtime" sends each message when its timestamp comes due (one ticker for all
publishers, so the generator stays cheap; `speed` > 1 runs that clock faster); "flat" writes
as fast as the server reads (paused by the transport's flow control). Files shorter than the
run are looped with shifted timestamps, each loop cut once and shared as well.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rtmpd.rtmp import amf0
from rtmpd.rtmp.chunk import serialize_message
from rtmpd.rtmp.client import ClientSession, ConnectFailed, Status
from rtmpd.rtmp.errors import ProtocolError
from rtmpd.rtmp.messages import ChunkStreamId, MessageType

TAG_AUDIO, TAG_VIDEO, TAG_SCRIPT = 8, 9, 18
STREAM_ID = 1  # what createStream answers first on rtmpd, nginx-rtmp and pyrtmp
TICK = 0.01
FLAT_BATCH = 256 * 1024


@dataclass(frozen=True, slots=True)
class Tag:
    kind: int
    timestamp: int
    body: bytes

    @property
    def is_header(self) -> bool:
        """Metadata and codec sequence headers: sent once per publish, never looped."""
        if self.kind == TAG_SCRIPT:
            return True
        if self.kind == TAG_VIDEO:
            if len(self.body) > 1 and self.body[0] & 0x80:  # enhanced: SequenceStart
                ptype = self.body[0] & 0x0F  # (in a Multitrack message, of each track)
                return ptype == 0 or (ptype == 6 and self.body[1] & 0x0F == 0)
            return len(self.body) > 1 and (self.body[0] & 0x0F) == 7 and self.body[1] == 0
        return len(self.body) > 1 and (self.body[0] >> 4) == 10 and self.body[1] == 0

    @property
    def is_keyframe(self) -> bool:
        return self.kind == TAG_VIDEO and (self.body[0] >> 4) == 1 and not self.is_header


def read_flv(data: bytes) -> list[Tag]:
    """The tags of an FLV file (body = the RTMP message payload)."""
    if data[:3] != b"FLV" or len(data) < 9:
        raise ValueError("not an FLV file")
    offset = struct.unpack_from(">I", data, 5)[0] + 4
    tags = []
    while offset + 11 <= len(data):
        kind = data[offset] & 0x1F
        size = int.from_bytes(data[offset + 1 : offset + 4], "big")
        ts = int.from_bytes(data[offset + 4 : offset + 7], "big") | (data[offset + 7] << 24)
        body = data[offset + 11 : offset + 11 + size]
        if len(body) < size:
            break
        if kind in (TAG_AUDIO, TAG_VIDEO, TAG_SCRIPT) and body:
            tags.append(Tag(kind, ts, body))
        offset += 11 + size + 4
    return tags


@dataclass(slots=True)
class Loop:
    """One pass over the file, cut into chunks: shared by every publisher."""

    data: list[bytes]
    ts: list[int]
    keyframe: list[bool]
    video: list[bool]


class PreparedMedia:
    """The file's messages, serialized once per loop for one chunk size and stream id."""

    def __init__(self, path: Path, *, chunk_size: int = 4096, stream_id: int = STREAM_ID) -> None:
        self.path = path
        self.chunk_size = chunk_size
        self.stream_id = stream_id
        tags = read_flv(path.read_bytes())
        self.headers = [t for t in tags if t.is_header]
        self.body = [t for t in tags if not t.is_header]
        if not self.body:
            raise ValueError(f"{path.name}: no media")
        video = [t.timestamp for t in self.body if t.kind == TAG_VIDEO]
        step = (video[-1] - video[0]) / max(len(video) - 1, 1) if video else 23
        self.period_ms = round(max(t.timestamp for t in self.body) + step)
        self.header_bytes = [self._cut(t, 0) for t in self.headers]
        self.media_bytes_per_loop = sum(len(t.body) for t in self.body)
        self._loops: dict[int, Loop] = {}

    @property
    def seconds(self) -> float:
        return self.period_ms / 1000

    def _cut(self, tag: Tag, ts: int) -> bytes:
        if tag.kind == TAG_SCRIPT:
            payload = amf0.encode("@setDataFrame") + tag.body
            csid, mtype = ChunkStreamId.DATA, MessageType.DATA_AMF0
        elif tag.kind == TAG_VIDEO:
            payload, csid, mtype = tag.body, ChunkStreamId.VIDEO, MessageType.VIDEO
        else:
            payload, csid, mtype = tag.body, ChunkStreamId.AUDIO, MessageType.AUDIO
        msg = serialize_message(csid, mtype, self.stream_id, ts, payload, self.chunk_size)
        return msg.data

    def loop(self, k: int) -> Loop:
        """Pass `k` over the file (timestamps shifted by k periods), cut on first use."""
        got = self._loops.get(k)
        if got is None:
            shift = k * self.period_ms
            got = Loop(
                [self._cut(t, t.timestamp + shift) for t in self.body],
                [t.timestamp + shift for t in self.body],
                [t.is_keyframe for t in self.body],
                [t.kind == TAG_VIDEO for t in self.body],
            )
            self._loops[k] = got
            self._loops.pop(k - 2, None)  # nobody is two loops behind the newest
        return got


@dataclass(slots=True)
class PublisherRecord:
    """What one publisher saw; `name` is the public name (never the key)."""

    index: int
    name: str
    started: float = 0.0  # wall clock when the TCP connect began
    tcp_s: float | None = None  # TCP connect time
    publish_s: float | None = None  # TCP connected -> NetStream.Publish.Start
    media_started: float = 0.0
    bytes_sent: int = 0
    media_ms_sent: int = 0
    max_backlog: int = 0  # bytes waiting in our send buffer (realtime: server falling behind)
    error: str | None = None
    note: str = ""
    finished: float = 0.0
    keyframes: list[tuple[int, float]] = field(default_factory=list)  # (ts ms, wall time sent)
    frames: list[tuple[int, float]] = field(default_factory=list)  # every video frame (`frames`)


class _Publisher(asyncio.Protocol):
    def __init__(self, gen: LoadGenerator, record: PublisherRecord, key: str) -> None:
        self.gen = gen
        self.rec = record
        self.key = key
        self.session = ClientSession(chunk_size=gen.media.chunk_size, digest=gen.digest)
        self.transport: asyncio.Transport | None = None
        self.t_tcp = 0.0
        self.publishing = False
        self.blind = False
        self.done = False
        self.paused = False
        self.closed = asyncio.get_running_loop().create_future()
        self.loop_no = 0
        self.pos = 0
        self.clock0 = 0.0  # monotonic time of media ts 0

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.t_tcp = time.monotonic()
        gen = self.gen
        s = self.session
        s.connect(gen.app, f"rtmp://{gen.host}:{gen.port}/{gen.app}")
        s.create_stream()
        s.publish(self.key)
        self._flush()

    def data_received(self, data: bytes) -> None:
        if self.blind or self.done:  # after our unpublish, whatever comes is not our business
            return
        s = self.session
        try:
            s.receive_data(data)
        except ProtocolError as exc:
            if self.gen.lenient and s.handshake_done and not self.publishing:
                self._go_blind(str(exc))
            else:
                self.fail(f"protocol error from server: {exc}")
            return
        while (ev := s.next_event()) is not None:
            if isinstance(ev, ConnectFailed):
                self.fail(f"connect refused: {_describe(ev.info)}")
            elif isinstance(ev, Status):
                if ev.code == "NetStream.Publish.Start" and not self.publishing:
                    self._start_media()
                elif ev.level == "error":
                    self.fail(f"{ev.code}: {ev.description}")
        self._flush()

    def _go_blind(self, why: str) -> None:
        """The server's replies cannot be parsed (pyrtmp compresses chunk headers across chunk
        streams): stop reading them, publish on stream 1 and start media a moment later."""
        self.blind = True
        self.rec.note = f"replies ignored ({why}); publish assumed"
        s = self.session
        if s.stream_id is None:
            s.call("publish", self.key, "live", stream_id=STREAM_ID, transaction_id=0)
        self._flush()
        asyncio.get_running_loop().call_later(0.1, self._start_media)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done and self.rec.error is None:
            self.rec.error = f"connection lost: {exc or 'closed by server'}"
        self.done = True
        self.rec.finished = time.time()
        if not self.closed.done():
            self.closed.set_result(None)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.publishing and not self.done and self.gen.mode == "flat":
            # not from inside the transport's write callback: closing there trips asyncio
            asyncio.get_running_loop().call_soon(self.pump)

    # -- sending -------------------------------------------------------------------------

    def _flush(self) -> None:
        out = self.session.data_to_send()
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(out)

    def fail(self, why: str) -> None:
        if self.rec.error is None:
            self.rec.error = why
        was_done, self.done = self.done, True
        self.gen.active.discard(self)
        if self.transport is not None and not (was_done and self.transport.is_closing()):
            self.transport.abort()

    def _start_media(self) -> None:
        if self.done or self.publishing:
            return
        media = self.gen.media
        if not self.blind and self.session.stream_id != media.stream_id:
            self.fail(
                f"server gave stream id {self.session.stream_id}, media cut for {media.stream_id}"
            )
            return
        self.publishing = True
        if not self.blind:
            self.rec.publish_s = time.monotonic() - self.t_tcp
        self.rec.media_started = time.time()
        self.clock0 = time.monotonic()
        assert self.transport is not None
        for chunk in media.header_bytes:
            self.transport.write(chunk)
            self.rec.bytes_sent += len(chunk)
        if self.gen.mode == "flat":
            # a moment for the server to get ready (nginx-rtmp: its push relay to hls-live)
            asyncio.get_running_loop().call_later(self.gen.settle, self.pump)
        else:
            self.gen.active.add(self)
            self.pump()

    def pump(self) -> None:
        """Write what is due (realtime) or what the transport takes (flat)."""
        transport = self.transport
        if transport is None or self.done or transport.is_closing():
            return
        gen = self.gen
        flat = gen.mode == "flat"
        due = float("inf") if flat else (time.monotonic() - self.clock0) * 1000 * gen.speed
        limit_ms = gen.media_ms
        loop = gen.media.loop(self.loop_no)
        parts: list[bytes] = []
        size = 0
        now = time.time()
        rec = self.rec
        frames = rec.frames if gen.frames else None
        while True:
            if self.pos >= len(loop.ts):
                self.loop_no += 1
                self.pos = 0
                loop = gen.media.loop(self.loop_no)
            ts = loop.ts[self.pos]
            if ts > due or ts >= limit_ms:
                break
            chunk = loop.data[self.pos]
            parts.append(chunk)
            size += len(chunk)
            if loop.keyframe[self.pos]:
                rec.keyframes.append((ts, now))
            if frames is not None and loop.video[self.pos]:
                frames.append((ts, now))
            rec.media_ms_sent = ts
            self.pos += 1
            if flat and size >= FLAT_BATCH:
                transport.write(b"".join(parts))
                parts.clear()
                rec.bytes_sent += size
                size = 0
                if self.paused:
                    return
        if parts:
            transport.write(b"".join(parts))
            rec.bytes_sent += size
        backlog = transport.get_write_buffer_size()
        if backlog > rec.max_backlog:
            rec.max_backlog = backlog
        if ts >= limit_ms:
            self.finish()

    def finish(self) -> None:
        """All media sent: unpublish and close once the send buffer has drained."""
        if self.done:
            return
        self.done = True
        self.gen.active.discard(self)
        with contextlib.suppress(RuntimeError):
            self.session.delete_stream()
        self._flush()
        if self.transport is not None:
            self.transport.close()


@dataclass(slots=True)
class LoadResult:
    mode: str
    publishers: int
    media_seconds: float
    started: float
    ended: float
    records: list[PublisherRecord]

    @property
    def errors(self) -> list[str]:
        return [f"publisher {r.index}: {r.error}" for r in self.records if r.error]

    def summary(self) -> dict[str, Any]:
        """The result record (JSON-friendly): latencies, bytes, errors."""
        tcp = sorted(r.tcp_s for r in self.records if r.tcp_s is not None)
        pub = sorted(r.publish_s for r in self.records if r.publish_s is not None)
        sent = sum(r.bytes_sent for r in self.records)
        wall = self.ended - self.started
        return {
            "mode": self.mode,
            "publishers": self.publishers,
            "published": len(pub),
            "media_seconds_each": self.media_seconds,
            "wall_seconds": round(wall, 3),
            "bytes_sent": sent,
            "send_mbps": round(sent * 8 / wall / 1e6, 2) if wall > 0 else 0.0,
            "tcp_connect_ms": _pcts(tcp),
            "connect_to_publish_ms": _pcts(pub),
            "max_send_backlog_bytes": max((r.max_backlog for r in self.records), default=0),
            "errors": self.errors,
            "notes": sorted({r.note for r in self.records if r.note}),
        }


def _pcts(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "p50": round(percentile(values, 50) * 1000, 2),
        "p99": round(percentile(values, 99) * 1000, 2),
        "max": round(values[-1] * 1000, 2),
    }


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), round(pct / 100 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


def _describe(info: Any) -> str:
    if isinstance(info, dict):
        return f"{info.get('code', '')} {info.get('description', '')}".strip()
    return str(info)


class LoadGenerator:
    """Publishes `media` under each of `streams` ((key, public name) pairs) at once."""

    def __init__(
        self,
        host: str,
        port: int,
        streams: list[tuple[str, str]],
        media: PreparedMedia,
        *,
        app: str = "app",
        mode: str = "realtime",
        seconds: float | None = None,
        ramp: float = 0.0,
        digest: bool = False,
        lenient: bool = False,
        settle: float = 0.5,
        speed: float = 1.0,
        frames: bool = False,
    ) -> None:
        """`frames`: record when every video frame was written (PublisherRecord.frames), for
        the LL-HLS part lag."""
        if mode not in ("realtime", "flat"):
            raise ValueError(f"mode {mode!r}: realtime or flat")
        self.host, self.port, self.app = host, port, app
        self.streams = streams
        self.media = media
        self.mode = mode
        self.media_ms = round((seconds if seconds is not None else media.seconds) * 1000)
        self.ramp = ramp
        self.digest = digest
        self.lenient = lenient
        self.settle = settle
        self.speed = speed
        self.frames = frames
        self.active: set[_Publisher] = set()

    async def run(self, timeout: float | None = None) -> LoadResult:
        """Connect everyone (spread over `ramp` seconds), send the media, close; never raises
        for a publisher's failure: it is in the result."""
        loop = asyncio.get_running_loop()
        records = [PublisherRecord(i, name) for i, (_, name) in enumerate(self.streams)]
        started = time.time()
        ticker = asyncio.create_task(self._tick()) if self.mode == "realtime" else None
        gap = self.ramp / len(self.streams) if self.streams else 0.0
        protos: list[_Publisher] = []
        connects = []
        for i, (key, _) in enumerate(self.streams):
            connects.append(asyncio.create_task(self._open(loop, records[i], key, protos)))
            if gap:
                await asyncio.sleep(gap)
        await asyncio.gather(*connects)
        budget = timeout if timeout is not None else self.ramp + self.media_ms / 1000 * 3 + 30
        if self.speed != 1.0 and timeout is None:
            budget = self.ramp + self.media_ms / 1000 / self.speed * 3 + 30
        waits = [p.closed for p in protos]
        if waits:
            _, pending = await asyncio.wait(waits, timeout=budget)
            for p in protos:
                if not p.closed.done():
                    p.fail("timed out before the media was sent")
            if pending:
                await asyncio.wait(pending, timeout=5)
        if ticker is not None:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
        return LoadResult(
            self.mode, len(self.streams), self.media_ms / 1000, started, time.time(), records
        )

    async def _open(
        self,
        loop: asyncio.AbstractEventLoop,
        rec: PublisherRecord,
        key: str,
        protos: list[_Publisher],
    ) -> None:
        rec.started = time.time()
        t0 = time.monotonic()
        try:
            _, proto = await loop.create_connection(
                lambda: _Publisher(self, rec, key), self.host, self.port
            )
        except OSError as exc:
            rec.error = f"connect failed: {exc.strerror or exc}"
            return
        rec.tcp_s = proto.t_tcp - t0
        protos.append(proto)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            for pub in list(self.active):
                pub.pump()
