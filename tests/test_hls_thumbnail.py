"""Thumbnails: the latest keyframe from stream_info, decoded and re-encoded as a JPEG."""

from __future__ import annotations

import io
from pathlib import Path

import av
import pytest
from rtmpd.hls import HlsConfig, HlsService, Keyframe, keyframe_to_jpeg

from tests.support.hls import encode_h264, feed, media


def latest_keyframe(tmp_path: Path, **media_args: object) -> Keyframe:
    service = HlsService(HlsConfig(tmp_path, fragment=1.0, playlist_length=3.0))
    packager = service.open_stream("benw")
    feed(packager, media(**media_args))
    info = service.stream_info("benw")
    assert info is not None and info.keyframe is not None
    return info.keyframe


def jpeg_size(data: bytes) -> tuple[int, int]:
    assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9"
    with av.open(io.BytesIO(data), "r", format="mjpeg") as container:
        frame = next(container.decode(video=0))
        return frame.width, frame.height


@pytest.mark.parametrize(
    ("max_width", "size"),
    [(320, (320, 240)), (160, (160, 120)), (1000, (320, 240)), (101, (100, 76))],
)
def test_keyframe_to_jpeg_scales_down(
    tmp_path: Path, max_width: int, size: tuple[int, int]
) -> None:
    keyframe = latest_keyframe(tmp_path, seconds=4)
    assert jpeg_size(keyframe_to_jpeg(keyframe.avcc, keyframe.data, max_width)) == size


def test_high_profile_with_cropping(tmp_path: Path) -> None:
    events = encode_h264(200, 150, frames=1)
    avcc = next(e[2] for e in events if e[0] == "video_config")
    key = next(e[4] for e in events if e[0] == "video" and e[3])
    assert jpeg_size(keyframe_to_jpeg(avcc, key)) == (200, 150)


def test_undecodable_input_raises_value_error(tmp_path: Path) -> None:
    keyframe = latest_keyframe(tmp_path, seconds=4)
    events = media(seconds=4)
    p_frame = next(e[4] for e in events if e[0] == "video" and not e[3])
    with pytest.raises(ValueError):
        keyframe_to_jpeg(keyframe.avcc, p_frame)  # no picture without its reference
    with pytest.raises(ValueError):
        keyframe_to_jpeg(b"\x01garbage", b"\x00\x00\x00\x02\x65\x88")
    with pytest.raises(ValueError):
        keyframe_to_jpeg(keyframe.avcc, keyframe.data, max_width=8)
