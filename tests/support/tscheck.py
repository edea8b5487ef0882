"""An MPEG-TS checker: what players check, run over the segments of one stream in order.

`check_stream(segments)` reads each segment's packets and reports, across segment boundaries:
continuity-counter errors per PID (ISO/IEC 13818-1 2.4.3.3: +1 per packet with payload, except
one duplicate packet or the discontinuity indicator), the PCR intervals (at most 100 ms, 2.7.2)
and how far PCR leads the DTS of each PES, and for each segment whether it starts with PAT and
PMT and, with video, an IDR access unit carrying its SPS. Used by the HLS tests on real output
and by the side-by-side quality script in bench/.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PACKET = 188
WRAP33 = 1 << 33
HEAD_BYTES = 4096
H264_STREAM = 0x1B


@dataclass(slots=True)
class Pes:
    pid: int
    packet: int  # index in its segment
    dts: int | None  # 90 kHz
    random_access: bool
    head: bytes  # the first bytes of the PES payload (up to HEAD_BYTES)


@dataclass(slots=True)
class Segment:
    packets: int
    pids: list[int] = field(default_factory=list)  # of the first packets
    pes: list[Pes] = field(default_factory=list)

    def first_pes(self, pid: int) -> Pes | None:
        return next((p for p in self.pes if p.pid == pid), None)


@dataclass(slots=True)
class Report:
    segments: list[Segment]
    cc_errors: list[str]
    boundary_cc_errors: int  # of those, the ones at the start of a segment (before its 1st PES)
    pmt_pid: int | None
    stream_types: dict[int, int]  # elementary PID -> stream_type from the PMT
    pcr_pid: int | None
    pcr_count: int
    max_pcr_gap_ms: float
    min_pcr_lead_ms: float
    max_pcr_lead_ms: float
    late_pes: int  # PES whose DTS is not ahead of the PCR in force where it starts

    @property
    def video_pid(self) -> int | None:
        return next((p for p, t in self.stream_types.items() if t == H264_STREAM), None)

    def starts_cleanly(self, index: int) -> bool:
        """Segment `index` starts with PAT then PMT; with video, its first video PES is a
        random access point with an SPS (NAL type 7) in front of the picture."""
        seg = self.segments[index]
        if seg.pids[:2] != [0, self.pmt_pid]:
            return False
        pid = self.video_pid
        if pid is None:
            return True
        first = seg.first_pes(pid)
        return first is not None and first.random_access and _has_sps(first.head)


def _has_sps(annexb: bytes) -> bool:
    at = annexb.find(b"\x00\x00\x01")
    while at >= 0 and at + 3 < len(annexb):
        if annexb[at + 3] & 0x1F == 7:
            return True
        at = annexb.find(b"\x00\x00\x01", at + 3)
    return False


def _pes(payload: bytes) -> tuple[int | None, bytes]:
    if len(payload) < 9 or payload[:3] != b"\x00\x00\x01":
        return None, b""
    flags, hlen = payload[7], payload[8]

    def stamp(o: int) -> int:
        b = payload[o : o + 5]
        return ((b[0] >> 1) & 7) << 30 | b[1] << 22 | (b[2] >> 1) << 15 | b[3] << 7 | b[4] >> 1

    dts = None
    if flags & 0x40 and len(payload) >= 19:
        dts = stamp(14)
    elif flags & 0x80 and len(payload) >= 14:
        dts = stamp(9)
    return dts, payload[9 + hlen :]


def check_stream(segments: list[bytes]) -> Report:
    last_cc: dict[int, int] = {}
    last_packet: dict[int, bytes] = {}
    errors: list[str] = []
    boundary = 0
    pmt_pid: int | None = None
    types: dict[int, int] = {}
    pcr_pid: int | None = None
    pcrs: list[int] = []
    leads: list[float] = []
    late = 0
    out = []
    for n, data in enumerate(segments):
        if len(data) % PACKET:
            errors.append(f"segment {n}: {len(data)} bytes are not whole packets")
        seg = Segment(len(data) // PACKET)
        pcr: int | None = None
        open_pes: dict[int, Pes] = {}  # the PES being read, per PID, until HEAD_BYTES
        for i in range(seg.packets):
            pk = data[i * PACKET : (i + 1) * PACKET]
            if pk[0] != 0x47:
                errors.append(f"segment {n} packet {i}: lost sync")
                break
            pid = (pk[1] & 0x1F) << 8 | pk[2]
            unit_start = bool(pk[1] & 0x40)
            control, cc = (pk[3] >> 4) & 3, pk[3] & 15
            if i < 3:
                seg.pids.append(pid)
            off = 4
            disc = random_access = False
            if control & 2:
                length = pk[4]
                if length:
                    flags = pk[5]
                    disc, random_access = bool(flags & 0x80), bool(flags & 0x40)
                    if flags & 0x10:
                        b = pk[6:12]
                        base = b[0] << 25 | b[1] << 17 | b[2] << 9 | b[3] << 1 | b[4] >> 7
                        pcr = base * 300 + ((b[4] & 1) << 8 | b[5])
                        pcrs.append(pcr)
                        pcr_pid = pid
                off = 5 + length
            payload = pk[off:] if control & 1 else b""
            if control & 1 and pid != 0x1FFF:
                if pid in last_cc and not disc:
                    want = (last_cc[pid] + 1) & 15
                    duplicate = cc == last_cc[pid] and last_packet.get(pid) == pk
                    if cc != want and not duplicate:
                        errors.append(f"segment {n} packet {i}: pid {pid:#x} cc {cc}, want {want}")
                        if not seg.pes:
                            boundary += 1
                last_cc[pid] = cc
                last_packet[pid] = pk
            if pid == 0 and unit_start and len(payload) > 12:
                section = payload[1 + payload[0] :]
                pmt_pid = (section[10] & 0x1F) << 8 | section[11]
            elif pid == pmt_pid and unit_start:
                section = payload[1 + payload[0] :]
                end = 3 + ((section[1] & 0x0F) << 8 | section[2]) - 4
                pos = 12 + ((section[10] & 0x0F) << 8 | section[11])
                while pos + 5 <= end:
                    types[(section[pos + 1] & 0x1F) << 8 | section[pos + 2]] = section[pos]
                    pos += 5 + ((section[pos + 3] & 0x0F) << 8 | section[pos + 4])
            elif unit_start and pid in types:
                dts, head = _pes(payload)
                open_pes[pid] = Pes(pid, i, dts, random_access, head)
                seg.pes.append(open_pes[pid])
                if dts is not None and pcr is not None:
                    lead = (dts * 300 - pcr) % (WRAP33 * 300)
                    if lead > WRAP33 * 150:
                        lead -= WRAP33 * 300
                    leads.append(lead / 27_000)
                    late += lead <= 0
            elif pid in open_pes and len(open_pes[pid].head) < HEAD_BYTES:
                open_pes[pid].head += payload
        out.append(seg)
    gaps = [(b - a) / 27_000 for a, b in zip(pcrs, pcrs[1:], strict=False) if b >= a]
    return Report(
        out, errors, boundary, pmt_pid, types, pcr_pid, len(pcrs), max(gaps, default=0.0),
        min(leads, default=0.0), max(leads, default=0.0), late,
    )  # fmt: skip
