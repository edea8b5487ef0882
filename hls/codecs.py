"""Codec configuration parsing: the AVCDecoderConfigurationRecord (with its SPS), the AAC
AudioSpecificConfig and the MPEG audio (MP3) frame header.

The packager checks each sequence header here before handing it to FFmpeg, so a garbage header
is refused with a clear `ValueError` at config time instead of failing inside the muxer later,
and the same parse gives `stream_info` its codec strings, picture size and audio format.
"""

from __future__ import annotations

from dataclasses import dataclass

# ISO/IEC 14496-3 sampling_frequency_index -> Hz (13 and 14 are reserved, 15 means explicit).
AAC_SAMPLE_RATES = (
    96000,
    88200,
    64000,
    48000,
    44100,
    32000,
    24000,
    22050,
    16000,
    12000,
    11025,
    8000,
    7350,
)
# Profiles whose SPS carries chroma_format_idc, bit depths and scaling matrices (H.264 7.3.2.1.1).
_HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})
_SBR_PS = (5, 29)


@dataclass(frozen=True, slots=True)
class AvcConfig:
    """What the packager needs from an AVCDecoderConfigurationRecord."""

    profile: int
    compatibility: int
    level: int
    nal_length_size: int
    sps: tuple[bytes, ...]
    pps: tuple[bytes, ...]
    width: int | None  # None when the SPS could not be parsed (muxing still works)
    height: int | None

    @property
    def codec_string(self) -> str:
        """RFC 6381 codec string, e.g. avc1.42C01E."""
        return f"avc1.{self.profile:02X}{self.compatibility:02X}{self.level:02X}"


@dataclass(frozen=True, slots=True)
class AacConfig:
    """What the packager needs from an AudioSpecificConfig."""

    object_type: int  # what it is: 2 = AAC-LC, 5 = SBR (HE-AAC), 29 = PS (HE-AACv2)
    core_object_type: int  # the object type under SBR/PS: what ADTS headers carry
    sample_rate: int  # output rate (the SBR extension rate for HE-AAC)
    channels: int | None  # None when a program config element defines them
    core_sample_rate: int = 0  # the rate of the AAC core (under SBR: half the output rate)

    @property
    def codec_string(self) -> str:
        return f"mp4a.40.{self.object_type}"

    @property
    def name(self) -> str:
        return {5: "HE-AAC", 29: "HE-AACv2"}.get(self.object_type, "AAC")


@dataclass(frozen=True, slots=True)
class Mp3Config:
    """What the packager needs from an MPEG audio frame header (ISO/IEC 11172-3, 13818-3)."""

    version: str  # "1", "2" or "2.5" (the last two: the low sample rates)
    layer: int
    sample_rate: int
    channels: int
    bitrate_kbps: int | None  # None for free format

    #: HLS's name for MPEG-1/2 audio (Apple's authoring spec lists mp4a.40.34 for MP3).
    codec_string = "mp4a.40.34"

    @property
    def name(self) -> str:
        return "MP3" if self.layer == 3 else f"MPEG-{self.version} Layer {'I' * self.layer}"


class Bits:
    """MSB-first bit reader with Exp-Golomb codes; reading past the end raises ValueError."""

    __slots__ = ("_data", "_pos", "_end")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0
        self._end = len(data) * 8

    def u(self, n: int) -> int:
        if self._pos + n > self._end:
            raise ValueError("truncated bit stream")
        value = 0
        for _ in range(n):
            byte = self._data[self._pos >> 3]
            value = (value << 1) | ((byte >> (7 - (self._pos & 7))) & 1)
            self._pos += 1
        return value

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("Exp-Golomb code too long")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


def unescape(nal: bytes) -> bytes:
    """Remove emulation prevention bytes (00 00 03 -> 00 00)."""
    if b"\x00\x00\x03" not in nal:
        return nal
    out = bytearray()
    zeros = 0
    for byte in nal:
        if zeros >= 2 and byte == 3:
            zeros = 0
            continue
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def parse_sps(nal: bytes) -> tuple[int, int]:
    """Picture width and height in pixels from an SPS NAL unit, cropping applied."""
    if len(nal) < 4 or nal[0] & 0x1F != 7:
        raise ValueError("not an SPS NAL unit")
    bits = Bits(unescape(nal[4:]))
    profile = nal[1]
    bits.ue()  # seq_parameter_set_id
    chroma_format = 1
    separate_planes = 0
    if profile in _HIGH_PROFILES:
        chroma_format = bits.ue()
        if chroma_format > 3:
            raise ValueError(f"bad chroma_format_idc {chroma_format}")
        if chroma_format == 3:
            separate_planes = bits.u(1)
        bits.ue()  # bit_depth_luma_minus8
        bits.ue()  # bit_depth_chroma_minus8
        bits.u(1)  # qpprime_y_zero_transform_bypass_flag
        if bits.u(1):  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma_format != 3 else 12):
                if bits.u(1):
                    _skip_scaling_list(bits, 16 if i < 6 else 64)
    bits.ue()  # log2_max_frame_num_minus4
    poc_type = bits.ue()
    if poc_type == 0:
        bits.ue()  # log2_max_pic_order_cnt_lsb_minus4
    elif poc_type == 1:
        bits.u(1)
        bits.se()
        bits.se()
        for _ in range(bits.ue()):
            bits.se()
    elif poc_type != 2:
        raise ValueError(f"bad pic_order_cnt_type {poc_type}")
    bits.ue()  # max_num_ref_frames
    bits.u(1)  # gaps_in_frame_num_value_allowed_flag
    width_mbs = bits.ue() + 1
    height_units = bits.ue() + 1
    frame_mbs_only = bits.u(1)
    if not frame_mbs_only:
        bits.u(1)  # mb_adaptive_frame_field_flag
    bits.u(1)  # direct_8x8_inference_flag
    width = width_mbs * 16
    height = (2 - frame_mbs_only) * height_units * 16
    if bits.u(1):  # frame_cropping_flag
        left, right, top, bottom = bits.ue(), bits.ue(), bits.ue(), bits.ue()
        chroma_array_type = 0 if separate_planes else chroma_format
        sub_w, sub_h = {0: (1, 1), 1: (2, 2), 2: (2, 1), 3: (1, 1)}[chroma_array_type]
        width -= sub_w * (left + right)
        height -= sub_h * (2 - frame_mbs_only) * (top + bottom)
    if width <= 0 or height <= 0 or width > 16384 or height > 16384:
        raise ValueError(f"implausible picture size {width}x{height}")
    return width, height


def _skip_scaling_list(bits: Bits, size: int) -> None:
    last = next_scale = 8
    for _ in range(size):
        if next_scale:
            next_scale = (last + bits.se() + 256) % 256
        last = next_scale or last


def parse_avcc(data: bytes) -> AvcConfig:
    """Check an AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.3.3.1) and pull out its parts."""
    if len(data) < 7:
        raise ValueError(f"AVC config too short ({len(data)} bytes)")
    if data[0] != 1:
        raise ValueError(f"AVC config version {data[0]}, expected 1 (not H.264?)")
    nal_length_size = (data[4] & 3) + 1
    if nal_length_size == 3:
        raise ValueError("AVC config NAL length size 3 is not allowed")
    pos = 5
    lists: list[tuple[bytes, ...]] = []
    for count_mask, nal_type in ((0x1F, 7), (0xFF, 8)):
        if pos >= len(data):
            raise ValueError("AVC config truncated")
        count = data[pos] & count_mask
        pos += 1
        units = []
        for _ in range(count):
            if pos + 2 > len(data):
                raise ValueError("AVC config truncated")
            size = int.from_bytes(data[pos : pos + 2], "big")
            pos += 2
            unit = bytes(data[pos : pos + size])
            if len(unit) != size or size == 0 or unit[0] & 0x1F != nal_type:
                raise ValueError("AVC config holds a malformed parameter set")
            units.append(unit)
            pos += size
        lists.append(tuple(units))
    sps, pps = lists
    if not sps or not pps:
        raise ValueError("AVC config without SPS or PPS")
    width: int | None
    height: int | None
    try:
        width, height = parse_sps(sps[0])
    except ValueError:
        width = height = None
    return AvcConfig(sps[0][1], sps[0][2], sps[0][3], nal_length_size, sps, pps, width, height)


def parse_asc(data: bytes) -> AacConfig:
    """Check an AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1) as far as ADTS output needs."""
    if len(data) < 2:
        raise ValueError(f"AAC config too short ({len(data)} bytes)")
    bits = Bits(bytes(data))

    def object_type() -> int:
        value = bits.u(5)
        return 32 + bits.u(6) if value == 31 else value

    def sample_rate() -> int:
        index = bits.u(4)
        if index == 15:
            return bits.u(24)
        if index >= len(AAC_SAMPLE_RATES):
            raise ValueError(f"reserved AAC sampling frequency index {index}")
        return AAC_SAMPLE_RATES[index]

    aot = object_type()
    rate = core_rate = sample_rate()
    channel_config = bits.u(4)
    core = aot
    if aot in _SBR_PS:
        rate = sample_rate()
        core = object_type()
    elif core == 2 and channel_config:
        aot, rate = _backward_compatible_sbr(bits, rate)
    if not 1 <= core <= 4:
        raise ValueError(f"AAC object type {core} cannot be carried in ADTS (MPEG-TS)")
    if not 0 < rate <= 192000:
        raise ValueError(f"implausible AAC sample rate {rate}")
    if channel_config > 7:
        raise ValueError(f"reserved AAC channel configuration {channel_config}")
    channels = {0: None, 7: 8}.get(channel_config, channel_config)
    return AacConfig(aot, core, rate, channels, core_rate)


def _backward_compatible_sbr(bits: Bits, rate: int) -> tuple[int, int]:
    """Explicit backward-compatible signalling (ISO/IEC 14496-3 1.6.6): an AAC-LC config
    followed by sync extensions that declare SBR (and PS). Returns (object type, output rate)."""
    try:
        bits.u(1)  # frameLengthFlag
        if bits.u(1):  # dependsOnCoreCoder
            bits.u(14)
        bits.u(1)  # extensionFlag (0 for AAC-LC)
        if bits.u(11) != 0x2B7 or bits.u(5) != 5 or not bits.u(1):
            return 2, rate
        index = bits.u(4)
        sbr_rate = bits.u(24) if index == 15 else AAC_SAMPLE_RATES[index]
    except (ValueError, IndexError):
        return 2, rate
    try:
        ps = bits.u(11) == 0x548 and bits.u(1) == 1
    except ValueError:
        ps = False
    return (29 if ps else 5), sbr_rate


_MP3_RATES = {"1": (44100, 48000, 32000), "2": (22050, 24000, 16000), "2.5": (11025, 12000, 8000)}
_MP3_VERSIONS = {0: "2.5", 2: "2", 3: "1"}
_MP3_KBPS = {  # (version 1?, layer) -> bitrate index 1..14
    (True, 1): (32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (False, 3): (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}


def parse_mp3(frame: bytes) -> Mp3Config:
    """The header of the MPEG audio frame at the start of `frame` (an FLV MP3 tag's body)."""
    if len(frame) < 4 or frame[0] != 0xFF or frame[1] & 0xE0 != 0xE0:
        raise ValueError("no MPEG audio frame sync")
    version = _MP3_VERSIONS.get((frame[1] >> 3) & 3)
    layer = 4 - ((frame[1] >> 1) & 3)
    rate_index = (frame[2] >> 2) & 3
    bitrate_index = frame[2] >> 4
    if version is None or layer == 4 or rate_index == 3 or bitrate_index == 15:
        raise ValueError("reserved value in the MPEG audio frame header")
    kbps = _MP3_KBPS[version == "1", layer][bitrate_index - 1] if bitrate_index else None
    channels = 1 if frame[3] >> 6 == 3 else 2
    return Mp3Config(version, layer, _MP3_RATES[version][rate_index], channels, kbps)
