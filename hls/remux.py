"""A finished recording's MP4 and thumbnail, made in a child process of the server:

    python -m rtmpd.hls.remux FOLDER

reads FOLDER's VOD playlist (rtmpd.hls.recording), writes `thumb.jpg` (the first picture of
its second segment, or its first), then `recording.mp4`: every segment's packets, stream copy
(no re-encode), `movflags=faststart` so a browser plays it before it is all downloaded. Each
run of segments (up to an EXT-X-DISCONTINUITY) is moved to follow the one before, so a
takeover, a reconnect or media lost to a full disk leaves no hole in the MP4's timeline. Tracks
come from the first segment; a track that appears only later is not in the MP4. Every codec
the packager writes goes in as it is (H.264, HEVC, AV1, VP9; AAC, MP3, Opus, FLAC, AC-3,
E-AC-3): the streams are copied opaque, by their parameters, never through a codec by name.

The server runs one at a time at a lower priority (rtmpd.hls.recorder) and only looks at the
exit status and the files: status 0 and the MP4 is there, or the last line of stderr says why.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.logging

from .playlist import Segment
from .recording import MP4, PLAYLIST, THUMB, parse_entries
from .thumbnail import picture_to_jpeg

_KINDS = ("video", "audio")


def _open(folder: Path, entry: Segment) -> Any:
    """A segment as FFmpeg reads it: an fMP4 segment after its init segment."""
    path = folder / entry.uri
    if entry.map_uri is None:
        return av.open(str(path))
    data = (folder / entry.map_uri).read_bytes() + path.read_bytes()
    return av.open(io.BytesIO(data))


def thumbnail(folder: Path, entries: list[Segment]) -> None:
    for entry in entries[1:2] + entries[:1]:
        with contextlib.suppress(av.FFmpegError, OSError), _open(folder, entry) as source:
            if not source.streams.video:
                return
            for frame in source.decode(video=0):
                _write(folder / THUMB, picture_to_jpeg(frame))
                return


def remux(folder: Path, entries: list[Segment]) -> None:
    temp = folder / f".{MP4}.tmp"
    try:
        with av.open(str(temp), "w", format="mp4", options={"movflags": "faststart"}) as out:
            _copy(folder, entries, out)
        os.chmod(temp, 0o644)
        os.replace(temp, folder / MP4)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def _copy(folder: Path, entries: list[Segment], out: Any) -> None:
    streams: dict[str, Any] = {}
    last_dts: dict[str, Fraction] = {}
    end = Fraction(0)  # where the media written so far ends, in seconds
    offset = Fraction(0)  # added to this run's timestamps
    for index, entry in enumerate(entries):
        with _open(folder, entry) as source:
            inputs = {k: getattr(source.streams, k)[0] for k in _KINDS
                      if getattr(source.streams, k)}  # fmt: skip
            if index == 0:
                for kind, stream in inputs.items():
                    streams[kind] = out.add_stream_from_template(stream, opaque=True)
                if not streams:
                    raise ValueError("the first segment has no audio or video")
            packets = list(_packets(source, inputs, streams))
            if not packets:
                continue
            if index == 0 or entry.discontinuity:
                first = min(p.dts * p.time_base for _, p in packets)
                offset = end - first
            for kind, packet in packets:
                tb = packet.time_base
                shift = round(offset / tb)
                packet.dts += shift
                packet.pts = packet.dts if packet.pts is None else packet.pts + shift
                at = packet.dts * tb
                if kind in last_dts and at <= last_dts[kind]:
                    continue  # the muxer wants increasing timestamps: a seam's overlap goes
                last_dts[kind] = at
                end = max(end, at + (packet.duration or 0) * tb)
                packet.stream = streams[kind]
                out.mux(packet)


def _packets(source: Any, inputs: dict[str, Any], streams: dict[str, Any]) -> Iterator[Any]:
    wanted = [s for k, s in inputs.items() if k in streams]
    for packet in source.demux(*wanted):
        if packet.dts is None or packet.size == 0:
            continue
        yield packet.stream.type, packet


def _write(path: Path, data: bytes) -> None:
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_bytes(data)
    os.chmod(temp, 0o644)
    os.replace(temp, path)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m rtmpd.hls.remux FOLDER", file=sys.stderr)
        return 2
    with contextlib.suppress(OSError):
        os.nice(10)  # the live streams come first
    av.logging.set_level(av.logging.ERROR)
    folder = Path(argv[0])
    try:
        entries = parse_entries((folder / PLAYLIST).read_text(encoding="utf-8"))
        if not entries:
            raise ValueError("the playlist lists no segment")
        thumbnail(folder, entries)
        remux(folder, entries)
    except (OSError, ValueError, av.FFmpegError) as exc:
        print(f"remux failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
