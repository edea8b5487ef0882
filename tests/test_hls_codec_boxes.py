"""The codec parts of rtmpd's fMP4 init segments against FFmpeg's own mp4 muxer, for the same
encoder output: each configuration box (hvcC, av1C, vpcC, dOps, dfLa, dac3, dec3) byte for
byte, made from what enhanced RTMP carries (the records, and for AC-3 the first frame); and
the frame facts fMP4 sample durations come from (Opus TOC, FLAC block size, E-AC-3 blocks)."""

from __future__ import annotations

import contextlib
import io

import av
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rtmpd.hls.acodecs import flac_samples, opus_samples
from rtmpd.hls.fmp4 import init_segment
from rtmpd.hls.model import Codec
from rtmpd.hls.tracks import audio_setup, frame_key, frame_setup, video_setup

from tests.support import exmedia
from tests.support.media import TAG_AUDIO, TAG_VIDEO, encode_into

MEDIA = {"seconds": 0.4, "fps": 10, "width": 64, "height": 64, "sample_rate": 48000}
VIDEO = {"libx265": Codec.HEVC, "libsvtav1": Codec.AV1, "libvpx-vp9": Codec.VP9}
AUDIO = {"libopus": Codec.OPUS, "flac": Codec.FLAC, "ac3": Codec.AC3, "eac3": Codec.EAC3}


def ffmpeg_boxes(video_codec: str, audio_codec: str) -> dict[bytes, bytes]:
    """The payload of each box in the moov FFmpeg's mp4 muxer writes for this encode."""
    buf = io.BytesIO()
    # Fragmented (the moov first, as a live stream has it), except for AC-3, whose dac3 FFmpeg
    # makes from a frame; in a plain mp4 FFmpeg rewrites FLAC's STREAMINFO at the end.
    flags = {} if "ac3" in audio_codec else {"movflags": "frag_keyframe+empty_moov"}
    container = av.open(buf, "w", format="mp4", options=flags)
    encode_into(container, video_codec=video_codec, audio_codec=audio_codec, **MEDIA)  # type: ignore[arg-type]
    return boxes(buf.getvalue())


def boxes(data: bytes) -> dict[bytes, bytes]:
    """Every box under moov, by type (the first of each), containers opened."""
    found: dict[bytes, bytes] = {}
    skip = {b"stsd": 8, b"avc1": 78, b"hvc1": 78, b"hev1": 78, b"av01": 78, b"vp09": 78,
            b"mp4a": 28, b"Opus": 28, b"fLaC": 28, b"ac-3": 28, b"ec-3": 28}  # fmt: skip
    containers = {b"moov", b"trak", b"mdia", b"minf", b"stbl", *skip}
    if data[4:8] == b"ftyp":  # FFmpeg's file: only its moov (its mdat holds anything)
        at = 0
        while data[at + 4 : at + 8] != b"moov":
            at += int.from_bytes(data[at : at + 4], "big")
        data = data[at:]

    def walk(at: int, end: int) -> None:
        while at + 8 <= end:
            size, kind = int.from_bytes(data[at : at + 4], "big"), data[at + 4 : at + 8]
            found.setdefault(kind, data[at + 8 : at + size])
            if kind in containers:
                walk(at + 8 + skip.get(kind, 0), at + size)
            at += size

    walk(0, len(data))
    return found


def ours(video_codec: str, audio_codec: str) -> dict[bytes, bytes]:
    tags = exmedia.real_tags(video_codec, audio_codec)
    video = next(t.body for t in tags if t.kind == TAG_VIDEO and t.body[0] & 0x0F == 0)
    vsetup = video_setup(VIDEO[video_codec], video[5:])
    codec = AUDIO[audio_codec]
    if codec in (Codec.AC3, Codec.EAC3):
        frame = next(t.body for t in tags if t.kind == TAG_AUDIO and t.body[0] & 0x0F == 1)[5:]
        asetup = frame_setup(codec, frame, frame_key(codec, frame))
    else:
        head = next(t.body for t in tags if t.kind == TAG_AUDIO and t.body[0] & 0x0F == 0)
        asetup = audio_setup(codec, head[5:])
    return boxes(init_segment([vsetup.track(1), asetup.track(2)])[36:])  # past our ftyp


@pytest.mark.parametrize(
    ("video_codec", "audio_codec", "kinds"),
    [
        ("libx265", "libopus", (b"hvcC", b"dOps")),
        ("libsvtav1", "flac", (b"av1C", b"dfLa")),
        ("libvpx-vp9", "ac3", (b"vpcC", b"dac3")),
        ("libx265", "eac3", (b"dec3",)),
    ],
)
def test_configuration_boxes_are_the_ones_ffmpeg_writes(
    video_codec: str, audio_codec: str, kinds: tuple[bytes, ...]
) -> None:
    theirs, mine = ffmpeg_boxes(video_codec, audio_codec), ours(video_codec, audio_codec)
    for kind in kinds:
        assert mine[kind] == theirs[kind], kind


def test_frame_durations_from_the_frames() -> None:
    # Opus TOC: config 31 (CELT 20 ms) code 0; config 0 (SILK 10 ms) code 1 (two frames);
    # config 17 (CELT 5 ms) code 3 with 3 frames; config 16 (2.5 ms).
    assert opus_samples(bytes([31 << 3])) == 960
    assert opus_samples(bytes([0 << 3 | 1])) == 960
    assert opus_samples(bytes([17 << 3 | 3, 3])) == 720
    assert opus_samples(bytes([16 << 3])) == 120
    # FLAC: block size codes 1 (192), 5 (4608), 12 (4096), 7 (16 bits after a 2-byte number).
    assert flac_samples(b"\xff\xf8\x19\x08\x00\x00", 0) == 192
    assert flac_samples(b"\xff\xf8\x59\x08\x00\x00", 0) == 4608
    assert flac_samples(b"\xff\xf8\xc9\x08\x00\x00", 0) == 4096
    assert flac_samples(b"\xff\xf8\x79\x08\xc2\x80\x0f\xff", 0) == 4096
    assert flac_samples(b"not flac", 1234) == 1234


def _mutations(codec: str) -> st.SearchStrategy[bytes]:
    """Random bytes, and real headers and frames with bytes changed or cut short."""
    pairs = {"hevc": ("libx265", "libopus"), "av1": ("libsvtav1", "flac"),
             "vp9": ("libvpx-vp9", "ac3"), "eac3": ("libx264", "eac3")}  # fmt: skip
    tags = exmedia.real_tags(*pairs[codec])
    seeds = [t.body[5:] for t in tags if t.body[0] & 0x80][:12]

    def mutate(seed: bytes, at: list[tuple[int, int]], cut: int) -> bytes:
        data = bytearray(seed)
        for pos, value in at:
            if data:
                data[pos % len(data)] = value
        return bytes(data[: max(0, len(data) - cut)])

    mutated = st.builds(mutate, st.sampled_from(seeds),
                        st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=4),
                        st.integers(0, 40))  # fmt: skip
    return st.one_of(st.binary(max_size=200), mutated)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_any_header_or_frame_is_read_or_refused_with_a_value_error(data: st.DataObject) -> None:
    """What the packager calls on a publisher's bytes raises ValueError or nothing: it logs
    the one and goes on (another exception would end the connection with a traceback)."""
    for codec, kind in ((Codec.HEVC, "hevc"), (Codec.AV1, "av1"), (Codec.VP9, "vp9")):
        blob = data.draw(_mutations(kind))
        with contextlib.suppress(ValueError):
            setup = video_setup(codec, blob)
            setup.with_keyframe(data.draw(_mutations(kind))).track(1)
            setup.sample(data.draw(_mutations(kind)))
    for codec, kind in ((Codec.OPUS, "hevc"), (Codec.FLAC, "av1")):  # the pairs with them
        with contextlib.suppress(ValueError):
            audio = audio_setup(codec, data.draw(_mutations(kind)))
            audio.track(2)
            audio.samples(data.draw(_mutations(kind)))
    for codec in (Codec.AC3, Codec.EAC3, Codec.MP3):
        frame = data.draw(_mutations("eac3"))
        with contextlib.suppress(ValueError):
            frame_setup(codec, frame, frame_key(codec, frame)).track(2)
