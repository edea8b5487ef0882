"""Enhanced RTMP bodies built by hand, as the spec lays them out (the tests' own writer, so a
parser bug cannot hide behind a writer with the same bug), and real ones from FFmpeg."""

from __future__ import annotations

from functools import cache

from tests.support.media import TAG_AUDIO, TAG_VIDEO, FlvTag, make_flv, read_flv_tags


def mod_ex(data: bytes, kind: int = 0) -> tuple[bytes, int]:
    """A ModEx prefix: the size (UI8 + 1, or 0xFF then UI16 + 1), the data, then the nibble of
    the ModEx type; the caller adds the next packet type to the returned byte's low nibble."""
    size = len(data) - 1
    head = bytes([size]) if size < 255 else b"\xff" + size.to_bytes(2, "big")
    return head + data, kind << 4


def video(ptype: int, code: bytes, body: bytes, frame: int = 1, *, mod: bytes = b"") -> bytes:
    """One ex video message (one track); `mod` is ModEx data (TimestampOffsetNano)."""
    if mod:
        prefix, kind = mod_ex(mod)
        return bytes([0x80 | frame << 4 | 7]) + prefix + bytes([kind | ptype]) + code + body
    return bytes([0x80 | frame << 4 | ptype]) + code + body


def audio(ptype: int, code: bytes, body: bytes) -> bytes:
    return bytes([0x90 | ptype]) + code + body


def multitrack(head: int, mtype: int, ptype: int, tracks: list[tuple[bytes, int, bytes]]) -> bytes:
    """A multitrack message. `head` is the first byte's high nibble(s) with the Multitrack
    packet type already in (0x96 for a keyframe video message, 0x95 for audio); tracks are
    (fourcc, track id, body); OneTrack and ManyTracks use the first track's FourCC for all."""
    out = bytearray([head, mtype << 4 | ptype])
    if mtype != 2:
        out += tracks[0][0]
    for code, track, body in tracks:
        if mtype == 2:
            out += code
        out.append(track)
        if mtype != 0:
            out += len(body).to_bytes(3, "big")
        out += body
    return bytes(out)


@cache
def real_tags(video_codec: str, audio_codec: str) -> tuple[FlvTag, ...]:
    """A short FFmpeg (PyAV) encode in enhanced FLV: its audio and video tags."""
    flv = make_flv(seconds=0.4, fps=10, width=64, height=64, video_codec=video_codec,
                   audio_codec=audio_codec, sample_rate=48000)  # fmt: skip
    return tuple(t for t in read_flv_tags(flv) if t.kind in (TAG_AUDIO, TAG_VIDEO))
