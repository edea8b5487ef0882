"""Whether FFmpeg's mp4 muxer, through PyAV, can write LL-HLS parts: a measurement, the reason
rtmpd.hls.fmp4 builds its boxes by hand (docs/ll-hls.md).

    python -m bench.ffmpeg_fmp4 [--seconds 3] [--cpu-seconds 20] [--spec 720p30] [--flv FILE]

The bench media (H.264 + AAC in FLV, as RTMP brings them) is fed packet by packet, in arrival
order, to an mp4 muxer opened on an in-memory IO with
`movflags=frag_every_frame+empty_moov+default_base_moof` (a fragment per frame: the only way
PyAV can make it cut where a part must end; PyAV's `mux` is FFmpeg's interleaved writer and
it has no call for FFmpeg's manual flush). Two ways of feeding it:
- `as_rtmp`: what rtmpd's MPEG-TS muxer does today: 1/1000 time base, no packet duration
  (a live ingest does not know when the next frame comes);
- `with_durations`: exact audio times (1/48000, 1024 samples a frame) and each video frame
  given the previous frame's interval as its duration (a live muxer's best guess).
Every write to the IO is stamped with the packet being muxed, and the fragments are parsed
(moof/traf: tfhd, tfdt, trun), which gives:
- the fragment boundaries: fragments, samples and tracks per fragment;
- availability: how many packets later, and how much later on the media clock, a packet's
  bytes reach the IO, and for each 200 ms part (cut where rtmpd.hls.parts cuts) how long after
  the frame that ends it the whole part is in the IO, and whether the bytes can be cut there
  (a fragment boundary with exactly the part's packets before it);
- timestamps: samples whose decode time differs from the input's, each track's start;
- FFmpeg's log lines (`pts has no value`, durations out of range);
- CPU per packet (process time, best of three) against rtmpd's writer (Fmp4Run) fed the same
  packets, which closes each part on the frame that ends it.
"""

from __future__ import annotations

import argparse
import json
import struct
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.logging
from rtmpd.hls.codecs import parse_asc, parse_avcc
from rtmpd.hls.fmp4 import Track
from rtmpd.hls.fmp4run import Fmp4Run
from rtmpd.hls.muxer import SegmentOutput
from rtmpd.hls.parts import PartCutter

from bench.loadgen import percentile
from bench.media import SPECS, ensure_media

MOVFLAGS = "frag_every_frame+empty_moov+default_base_moof"


def boxes(data: bytes, start: int = 0, end: int | None = None) -> list[tuple[bytes, int, int]]:
    """(type, payload start, payload end) of the boxes in data[start:end]."""
    end = len(data) if end is None else end
    out = []
    while start + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, start)
        header = 8
        if size == 1:
            size = struct.unpack_from(">Q", data, start + 8)[0]
            header = 16
        elif size == 0:
            size = end - start
        if size < header:
            break
        out.append((kind, start + header, start + size))
        start += size
    return out


def _child(data: bytes, start: int, end: int, kind: bytes) -> tuple[int, int] | None:
    for k, s, e in boxes(data, start, end):
        if k == kind:
            return s, e
    return None


def timescales(data: bytes) -> dict[int, int]:
    """track id -> mdhd timescale, from the moov."""
    out: dict[int, int] = {}
    for kind, s, e in boxes(data):
        if kind != b"moov":
            continue
        for k, ts, te in boxes(data, s, e):
            if k != b"trak":
                continue
            tkhd = _child(data, ts, te, b"tkhd")
            mdia = _child(data, ts, te, b"mdia")
            if tkhd is None or mdia is None:
                continue
            version = data[tkhd[0]]
            track_id = struct.unpack_from(">I", data, tkhd[0] + (20 if version else 12))[0]
            mdhd = _child(data, mdia[0], mdia[1], b"mdhd")
            if mdhd is None:
                continue
            v = data[mdhd[0]]
            out[track_id] = struct.unpack_from(">I", data, mdhd[0] + (20 if v else 12))[0]
    return out


def sample_times(data: bytes) -> dict[int, list[int]]:
    """track id -> the decode time of every sample in the fragments (tfdt + durations)."""
    out: dict[int, list[int]] = {}
    for kind, s, e in boxes(data):
        if kind != b"moof":
            continue
        for k, ts, te in boxes(data, s, e):
            if k != b"traf":
                continue
            tfhd = _child(data, ts, te, b"tfhd")
            tfdt = _child(data, ts, te, b"tfdt")
            trun = _child(data, ts, te, b"trun")
            if tfhd is None or tfdt is None or trun is None:
                continue
            flags = int.from_bytes(data[tfhd[0] + 1 : tfhd[0] + 4], "big")
            track_id = struct.unpack_from(">I", data, tfhd[0] + 4)[0]
            pos = tfhd[0] + 8
            if flags & 0x01:
                pos += 8  # base data offset
            if flags & 0x02:
                pos += 4  # sample description index
            default_duration = struct.unpack_from(">I", data, pos)[0] if flags & 0x08 else 0
            v = data[tfdt[0]]
            base = struct.unpack_from(">Q" if v else ">I", data, tfdt[0] + 4)[0]
            tflags = int.from_bytes(data[trun[0] + 1 : trun[0] + 4], "big")
            count = struct.unpack_from(">I", data, trun[0] + 4)[0]
            pos = trun[0] + 8 + (4 if tflags & 0x01 else 0) + (4 if tflags & 0x04 else 0)
            times = out.setdefault(track_id, [])
            t = base
            for _ in range(count):
                duration = default_duration
                if tflags & 0x100:
                    duration = struct.unpack_from(">I", data, pos)[0]
                    pos += 4
                pos += 4 * sum(bool(tflags & f) for f in (0x200, 0x400, 0x800))
                times.append(t)
                t += duration
    return out


def fragments(data: bytes) -> list[tuple[int, list[tuple[int, int]]]]:
    """Each fragment (a moof and the mdat after it): where its bytes end, and its (track id,
    sample count) per traf, in order."""
    out: list[tuple[int, list[tuple[int, int]]]] = []
    for kind, s, e in boxes(data):
        if kind == b"moof":
            trafs = []
            for k, ts, te in boxes(data, s, e):
                tfhd, trun = _child(data, ts, te, b"tfhd"), _child(data, ts, te, b"trun")
                if k == b"traf" and tfhd is not None and trun is not None:
                    track = struct.unpack_from(">I", data, tfhd[0] + 4)[0]
                    trafs.append((track, struct.unpack_from(">I", data, trun[0] + 4)[0]))
            out.append((e, trafs))
        elif kind == b"mdat" and out:
            out[-1] = (e, out[-1][1])
    return out


@dataclass(frozen=True, slots=True)
class Packet:
    """One media message as RTMP brings it (FLV timestamps in ms)."""

    kind: str  # "video" or "audio"
    ts: int  # DTS, ms
    cto: int  # composition offset, ms (video)
    key: bool
    data: bytes


def read_packets(flv: Path, seconds: float) -> tuple[list[Packet], bytes, bytes]:
    """The FLV's first `seconds` of packets in arrival order, and the avcC and the ASC."""
    packets: list[Packet] = []
    with av.open(str(flv)) as src:
        video, audio = src.streams.video[0], src.streams.audio[0]
        avcc, asc = bytes(video.codec_context.extradata), bytes(audio.codec_context.extradata)
        for p in src.demux(video, audio):
            if p.dts is None or p.size == 0:
                continue
            ts = int(p.dts * p.time_base * 1000)
            if ts >= seconds * 1000:
                break
            cto = int(((p.pts or p.dts) - p.dts) * p.time_base * 1000)
            packets.append(Packet(p.stream.type, ts, cto, p.is_keyframe, bytes(p)))
    return packets, avcc, asc


class Tap:
    """A write-only IO for FFmpeg that stamps each write with the packet being muxed."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.current = -1
        self.written_by: list[int] = []  # bytes in the IO once packet i was muxed

    def write(self, data: bytes) -> int:
        self.data += data
        return len(data)

    def flush(self) -> None:
        pass

    def muxed(self) -> None:
        self.written_by.append(len(self.data))


def pyav_mux(flv: Path, packets: list[Packet], feed: str, tap: Tap | None = None) -> Tap:
    """The packets through FFmpeg's mp4 muxer (PyAV), one fragment per frame, into `tap`."""
    tap = tap or Tap()
    rate = 48_000
    with av.open(str(flv)) as src:
        out = av.open(tap, "w", format="mp4", options={"movflags": MOVFLAGS})
        v = out.add_stream_from_template(src.streams.video[0])
        a = out.add_stream_from_template(src.streams.audio[0])
        ms, video_tb, audio_tb = Fraction(1, 1000), Fraction(1, 90_000), Fraction(1, rate)
        audio_n, last_video, gap = 0, None, 33
        for packet in packets:
            pkt = av.Packet(packet.data)
            if packet.kind == "video":
                pkt.stream, pkt.is_keyframe = v, packet.key
                if feed == "as_rtmp":
                    pkt.time_base, pkt.dts, pkt.pts = ms, packet.ts, packet.ts + packet.cto
                else:
                    if last_video is not None and packet.ts > last_video:
                        gap = packet.ts - last_video
                    last_video = packet.ts
                    pkt.time_base, pkt.dts = video_tb, packet.ts * 90
                    pkt.pts, pkt.duration = (packet.ts + packet.cto) * 90, gap * 90
            else:
                pkt.stream, pkt.is_keyframe = a, True
                if feed == "as_rtmp":
                    pkt.time_base, pkt.dts, pkt.pts = ms, packet.ts, packet.ts
                else:
                    if audio_n == 0:
                        audio_n = packet.ts * rate // 1000
                    pkt.time_base, pkt.dts, pkt.pts, pkt.duration = audio_tb, audio_n, audio_n, 1024
                    audio_n += 1024
            out.mux_one(pkt)
            tap.muxed()
        out.close()
    return tap


class Ours:
    """rtmpd's writer fed the same packets, cutting parts where the packager would: which
    packet completed each part (Fmp4Run closes a part on the frame that starts the next)."""

    def __init__(self, avcc: bytes, asc: bytes, part_ms: int, folder: Path) -> None:
        avc, aac = parse_avcc(avcc), parse_asc(asc)
        video = Track(1, "avc1", 90_000, avcc, avc.width or 0, avc.height or 0)
        audio = Track(2, "mp4a", aac.sample_rate, asc, channels=aac.channels or 2)
        self.folder, self.count = folder, 0
        self.run = Fmp4Run(video, audio, 1024, self._output())
        self.cutter = PartCutter(part_ms)
        self.completed_at: list[int] = []  # per part: the index of the packet that ended it
        self.size = 0

    def _output(self) -> SegmentOutput:
        self.count += 1
        return SegmentOutput(self.folder / f"{self.count}.m4s", lambda exc: None)

    def feed(self, packets: list[Packet]) -> None:
        run, cutter, started = self.run, self.cutter, False
        for i, p in enumerate(packets):
            if p.kind == "video":
                segment = None
                if p.key and started:
                    segment = self._output()
                    cutter.segment_start(p.ts, True)
                new_part = cutter.frame(p.ts, p.key) or segment is not None
                started = True
                run.video(p.ts, p.cto, p.key, p.data, new_part, segment)
            else:
                run.audio(p.ts, p.data, False, None)
            while run.parts:
                self.size += len(run.parts.popleft().data)
                self.completed_at.append(i)
            while run.finished:
                run.finished.popleft().discard()
        run.close()
        while run.parts:
            self.size += len(run.parts.popleft().data)


def part_cuts(packets: list[Packet], part_ms: int) -> list[int]:
    """Indexes of the video packets that start a part (rtmpd.hls.parts' rule, a new segment
    at every keyframe after the first)."""
    cutter, cuts = PartCutter(part_ms), []
    for i, p in enumerate(packets):
        if p.kind != "video":
            continue
        if p.key and cuts:
            cutter.segment_start(p.ts, True)
            cuts.append(i)
        elif cutter.frame(p.ts, p.key):
            cuts.append(i)
    return cuts[1:]  # the first frame starts the first part: nothing ends there


def availability(tap: Tap, packets: list[Packet], part_ms: int) -> dict[str, Any]:
    """Fragments of the muxer's output against the input packets (see the module's doc)."""
    frags = fragments(bytes(tap.data))
    index: dict[str, list[int]] = {"video": [], "audio": []}
    for i, p in enumerate(packets):
        index[p.kind].append(i)
    track_kind = {1: "video", 2: "audio"}
    taken = {"video": 0, "audio": 0}
    ready = [len(packets)] * len(packets)  # the packet whose mux put it in the IO
    order: list[list[int]] = []  # per fragment, the input packets it holds
    j = 0
    for end, trafs in frags:
        while j < len(tap.written_by) and tap.written_by[j] < end:
            j += 1
        held = []
        for track, count in trafs:
            kind = track_kind[track]
            held += index[kind][taken[kind] : taken[kind] + count]
            taken[kind] += count
        for i in held:
            ready[i] = j
        order.append(held)
    late_packets = [r - i for i, r in enumerate(ready) if r < len(packets)]
    late_ms = [packets[r].ts - packets[i].ts for i, r in enumerate(ready) if r < len(packets)]
    # a part [.., K) can be cut when some fragment boundary has exactly packets < K before it
    seen_max, prefix_ok, boundaries = -1, 0, set()
    for held in order:
        prefix_ok += len(held)
        seen_max = max([seen_max, *held])
        if seen_max == prefix_ok - 1:
            boundaries.add(prefix_ok)
    cuts = part_cuts(packets, part_ms)
    part_delay = []
    for k in cuts:
        r = max(ready[:k])
        part_delay.append(packets[min(r, len(packets) - 1)].ts - packets[k].ts)
    return {
        "fragments": len(frags),
        "samples": len(packets),
        "most_samples_in_a_fragment": max((sum(c for _, c in t) for _, t in frags), default=0),
        "fragments_with_both_tracks": sum(len({t for t, _ in trafs}) > 1 for _, trafs in frags),
        "packet_in_io_after_packets": _dist(late_packets),
        "packet_in_io_after_ms": _dist(late_ms),
        "parts": len(cuts),
        "parts_cuttable": sum(k in boundaries for k in cuts),
        "part_in_io_ms_after_its_end_frame": _dist(part_delay),
        "bytes": len(tap.data),
    }


def _dist(values: list[int]) -> dict[str, float]:
    values = sorted(values)
    if not values:
        return {}
    return {"p50": percentile(values, 50), "p99": percentile(values, 99), "max": values[-1]}


def timestamps(tap: Tap, packets: list[Packet]) -> dict[str, Any]:
    """Output decode times against the input's (ms), per track."""
    data = bytes(tap.data)
    scales, times = timescales(data), sample_times(data)
    out: dict[str, Any] = {}
    for track, kind in ((1, "video"), (2, "audio")):
        want = [p.ts for p in packets if p.kind == kind]
        got = [t * 1000 / scales.get(track, 1000) for t in times.get(track, [])]
        moved = [
            (i, e, g) for i, (e, g) in enumerate(zip(want, got, strict=False)) if abs(g - e) > 1
        ]  # fmt: skip  (FLV times are whole ms)
        out[kind] = {
            "samples_in": len(want),
            "samples_out": len(got),
            "first_input_ms": want[0] if want else None,
            "first_output_ms": round(got[0], 1) if got else None,
            "samples_moved": len(moved),
            "first_moved": f"sample {moved[0][0]}: {moved[0][1]} ms -> {moved[0][2]:.1f} ms"
            if moved
            else None,  # fmt: skip
            "largest_move_ms": round(max((abs(g - e) for _, e, g in moved), default=0), 1),
        }
    return out


def cpu_per_packet(run: Callable[[], object], packets: int, repeat: int = 3) -> float:
    """Process CPU microseconds per packet of `run`, best of `repeat`."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        run()
        best = min(best, time.process_time() - t0)
    return round(best / packets * 1e6, 1)


def measure(flv: Path, seconds: float, cpu_seconds: float = 0.0,
            part_ms: int = 200) -> dict[str, Any]:  # fmt: skip
    packets, avcc, asc = read_packets(flv, max(seconds, cpu_seconds))
    short = [p for p in packets if p.ts < seconds * 1000]
    result: dict[str, Any] = {"input": flv.name, "seconds": seconds, "movflags": MOVFLAGS,
                              "part_ms": part_ms}  # fmt: skip
    level = av.logging.get_level()
    av.logging.set_level(av.logging.VERBOSE)  # PyAV passes nothing of FFmpeg's log by default
    try:
        for feed in ("as_rtmp", "with_durations"):
            with av.logging.Capture(True) as logs:
                tap = pyav_mux(flv, short, feed)
            messages = [str(line[2]).strip() for line in logs]
            result[feed] = {
                "ffmpeg_log_lines": len(messages),
                "pts_has_no_value": sum("pts has no value" in m for m in messages),
                "duration_out_of_range": sum("out of range" in m for m in messages),
                "log_sample": sorted({m[:70] for m in messages})[:4],
                **availability(tap, short, part_ms),
                **timestamps(tap, short),
            }
    finally:
        av.logging.set_level(level)
    with tempfile.TemporaryDirectory(prefix="bench-fmp4-") as folder:
        ours = Ours(avcc, asc, part_ms, Path(folder))
        ours.feed(short)
        cuts = part_cuts(short, part_ms)
        result["rtmpd_writer"] = {
            "parts": len(ours.completed_at),
            "part_in_io_ms_after_its_end_frame": _dist(
                [short[c].ts - short[k].ts for c, k in zip(ours.completed_at, cuts, strict=False)]
            ),
            "bytes": ours.size,
        }
        if cpu_seconds:
            many = [p for p in packets if p.ts < cpu_seconds * 1000]
            result["cpu_packets"] = len(many)
            result["cpu_us_per_packet"] = {
                "pyav_mp4_frag_every_frame": cpu_per_packet(
                    lambda: pyav_mux(flv, many, "with_durations"), len(many)),
                "rtmpd_fmp4run": cpu_per_packet(
                    lambda: Ours(avcc, asc, part_ms, Path(folder)).feed(many), len(many)),
            }  # fmt: skip
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.ffmpeg_fmp4", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="media for the fragments")
    parser.add_argument("--cpu-seconds", type=float, default=20.0, help="media for CPU (0: none)")
    parser.add_argument("--part", type=float, default=0.2, help="part duration, seconds")
    parser.add_argument("--spec", choices=sorted(SPECS), default="720p30")
    parser.add_argument("--flv", type=Path, help="another FLV file instead of the bench media")
    args = parser.parse_args(argv)
    flv = args.flv or ensure_media(SPECS[args.spec])
    result = measure(flv, args.seconds, args.cpu_seconds, round(args.part * 1000))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
