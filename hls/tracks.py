"""A track's setup: its codec, the sequence header as sent, what was parsed of it, and what each
muxer needs of it (a PyAV template for MPEG-TS, a `Track` for fMP4). One place decides, per
codec, which parser reads the header and which boxes carry it, so the packager only asks
"video or audio, TS or fMP4".

A header is checked when it arrives (ValueError: the packager logs it once and keeps the
previous one), so a muxer never sees garbage. Codecs without a header (MP3, AC-3, E-AC-3)
are set up from the header of their first frame, and again when it changes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .acodecs import (
    Ac3Config,
    FlacConfig,
    OpusConfig,
    flac_samples,
    opus_samples,
    parse_ac3,
    parse_flac_config,
    parse_opus_head,
)
from .codecs import AacConfig, AvcConfig, Mp3Config, parse_asc, parse_avcc, parse_mp3
from .fmp4 import Track
from .fmp4run import VIDEO_TIMESCALE, Fmp4Run
from .model import CODEC_NAMES, TS_CODECS, Codec
from .muxer import SegmentOutput
from .templates import (
    Template,
    audio_template,
    bare_audio_template,
    hevc_template,
    mp3_template,
    video_template,
)
from .vcodecs import (
    Av1Config,
    HevcConfig,
    Vp9Config,
    parse_av1c,
    parse_hvcc,
    parse_vpcc,
    strip_temporal_delimiters,
    vp9_frame_size,
    with_sequence_header,
)

VideoParsed = AvcConfig | HevcConfig | Av1Config | Vp9Config
AudioParsed = AacConfig | Mp3Config | OpusConfig | FlacConfig | Ac3Config


@dataclass(frozen=True, slots=True)
class VideoSetup:
    codec: Codec
    config: bytes  # the sequence header as sent (to spot repeats)
    parsed: VideoParsed
    template: Template | None  # for MPEG-TS; None for codecs it cannot carry

    @property
    def name(self) -> str:
        return CODEC_NAMES[self.codec]

    @property
    def width(self) -> int | None:
        return self.parsed.width

    @property
    def height(self) -> int | None:
        return self.parsed.height

    def codec_string(self, fmp4: bool) -> str:
        """RFC 6381 / the codec's ISOBMFF binding. HEVC in MPEG-TS is hev1 (its parameter
        sets travel in the stream), in fMP4 hvc1 (in the init segment, where Apple wants them)."""
        text = self.parsed.codec_string
        return text if fmp4 or self.codec is not Codec.HEVC else "hev1" + text[4:]

    @property
    def decoder(self) -> str:
        """FFmpeg's decoder for thumbnails."""
        return {Codec.AV1: "libdav1d", Codec.VP9: "vp9", Codec.HEVC: "hevc"}.get(self.codec, "h264")

    @property
    def extradata(self) -> bytes:
        parsed = self.parsed
        if isinstance(parsed, Vp9Config):
            return b""  # VP9 frames say everything the decoder needs
        return parsed.record if isinstance(parsed, Av1Config) else self.config

    def track(self, track_id: int) -> Track:
        parsed = self.parsed
        width, height = parsed.width or 0, parsed.height or 0
        if isinstance(parsed, AvcConfig):
            return Track(track_id, "avc1", VIDEO_TIMESCALE, self.config, width, height)
        if isinstance(parsed, HevcConfig):
            return Track(track_id, "hvc1", VIDEO_TIMESCALE, self.config, width, height)
        if isinstance(parsed, Av1Config):
            return Track(track_id, "av01", VIDEO_TIMESCALE, parsed.record, width, height)
        return Track(track_id, "vp09", VIDEO_TIMESCALE, parsed.vpcc(), width, height)

    def sample(self, data: bytes) -> bytes:
        """A frame as an fMP4 sample."""
        return strip_temporal_delimiters(data) if self.codec is Codec.AV1 else data

    def with_keyframe(self, data: bytes) -> VideoSetup:
        """The setup completed from a keyframe, for codecs whose header lacks the picture
        size (VP9 always, AV1 without a sequence header in its record)."""
        parsed = self.parsed
        if parsed.width is not None:
            return self
        if isinstance(parsed, Av1Config):
            return replace(self, parsed=with_sequence_header(parsed, data))
        if isinstance(parsed, Vp9Config):
            size = vp9_frame_size(data)
            if size is not None:
                return replace(self, parsed=replace(parsed, width=size[0], height=size[1]))
        return self


@dataclass(frozen=True, slots=True)
class AudioSetup:
    codec: Codec
    config: bytes  # the sequence header as sent; for MP3/AC-3 the frame header that set it up
    parsed: AudioParsed
    template: Template | None  # for MPEG-TS; None for codecs it cannot carry

    @property
    def name(self) -> str:
        parsed = self.parsed
        return parsed.name if isinstance(parsed, AacConfig | Mp3Config) else CODEC_NAMES[self.codec]

    @property
    def codec_string(self) -> str:
        return self.parsed.codec_string

    @property
    def sample_rate(self) -> int:
        return self.parsed.sample_rate

    @property
    def channels(self) -> int | None:
        return self.parsed.channels

    @property
    def timescale(self) -> int:
        parsed = self.parsed
        if isinstance(parsed, AacConfig):  # frames of 1024 samples of the core rate
            return parsed.core_sample_rate or parsed.sample_rate
        return parsed.sample_rate

    @property
    def frame_samples(self) -> int:
        """Samples per frame when every frame has as many; 0 when each frame says."""
        parsed = self.parsed
        if isinstance(parsed, Mp3Config):
            return 1152 if parsed.version == "1" else 576
        if isinstance(parsed, Ac3Config):
            return parsed.frame_samples
        if isinstance(parsed, OpusConfig | FlacConfig):
            return 0
        return 1024

    def samples(self, data: bytes) -> int:
        """Samples in this frame, in the track's timescale."""
        if isinstance(self.parsed, OpusConfig):
            return opus_samples(data)
        if isinstance(self.parsed, FlacConfig):
            return flac_samples(data, 4096)
        return self.frame_samples

    def track(self, track_id: int) -> Track:
        parsed = self.parsed
        channels = parsed.channels or 2
        rate = self.timescale
        if isinstance(parsed, AacConfig):
            return Track(track_id, "mp4a", rate, self.config, channels=channels)
        if isinstance(parsed, Mp3Config):
            return Track(track_id, "mp3", rate, channels=channels)
        if isinstance(parsed, OpusConfig):
            return Track(track_id, "Opus", rate, parsed.dops(), channels=channels)
        if isinstance(parsed, FlacConfig):
            return Track(track_id, "fLaC", rate, bytes(4) + parsed.dfla(), channels=channels)
        return Track(track_id, parsed.codec_string, rate, parsed.box(), channels=channels)


def video_setup(codec: Codec, data: bytes) -> VideoSetup:
    """The setup of a video sequence header; ValueError if it is not one of `codec`."""
    if codec is Codec.H264:
        return VideoSetup(codec, data, parse_avcc(data), video_template(data))
    if codec is Codec.HEVC:
        return VideoSetup(codec, data, parse_hvcc(data), hevc_template(data))
    if codec is Codec.AV1:
        return VideoSetup(codec, data, parse_av1c(data), None)
    if codec is Codec.VP9:
        return VideoSetup(codec, data, parse_vpcc(data), None)
    raise ValueError(f"{codec} is not a video codec")


def audio_setup(codec: Codec, data: bytes) -> AudioSetup:
    """The setup of an audio sequence header (AAC, Opus, FLAC); ValueError if it is not one."""
    if codec is Codec.AAC:
        return AudioSetup(codec, data, parse_asc(data), audio_template(data))
    if codec is Codec.OPUS:
        return AudioSetup(codec, data, parse_opus_head(data), None)
    if codec is Codec.FLAC:
        return AudioSetup(codec, data, parse_flac_config(data), None)
    raise ValueError(f"{codec} has no sequence header")


def frame_key(codec: Codec, frame: bytes | bytearray | memoryview) -> bytes:
    """The bits of a self-configured codec's frame header that say its configuration: a
    new setup is made only when they change."""
    if codec is Codec.MP3:
        return bytes((frame[1] & 0x18, frame[2] & 0x0C, frame[3] >> 6)) if len(frame) > 3 else b""
    end = 6 if codec is Codec.EAC3 else 8  # E-AC-3: rate, blocks, acmod, lfe, bsid
    return bytes(frame[4:end]) if len(frame) >= end else b""


def frame_setup(codec: Codec, frame: bytes, key: bytes) -> AudioSetup:
    """The setup of MP3, AC-3 or E-AC-3 from a frame's header; ValueError if it is not one."""
    if codec is Codec.MP3:
        mp3 = parse_mp3(frame[:4])
        return AudioSetup(codec, key, mp3, mp3_template(mp3.sample_rate))
    ac3 = parse_ac3(frame, codec is Codec.EAC3)
    template = bare_audio_template(codec.value, ac3.sample_rate)
    return AudioSetup(codec, key, ac3, template)


def ts_carries(setup: VideoSetup | AudioSetup | None) -> bool:
    return setup is None or setup.codec in TS_CODECS


def fmp4_run(
    video: VideoSetup | None,
    audio: AudioSetup | None,
    first: SegmentOutput,
    *,
    keep_parts: bool = True,
) -> Fmp4Run:
    """A run of fMP4 segments for these tracks; ValueError without any."""
    video_track = video.track(1) if video is not None else None
    audio_track = audio.track(2 if video is not None else 1) if audio is not None else None
    frame_samples = (audio.frame_samples if audio is not None else 0) or 1024
    return Fmp4Run(video_track, audio_track, frame_samples, first, keep_parts=keep_parts)
