"""Opus, FLAC, AC-3 and E-AC-3, read as far as HLS needs them: the CODECS string, the sample
rate and channels, the fMP4 configuration box, and how many samples each frame holds (fMP4
sample durations; there is no timestamp finer than RTMP's milliseconds).

- Opus: the ID header (RFC 7845 5.1) -> the dOps box (Opus in ISOBMFF 4.3.2, big-endian where
  the ID header is little-endian); every packet's duration from its TOC byte (RFC 6716 3.1).
  Timescale 48 kHz whatever the input rate, as Opus always decodes at 48 kHz.
- FLAC: STREAMINFO (as FFmpeg sends it, or behind "fLaC" and its block header) -> the dfLa box
  (FLAC in ISOBMFF 3.3.2); each frame's block size from its header (FLAC format 9.1).
- AC-3 and E-AC-3 have no sequence header: the sync frame configures the track (ATSC A/52 5.4
  and E.1.2) -> dac3 / dec3 (ETSI TS 102 366 F.4, F.6); AC-3 frames are 1536 samples, E-AC-3
  frames 256 times their blocks.
"""

from __future__ import annotations

from dataclasses import dataclass

from .codecs import Bits

_OPUS_MS10 = (100, 200, 400, 600) * 3 + (100, 200) * 2 + (25, 50, 100, 200) * 4  # x 0.1 ms
_AC3_RATES = (48000, 44100, 32000)
_EAC3_HALF_RATES = (24000, 22050, 16000)
_EAC3_BLOCKS = (1, 2, 3, 6)
#: AC-3 channels per acmod (A/52 table 5.8), before the LFE.
_ACMOD_CHANNELS = (2, 1, 2, 3, 3, 4, 4, 5)
#: AC-3 bit rates (kb/s) by frmsizecod // 2 (A/52 table 5.18).
_AC3_KBPS = (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512,
             576, 640)  # fmt: skip


@dataclass(frozen=True, slots=True)
class OpusConfig:
    channels: int
    pre_skip: int
    input_rate: int
    gain: int  # Q7.8 dB, signed
    family: int
    table: bytes  # stream count, coupled count, mapping (family != 0 only)
    sample_rate = 48000
    codec_string = "opus"
    name = "Opus"

    def dops(self) -> bytes:
        return (bytes([0, self.channels]) + self.pre_skip.to_bytes(2, "big")
                + self.input_rate.to_bytes(4, "big") + self.gain.to_bytes(2, "big", signed=True)
                + bytes([self.family]) + self.table)  # fmt: skip


@dataclass(frozen=True, slots=True)
class FlacConfig:
    streaminfo: bytes  # the 34 bytes
    sample_rate: int
    channels: int
    codec_string = "fLaC"
    name = "FLAC"

    def dfla(self) -> bytes:
        """The dfLa payload after its FullBox header: STREAMINFO as the last metadata block."""
        return b"\x80\x00\x00\x22" + self.streaminfo


@dataclass(frozen=True, slots=True)
class Ac3Config:
    """From an AC-3 or E-AC-3 sync frame; `key` changes when the configuration does."""

    enhanced: bool
    sample_rate: int
    channels: int
    fscod: int
    bsid: int
    bsmod: int
    acmod: int
    lfe: int
    kbps: int
    frame_samples: int

    @property
    def codec_string(self) -> str:
        return "ec-3" if self.enhanced else "ac-3"

    @property
    def name(self) -> str:
        return "E-AC-3" if self.enhanced else "AC-3"

    def box(self) -> bytes:
        """The payload of the dac3 (AC-3) or dec3 (E-AC-3) box."""
        if not self.enhanced:
            rate_code = _AC3_KBPS.index(self.kbps) if self.kbps in _AC3_KBPS else 0
            value = (self.fscod << 22 | self.bsid << 17 | self.bsmod << 14 | self.acmod << 11
                     | self.lfe << 10 | rate_code << 5)  # fmt: skip
            return value.to_bytes(3, "big")
        head = (self.kbps & 0x1FFF) << 3  # data_rate, num_ind_sub - 1 = 0
        sub = (self.fscod << 22 | self.bsid << 17 | self.bsmod << 12 | self.acmod << 9
               | self.lfe << 8)  # num_dep_sub 0, reserved  # fmt: skip
        return head.to_bytes(2, "big") + sub.to_bytes(3, "big")


def parse_opus_head(data: bytes) -> OpusConfig:
    if len(data) < 19 or data[:8] != b"OpusHead":
        raise ValueError("Opus ID header without OpusHead")
    if data[8] >> 4:
        raise ValueError(f"Opus ID header version {data[8]}")
    channels, family = data[9], data[18]
    if not channels:
        raise ValueError("Opus ID header with no channels")
    table = b""
    if family:
        if len(data) < 21 + channels:
            raise ValueError("Opus channel mapping table truncated")
        table = data[19 : 21 + channels]
    elif channels > 2:
        raise ValueError(f"Opus mapping family 0 with {channels} channels")
    gain = int.from_bytes(data[16:18], "little", signed=True)
    return OpusConfig(channels, int.from_bytes(data[10:12], "little"),
                      int.from_bytes(data[12:16], "little"), gain, family, table)  # fmt: skip


def opus_samples(packet: bytes | bytearray | memoryview) -> int:
    """Samples at 48 kHz in an Opus packet (RFC 6716 3.1); 960 (20 ms) if it cannot tell."""
    if not packet:
        return 960
    toc = packet[0]
    code = toc & 3
    frames = 1 if code == 0 else 2 if code < 3 else (packet[1] & 0x3F if len(packet) > 1 else 1)
    return max(1, frames) * _OPUS_MS10[toc >> 3] * 48 // 10


def parse_flac_config(data: bytes) -> FlacConfig:
    if data[:4] == b"fLaC":
        if len(data) < 8 or data[4] & 0x7F or int.from_bytes(data[5:8], "big") != 34:
            raise ValueError("FLAC header without STREAMINFO first")
        data = data[8:]
    if len(data) < 34:
        raise ValueError(f"FLAC STREAMINFO too short ({len(data)} bytes)")
    info = bytes(data[:34])
    packed = int.from_bytes(info[10:18], "big")
    rate = packed >> 44
    if not 0 < rate <= 655350:
        raise ValueError(f"FLAC STREAMINFO with a sample rate of {rate}")
    return FlacConfig(info, rate, ((packed >> 41) & 7) + 1)


def flac_samples(frame: bytes | bytearray | memoryview, default: int) -> int:
    """The block size in a FLAC frame header, `default` when it cannot be read."""
    if len(frame) < 5 or frame[0] != 0xFF or frame[1] & 0xFE != 0xF8:
        return default
    code = frame[2] >> 4
    if code == 1:
        return 192
    if 2 <= code <= 5:
        return 576 << (code - 2)
    if code >= 8:
        return 256 << (code - 8)
    if code not in (6, 7):
        return default
    first, pos = frame[4], 5  # the UTF-8 coded frame or sample number, then the size
    while first & 0x80 and pos < 11:
        first = (first << 1) & 0xFF
        pos += 1
    pos = pos - 1 if pos > 5 else pos
    end = pos + (1 if code == 6 else 2)
    if end > len(frame):
        return default
    return int.from_bytes(bytes(frame[pos:end]), "big") + 1


def parse_ac3(frame: bytes | bytearray | memoryview, enhanced: bool) -> Ac3Config:
    """The configuration in the sync frame at the start of `frame`."""
    if len(frame) < 8 or frame[0] != 0x0B or frame[1] != 0x77:
        raise ValueError("no AC-3 sync word")
    bsid = frame[5] >> 3
    if enhanced != (bsid > 10):
        kind = "E-AC-3" if bsid > 10 else "AC-3"
        raise ValueError(
            f"an {kind} frame (bsid {bsid}) in an {'ec-3' if enhanced else 'ac-3'} track"
        )
    bits = Bits(bytes(frame[2:16]))
    if not enhanced:
        bits.u(16)  # crc1
        fscod, frmsizecod = bits.u(2), bits.u(6)
        if fscod == 3 or frmsizecod >= 38:
            raise ValueError("reserved AC-3 sample rate or frame size")
        bits.u(5)  # bsid
        bsmod, acmod = bits.u(3), bits.u(3)
        if acmod & 1 and acmod != 1:
            bits.u(2)  # cmixlev
        if acmod & 4:
            bits.u(2)  # surmixlev
        if acmod == 2:
            bits.u(2)  # dsurmod
        lfe = bits.u(1)
        return Ac3Config(False, _AC3_RATES[fscod], _ACMOD_CHANNELS[acmod] + lfe, fscod, bsid,
                         bsmod, acmod, lfe, _AC3_KBPS[frmsizecod // 2], 1536)  # fmt: skip
    strmtyp = bits.u(2)
    bits.u(3)  # substreamid
    words = bits.u(11) + 1  # frmsiz: 16-bit words in the frame
    fscod = bits.u(2)
    code = bits.u(2)
    if fscod == 3:
        if code == 3:
            raise ValueError("reserved E-AC-3 sample rate")
        rate, blocks = _EAC3_HALF_RATES[code], 6
    else:
        rate, blocks = _AC3_RATES[fscod], _EAC3_BLOCKS[code]
    acmod, lfe = bits.u(3), bits.u(1)
    if strmtyp == 3:
        raise ValueError("reserved E-AC-3 stream type")
    samples = 256 * blocks
    kbps = words * 16 * rate // samples // 1000
    return Ac3Config(True, rate, _ACMOD_CHANNELS[acmod] + lfe, fscod, bsid, 0, acmod, lfe, kbps,
                     samples)  # fmt: skip
