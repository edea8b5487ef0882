"""End to end: publisher media (real libx264/AAC via tests/media.py) through the HLS service
to segment files, decoded back with PyAV, and playlists checked by tests/m3u8_validator.py."""

from __future__ import annotations

import errno
import logging
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rtmpd.hls import HlsConfig, HlsService, StreamPackager
from rtmpd.hls import muxer as muxer_module

from tests.support.hls import (
    FakeClock,
    Recorder,
    decode_segment,
    feed,
    feed_in_time,
    media,
    nal_types,
    shift,
    span_ms,
)
from tests.support.m3u8_validator import MediaPlaylist, PlaylistSegment

Factory = Callable[..., tuple[HlsService, Recorder, FakeClock]]
FOUR = {"seconds": 4}  # 4 s, 25 fps, 1 s GOP, AAC 44.1 kHz stereo


@pytest.fixture
def make_service(tmp_path: Path) -> Iterator[Factory]:
    recorders: list[Recorder] = []

    def make(**overrides: object) -> tuple[HlsService, Recorder, FakeClock]:
        settings: dict[str, Any] = {"fragment": 1.0, "playlist_length": 3.0, **overrides}
        config = HlsConfig(tmp_path / "hls", **settings)
        clock = FakeClock()
        recorder = Recorder(playlist_length=config.playlist_length)
        service = HlsService(config, clock=clock, on_segment=recorder)
        recorder.service = service
        recorders.append(recorder)
        return service, recorder, clock

    yield make
    for recorder in recorders:  # every playlist version written passed the validator
        assert recorder.failures == []


def ts_pids(data: bytes) -> list[int]:
    """PIDs of the 188-byte transport packets, in order (SDT 0x11, PAT 0, PMT 0x1000, ...)."""
    assert len(data) % 188 == 0 and all(data[i] == 0x47 for i in range(0, len(data), 188))
    return [int.from_bytes(data[i + 1 : i + 3], "big") & 0x1FFF for i in range(0, len(data), 188)]


def segment_files(service: HlsService, name: str) -> list[Path]:
    return sorted(service.segment_dir(name).glob("*.ts"), key=lambda p: p.stat().st_mtime_ns)


def listed(service: HlsService, recorder: Recorder, name: str) -> MediaPlaylist:
    return recorder.check(name)


def all_segments(recorder: Recorder, name: str) -> list[PlaylistSegment]:
    """Every segment ever listed for `name`, by media sequence."""
    seen = recorder.histories[name].seen
    return [seen[k] for k in sorted(seen)]


def test_segments_decode_on_their_own_and_add_up(make_service: Factory) -> None:
    service, recorder, _ = make_service(playlist_length=30.0)
    events = media(**FOUR)
    packager = service.open_stream("benw")
    feed(packager, events)
    packager.close()
    playlist = listed(service, recorder, "benw")
    assert playlist.endlist and len(playlist.segments) == 4
    video_frames = 0
    starts = []
    for segment in playlist.segments:
        path = service.segment_dir("benw") / segment.uri
        pids = ts_pids(path.read_bytes())
        assert pids.index(0) < pids.index(0x1000) < min(pids.index(0x100), pids.index(0x101))
        decoded = decode_segment(path)
        assert decoded.errors == []
        assert decoded.first_video_key is True
        types = nal_types(decoded.first_video_packet)
        assert types.index(7) < types.index(8) < types.index(5)  # SPS, PPS, then the IDR
        assert decoded.first_audio_packet[0] == 0xFF and decoded.first_audio_packet[1] >> 4 == 0xF
        assert decoded.audio_frames > 0
        video_frames += decoded.video_frames
        starts.append(decoded.video_pts[0])
    assert video_frames == sum(1 for e in events if e[0] == "video")
    total_ms = sum(round(s.duration * 1000) for s in playlist.segments)
    assert abs(total_ms - span_ms(events)) <= 40  # within a frame
    # Each segment starts where the one before ended (90 kHz clock, no jump).
    for before, after, segment in zip(starts, starts[1:], playlist.segments, strict=False):
        assert after - before == round(segment.duration * 90_000)


def test_segment_written_events_match_the_playlist(make_service: Factory) -> None:
    service, recorder, _ = make_service(playlist_length=30.0)
    packager = service.open_stream("benw")
    feed(packager, media(**FOUR))
    packager.close()
    playlist = listed(service, recorder, "benw")
    assert [e.sequence for e in recorder.events] == [0, 1, 2, 3]
    for event, segment in zip(recorder.events, playlist.segments, strict=True):
        assert event.name == "benw"
        assert event.duration == segment.duration
        assert event.size == (service.segment_dir("benw") / segment.uri).stat().st_size
        assert event.lag >= 0
    assert not list(service.segment_dir("benw").glob(".*"))  # no temp files left


def test_republish_continues_the_playlist_with_a_discontinuity(make_service: Factory) -> None:
    service, recorder, clock = make_service(playlist_length=30.0)
    events = media(**FOUR)
    first = service.open_stream("benw")
    feed(first, events)
    first.close()
    assert listed(service, recorder, "benw").endlist
    clock.advance(10)
    second = service.open_stream("benw")
    feed(second, events[: len(events) // 2])  # timestamps start over at 0
    playlist = listed(service, recorder, "benw")
    assert not playlist.endlist
    assert [s.sequence for s in playlist.segments] == list(range(len(playlist.segments)))
    assert [s.discontinuity for s in playlist.segments] == [False] * 4 + [True]
    second.close()
    playlist = listed(service, recorder, "benw")
    assert playlist.endlist and playlist.segments[4].discontinuity
    assert not any(s.discontinuity for s in playlist.segments[5:])


def test_takeover_detaches_the_old_publish(make_service: Factory) -> None:
    service, recorder, _ = make_service(playlist_length=30.0)
    events = media(**FOUR)
    half = len(events) // 2
    old = service.open_stream("benw")
    feed(old, events[:half])
    listed_before = len(listed(service, recorder, "benw").segments)
    new = service.open_stream("benw")
    assert isinstance(new, StreamPackager) and new is not old
    playlist = listed(service, recorder, "benw")
    assert len(playlist.segments) == listed_before + 1  # old partial segment finished, listed
    assert not playlist.endlist
    assert service.stream_info("benw") is not None and service.stream_info("benw").live
    files = segment_files(service, "benw")
    feed(old, events[half:])  # a detached packager ignores everything
    old.close()
    assert segment_files(service, "benw") == files
    assert not listed(service, recorder, "benw").endlist
    feed(new, shift(events, 50_000))
    new.close()
    playlist = listed(service, recorder, "benw")
    assert playlist.endlist
    assert [s.discontinuity for s in playlist.segments].count(True) == 1
    assert playlist.segments[listed_before + 1].discontinuity


def test_no_endlist_when_configured_off(make_service: Factory) -> None:
    service, recorder, _ = make_service(endlist=False)
    packager = service.open_stream("benw")
    feed(packager, media(**FOUR))
    packager.close()
    assert not listed(service, recorder, "benw").endlist
    assert service.stream_info("benw") is not None and not service.stream_info("benw").live


@pytest.mark.parametrize(
    "offset",
    [17_000_000, (1 << 33) // 90 - 2_500],  # 4.7 hours; 2.5 s before the 26.5 h wrap
    ids=["past-4.7h", "across-33-bit-wrap"],
)
def test_late_stream_times(make_service: Factory, offset: int) -> None:
    service, recorder, _ = make_service(playlist_length=30.0)
    events = shift(media(**FOUR), offset)
    packager = service.open_stream("late")
    feed(packager, events)
    packager.close()
    playlist = listed(service, recorder, "late")
    assert len(playlist.segments) == 4 and not any(s.discontinuity for s in playlist.segments)
    starts = []
    for segment in playlist.segments:
        decoded = decode_segment(service.segment_dir("late") / segment.uri)
        assert decoded.errors == [] and decoded.first_video_key
        starts.append(decoded.video_pts[0] % (1 << 33))
    # PTS are the stream time at 90 kHz (plus the muxer's fixed delay), modulo 2^33.
    first_key = next(e[1] for e in events if e[0] == "video" and e[3])
    assert starts[0] == ((first_key + muxer_module.TS_OFFSET_MS) * 90) % (1 << 33)
    for before, after, segment in zip(starts, starts[1:], playlist.segments, strict=False):
        assert (after - before) % (1 << 33) == round(segment.duration * 90_000)


def test_resolution_change_starts_a_new_segment(make_service: Factory) -> None:
    service, recorder, _ = make_service(playlist_length=30.0)
    big = media(seconds=2)
    small = shift(media(seconds=2, width=160, height=120), span_ms(big) + 23)
    packager = service.open_stream("benw")
    feed(packager, big)
    feed(packager, small)
    info = service.stream_info("benw")
    assert info is not None and (info.width, info.height) == (160, 120)
    packager.close()
    playlist = listed(service, recorder, "benw")
    sizes = []
    for segment in playlist.segments:
        decoded = decode_segment(service.segment_dir("benw") / segment.uri)
        assert decoded.errors == [] and decoded.first_video_key
        sizes.append((decoded.size, segment.discontinuity))
    assert sizes == [((320, 240), False)] * 2 + [((160, 120), True), ((160, 120), False)]


def test_forced_cuts_when_keyframes_do_not_come(make_service: Factory) -> None:
    service, recorder, _ = make_service(fragment=0.5, max_fragment=0.7, playlist_length=30.0)
    events = media(seconds=4, gop=50)  # a keyframe every 2 s
    packager = service.open_stream("benw")
    feed(packager, events)
    packager.close()
    playlist = listed(service, recorder, "benw")
    assert max(s.duration for s in playlist.segments) <= 0.7 + 0.04
    total_ms = sum(round(s.duration * 1000) for s in playlist.segments)
    assert abs(total_ms - span_ms(events)) <= 40
    on_keyframe = []
    for segment in playlist.segments:
        decoded = decode_segment(service.segment_dir("benw") / segment.uri)
        on_keyframe.append(decoded.first_video_key is True and not decoded.errors)
    # Only the segments cut at the 2 s keyframes stand alone; forced ones need the one before.
    assert on_keyframe == [True, False, False, True, False, False]


def test_repeated_identical_sequence_headers_change_nothing(make_service: Factory) -> None:
    service, recorder, _ = make_service(playlist_length=30.0)
    events = list(media(**FOUR))
    configs = [e for e in events if e[0].endswith("_config")]
    events[len(events) // 2 : len(events) // 2] = [(e[0], 2000, e[2]) for e in configs]
    packager = service.open_stream("benw")
    feed(packager, events)
    packager.close()
    playlist = listed(service, recorder, "benw")
    assert len(playlist.segments) == 4 and not any(s.discontinuity for s in playlist.segments)


@pytest.mark.parametrize("kind", ["audio-only", "video-only"])
def test_single_track_streams(make_service: Factory, kind: str) -> None:
    service, recorder, _ = make_service(playlist_length=30.0)
    events = media(seconds=4, video=kind == "video-only", audio=kind == "audio-only")
    packager = service.open_stream("solo")
    feed(packager, events)
    packager.close()
    playlist = listed(service, recorder, "solo")
    assert len(playlist.segments) == 4
    for segment in playlist.segments:
        decoded = decode_segment(service.segment_dir("solo") / segment.uri)
        assert decoded.errors == []
        if kind == "audio-only":
            assert decoded.video_frames == 0 and decoded.audio_frames > 0
            assert 1.0 <= segment.duration < 1.03 or segment is playlist.segments[-1]
        else:
            assert decoded.audio_frames == 0 and decoded.first_video_key
    total_ms = sum(round(s.duration * 1000) for s in playlist.segments)
    assert abs(total_ms - span_ms(events)) <= 40
    info = service.stream_info("solo")
    assert info is not None
    assert (info.video_codec is None) == (kind == "audio-only")
    assert (info.audio_codec is None) == (kind == "video-only")


def test_cleanup_timing(make_service: Factory) -> None:
    """In a stream sent in real time, a segment that left the window stays for its duration
    plus the playlist's (RFC 8216 6.2.2); a finished stream's files go after the grace."""
    service, recorder, clock = make_service(fragment=1.0, playlist_length=3.0)
    t0 = clock.now
    events = media(**FOUR)
    packager = service.open_stream("benw")
    feed_in_time(packager, list(events) + shift(events, 4000), clock)  # 8 s
    versions = recorder.histories["benw"].versions
    gone = [s.uri for s in all_segments(recorder, "benw") if s.uri not in versions[-1].uris]
    assert len(gone) == 4  # each left when the third after it was listed: 4 s after it began
    folder = service.segment_dir("benw")
    for i, uri in enumerate(gone):
        left = t0 + i + 4.0  # and the few ms the muxer holds the packet that cut
        service.tick(left + 1.0 + 4.0 - 0.25)  # its second and the 4 s playlist it was in
        assert (folder / uri).exists()
        service.tick(left + 1.0 + 4.0 + 0.25)
        assert not (folder / uri).exists()
    assert all((folder / s.uri).exists() for s in versions[-1].segments)
    clock.advance(10)
    closed_at = clock.now
    packager.close()
    grace = service.config.effective_grace
    assert grace == 6.0
    service.tick(closed_at + grace - 0.5)
    assert service.playlist_path("benw").exists()
    assert service.stream_info("benw") is not None
    service.tick(closed_at + grace + 0.5)
    assert not folder.exists()
    assert service.stream_info("benw") is None


def test_cleanup_off_keeps_every_file(make_service: Factory) -> None:
    service, recorder, clock = make_service(cleanup=False)
    events = media(**FOUR)
    packager = service.open_stream("benw")
    feed(packager, list(events) + shift(events, 4000))
    packager.close()
    service.tick(clock.now + 10_000)
    written = {e.sequence for e in recorder.events}
    assert len(segment_files(service, "benw")) == len(written) == 8
    assert len(listed(service, recorder, "benw").segments) < 8  # the window still slides
    service.startup_cleanup()
    assert len(segment_files(service, "benw")) == 8 and service.playlist_path("benw").exists()


def test_republish_within_the_grace_keeps_the_files(make_service: Factory) -> None:
    service, recorder, clock = make_service()
    first = service.open_stream("benw")
    feed(first, media(**FOUR))
    first.close()
    clock.advance(2)
    second = service.open_stream("benw")
    service.tick(clock.now + 100)
    assert service.playlist_path("benw").exists()
    feed(second, media(**FOUR))
    second.close()
    assert listed(service, recorder, "benw").media_sequence > 0


def test_counters_survive_the_grace_removal(make_service: Factory) -> None:
    service, recorder, clock = make_service()
    first = service.open_stream("benw")
    feed(first, media(**FOUR))
    first.close()
    before = listed(service, recorder, "benw")
    service.tick(clock.now + 1000)
    assert not service.segment_dir("benw").exists()
    del recorder.histories["benw"]  # the playlist was gone: a new history starts
    second = service.open_stream("benw")
    feed(second, media(**FOUR))
    after = listed(service, recorder, "benw")
    assert after.segments[0].sequence == before.media_sequence + len(before.segments)
    assert after.segments[0].discontinuity
    assert after.target_duration >= before.target_duration


def test_the_target_holds_for_the_life_of_the_playlist(make_service: Factory) -> None:
    """Decided by the first segment (2 s keyframes: 2 s); a re-publish whose keyframes come
    every 5 s is cut to stay under it (RFC 8216 6.2.1: the target never changes), and the
    next life of the name, after its files went, decides anew."""
    service, recorder, clock = make_service(playlist_length=30.0)
    first = service.open_stream("benw")
    feed(first, media(seconds=6, gop=50))
    first.close()
    assert listed(service, recorder, "benw").target_duration == 2
    second = service.open_stream("benw")
    feed(second, shift(media(seconds=10, gop=125), 60_000))
    second.close()
    playlist = listed(service, recorder, "benw")  # every version passed the history check
    assert playlist.target_duration == 2
    assert max(s.duration for s in playlist.segments) < 2.5
    assert len({v.target_duration for v in recorder.histories["benw"].versions}) == 1
    service.tick(clock.now + 1000)  # the grace is over: the files go
    del recorder.histories["benw"]
    third = service.open_stream("benw")
    feed(third, media(seconds=10, gop=125))
    third.close()
    assert listed(service, recorder, "benw").target_duration == 5


def test_date_times_run_on_even_faster_than_real_time(make_service: Factory) -> None:
    """Within a run each date-time is the one before plus its duration (the validator checks
    every version), however fast the media comes: the fake clock never moves here."""
    service, recorder, _ = make_service(playlist_length=30.0)
    packager = service.open_stream("benw")
    feed(packager, media(seconds=20))
    packager.close()
    playlist = listed(service, recorder, "benw")
    first, last = playlist.segments[0], playlist.segments[-1]
    assert first.program_date_time is not None and last.program_date_time is not None
    assert (last.program_date_time - first.program_date_time).total_seconds() > 15


def _asc(bits: str) -> bytes:
    bits += "0" * (-len(bits) % 8)
    return int(bits, 2).to_bytes(len(bits) // 8, "big")


@pytest.mark.parametrize(
    ("asc", "codec", "rate", "channels"),
    [
        # AAC-LC 22.05 kHz stereo with SBR signalled hierarchically (object type 5 first)
        (_asc("00101" "0111" "0010" "0100" "00010"), "mp4a.40.5", 44100, 2),
        # the same, backward compatibly: AAC-LC, then a sync extension 0x2b7 announcing SBR
        (_asc("00010" "0111" "0010" "000" "01010110111" "00101" "1" "0100"), "mp4a.40.5",
         44100, 2),
        # HE-AACv2: parametric stereo over a mono core
        (_asc("11101" "0111" "0001" "0100" "00010"), "mp4a.40.29", 44100, 1),
    ],
)  # fmt: skip
def test_he_aac_is_said_to_be_what_it_is(
    make_service: Factory, asc: bytes, codec: str, rate: int, channels: int
) -> None:
    service, recorder, _ = make_service(playlist_length=30.0)
    events = [("audio_config", 0, asc) if e[0] == "audio_config" else e
              for e in media(seconds=3, sample_rate=22050)]  # fmt: skip
    packager = service.open_stream("benw")
    feed(packager, events)
    info = service.stream_info("benw")
    assert info is not None
    assert (info.audio_codec, info.sample_rate, info.channels) == (codec, rate, channels)
    packager.close()
    for segment in listed(service, recorder, "benw").segments:
        decoded = decode_segment(service.segment_dir("benw") / segment.uri)
        assert decoded.errors == [] and decoded.audio_frames > 0


def test_flat_layout(make_service: Factory) -> None:
    service, recorder, clock = make_service(nested=False)
    root = service.config.path
    (root / "notes.txt").write_text("not ours")
    packager = service.open_stream("benw")
    feed(packager, media(**FOUR))
    packager.close()
    assert service.playlist_path("benw") == root / "benw.m3u8"
    playlist = listed(service, recorder, "benw")
    assert all(s.uri.startswith("benw-") and (root / s.uri).exists() for s in playlist.segments)
    other = service.open_stream("benw-2")
    feed(other, media(**FOUR))
    service.tick(clock.now + 1000)  # benw's grace is over; benw-2 is live
    assert not service.playlist_path("benw").exists()
    assert not list(root.glob("benw-1*.ts"))
    assert service.playlist_path("benw-2").exists() and list(root.glob("benw-2-*.ts"))
    assert (root / "notes.txt").read_text() == "not ours"


@pytest.mark.parametrize("naming", ["system", "sequential", "timestamp"])
def test_fragment_naming(make_service: Factory, naming: str) -> None:
    service, recorder, clock = make_service(naming=naming, playlist_length=30.0)
    events = media(**FOUR)
    for _ in range(2):  # a republish must not reuse names
        packager = service.open_stream("benw")
        feed(packager, events)
        packager.close()
        clock.advance(30)
    playlist = listed(service, recorder, "benw")
    stems = [s.uri.removesuffix(".ts") for s in playlist.segments]
    assert len(set(stems)) == len(stems) == 8
    keys = [e[1] for e in events if e[0] == "video" and e[3]]
    if naming == "sequential":
        assert stems == [str(i) for i in range(8)]
    elif naming == "timestamp":
        assert stems[:4] == [str(k) for k in keys]
        assert stems[4:] == [f"{k}_1" for k in keys]
    else:
        base = round(1_700_000_000.0 * 1000)
        assert stems[:4] == [str(base + k - keys[0]) for k in keys]
        assert int(stems[4]) == base + 30_000  # wall clock of the republish


def test_disk_errors_are_logged_once_and_writing_resumes(
    make_service: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    service, recorder, _ = make_service(playlist_length=30.0)
    events = media(**FOUR)
    quarter = len(events) // 4
    packager = service.open_stream("benw")
    feed(packager, events[:quarter])
    folder = service.segment_dir("benw")
    shutil.rmtree(folder)
    folder.write_text("a file where the stream folder should be")  # every open now fails
    with caplog.at_level(logging.INFO, logger="rtmpd.hls"):
        feed(packager, events[quarter : 3 * quarter])
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and "benw" in errors[0].getMessage()
        written = len(recorder.events)
        folder.unlink()
        feed(packager, events[3 * quarter :])
        packager.close()
    assert any("writing segments again" in r.getMessage() for r in caplog.records)
    assert len(recorder.events) > written
    playlist = listed(service, recorder, "benw")
    resumed = [s for s in playlist.segments if s.sequence >= written]
    assert resumed[0].discontinuity and playlist.endlist
    for segment in resumed:
        assert decode_segment(folder / segment.uri).errors == []


class FullDisk:
    """Stands in for `open` in the muxer module: files whose writes fail while `full`."""

    full = False

    class File:
        def __init__(self, path: Path, mode: str) -> None:
            self._file = open(path, mode)  # noqa: SIM115 - closed below

        def write(self, data: bytes) -> int:
            if FullDisk.full:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self._file.write(data)

        def close(self) -> None:
            self._file.close()


def test_disk_full_in_the_middle_of_a_segment(
    make_service: Factory, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(muxer_module, "open", FullDisk.File, raising=False)
    monkeypatch.setattr(FullDisk, "full", False)
    service, recorder, _ = make_service(playlist_length=30.0)
    events = media(**FOUR)
    third = len(events) // 3
    packager = service.open_stream("benw")
    feed(packager, events[:third])
    FullDisk.full = True
    with caplog.at_level(logging.ERROR, logger="rtmpd.hls"):
        feed(packager, events[third : 2 * third])
    assert len(caplog.records) == 1 and "No space left" in caplog.records[0].getMessage()
    FullDisk.full = False
    feed(packager, events[2 * third :])
    packager.close()
    playlist = listed(service, recorder, "benw")
    assert 0 < len(playlist.segments) < 4
    assert [s.discontinuity for s in playlist.segments].count(True) == 1
    assert not list(service.segment_dir("benw").glob(".*"))  # the partial temp file went
    for segment in playlist.segments:
        assert decode_segment(service.segment_dir("benw") / segment.uri).errors == []


def test_bad_input_is_dropped_and_logged_once(
    make_service: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    service, recorder, _ = make_service(playlist_length=30.0)
    events = media(**FOUR)
    packager = service.open_stream("benw")
    with caplog.at_level(logging.WARNING, logger="rtmpd.hls"):
        packager.video(0, 0, True, b"\x00\x00\x00\x01\x65")  # before any config
        for _ in range(3):
            packager.video_config(0, b"\x02garbage AVC record")
            packager.audio_config(0, b"\xff")
        feed(packager, [e for e in events if not e[0].startswith("video")])  # audio goes on
        packager.video_config(0, memoryview(bytes.fromhex("01640028ffe1")))
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3, messages  # video dropped; bad AVC config; bad AAC config
    assert all("benw" in m for m in messages)
    packager.close()
    playlist = listed(service, recorder, "benw")
    assert len(playlist.segments) == 4  # audio-only output
    info = service.stream_info("benw")
    assert info is not None and info.video_codec is None and info.audio_codec == "mp4a.40.2"


def test_payloads_ffmpeg_rejects_are_dropped(
    make_service: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    service, recorder, _ = make_service(playlist_length=30.0)
    events = list(media(**FOUR))
    bad = ("video", 1010, 0, False, b"\xff\xff\xff\x00 not a NAL unit")
    events.insert(len(events) // 4, bad)
    packager = service.open_stream("benw")
    with caplog.at_level(logging.WARNING, logger="rtmpd.hls"):
        feed(packager, events)
        packager.close()
    assert len(caplog.records) == 1 and "rejects" in caplog.records[0].getMessage()
    playlist = listed(service, recorder, "benw")
    assert len(playlist.segments) == 4
    for segment in playlist.segments:
        decoded = decode_segment(service.segment_dir("benw") / segment.uri)
        assert decoded.first_video_key


def test_stream_info_while_live(make_service: Factory) -> None:
    service, _, _ = make_service()
    assert service.stream_info("benw") is None
    packager = service.open_stream("benw")
    feed(packager, media(**FOUR))
    info = service.stream_info("benw")
    assert info is not None and info.live
    assert (info.video_codec, info.audio_codec) == ("avc1.42C00D", "mp4a.40.2")
    assert info.codecs == "avc1.42C00D,mp4a.40.2"
    assert (info.width, info.height, info.sample_rate, info.channels) == (320, 240, 44100, 2)
    assert info.fps is not None and abs(info.fps - 25) < 0.5
    assert info.video_kbps is not None and 100 < info.video_kbps < 1000
    assert info.audio_kbps is not None and 30 < info.audio_kbps < 120
    assert info.keyframe is not None and info.keyframe.timestamp == 3023
    packager.close()
    after = service.stream_info("benw")
    assert after is not None and not after.live and after.width == 320


def test_stream_info_before_any_segment_finishes(make_service: Factory) -> None:
    service, _, _ = make_service(fragment=5.0, playlist_length=10.0)
    packager = service.open_stream("benw")
    feed(packager, media(**FOUR)[:120])
    info = service.stream_info("benw")
    assert info is not None and info.fps is not None and abs(info.fps - 25) < 0.5
    assert info.video_kbps is not None and info.video_kbps > 0


def test_close_finishes_every_stream(make_service: Factory) -> None:
    service, recorder, _ = make_service()
    for name in ("a", "b"):
        feed(service.open_stream(name), media(**FOUR)[:150])
    service.close()
    assert listed(service, recorder, "a").endlist and listed(service, recorder, "b").endlist
    assert not service.stream_info("a").live


def test_startup_cleanup_removes_only_leftovers(make_service: Factory) -> None:
    service, _, _ = make_service()
    root = service.config.path
    for name, files in {
        "gone": ["index.m3u8", "1.ts", ".2.ts.tmp", "notes.txt"],
        "live": ["index.m3u8", "5.ts", ".6.ts.tmp"],
        "old": ["index.m3u8", "7_1.ts"],
        "assets": ["logo.png"],
    }.items():
        (root / name).mkdir(parents=True)
        for file in files:
            (root / name / file).write_text("x")
    service.startup_cleanup(live_names={"live"})
    assert sorted(p.name for p in (root / "gone").iterdir()) == ["notes.txt"]
    assert sorted(p.name for p in (root / "live").iterdir()) == ["5.ts", "index.m3u8"]
    assert not (root / "old").exists()
    assert (root / "assets" / "logo.png").exists()


def test_startup_cleanup_flat_layout(make_service: Factory) -> None:
    service, _, _ = make_service(nested=False)
    root = service.config.path
    for file in ["gone.m3u8", "gone-1.ts", "gone-2_1.ts", "live.m3u8", "live-5.ts",
                 ".live-6.ts.tmp", "readme.txt", "gone-x.ts"]:  # fmt: skip
        (root / file).write_text("x")
    service.startup_cleanup(live_names=["live"])
    assert sorted(p.name for p in root.iterdir()) == [
        "gone-x.ts", "live-5.ts", "live.m3u8", "readme.txt",
    ]  # fmt: skip


def test_a_restart_resumes_the_playlist(make_service: Factory) -> None:
    service, recorder, clock = make_service()
    feed(service.open_stream("benw"), media(**FOUR))  # the process dies: no close
    old = listed(service, recorder, "benw")
    folder = service.segment_dir("benw")
    assert list(folder.glob(".*.tmp"))  # the unfinished segment
    stray = folder / "99.ts"
    stray.write_bytes(b"")  # a leftover the playlist does not list
    again = HlsService(service.config, clock=clock, on_segment=recorder)
    recorder.service = again
    again.startup_cleanup(live_names={"benw"})
    assert not list(folder.glob(".*"))
    packager = again.open_stream("benw")
    feed(packager, media(**FOUR))
    packager.close()
    # The recorder checked every version against the one the first run left (same history).
    new = all_segments(recorder, "benw")[len(old.segments) + old.media_sequence :]
    assert new[0].sequence == old.media_sequence + len(old.segments)
    assert new[0].discontinuity and not any(s.discontinuity for s in new[1:])
    again.tick(clock.now + service.config.playlist_length + 0.5)
    assert not stray.exists()
    assert all((folder / uri).exists() for uri in listed(again, recorder, "benw").uris)


@pytest.mark.parametrize("name", ["", "../x", "a/b", ".hidden", "a\\b", "a\nb", "x" * 200])
def test_unsafe_names_are_refused(make_service: Factory, name: str) -> None:
    service, _, _ = make_service()
    for call in (service.open_stream, service.playlist_path, service.segment_dir):
        with pytest.raises(ValueError):
            call(name)


def test_a_publish_without_media_leaves_nothing(make_service: Factory) -> None:
    service, recorder, clock = make_service()
    packager = service.open_stream("benw")
    packager.close()
    packager.close()  # closing twice is harmless
    assert not service.playlist_path("benw").exists() and recorder.events == []
    info = service.stream_info("benw")
    assert info is not None and not info.live and info.video_codec is None
    service.tick(clock.now + 1000)
    assert service.stream_info("benw") is None


@pytest.mark.parametrize(
    "kwargs",
    [{"fragment": 0}, {"fragment": 5, "playlist_length": 2}, {"naming": "random"},
     {"max_fragment": 1.0}, {"max_segment_bytes": 0}, {"grace": -1}],
)  # fmt: skip
def test_bad_config_is_refused(tmp_path: Path, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        HlsConfig(tmp_path, **kwargs)


def test_config_defaults(tmp_path: Path) -> None:
    config = HlsConfig(str(tmp_path))  # type: ignore[arg-type,unused-ignore]  # str is fine
    assert isinstance(config.path, Path)
    assert (config.effective_max_fragment, config.effective_grace) == (50.0, 60.0)
    assert config.max_segment_bytes == 64 * 1024 * 1024
    # 50 Mb/s for three 30 s windows; the folder's bound is derived at start (from the disk).
    assert (config.effective_max_stream_bytes, config.max_total_bytes) == (562_500_000, 0)
    assert (config.max_speed, config.speed_burst) == (2.0, 30.0)
    assert (config.naming, config.nested, config.cleanup, config.endlist) == (
        "system", True, True, True,
    )  # fmt: skip
