"""One continuous MPEG-TS per run of segments, muxed by FFmpeg through PyAV and cut into files.

Why one muxer and not one per segment: a new muxer starts every continuity counter at 0 and
its PCR at the first DTS, so every segment boundary of a stream looked like lost packets to
the players that check (FFmpeg's "corrupt input packet", VLC's "TS discontinuity", mpv's
"Packet corrupt"). One muxer writes the publish as FFmpeg's own hls muxer and nginx-rtmp do:
counters run on across files, PCR comes with every video frame (on audio-only streams with
every audio frame, each its own PES: at most about 25 ms apart, under the 100 ms of ISO/IEC
13818-1) and leads the DTS by 700 ms, the FFmpeg command line's default `muxdelay`, which
FFmpeg's hls muxer therefore writes too: room for B-frame reordering and for audio that
arrives after the video it goes with, so no packet reaches a player after its decode time.

The muxer writes into a `TsSplitter` (a file-like object; FFmpeg flushes after every packet)
that moves the stream into the next segment's file where a cut was asked for: right before the
PES of the packet that starts the new segment, with the PAT/PMT FFmpeg writes in front of every
keyframe. A segment that starts elsewhere (audio-only streams, a forced cut mid-GOP) gets a
copy of the latest PAT and PMT in front, a legal duplicate packet. Every segment therefore
starts with PAT/PMT and (for video) an IDR with its parameter sets (`h264_mp4toannexb` puts
SPS/PPS in front of every IDR), and decodes on its own.

A run ends at a discontinuity (new timeline, new codec parameters): then a new muxer starts.
Disk errors never reach FFmpeg: `SegmentOutput` swallows them, the segment is lost, the next
one is written when it can be.
"""

from __future__ import annotations

import contextlib
import os
from collections import deque
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO

import av
from av.stream import Stream

from . import ts
from .templates import Template

TIME_BASE = Fraction(1, 1000)
#: What the muxer adds to every timestamp it writes (twice its max_delay, so that PCR, written
#: max_delay behind each DTS, never goes below zero): PTS = (stream ms + 1400) x 90, mod 2^33.
TS_OFFSET_MS = 1400
#: FFmpeg options: flush the output after every packet (so the splitter sees each packet's
#: bytes before the next is muxed), PCR 700 ms ahead of DTS, every audio frame its own PES,
#: and a bound on what the interleaving queue holds when a declared track goes silent.
OPTIONS = {
    "flush_packets": "1",
    "max_delay": "700000",
    "pes_payload_size": "0",
    "max_interleave_delta": "1000000",
}


class SegmentOutput:
    """Where one segment's bytes go: its temp file, opened with the first byte. A disk error
    is kept in `error` (the segment is lost, the file removed) and never raised. `count` is
    told every byte written and, negated, every byte of a file removed (disk bounds)."""

    __slots__ = ("temp", "size", "error", "_file", "_on_error", "_count", "_counted")

    def __init__(
        self,
        temp: Path,
        on_error: Callable[[OSError], None],
        count: Callable[[int], None] | None = None,
    ) -> None:
        self.temp = temp
        self.size = 0
        self.error: OSError | None = None
        self._file: BinaryIO | None = None
        self._on_error = on_error
        self._count = count
        self._counted = 0  # bytes told to `count` and still on disk

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.error is not None or not data:
            return
        try:
            if self._file is None:
                self._file = open(self.temp, "wb")  # noqa: SIM115 - closed in finish()
            self._file.write(data)
        except OSError as exc:
            self._fail(exc)
            return
        self.size += len(data)
        if self._count is not None:
            self._counted += len(data)
            self._count(len(data))

    def finish(self) -> None:
        """Close the file (its bytes are all there unless `error` is set)."""
        file, self._file = self._file, None
        if file is None:
            return
        try:
            file.close()
        except OSError as exc:
            self._fail(exc)

    def discard(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            with contextlib.suppress(OSError):
                file.close()
        with contextlib.suppress(OSError):
            os.unlink(self.temp)
        if self._counted and self._count is not None:
            self._count(-self._counted)
            self._counted = 0

    def _fail(self, exc: OSError) -> None:
        self.error = exc
        self.discard()
        self._on_error(exc)


class TsSplitter:
    """The file object FFmpeg writes into: a transport stream cut into `SegmentOutput`s.

    `cut(pid, dts, output)` says the PES of `pid` with that DTS (90 kHz, as the muxer writes it)
    starts `output`; bytes after the request are held until that PES shows up (a packet or two
    later: FFmpeg's interleaving), then everything before it goes to the current output, which
    is finished and reported in `finished`, and the rest to the new one. Outputs are reported
    in the order they were given, each exactly once (an empty one has size 0)."""

    def __init__(self, first: SegmentOutput) -> None:
        self.finished: deque[SegmentOutput] = deque()
        self._current = first
        self._fresh = True  # the next bytes start a segment
        self._cuts: deque[tuple[int, int, SegmentOutput]] = deque()
        self._held = bytearray()
        self._scanned = 0  # packets of _held before this offset hold no wanted PES start
        self._tables: dict[int, bytes] = {}  # the latest PAT and PMT packet, by PID
        self._offset = 0  # bytes written so far: packets start at multiples of 188
        self._partial: tuple[int, bytes] | None = None  # a table packet cut by a write

    # -- the file-like side FFmpeg uses ----------------------------------------------------

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def write(self, data: bytes) -> int:
        self._note_tables(data)
        if self._cuts:
            self._held += data
            self._split()
        elif self._fresh:
            self._start(data)
        else:
            self._current.write(data)
        return len(data)

    def flush(self) -> None:
        pass

    # -- what the muxer asks -----------------------------------------------------------------

    def cut(self, pid: int, dts: int, output: SegmentOutput) -> None:
        self._cuts.append((pid, dts % ts.TS_WRAP, output))

    def close(self) -> None:
        """Everything is written: what is held goes to the current output, which finishes."""
        if self._held:
            held, self._held = self._held, bytearray()
            self._current.write(held)
        self._current.finish()
        self.finished.append(self._current)
        for _, _, output in self._cuts:  # cut at packets FFmpeg never wrote: empty
            output.discard()
            self.finished.append(output)
        self._cuts.clear()

    # -- internals ------------------------------------------------------------------------------

    def _split(self) -> None:
        held = self._held
        while self._cuts:
            pid, dts, output = self._cuts[0]
            pos = ts.find_unit(held, self._scanned, pid, dts)
            if pos is None:
                self._scanned = len(held) - len(held) % ts.PACKET
                return
            pos = ts.psi_before(held, pos, 0)
            self._scanned = 0
            self._current.write(held[:pos])
            self._current.finish()
            self.finished.append(self._current)
            self._cuts.popleft()
            self._current = output
            rest = held[pos:]
            held = self._held = bytearray()
            if self._cuts:
                held += self._head(rest)
                self._held = held
            else:
                self._start(rest)
        if held:
            self._current.write(held)
            self._held = bytearray()

    def _start(self, data: bytes | bytearray) -> None:
        self._fresh = False
        self._current.write(self._head(data))

    def _head(self, data: bytes | bytearray) -> bytes:
        """`data` as the start of a segment: PAT and PMT first (copies when FFmpeg did not
        write them here), then whatever else."""
        psi, end = ts.leading_psi(data)
        if not any(ts.pid_of(p, 0) == ts.PAT_PID for p in psi):
            psi = [self._tables[p] for p in (ts.PAT_PID, ts.PMT_PID) if p in self._tables] + psi
        return b"".join(ts.pat_pmt_first(psi)) + bytes(data[end:])

    def _note_tables(self, data: bytes) -> None:
        """Keep the latest PAT and PMT packet (FFmpeg repeats them every 100 ms, also between
        the packets of a PES), so a copy put in front of a segment is a true duplicate."""
        base = self._offset
        self._offset = base + len(data)
        partial = self._partial
        if partial is not None:
            self._partial = None
            pid, head = partial
            packet = head + data[: ts.PACKET - len(head)]
            if len(packet) == ts.PACKET:
                self._tables[pid] = packet
        for pid, pattern in _TABLE_HEADS:
            at = data.rfind(pattern)
            while at >= 0 and (base + at) % ts.PACKET:
                at = data.rfind(pattern, 0, at)
            if at < 0:
                continue
            if at + ts.PACKET <= len(data):
                self._tables[pid] = bytes(data[at : at + ts.PACKET])
            else:
                self._partial = (pid, bytes(data[at:]))


#: The first three bytes of a packet that starts a PAT or a PMT section (sync byte, unit start).
_TABLE_HEADS = ((ts.PAT_PID, b"\x47\x40\x00"), (ts.PMT_PID, b"\x47\x50\x00"))


class TsMuxer:
    """Packets in (payloads as RTMP brings them, times in ms), one continuous MPEG-TS out into a
    `TsSplitter`. Bad payloads raise av.FFmpegError for the caller to drop."""

    __slots__ = ("splitter", "_out", "_video", "_audio", "_pids", "_shift", "_last", "_mux")

    def __init__(self, video: Template | None, audio: Template | None, first: SegmentOutput):
        if video is None and audio is None:
            raise ValueError("a stream needs at least one track")
        self.splitter = TsSplitter(first)
        self._out = av.open(self.splitter, "w", format="mpegts", options=OPTIONS)
        try:
            self._video = self._add(video)
            self._audio = self._add(audio)
            self._out.start_encoding()
        except BaseException:
            self.abort()
            raise
        # Elementary stream PIDs in the order the streams were added.
        self._pids = {"video": ts.FIRST_ES_PID} if video is not None else {}
        if audio is not None:
            self._pids["audio"] = ts.FIRST_ES_PID + len(self._pids)
        self._shift = TS_OFFSET_MS * 90
        self._last = {"video": -(1 << 62), "audio": -(1 << 62)}
        self._mux = self._out.mux_one

    def _add(self, template: Template | None) -> Stream | None:
        if template is None:
            return None
        if template.stream is None:
            stream: Stream = self._out.add_mux_stream(template.codec, rate=template.rate)
        else:
            stream = self._out.add_stream_from_template(template.stream, opaque=True)
        stream.time_base = TIME_BASE
        return stream

    def video(self, dts: int, pts: int, keyframe: bool, data: bytes,
              cut: SegmentOutput | None = None) -> None:  # fmt: skip
        stream = self._video
        if stream is None:
            return  # the track appeared after this run started (it starts a new one)
        # FFmpeg refuses a DTS that does not increase; the segmenter lets small jitter through.
        if dts <= self._last["video"]:
            dts = self._last["video"] + 1
        self._last["video"] = dts
        packet = av.Packet(data)
        packet.stream = stream
        packet.time_base = TIME_BASE
        packet.dts = dts
        packet.pts = pts if pts >= dts else dts
        if keyframe:
            packet.is_keyframe = True
        if cut is None:
            self._mux(packet)
        else:
            self._mux_cut(packet, self._pids["video"], dts, cut)

    def audio(self, ts_ms: int, data: bytes, cut: SegmentOutput | None = None) -> None:
        stream = self._audio
        if stream is None:
            return
        if ts_ms <= self._last["audio"]:
            ts_ms = self._last["audio"] + 1
        self._last["audio"] = ts_ms
        packet = av.Packet(data)
        packet.stream = stream
        packet.time_base = TIME_BASE
        packet.dts = ts_ms
        packet.pts = ts_ms
        packet.is_keyframe = True  # every audio frame is a random access point
        if cut is None:
            self._mux(packet)
        else:
            self._mux_cut(packet, self._pids["audio"], ts_ms, cut)

    def _mux_cut(self, packet: av.Packet[Any], pid: int, dts: int, cut: SegmentOutput) -> None:
        """Mux the packet that starts `cut`: the cut is asked for first, since FFmpeg may write
        the packet before mux_one returns. Should FFmpeg refuse the packet, the next one of
        that stream starts the segment (the splitter takes the first PES at or after it)."""
        self.splitter.cut(pid, dts * 90 + self._shift, cut)
        self._mux(packet)

    def close(self) -> None:
        """Flush the interleaving queue and the trailer; the last output is finished."""
        try:
            self._out.close()
        finally:
            self.splitter.close()

    def abort(self) -> None:
        """Give up on this run: close quietly; outputs not yet finished are discarded."""
        with contextlib.suppress(OSError, av.FFmpegError):
            self._out.close()
        self.splitter.close()
        for output in self.splitter.finished:
            output.discard()
