"""Enhanced RTMP v2 ingest in the core: the ex video and audio headers (every packet type,
ModEx, multitrack), the codec records, the events a session makes of real FFmpeg streams fed
whole, byte by byte and in 7-byte pieces, and connect's capability negotiation."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest

from rtmpd.rtmp import exheader, records
from rtmpd.rtmp.errors import ProtocolError
from rtmpd.rtmp.events import (
    Audio,
    AudioConfig,
    AudioMultichannel,
    Connect,
    SequenceEnd,
    Video,
    VideoConfig,
    VideoMetadata,
)
from rtmpd.rtmp.exheader import AudioFourCC as AF
from rtmpd.rtmp.exheader import AudioPacketType as AP
from rtmpd.rtmp.exheader import VideoFourCC as VF
from rtmpd.rtmp.exheader import VideoPacketType as VP
from rtmpd.rtmp.flv import codec_name, fourcc
from rtmpd.rtmp.messages import MessageType, parse_command
from rtmpd.rtmp.session import ServerSession
from tests.support import exmedia
from tests.support.core import RawClient, drain
from tests.support.pieces import FEEDS
from tests.test_session import publishing

NAL = bytes.fromhex("00000005 6588840021")


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


# --- the ex video header ------------------------------------------------------------------------


def test_coded_frames_carry_a_composition_time_for_avc_hevc_and_vvc_only() -> None:
    for code in (b"avc1", b"hvc1", b"vvc1"):
        (p,) = exheader.parse_video(exmedia.video(VP.CODED_FRAMES, code, h("fffff6") + NAL))
        assert (p.fourcc, p.composition_offset, bytes(p.data)) == (fourcc(code), -10, NAL)
        assert (p.frame_type, p.track, p.packet_type) == (1, 0, VP.CODED_FRAMES)
    for code in (b"av01", b"vp09", b"vp08"):
        (p,) = exheader.parse_video(exmedia.video(VP.CODED_FRAMES, code, NAL, frame=2))
        assert (p.composition_offset, bytes(p.data), p.frame_type) == (0, NAL, 2)
    (x,) = exheader.parse_video(exmedia.video(VP.CODED_FRAMES_X, b"hvc1", NAL, frame=2))
    assert (x.packet_type, x.composition_offset, bytes(x.data)) == (VP.CODED_FRAMES_X, 0, NAL)


@pytest.mark.parametrize(
    "ptype", [VP.SEQUENCE_START, VP.SEQUENCE_END, VP.METADATA, VP.MPEG2TS_SEQUENCE_START]
)
def test_other_video_packet_types_pass_their_body(ptype: int) -> None:
    (p,) = exheader.parse_video(exmedia.video(ptype, b"av01", h("81000c00")))
    assert (p.packet_type, p.fourcc, bytes(p.data)) == (ptype, VF.AV1, h("81000c00"))


def test_a_command_frame_carries_no_video() -> None:
    assert exheader.parse_video(h("d1 00")) == []  # frame type 5, start of client-side seeking
    (meta,) = exheader.parse_video(h("d4") + b"hvc1" + h("0200"))  # Metadata ignores type 5
    assert meta.packet_type == VP.METADATA


@pytest.mark.parametrize("size", [3, 256, 300])
def test_mod_ex_timestamp_offset_nano_and_unknown_mod_ex(size: int) -> None:
    nano = (999_999).to_bytes(3, "big") + bytes(size - 3)  # sizes past 256 take a 16-bit size
    (p,) = exheader.parse_video(exmedia.video(VP.CODED_FRAMES, b"hvc1", h("000010") + NAL,
                                              mod=nano))  # fmt: skip
    assert (p.nano_offset, p.composition_offset, bytes(p.data)) == (999_999, 16, NAL)
    prefix, _ = exmedia.mod_ex(b"\x01\x02")
    unknown = bytes([0x97]) + prefix + bytes([0x50 | VP.CODED_FRAMES_X]) + b"av01" + NAL
    (q,) = exheader.parse_video(unknown)  # ModEx type 5 is not defined: skipped by its size
    assert (q.packet_type, q.nano_offset, bytes(q.data)) == (VP.CODED_FRAMES_X, 0, NAL)


def test_multitrack_video_one_track_many_tracks_many_codecs() -> None:
    one = exmedia.multitrack(0x96, 0, VP.CODED_FRAMES, [(b"hvc1", 3, h("000021") + NAL)])
    (p,) = exheader.parse_video(one)
    assert (p.track, p.fourcc, p.composition_offset, bytes(p.data)) == (3, VF.HEVC, 33, NAL)
    many = exmedia.multitrack(0x96, 1, VP.SEQUENCE_START, [(b"avc1", 0, b"A"), (b"avc1", 1, b"BB")])
    assert [(p.track, p.fourcc, bytes(p.data)) for p in exheader.parse_video(many)] == [
        (0, VF.AVC, b"A"), (1, VF.AVC, b"BB"),
    ]  # fmt: skip
    mixed = exmedia.multitrack(0x96, 2, VP.CODED_FRAMES, [
        (b"avc1", 0, h("000001") + NAL), (b"av01", 1, NAL), (b"hvc1", 2, h("ffffff") + NAL),
    ])  # fmt: skip
    got = [(p.track, p.fourcc, p.composition_offset, bytes(p.data))
           for p in exheader.parse_video(mixed)]  # fmt: skip
    assert got == [(0, VF.AVC, 1, NAL), (1, VF.AV1, 0, NAL), (2, VF.HEVC, -1, NAL)]


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ("", "not an enhanced"),
        ("17 01", "not an enhanced"),
        ("91 6876", "truncated"),
        ("91 68766331 0000", "truncated"),  # CodedFrames of hvc1 without its SI24
        ("98 68766331", "unknown enhanced video packet type 8"),
        ("96 31 68766331", "unknown multitrack type 3"),
        ("96 16 68766331 00", "multitrack inside multitrack"),
        ("96 11 68766331 00 000009 00", "overruns"),
        ("97 05 0000", "truncated"),  # ModEx data running into the end
        ("97 01 0000 01 68766331", "TimestampOffsetNano shorter than 3 bytes"),
    ],
)
def test_bad_video_headers_are_protocol_errors(body: str, why: str) -> None:
    with pytest.raises(ProtocolError, match=why):
        exheader.parse_video(h(body))


# --- the ex audio header ------------------------------------------------------------------------


def test_ex_audio_packets_and_multitrack() -> None:
    for ptype in (AP.SEQUENCE_START, AP.CODED_FRAMES, AP.SEQUENCE_END, AP.MULTICHANNEL_CONFIG):
        (p,) = exheader.parse_audio(exmedia.audio(ptype, b"Opus", b"xyz"))
        assert (p.packet_type, p.fourcc, p.track, bytes(p.data)) == (ptype, AF.OPUS, 0, b"xyz")
    tracks = [(b"mp4a", 0, b"en"), (b"mp4a", 1, b"fr")]
    langs = exmedia.multitrack(0x95, 1, AP.CODED_FRAMES, tracks)
    assert [(p.track, bytes(p.data)) for p in exheader.parse_audio(langs)] == [
        (0, b"en"),
        (1, b"fr"),
    ]
    tracks = [(b"Opus", 0, b"O"), (b"ac-3", 5, b"")]
    codecs = exmedia.multitrack(0x95, 2, AP.SEQUENCE_START, tracks)
    assert [(p.fourcc, p.track) for p in exheader.parse_audio(codecs)] == [
        (AF.OPUS, 0),
        (AF.AC3, 5),
    ]
    nano, kind = exmedia.mod_ex(h("000100"))
    (m,) = exheader.parse_audio(bytes([0x97]) + nano + bytes([kind | 1]) + b"fLaC" + b"f")
    assert (m.nano_offset, m.fourcc, bytes(m.data)) == (256, AF.FLAC, b"f")
    for bad in ("", "af 01", "90 4f70", "93 4f707573", "95 31 4f707573 00", "95 15 4f707573 00"):
        with pytest.raises(ProtocolError):
            exheader.parse_audio(h(bad))


def test_multichannel_config() -> None:
    assert exheader.parse_multichannel(h("01 02 00000003")) == exheader.Multichannel(1, 2, b"", 3)
    custom = exheader.Multichannel(2, 3, h("000102"))  # FL, FR, FC in bitstream order
    assert exheader.parse_multichannel(h("02 03 000102")) == custom
    assert exheader.parse_multichannel(h("00 06")) == exheader.Multichannel(0, 6)
    for bad in ("01", "02 03 0001", "01 02 0000", "07 02"):
        with pytest.raises(ProtocolError):
            exheader.parse_multichannel(h(bad))


def test_every_prefix_of_real_bodies_parses_or_is_refused() -> None:
    """Truncated anywhere, a body is a ProtocolError and never anything else."""
    for pair in (("libx265", "libopus"), ("libsvtav1", "flac"), ("libvpx-vp9", "ac3")):
        for tag in exmedia.real_tags(*pair)[:8]:
            parse = exheader.parse_video if tag.kind == 9 else exheader.parse_audio
            for end in range(min(len(tag.body), 60)):
                with contextlib.suppress(ProtocolError):
                    parse(tag.body[:end])


# --- codec records ------------------------------------------------------------------------------


def _config(pair: tuple[str, str], kind: int) -> bytes:
    tag = next(t for t in exmedia.real_tags(*pair) if t.kind == kind and t.body[0] & 0x0F == 0)
    return tag.body[5:]


def test_records_of_real_encoders() -> None:
    hevc = records.parse_hevc(_config(("libx265", "libopus"), 9))
    assert (hevc.profile, hevc.nal_length_size, hevc.bit_depth, hevc.chroma_format) == (1, 4, 8, 1)
    assert len(hevc.vps) == len(hevc.sps) == len(hevc.pps) == 1 and hevc.sps[0][0] >> 1 == 33
    opus = records.parse_opus(_config(("libx265", "libopus"), 8))
    assert (opus.channels, opus.input_sample_rate, opus.mapping_family) == (2, 48000, 0)
    assert opus.pre_skip == 312 and (opus.stream_count, opus.coupled_count) == (1, 1)
    av1 = records.parse_av1(_config(("libsvtav1", "flac"), 9))
    assert (av1.profile, av1.bit_depth, av1.monochrome) == (0, 8, False)
    assert av1.chroma_subsampling == (1, 1)  # 4:2:0
    assert av1.config_obus[:1] == b"\x0a"  # a sequence header OBU
    flac = records.parse_flac(_config(("libsvtav1", "flac"), 8))  # FFmpeg: bare STREAMINFO
    assert (flac.sample_rate, flac.channels, flac.bits_per_sample) == (48000, 2, 16)
    spec_form = b"fLaC" + b"\x80\x00\x00\x22" + flac.streaminfo  # "fLaC", last-block STREAMINFO
    assert records.parse_flac(spec_form) == flac
    vp9 = records.parse_vp(_config(("libvpx-vp9", "ac3"), 9))
    assert (vp9.profile, vp9.bit_depth, vp9.chroma_subsampling, vp9.full_range) == (0, 8, 1, False)
    bare = _config(("libvpx-vp9", "ac3"), 9)[4:]  # the record without FFmpeg's FullBox header
    assert records.parse_vp(bare) == vp9
    assert _config(("libvpx-vp9", "ac3"), 8) == b""  # AC-3: no record
    assert records.parse_aac(h("1190")) == records.AacConfig(2, 48000, 2)
    escaped = records.parse_aac(h("f8 08 40"))  # object type 31: six more bits, then +32
    assert escaped == records.AacConfig(32, 44100, 2)


def test_records_that_do_not_parse_are_none_not_errors() -> None:
    for code in (VF.HEVC, VF.AV1, VF.VP9, VF.AVC, 7):
        for data in (b"", b"\x01", b"\x02" + bytes(40)):
            assert records.parse_video_record(code, data) is None
    bad = {AF.OPUS: b"OpusHead\x10" + bytes(10), AF.FLAC: b"fLaC\x01\x00\x00\x22",
           AF.AAC: b"\x17\xf8", 10: b"\x10"}  # fmt: skip
    for code, data in bad.items():
        for wrong in (b"", b"\xff", data):
            assert records.parse_audio_record(code, wrong) is None
    assert records.parse_audio_record(AF.AC3, b"") is None  # no record for AC-3 at all


# --- sessions fed real FFmpeg streams ------------------------------------------------------------


def _publish_tags(mode: str, pair: tuple[str, str]) -> list[Any]:
    client = publishing(mode)
    for tag in exmedia.real_tags(*pair):
        kind = MessageType.VIDEO if tag.kind == 9 else MessageType.AUDIO
        client.send(kind, tag.body, 1, tag.timestamp, 7 if tag.kind == 9 else 6)
    assert not client.server.closed
    return drain(client.server)


@pytest.mark.parametrize("mode", FEEDS)
def test_hevc_and_opus_from_ffmpeg(mode: str) -> None:
    events = _publish_tags(mode, ("libx265", "libopus"))
    vconf = next(e for e in events if isinstance(e, VideoConfig))
    aconf = next(e for e in events if isinstance(e, AudioConfig))
    assert vconf.codec_id == VF.HEVC and isinstance(vconf.record, records.HevcRecord)
    assert aconf.codec_id == AF.OPUS and isinstance(aconf.record, records.OpusHeader)
    (channels,) = [e for e in events if isinstance(e, AudioMultichannel)]
    assert channels.config == exheader.Multichannel(1, 2, b"", 3)  # native order, FL | FR
    (meta,) = [e for e in events if isinstance(e, VideoMetadata)]
    assert set(meta.values) == {"colorInfo"} and meta.codec_id == VF.HEVC
    frames = [e for e in events if isinstance(e, Video)]
    assert frames[0].keyframe and all(f.codec_id == VF.HEVC and f.track == 0 for f in frames)
    assert bytes(frames[0].data)[:4] != b"hvc1"  # the FourCC is not part of the data
    sound = [e for e in events if isinstance(e, Audio)]
    assert sound and all((a.codec_id, a.sound_rate) == (AF.OPUS, 0) for a in sound)


@pytest.mark.parametrize(
    ("pair", "video", "audio", "video_record", "audio_record"),
    [
        (("libsvtav1", "flac"), VF.AV1, AF.FLAC, records.Av1Record, records.FlacStreamInfo),
        (("libvpx-vp9", "ac3"), VF.VP9, AF.AC3, records.VpRecord, type(None)),
        (("libx264", "eac3"), 7, AF.EAC3, records.AvcRecord, type(None)),
    ],
)
def test_other_real_codecs(
    pair: tuple[str, str], video: int, audio: int, video_record: type, audio_record: type
) -> None:
    events = _publish_tags("sevens", pair)
    vconf = next(e for e in events if isinstance(e, VideoConfig))
    aconf = next(e for e in events if isinstance(e, AudioConfig))  # FLAC: another at the end
    assert (vconf.codec_id, aconf.codec_id) == (video, audio)
    assert isinstance(vconf.record, video_record) and isinstance(aconf.record, audio_record)
    assert any(isinstance(e, Video) and e.codec_id == video and e.keyframe for e in events)
    assert any(isinstance(e, Audio) and e.codec_id == audio for e in events)


@pytest.mark.parametrize("mode", FEEDS)
def test_multitrack_message_becomes_one_event_per_track(mode: str) -> None:
    client = publishing(mode)
    body = exmedia.multitrack(0x96, 2, VP.CODED_FRAMES, [
        (b"avc1", 0, h("000028") + NAL), (b"hvc1", 1, h("000000") + NAL),
    ])  # fmt: skip
    client.send(MessageType.VIDEO, body, 1, 40, 7)
    end = exmedia.multitrack(0x95, 1, AP.SEQUENCE_END, [(b"Opus", 0, b""), (b"Opus", 2, b"")])
    client.send(MessageType.AUDIO, end, 1, 41, 6)
    assert drain(client.server) == [
        Video(1, 40, VF.AVC, True, 40, NAL, 1, 0),
        Video(1, 40, VF.HEVC, True, 0, NAL, 1, 1),
        SequenceEnd(1, 41, AF.OPUS, False, 0),
        SequenceEnd(1, 41, AF.OPUS, False, 2),
    ]


def test_a_bad_ex_header_ends_the_session_with_a_violation() -> None:
    client = publishing()
    client.send(MessageType.VIDEO, h("9a 68766331"), 1, 0, 7)  # reserved packet type 10
    events = drain(client.server)
    assert client.server.closed
    assert any("unknown enhanced video packet type 10" in getattr(e, "reason", "") for e in events)


def test_vp8_and_vvc_are_named_as_such() -> None:
    assert codec_name(VF.VP8, video=True) == "VP8" and codec_name(VF.VVC, video=True) == "VVC"
    assert VF.VP8 not in exheader.INGEST_VIDEO and VF.VVC not in exheader.INGEST_VIDEO


# --- connect ------------------------------------------------------------------------------------


def _connect_result(client: Any) -> tuple[dict[str, Any], Connect]:
    (result,) = [c for c in map(parse_command, (m.payload for m in client.collect()
                 if m.msg_type == MessageType.COMMAND_AMF0)) if c.name == "_result"]  # fmt: skip
    (event,) = [e for e in drain(client.server) if isinstance(e, Connect)]
    assert isinstance(result.command_object, dict)
    return result.command_object, event


def test_enhanced_connect_is_answered_with_what_rtmpd_takes() -> None:
    legacy = RawClient(ServerSession())
    legacy.connect()
    props, event = _connect_result(legacy)
    assert "capsEx" not in props and "fourCcList" not in props and not event.caps.enhanced
    raw = RawClient(ServerSession())
    raw.connect(
        fourCcList=["hvc1", "Opus", "*"],
        capsEx=float(exheader.CapsEx.RECONNECT | exheader.CapsEx.MULTITRACK),
        videoFourCcInfoMap={"av01": 3.0, "vp09": "bad"},
        audioFourCcInfoMap=[1],  # not an object: ignored
    )
    props, event = _connect_result(raw)
    assert event.caps.fourccs == {"hvc1", "Opus", "*", "av01"}
    assert event.caps.video == {"av01": 3} and event.caps.audio is None
    assert event.caps.reconnect and raw.server.peer_caps.caps_ex == 3
    assert props["capsEx"] == float(exheader.SERVER_CAPS_EX)
    assert set(props["videoFourCcInfoMap"]) == {"avc1", "hvc1", "av01", "vp09"}
    assert set(props["audioFourCcInfoMap"]) == {"Opus", "fLaC", "ac-3", "ec-3", "mp4a", ".mp3"}
    assert set(props["fourCcList"]) == set(props["videoFourCcInfoMap"]) | set(
        props["audioFourCcInfoMap"]
    )
    assert props["fmsVer"].startswith("FMS/")  # the legacy properties stay


@pytest.mark.parametrize(
    "caps", [{"capsEx": float("nan")}, {"capsEx": True}, {"capsEx": -1.0}, {"fourCcList": "hvc1"}]
)
def test_wrongly_typed_capabilities_are_ignored(caps: dict[str, Any]) -> None:
    assert not exheader.parse_client_caps(caps).reconnect
