"""Fragmented MP4 (CMAF) boxes for HLS, built from the samples as RTMP brings them: pure.

Why here and not FFmpeg's mp4 muxer through PyAV: fed an interleaved audio and video stream
with `frag_every_frame` (the only way PyAV can make it cut where a part must end), it rewrote
the audio timestamps (two audio frames between video frames: the second one's DTS taken for the
first, 38 "pts has no value" per 3 s of 720p30 + AAC) and started each track's decode times at
zero (a 23 ms audio/video offset for a stream whose video starts 23 ms after its audio, and no
absolute times across runs); see docs/ll-hls.md for the measurement. The boxes a part needs are
few (ISO/IEC 14496-12; bluenviron/mediacommon's fmp4 package is the reference we followed for
which ones): an init segment (ftyp, moov with one trak per track and mvex) and, per part, one
moof (mfhd, one traf per track: tfhd, tfdt, trun) and one mdat with the samples as they came
(H.264 and HEVC length-prefixed as RTMP brings them, VP9 frames, AAC, MP3, Opus, FLAC and
AC-3 frames raw; AV1 temporal units without their temporal delimiters: no conversion else).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

_U32 = struct.Struct(">I")
#: tfhd: default-base-is-moof (sample data offsets count from the moof).
_TFHD_BASE_IS_MOOF = 0x020000
#: trun flags: data offset, per-sample duration, size, flags, composition time offset.
_TRUN_FLAGS = 0x000001 | 0x000100 | 0x000200
_TRUN_SAMPLE_FLAGS = 0x000400
_TRUN_CTO = 0x000800
#: Sample flags: a sample that depends on others (not a sync sample), one that depends on none.
_NON_SYNC = 0x01010000
_SYNC = 0x02000000
_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


def box(kind: bytes, *payload: bytes) -> bytes:
    body = b"".join(payload)
    return _U32.pack(8 + len(body)) + kind + body


def full_box(kind: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    return box(kind, _U32.pack(version << 24 | flags), *payload)


#: The sample entry of each codec and the box its configuration goes into (the codec's
#: ISOBMFF binding); AAC and MP3 go into an mp4a entry's esds.
VIDEO_ENTRIES = {"avc1": b"avcC", "hvc1": b"hvcC", "av01": b"av1C", "vp09": b"vpcC"}
AUDIO_ENTRIES = {"Opus": b"dOps", "fLaC": b"dfLa", "ac-3": b"dac3", "ec-3": b"dec3"}


@dataclass(frozen=True, slots=True)
class Track:
    """One track of a run: what the init segment says about it."""

    track_id: int
    codec: str  # the sample entry: a key of VIDEO_ENTRIES or AUDIO_ENTRIES, "mp4a" (AAC), "mp3"
    timescale: int  # 90 kHz for video, the sample rate for audio (48 kHz for Opus)
    config: bytes = b""  # the configuration box's payload (for AAC the AudioSpecificConfig)
    width: int = 0
    height: int = 0
    channels: int = 2
    sample_rate: int = 0  # the audio sample entry's rate when it is not the timescale

    @property
    def video(self) -> bool:
        return self.codec in VIDEO_ENTRIES


@dataclass(slots=True)
class Sample:
    duration: int  # in the track's timescale
    size: int
    sync: bool = True
    cto: int = 0  # composition time offset (PTS - DTS), in the track's timescale


@dataclass(slots=True)
class TrackRun:
    """A track's samples in one fragment: its decode time and the samples, data in order."""

    track: Track
    base_time: int  # tfdt: the decode time of the first sample
    samples: list[Sample] = field(default_factory=list)
    data: list[bytes] = field(default_factory=list)


def init_segment(tracks: list[Track]) -> bytes:
    """ftyp + moov (no samples: every sample is in a fragment), for EXT-X-MAP."""
    ftyp = box(b"ftyp", b"iso6", _U32.pack(0), b"iso6cmfcmp41dashhlsf")
    mvhd = full_box(b"mvhd", 0, 0, bytes(8), _U32.pack(1000), bytes(4), _U32.pack(0x00010000),
                    b"\x01\x00", bytes(10), _MATRIX, bytes(24), _U32.pack(0xFFFFFFFF))  # fmt: skip
    trex = [full_box(b"trex", 0, 0, _U32.pack(t.track_id), _U32.pack(1), bytes(12))
            for t in tracks]  # fmt: skip
    return ftyp + box(b"moov", mvhd, *(_trak(t) for t in tracks), box(b"mvex", *trex))


def _trak(track: Track) -> bytes:
    if track.video:
        size = struct.pack(">II", track.width << 16, track.height << 16)
        layer, volume = b"\x00\x00\x00\x00", b"\x00\x00\x00\x00"
        tkhd = full_box(b"tkhd", 0, 3, bytes(8), _U32.pack(track.track_id), bytes(4), bytes(4),
                        bytes(8), layer, volume, _MATRIX, size)  # fmt: skip
        handler, header = b"vide", full_box(b"vmhd", 0, 1, bytes(8))
    else:
        group, volume = b"\x00\x00\x00\x01", b"\x01\x00\x00\x00"  # alternate group 1, full volume
        tkhd = full_box(b"tkhd", 0, 3, bytes(8), _U32.pack(track.track_id), bytes(4), bytes(4),
                        bytes(8), group, volume, _MATRIX, bytes(8))  # fmt: skip
        handler, header = b"soun", full_box(b"smhd", 0, 0, bytes(4))
    mdhd = full_box(b"mdhd", 0, 0, bytes(8), _U32.pack(track.timescale), bytes(4),
                    b"\x55\xc4\x00\x00")  # language "und"  # fmt: skip
    hdlr = full_box(b"hdlr", 0, 0, bytes(4), handler, bytes(12), b"rtmpd\x00")
    dinf = box(b"dinf", full_box(b"dref", 0, 0, _U32.pack(1), full_box(b"url ", 0, 1)))
    empty = (full_box(b"stts", 0, 0, bytes(4)), full_box(b"stsc", 0, 0, bytes(4)),
             full_box(b"stsz", 0, 0, bytes(8)), full_box(b"stco", 0, 0, bytes(4)))  # fmt: skip
    stsd = full_box(b"stsd", 0, 0, _U32.pack(1), _sample_entry(track))
    stbl = box(b"stbl", stsd, *empty)
    return box(b"trak", tkhd, box(b"mdia", mdhd, hdlr, box(b"minf", header, dinf, stbl)))


def _sample_entry(track: Track) -> bytes:
    config_box = VIDEO_ENTRIES.get(track.codec)
    if config_box is not None:
        visual = (bytes(6) + b"\x00\x01" + bytes(16) + struct.pack(">HH", track.width, track.height)
                  + b"\x00\x48\x00\x00\x00\x48\x00\x00" + bytes(4) + b"\x00\x01" + bytes(32)
                  + b"\x00\x18\xff\xff")  # fmt: skip
        return box(track.codec.encode(), visual, box(config_box, track.config))
    rate = track.sample_rate or track.timescale
    audio = (bytes(6) + b"\x00\x01" + bytes(8) + struct.pack(">HH", track.channels, 16) + bytes(4)
             + _U32.pack((rate if rate <= 0xFFFF else 0) << 16))  # fmt: skip
    config_box = AUDIO_ENTRIES.get(track.codec)
    if config_box is not None:
        return box(track.codec.encode(), audio, box(config_box, track.config))
    object_type = 0x40 if track.codec == "mp4a" else 0x6B  # ISO/IEC 14496-3 AAC; MPEG-1 audio
    return box(b"mp4a", audio, _esds(track.track_id, object_type, track.config))


def _descriptor(tag: int, payload: bytes) -> bytes:
    """An MPEG-4 descriptor: tag, size in 7-bit groups (ISO/IEC 14496-1 8.3.3), payload."""
    n = len(payload)
    size = bytes([n]) if n < 0x80 else bytes([0x80 | (n >> 21 & 0x7F), 0x80 | (n >> 14 & 0x7F),
                                              0x80 | (n >> 7 & 0x7F), n & 0x7F])  # fmt: skip
    return bytes([tag]) + size + payload


def _esds(track_id: int, object_type: int, config: bytes) -> bytes:
    specific = _descriptor(0x05, config) if config else b""
    decoder = _descriptor(0x04, bytes([object_type, 0x15]) + bytes(3) + bytes(8) + specific)
    es = _descriptor(0x03, struct.pack(">HB", track_id, 0) + decoder + _descriptor(0x06, b"\x02"))
    return full_box(b"esds", 0, 0, es)


def fragment(sequence: int, runs: list[TrackRun]) -> bytes:
    """moof + mdat for the samples of `runs` (tracks without samples are left out)."""
    runs = [r for r in runs if r.samples]
    trafs = [_traf(r, 0) for r in runs]
    moof_size = 8 + 16 + sum(len(t) for t in trafs)
    offset = moof_size + 8  # the first sample, past the mdat header
    trafs = []
    for run in runs:
        trafs.append(_traf(run, offset))
        offset += sum(s.size for s in run.samples)
    moof = box(b"moof", full_box(b"mfhd", 0, 0, _U32.pack(sequence)), *trafs)
    data = b"".join(b"".join(r.data) for r in runs)
    return moof + _U32.pack(8 + len(data)) + b"mdat" + data


def _traf(run: TrackRun, data_offset: int) -> bytes:
    samples = run.samples
    video = run.track.video
    flags = _TRUN_FLAGS
    if video:
        flags |= _TRUN_SAMPLE_FLAGS
        if any(s.cto for s in samples):
            flags |= _TRUN_CTO
    entry = struct.Struct(">IIIi" if flags & _TRUN_CTO else ">III" if video else ">II")
    rows = []
    for s in samples:
        if flags & _TRUN_CTO:
            rows.append(entry.pack(s.duration, s.size, _SYNC if s.sync else _NON_SYNC, s.cto))
        elif video:
            rows.append(entry.pack(s.duration, s.size, _SYNC if s.sync else _NON_SYNC))
        else:
            rows.append(entry.pack(s.duration, s.size))
    trun = full_box(b"trun", 1, flags, _U32.pack(len(samples)), struct.pack(">i", data_offset),
                    *rows)  # fmt: skip
    tfhd = full_box(b"tfhd", 0, _TFHD_BASE_IS_MOOF, _U32.pack(run.track.track_id))
    tfdt = full_box(b"tfdt", 1, 0, struct.pack(">Q", run.base_time))
    return box(b"traf", tfhd, tfdt, trun)
