"""HEVC, AV1 and VP9 configuration records, read as far as HLS needs them: the CODECS
string, the picture size, and a check that a record is one before a muxer sees it.

- HEVCDecoderConfigurationRecord (ISO/IEC 14496-15 8.3.3.1) and its SPS (H.265 7.3.2.2) for
  the size; the codec string per 14496-15 Annex E.3: hvc1.[A-C]P.FLAGS.{L,H}LEVEL.C1.C2...
- AV1CodecConfigurationRecord (AV1-ISOBMFF 2.3) and the sequence header OBU (AV1 5.5) for the
  size; av01.P.LLT.DD (AV1-ISOBMFF Annex A). A record without a sequence header is completed
  from the first keyframe, which carries one.
- VPCodecConfigurationRecord (VP codec ISOBMFF binding 2.2); vp09.PP.LL.DD. It has no
  picture size: that comes from the uncompressed header of a keyframe (VP9 6.2).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .codecs import Bits, unescape

_HEVC_SPS = 33
_OBU_SEQUENCE_HEADER = 1
_OBU_TEMPORAL_DELIMITER = 2
#: VP9 levels (x 10) by the largest picture (luma samples) each allows (VP9 Annex A).
_VP9_LEVELS = ((36864, 10), (73728, 11), (122880, 20), (245760, 21), (552960, 30),
               (983040, 31), (2228224, 40), (8912896, 50), (35651584, 60))  # fmt: skip


@dataclass(frozen=True, slots=True)
class HevcConfig:
    profile_space: int
    tier: int
    profile: int
    compatibility: int  # general_profile_compatibility_flags, flag 0 the top bit
    constraints: bytes  # the six bytes of general_constraint_indicator_flags
    level: int  # general_level_idc: 30 x the level
    nal_length_size: int
    width: int | None
    height: int | None

    @property
    def codec_string(self) -> str:
        space = ("", "A", "B", "C")[self.profile_space]
        flags = int(f"{self.compatibility:032b}"[::-1], 2)
        constraints = self.constraints.rstrip(b"\0")
        tail = "".join(f".{b:02X}" for b in constraints)
        return f"hvc1.{space}{self.profile}.{flags:X}.{'LH'[self.tier]}{self.level}{tail}"


@dataclass(frozen=True, slots=True)
class Av1Config:
    profile: int
    level: int  # seq_level_idx[0]
    tier: int
    bit_depth: int
    width: int | None
    height: int | None
    record: bytes  # the av1C record (completed with a sequence header when it had none)

    @property
    def codec_string(self) -> str:
        return f"av01.{self.profile}.{self.level:02d}{'MH'[self.tier]}.{self.bit_depth:02d}"


@dataclass(frozen=True, slots=True)
class Vp9Config:
    profile: int
    level: int  # x 10; 0 when the record did not say
    bit_depth: int
    chroma_subsampling: int
    full_range: bool
    colour_primaries: int
    transfer: int
    matrix: int
    width: int | None = None
    height: int | None = None

    @property
    def codec_string(self) -> str:
        return f"vp09.{self.profile:02d}.{self.effective_level:02d}.{self.bit_depth:02d}"

    @property
    def effective_level(self) -> int:
        """The record's level, else the least one the picture size fits (FFmpeg may write 0)."""
        if self.level or not self.width or not self.height:
            return self.level or 10
        samples = self.width * self.height
        return next((lv for most, lv in _VP9_LEVELS if samples <= most), 62)

    def vpcc(self) -> bytes:
        """The vpcC box payload: version 1, flags 0, the record, no initialization data."""
        packed = self.bit_depth << 4 | self.chroma_subsampling << 1 | int(self.full_range)
        return bytes([1, 0, 0, 0, self.profile, self.effective_level, packed,
                      self.colour_primaries, self.transfer, self.matrix, 0, 0])  # fmt: skip


# -- HEVC --------------------------------------------------------------------------------------


def parse_hvcc(data: bytes) -> HevcConfig:
    """Check an HEVCDecoderConfigurationRecord and read what HLS needs of it."""
    if len(data) < 23:
        raise ValueError(f"HEVC config too short ({len(data)} bytes)")
    if data[0] != 1:
        raise ValueError(f"HEVC config version {data[0]}, expected 1 (not HEVC?)")
    if data[21] & 3 == 2:
        raise ValueError("HEVC config NAL length size 3 is not allowed")
    pos, sps = 23, b""
    kinds = set()
    for _ in range(data[22]):
        if pos + 3 > len(data):
            raise ValueError("HEVC config truncated")
        kind, count = data[pos] & 0x3F, int.from_bytes(data[pos + 1 : pos + 3], "big")
        pos += 3
        for _ in range(count):
            size = int.from_bytes(data[pos : pos + 2], "big")
            unit = data[pos + 2 : pos + 2 + size]
            if pos + 2 > len(data) or len(unit) != size or size < 2 or (unit[0] >> 1) != kind:
                raise ValueError("HEVC config holds a malformed parameter set")
            kinds.add(kind)
            sps = sps or (unit if kind == _HEVC_SPS else b"")
            pos += 2 + size
    if not {32, 33, 34} <= kinds:
        raise ValueError("HEVC config without VPS, SPS or PPS")
    width: int | None
    height: int | None
    try:
        width, height = hevc_sps_size(sps)
    except ValueError:
        width = height = None
    return HevcConfig(
        profile_space=data[1] >> 6,
        tier=(data[1] >> 5) & 1,
        profile=data[1] & 0x1F,
        compatibility=int.from_bytes(data[2:6], "big"),
        constraints=bytes(data[6:12]),
        level=data[12],
        nal_length_size=(data[21] & 3) + 1,
        width=width,
        height=height,
    )


def hevc_sps_size(nal: bytes) -> tuple[int, int]:
    """Picture width and height from an HEVC SPS NAL unit, the conformance window applied."""
    bits = Bits(unescape(nal[2:]))
    bits.u(4)  # sps_video_parameter_set_id
    sub_layers = bits.u(3)
    bits.u(1)  # sps_temporal_id_nesting_flag
    bits.u(96)  # general profile, tier, flags and level
    present = [(bits.u(1), bits.u(1)) for _ in range(sub_layers)]
    if sub_layers:
        bits.u(2 * (8 - sub_layers))
    for profile, level in present:
        bits.u(88 * profile + 8 * level)
    bits.ue()  # sps_seq_parameter_set_id
    chroma = bits.ue()
    if chroma > 3:
        raise ValueError(f"bad chroma_format_idc {chroma}")
    separate = bits.u(1) if chroma == 3 else 0
    width, height = bits.ue(), bits.ue()
    if bits.u(1):  # conformance_window_flag
        left, right, top, bottom = bits.ue(), bits.ue(), bits.ue(), bits.ue()
        sub_w, sub_h = (1, 1) if separate else {0: (1, 1), 1: (2, 2), 2: (2, 1), 3: (1, 1)}[chroma]
        width -= sub_w * (left + right)
        height -= sub_h * (top + bottom)
    if not (0 < width <= 16888 and 0 < height <= 16888):
        raise ValueError(f"implausible picture size {width}x{height}")
    return width, height


# -- AV1 ---------------------------------------------------------------------------------------


def parse_av1c(data: bytes) -> Av1Config:
    """Check an AV1CodecConfigurationRecord; the size comes from its sequence header, when it
    holds one (`with_sequence_header` completes one that does not)."""
    if len(data) < 4:
        raise ValueError(f"AV1 config too short ({len(data)} bytes)")
    if data[0] != 0x81:
        raise ValueError(f"AV1 config starts with {data[0]:#04x}, expected 0x81 (not AV1?)")
    high, twelve = data[2] & 0x40, data[2] & 0x20
    config = Av1Config(
        profile=data[1] >> 5,
        level=data[1] & 0x1F,
        tier=data[2] >> 7,
        bit_depth=(12 if twelve else 10) if high else 8,
        width=None,
        height=None,
        record=bytes(data),
    )
    header = find_obu(bytes(data[4:]), _OBU_SEQUENCE_HEADER)
    return _with_size(config, header) if header is not None else config


def with_sequence_header(config: Av1Config, frame: bytes) -> Av1Config:
    """`config` with the sequence header of a keyframe's OBUs, when it lacked one."""
    if config.width is not None:
        return config
    header = find_obu(frame, _OBU_SEQUENCE_HEADER)
    if header is None:
        return config
    try:
        sized = _with_size(config, header)
    except ValueError:
        return config
    return replace(sized, record=config.record[:4] + _obu_with_size(header))


def _with_size(config: Av1Config, header: bytes) -> Av1Config:
    """The size the sequence header OBU payload says (the rest is the record's to say)."""
    width, height = av1_frame_size(header)
    return replace(config, width=width, height=height)


def av1_frame_size(payload: bytes) -> tuple[int, int]:
    """max_frame_width and max_frame_height from a sequence header OBU's payload (AV1 5.5.1)."""
    bits = Bits(payload)
    bits.u(3)  # seq_profile
    bits.u(1)  # still_picture
    if bits.u(1):  # reduced_still_picture_header
        bits.u(5)  # seq_level_idx[0]
    else:
        decoder_model, buffer_delay = False, 0
        if bits.u(1):  # timing_info_present_flag
            bits.u(64)  # num_units_in_display_tick, time_scale
            if bits.u(1):  # equal_picture_interval
                _uvlc(bits)
            if bits.u(1):  # decoder_model_info_present_flag
                decoder_model = True
                buffer_delay = bits.u(5) + 1
                bits.u(32 + 5 + 5)
        initial_delay = bits.u(1)
        for _ in range(bits.u(5) + 1):  # operating points
            bits.u(12)  # operating_point_idc
            if bits.u(5) > 7:  # seq_level_idx
                bits.u(1)  # seq_tier
            if decoder_model and bits.u(1):
                bits.u(2 * buffer_delay + 1)
            if initial_delay and bits.u(1):
                bits.u(4)
    width_bits, height_bits = bits.u(4) + 1, bits.u(4) + 1
    width, height = bits.u(width_bits) + 1, bits.u(height_bits) + 1
    if not (width <= 65536 and height <= 65536):
        raise ValueError(f"implausible picture size {width}x{height}")
    return width, height


def _uvlc(bits: Bits) -> None:
    zeros = 0
    while not bits.u(1):
        zeros += 1
        if zeros >= 32:
            raise ValueError("uvlc too long")
    bits.u(zeros)


def obus(data: bytes) -> list[tuple[int, int, int]]:
    """(type, start, end) of each OBU in a low-overhead bitstream: the whole OBU, header
    included. ValueError if it is not one (AV1 5.3)."""
    found, pos = [], 0
    while pos < len(data):
        header = data[pos]
        if header & 0x80:
            raise ValueError("AV1 OBU forbidden bit set")
        kind, extension, sized = (header >> 3) & 0xF, (header >> 2) & 1, (header >> 1) & 1
        at = pos + 1 + extension
        if sized:
            size, at = _leb128(data, at)
        else:
            size = len(data) - at
        end = at + size
        if end > len(data):
            raise ValueError("AV1 OBU truncated")
        found.append((kind, pos, end))
        pos = end
    return found


def find_obu(data: bytes, kind: int) -> bytes | None:
    """The payload of the first OBU of `kind`, or None."""
    try:
        units = obus(data)
    except ValueError:
        return None
    for found, start, end in units:
        if found == kind:
            head = 1 + ((data[start] >> 2) & 1)
            if (data[start] >> 1) & 1:
                _, at = _leb128(data, start + head)
                return data[at:end]
            return data[start + head : end]
    return None


def strip_temporal_delimiters(data: bytes) -> bytes:
    """A temporal unit without its temporal delimiter OBUs, which AV1-ISOBMFF 2.4 keeps out of
    samples (publishers send them: FFmpeg's flv muxer does)."""
    if not data or (data[0] >> 3) & 0xF != _OBU_TEMPORAL_DELIMITER:
        return data
    try:
        units = obus(data)
    except ValueError:
        return data
    return b"".join(data[s:e] for kind, s, e in units if kind != _OBU_TEMPORAL_DELIMITER)


def _leb128(data: bytes, pos: int) -> tuple[int, int]:
    value = 0
    for i in range(8):
        if pos >= len(data):
            raise ValueError("AV1 OBU size truncated")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, pos
    raise ValueError("AV1 OBU size too long")


def _obu_with_size(payload: bytes) -> bytes:
    """A sequence header OBU with a size field, as configOBUs holds it."""
    size, out = len(payload), bytearray([_OBU_SEQUENCE_HEADER << 3 | 2])
    while True:
        byte = size & 0x7F
        size >>= 7
        out.append(byte | (0x80 if size else 0))
        if not size:
            return bytes(out) + payload


# -- VP9 ---------------------------------------------------------------------------------------


def parse_vpcc(data: bytes) -> Vp9Config:
    """Check a VPCodecConfigurationRecord (with or without the vpcC version and flags in
    front, as FFmpeg sends it)."""
    if len(data) >= 12 and data[0] == 1 and data[1:4] == b"\0\0\0":
        data = data[4:]
    if len(data) < 8:
        raise ValueError(f"VP9 config too short ({len(data)} bytes)")
    profile, level, packed = data[0], data[1], data[2]
    if profile > 3 or packed >> 4 not in (8, 10, 12):
        raise ValueError(f"VP9 config with profile {profile} and {packed >> 4} bits (not VP9?)")
    return Vp9Config(profile, level, packed >> 4, (packed >> 1) & 7, bool(packed & 1), data[3],
                     data[4], data[5])  # fmt: skip


def vp9_frame_size(frame: bytes) -> tuple[int, int] | None:
    """The size in the uncompressed header of a VP9 keyframe (the first frame of a
    superframe), or None when `frame` is not a keyframe."""
    bits = Bits(frame[:32])
    try:
        if bits.u(2) != 2:
            return None
        profile = bits.u(1) | bits.u(1) << 1
        if profile == 3:
            bits.u(1)
        if bits.u(1) or bits.u(1):  # show_existing_frame; frame_type 1 is not a keyframe
            return None
        bits.u(2)  # show_frame, error_resilient_mode
        if bits.u(24) != 0x498342:
            return None
        if profile >= 2:
            bits.u(1)  # ten_or_twelve_bit
        if bits.u(3) != 7:  # color_space other than RGB
            bits.u(1)  # color_range
            if profile in (1, 3):
                bits.u(3)
        elif profile in (1, 3):
            bits.u(1)
        return bits.u(16) + 1, bits.u(16) + 1
    except ValueError:
        return None
