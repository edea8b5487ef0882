"""The MPEG-TS muxer on its own: one continuous transport stream cut into segment files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rtmpd.hls import ts
from rtmpd.hls.muxer import SegmentOutput, TsMuxer, TsSplitter
from rtmpd.hls.templates import audio_template, mp3_template, video_template

from tests.support.hls import Event, decode_segment, media, shift
from tests.support.tscheck import Report, check_stream

EVENTS = media(seconds=6.0, fps=25, gop=25)
AVCC = next(e[2] for e in EVENTS if e[0] == "video_config")
ASC = next(e[2] for e in EVENTS if e[0] == "audio_config")


def test_templates_carry_the_sequence_headers() -> None:
    assert video_template(AVCC).stream.codec_context.extradata == AVCC
    assert audio_template(ASC).stream.codec_context.extradata == ASC


class Run:
    """A TsMuxer over numbered outputs in a folder, cut where `cut_here` says."""

    def __init__(self, folder: Path, *, video: bool = True, audio: bool = True) -> None:
        self.folder = folder
        self.errors: list[OSError] = []
        self.outputs = [self.output()]
        vt = video_template(AVCC) if video else None
        at = audio_template(ASC) if audio else None
        self.muxer = TsMuxer(vt, at, self.outputs[0])

    def output(self, folder: Path | None = None) -> SegmentOutput:
        path = (folder or self.folder) / f".{len(getattr(self, 'outputs', []))}.ts.tmp"
        return SegmentOutput(path, self.errors.append)

    def feed(self, events: list[Event] | tuple[Event, ...], cut_here: Any) -> None:
        for event in events:
            cut = None
            if cut_here(event):
                cut = self.output()
                self.outputs.append(cut)
            if event[0] == "video":
                self.muxer.video(event[1], event[1] + event[2], event[3], bytes(event[4]), cut)
            elif event[0] == "audio":
                self.muxer.audio(event[1], bytes(event[2]), cut)

    def close(self) -> list[bytes]:
        self.muxer.close()
        finished = list(self.muxer.splitter.finished)
        assert finished == self.outputs  # each output reported once, in order
        return [o.temp.read_bytes() for o in finished if o.size]


def keyframe_every(ms: int) -> Any:
    last = [-ms]

    def cut(event: Event) -> bool:
        if event[0] == "video" and event[3] and event[1] - last[0] >= ms:
            first = last[0] < 0
            last[0] = event[1]
            return not first
        return False

    return cut


def assert_players_accept(report: Report, files: list[bytes]) -> None:
    assert report.cc_errors == [] and report.boundary_cc_errors == 0
    assert all(report.starts_cleanly(i) for i in range(len(files)))
    assert report.max_pcr_gap_ms <= 100
    assert report.late_pes == 0


def test_one_stream_runs_on_across_its_files(tmp_path: Path) -> None:
    """Counters go on across the files, each file starts with PAT, PMT and an IDR with its
    SPS, PCR leads every DTS by about 700 ms, and each file decodes on its own."""
    run = Run(tmp_path)
    av_events = [e for e in EVENTS if e[0] in ("video", "audio")]
    run.feed(av_events, keyframe_every(2000))
    files = run.close()
    assert len(files) == 3
    report = check_stream(files)
    assert_players_accept(report, files)
    assert report.min_pcr_lead_ms >= 650 and report.max_pcr_lead_ms <= 800
    frames = 0
    for output in run.outputs:
        decoded = decode_segment(output.temp)
        assert decoded.errors == [] and decoded.first_video_key
        frames += decoded.video_frames
    assert frames == sum(1 for e in av_events if e[0] == "video")


def test_audio_only_segments_get_the_program_tables_and_frequent_pcr(tmp_path: Path) -> None:
    run = Run(tmp_path, video=False)
    audio = [e for e in EVENTS if e[0] == "audio"]
    starts = {audio[i][1] for i in range(40, len(audio), 40)}
    run.feed(audio, lambda e: e[1] in starts)
    files = run.close()
    assert len(files) == len(starts) + 1
    report = check_stream(files)
    assert_players_accept(report, files)  # PAT/PMT copied in front: legal duplicates
    assert report.pcr_pid == ts.FIRST_ES_PID and report.max_pcr_gap_ms <= 30
    for output in run.outputs:
        assert decode_segment(output.temp).errors == []


def test_a_forced_cut_between_keyframes_still_starts_with_the_tables(tmp_path: Path) -> None:
    run = Run(tmp_path)
    video = [e for e in EVENTS if e[0] == "video"]
    run.feed(video, lambda e: e[1] == video[30][1])  # not a keyframe
    files = run.close()
    report = check_stream(files)
    assert report.cc_errors == []
    assert report.segments[1].pids[:2] == [0, report.pmt_pid]
    assert not report.segments[1].first_pes(ts.FIRST_ES_PID).random_access  # type: ignore[union-attr]


def test_writes_as_it_goes_even_when_a_declared_track_is_silent(tmp_path: Path) -> None:
    run = Run(tmp_path)
    video = [e for e in EVENTS if e[0] == "video"]
    run.feed(video + shift(video, 6000), lambda e: False)  # 12 s of video, no audio at all
    payload = sum(len(e[4]) for e in video) * 2
    assert run.outputs[0].size > payload // 2  # not held back in FFmpeg's interleaving queue
    files = run.close()
    assert len(files[0]) > payload
    assert decode_segment(run.outputs[0].temp).video_frames == 2 * len(video)


def test_repeated_and_late_timestamps_are_nudged(tmp_path: Path) -> None:
    run = Run(tmp_path)
    video = [e for e in EVENTS if e[0] == "video"][:25]
    audio = [e for e in EVENTS if e[0] == "audio"][:40]
    run.feed(video, lambda e: False)
    run.feed([("audio", 500, e[2]) for e in audio], lambda e: False)  # all stamped the same
    run.close()
    decoded = decode_segment(run.outputs[0].temp)
    assert decoded.errors == [] and decoded.video_frames == 25 and decoded.audio_frames == 40
    assert decoded.audio_pts == sorted(set(decoded.audio_pts))


def test_mp3_goes_in_as_mpeg_audio(tmp_path: Path) -> None:
    output = SegmentOutput(tmp_path / "a.ts", lambda exc: None)
    muxer = TsMuxer(None, mp3_template(44100), output)
    frame = bytes([0xFF, 0xFB, 0x90, 0x64]) + bytes(413)  # 128 kb/s, 44.1 kHz, 1152 samples
    for n in range(50):
        muxer.audio(n * 26, frame)
    muxer.close()
    report = check_stream([output.temp.read_bytes()])
    assert report.stream_types == {ts.FIRST_ES_PID: 0x03}  # ISO/IEC 11172-3 audio
    assert decode_segment(output.temp).audio_frames == 50


def test_a_disk_error_loses_that_segment_only(tmp_path: Path) -> None:
    run = Run(tmp_path)
    cuts = keyframe_every(2000)
    missing = tmp_path / "gone"

    def cut_into_a_missing_folder(event: Event) -> bool:
        return cuts(event)

    events = [e for e in EVENTS if e[0] in ("video", "audio")]
    outputs = run.outputs
    for event in events:
        cut = None
        if cut_into_a_missing_folder(event):
            cut = run.output(missing if len(outputs) == 1 else None)
            outputs.append(cut)
        if event[0] == "video":
            run.muxer.video(event[1], event[1] + event[2], event[3], bytes(event[4]), cut)
        else:
            run.muxer.audio(event[1], bytes(event[2]), cut)
    run.muxer.close()
    assert [o.error is not None for o in outputs] == [False, True, False]
    assert len(run.errors) == 1 and not list(missing.parent.glob(".1.ts.tmp"))
    assert decode_segment(outputs[2].temp).errors == []


def test_the_splitter_takes_the_first_pes_at_or_after_the_cut(tmp_path: Path) -> None:
    """A cut whose packet FFmpeg never wrote (refused) starts at the next PES of its stream."""
    run = Run(tmp_path, audio=False)
    run.feed([e for e in EVENTS if e[0] == "video"], lambda e: False)
    data = run.close()[0]
    first = SegmentOutput(tmp_path / "x0", lambda exc: None)
    second = SegmentOutput(tmp_path / "x1", lambda exc: None)
    splitter = TsSplitter(first)
    pes = [
        p for p in range(0, len(data), ts.PACKET)
        if ts.pid_of(data, p) == ts.FIRST_ES_PID and ts.starts_unit(data, p)
    ]  # fmt: skip
    target = ts.pes_dts(data, pes[10])
    assert target is not None
    splitter.cut(ts.FIRST_ES_PID, target - 1, second)  # just before the 11th frame
    for at in range(0, len(data), 3 * ts.PACKET):
        splitter.write(data[at : at + 3 * ts.PACKET])
    splitter.close()
    tail = second.temp.read_bytes()
    assert ts.pes_dts(tail, ts.leading_psi(tail)[1]) == target
    assert first.size + second.size >= len(data)
