"""MPEG-TS packets as the segment splitter needs to read them: pure functions over bytes.

One muxer writes a whole run of segments as one continuous transport stream (so continuity
counters and PCR run on across files, as FFmpeg's own hls muxer and nginx-rtmp write them), and
the splitter cuts that stream into files where a new segment starts: right before the PES that
carries the first packet of the segment, together with the PAT/PMT the muxer put in front of it.
These functions find such places. ISO/IEC 13818-1 is the reference; a packet is 188 bytes,
sync byte 0x47, a 13-bit PID, the payload-unit-start flag and an optional adaptation field.
"""

from __future__ import annotations

PACKET = 188
SYNC = 0x47
PAT_PID = 0x0000
SDT_PID = 0x0011
#: FFmpeg's mpegts muxer puts the PMT of its single program here and starts elementary
#: streams at 0x100 (its `mpegts_pmt_start_pid` and `mpegts_start_pid` defaults).
PMT_PID = 0x1000
FIRST_ES_PID = 0x0100
PSI_PIDS = frozenset((PAT_PID, SDT_PID, PMT_PID))
#: PTS/DTS are 33-bit counts of 90 kHz ticks.
TS_WRAP = 1 << 33


def pid_of(data: bytes | bytearray, pos: int) -> int:
    return (data[pos + 1] & 0x1F) << 8 | data[pos + 2]


def starts_unit(data: bytes | bytearray, pos: int) -> bool:
    """The payload-unit-start flag: a PES (or PSI section) begins in this packet."""
    return bool(data[pos + 1] & 0x40)


def pes_dts(data: bytes | bytearray, pos: int) -> int | None:
    """The DTS (else the PTS) of the PES starting in the packet at `pos`, in 90 kHz ticks."""
    control = (data[pos + 3] >> 4) & 3
    start = pos + 4
    if control & 2:
        start += 1 + data[pos + 4]
    end = pos + PACKET
    if not control & 1 or start + 14 > end:
        return None
    if data[start] or data[start + 1] or data[start + 2] != 1:
        return None
    flags = data[start + 7]
    if flags & 0x40 and start + 19 <= end:
        at = start + 14
    elif flags & 0x80:
        at = start + 9
    else:
        return None
    b = data[at : at + 5]
    return ((b[0] >> 1) & 7) << 30 | b[1] << 22 | (b[2] >> 1) << 15 | b[3] << 7 | b[4] >> 1


def find_unit(data: bytes | bytearray, start: int, pid: int, dts: int) -> int | None:
    """Position of the packet (at or after `start`, a packet boundary) where the PES of `pid`
    with this DTS begins; a PES of `pid` whose DTS is already past `dts` counts too (the muxer
    may have nudged a timestamp). None when it is not in `data` yet."""
    for pos in range(start, len(data) - PACKET + 1, PACKET):
        if pid_of(data, pos) != pid or not starts_unit(data, pos):
            continue
        found = pes_dts(data, pos)
        if found is None:
            continue
        ahead = (found - dts) % TS_WRAP
        if ahead < TS_WRAP // 2:  # equal, or later (modulo the 33-bit wrap)
            return pos
    return None


def psi_before(data: bytes | bytearray, pos: int, floor: int) -> int:
    """Move `pos` back over the PAT/PMT/SDT packets right before it (not below `floor`): the
    muxer writes them in front of a keyframe, and they belong to the segment it starts."""
    while pos - PACKET >= floor and pid_of(data, pos - PACKET) in PSI_PIDS:
        pos -= PACKET
    return pos


def leading_psi(data: bytes | bytearray) -> tuple[list[bytes], int]:
    """The PSI packets at the start of `data` and where they end."""
    packets = []
    pos = 0
    while pos + PACKET <= len(data) and pid_of(data, pos) in PSI_PIDS:
        packets.append(bytes(data[pos : pos + PACKET]))
        pos += PACKET
    return packets, pos


def pat_pmt_first(packets: list[bytes]) -> list[bytes]:
    """The same packets with PAT and PMT ahead of the SDT, so that every segment starts with the
    program tables a player tunes in with (the order within each PID is kept)."""
    return [p for p in packets if pid_of(p, 0) != SDT_PID] + [
        p for p in packets if pid_of(p, 0) == SDT_PID
    ]


def last_tables(data: bytes | bytearray, tables: dict[int, bytes]) -> None:
    """Remember the latest PAT and PMT packet seen in `data` (whole packets from offset 0)."""
    pat = data.rfind(b"\x47\x40\x00", 0)
    while pat >= 0 and pat % PACKET:
        pat = data.rfind(b"\x47\x40\x00", 0, pat)
    if pat >= 0:
        tables[PAT_PID] = bytes(data[pat : pat + PACKET])
    pmt = data.rfind(b"\x47\x50\x00", 0)
    while pmt >= 0 and pmt % PACKET:
        pmt = data.rfind(b"\x47\x50\x00", 0, pmt)
    if pmt >= 0:
        tables[PMT_PID] = bytes(data[pmt : pmt + PACKET])
