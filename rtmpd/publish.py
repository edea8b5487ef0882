"""One accepted publish, as the RTMP server sees it: a `PublishSink` that carries media from
the core's events to the packager under the public name, and ends the packager and the lease
when the publish ends. On the way it feeds the publish's health (rtmpd.health: frames and
keyframe timestamps) and warns once when keyframes come further apart than the segments are
long, which OBS's and FFmpeg's defaults do (the packager can only cut on keyframes).

HLS takes H.264, HEVC, AV1 and VP9 video and AAC, MP3, Opus, FLAC, AC-3 and E-AC-3 audio
here, whether the publisher sends them with legacy FLV headers or enhanced RTMP's FourCCs;
each is handed to the packager as an rtmpd.hls `Codec` (the packager picks MPEG-TS or fMP4 for
them, or ends a publish its `format` cannot carry). Any other codec is named in the log (Speex,
Nellymoser, PCM: never a number; VP8 and VVC as refused, rtmpd does not take them at all) and
dropped; a publish none of whose tracks can be packaged within NO_TRACK_TIMEOUT is ended with
an onStatus error naming its codecs, so the streamer sees why in OBS or FFmpeg instead of a
channel that says Live and plays nothing. Of an enhanced multitrack publish, every video track
of a codec HLS takes goes to the packager, which makes the renditions (rtmpd.hls.renditions);
audio is track 0's only, each other audio track is named once and dropped.

A publish the packager stopped at one of its bounds (rtmpd.hls: timestamps or codec settings
breaking segments over and over, too much disk, media far faster than real time) is ended
the same way, with the packager's description, and one log line.

With a `fanout` (the broadcast relays to players or push destinations), the server also hands
it each media message as it came (RawMedia) and the metadata, which go there untouched.

The stream key stops before this object exists: it only knows the public name.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from rtmpd.auth import TAKEN_OVER, Lease
from rtmpd.health import PublishHealth
from rtmpd.hls import CODEC_NAMES, Codec, StreamPackager, Violation
from rtmpd.rtmp.events import Audio, AudioConfig, Metadata, RawMedia, Video, VideoConfig
from rtmpd.rtmp.exheader import INGEST_AUDIO, INGEST_VIDEO, AudioFourCC, VideoFourCC
from rtmpd.rtmp.flv import SoundFormat, VideoCodec, codec_name
from rtmpd.rtmp_contract import MediaEvent, Publisher
from rtmpd.web.metrics import Metrics

from .relay import Fanout

log = logging.getLogger("rtmpd")

_AVC = VideoCodec.AVC.value
_AAC = SoundFormat.AAC.value
#: The codec ids (legacy FLV ids and enhanced RTMP FourCCs) HLS packages, as its codecs.
_VIDEO = {_AVC: Codec.H264, VideoFourCC.AVC.value: Codec.H264, VideoFourCC.HEVC.value: Codec.HEVC,
          VideoFourCC.AV1.value: Codec.AV1, VideoFourCC.VP9.value: Codec.VP9}  # fmt: skip
_AUDIO = {_AAC: Codec.AAC, AudioFourCC.AAC.value: Codec.AAC, SoundFormat.MP3.value: Codec.MP3,
          SoundFormat.MP3_8K.value: Codec.MP3, AudioFourCC.MP3.value: Codec.MP3,
          AudioFourCC.OPUS.value: Codec.OPUS, AudioFourCC.FLAC.value: Codec.FLAC,
          AudioFourCC.AC3.value: Codec.AC3, AudioFourCC.EAC3.value: Codec.EAC3}  # fmt: skip
#: Audio codecs without a sequence header: their frames configure the track.
_FRAMED = frozenset((Codec.MP3, Codec.AC3, Codec.EAC3))
#: Enhanced RTMP FourCCs rtmpd does not take at ingest (not in its connect answer either).
_REFUSED = frozenset(c.value for c in (*VideoFourCC, *AudioFourCC)) - frozenset(
    c.value for c in (*INGEST_VIDEO, *INGEST_AUDIO)
)
#: Seconds a publish may send media with no track HLS can carry before it is ended.
NO_TRACK_TIMEOUT = 5.0
#: The onStatus code for a publish ended for its codecs ("an error for another reason").
UNSUPPORTED = "NetStream.Failed"
#: The onStatus code for a publish the packager stopped at one of its bounds.
VIOLATION = "NetStream.Failed"
PACKAGED = (
    "rtmpd packages H.264, HEVC, AV1 or VP9 video and AAC, MP3, Opus, FLAC, AC-3 or "
    "E-AC-3 audio into HLS"
)


class Publish:
    """Implements `rtmpd.rtmp_contract.PublishSink` for one accepted publish."""

    __slots__ = ("name", "publisher", "packager", "lease", "health", "fanout", "_metrics",
                 "_on_end", "_warned", "_bytes_counted", "_seen", "_deadline",
                 "_stopped", "_on_taken_over")  # fmt: skip

    def __init__(
        self,
        name: str,
        publisher: Publisher,
        packager: StreamPackager,
        lease: Lease,
        *,
        health: PublishHealth,
        metrics: Metrics,
        on_end: Callable[[Publish, str], None],
        fanout: Fanout | None = None,
        on_taken_over: Callable[[str, StreamPackager], None] | None = None,
    ) -> None:
        self.name = name
        self.fanout = fanout
        self.publisher = publisher
        self.packager = packager
        self.lease = lease
        self.health = health
        self._metrics = metrics
        self._on_end = on_end
        #: Workers on one HLS folder: a takeover by another worker hands the name over.
        self._on_taken_over = on_taken_over
        self._warned: set[str] = set()
        self._bytes_counted = 0
        self._seen: dict[str, str] = {}  # "video"/"audio" -> the codec name, once known
        # Until a track can be packaged: when to give up (0.0 once one can).
        self._deadline = time.monotonic() + NO_TRACK_TIMEOUT
        self._stopped = False  # the packager stopped it and the publisher was told

    def media(self, event: MediaEvent) -> None:
        """The hot path: one packager call per media message."""
        packager = self.packager
        kind = type(event)
        if kind is Video:
            assert isinstance(event, Video)
            if event.track:
                if event.codec_id in _VIDEO:
                    packager.track_video(event.track, event.timestamp, event.composition_offset,
                                         event.keyframe, event.data)  # fmt: skip
                else:
                    self._other_track("video", event.track, event.codec_id)
            elif event.codec_id == _AVC or self._default(event, "video", _VIDEO):
                packager.video(
                    event.timestamp, event.composition_offset, event.keyframe, event.data
                )
                interval = self.health.video(event.timestamp, event.keyframe)
                if interval is not None and self.health.gop_too_long(interval):
                    self._warn_gop(interval)
        elif kind is Audio:
            assert isinstance(event, Audio)
            if event.codec_id == _AAC:
                packager.audio(event.timestamp, event.data)
            elif self._default(event, "audio", _AUDIO):
                codec = _AUDIO[event.codec_id]
                if codec in _FRAMED:
                    packager.framed_audio(event.timestamp, event.data, codec)
                    self._seen.setdefault("audio", CODEC_NAMES[codec])
                else:
                    packager.audio(event.timestamp, event.data)
        elif kind is RawMedia:
            assert isinstance(event, RawMedia) and self.fanout is not None
            self.fanout.message(self, event)
            return
        elif kind is VideoConfig:
            assert isinstance(event, VideoConfig)
            # AV1's MPEG2TSSequenceStart carries a TS descriptor, not the av1C: not for HLS.
            if event.track and not event.ts_descriptor and event.codec_id in _VIDEO:
                packager.track_config(event.track, event.timestamp, event.data,
                                      _VIDEO[event.codec_id])  # fmt: skip
            elif not event.ts_descriptor and self._default(event, "video", _VIDEO):
                codec = _VIDEO[event.codec_id]
                packager.video_config(event.timestamp, event.data, codec)
                self._seen["video"] = CODEC_NAMES[codec]
        elif kind is AudioConfig:
            assert isinstance(event, AudioConfig)
            # MP3 and AC-3 have no configuration: taken (track 0, a codec HLS carries), their
            # frames configure the track.
            if self._default(event, "audio", _AUDIO) and _AUDIO[event.codec_id] not in _FRAMED:
                codec = _AUDIO[event.codec_id]
                packager.audio_config(event.timestamp, event.data, codec)
                self._seen["audio"] = CODEC_NAMES[codec]
        elif kind is Metadata and self.fanout is not None:
            assert isinstance(event, Metadata)
            self.fanout.metadata(self, event.values)
        # SequenceEnd, VideoMetadata, AudioMultichannel, Metadata: nothing HLS needs today.
        if self._deadline:
            self._check_tracks()
        if packager.violation is not None and not self._stopped:
            self._violated(packager.violation)

    def _default(
        self, event: Video | Audio | VideoConfig | AudioConfig, track: str,
        packaged: dict[int, Codec],
    ) -> bool:  # fmt: skip
        """Whether the event is of track 0 and a codec HLS takes; names it once if not."""
        if event.track:
            self._other_track(track, event.track, event.codec_id)
            return False
        if event.codec_id in packaged:
            return True
        self._unsupported(track, event.codec_id)
        return False

    def _other_track(self, track: str, number: int, codec_id: int) -> None:
        name = _describe(codec_id, video=track == "video")
        why = (
            "track 0's audio is in every rendition"
            if track == "audio"
            else f"renditions take {PACKAGED.split(' and ')[0].removeprefix('rtmpd packages ')}"
        )
        self._warn_once(f"{track} track {number}",
                        f"{track} track {number} ({name}) is not packaged: {why}")  # fmt: skip

    def _unsupported(self, track: str, codec_id: int) -> None:
        name = _describe(codec_id, video=track == "video")
        self._seen[track] = name
        self._warn_once(track, f"{track} {name} is not packaged ({PACKAGED})")

    def _check_tracks(self) -> None:
        """Until a track can be packaged; ends the publish once it is clear none will be."""
        if self.packager.has_tracks:
            self._deadline = 0.0
        elif time.monotonic() >= self._deadline:
            self._deadline = 0.0
            found = ", ".join(f"{t} {c}" for t, c in sorted(self._seen.items()))
            description = f"{PACKAGED}; this stream has {found or 'no codec rtmpd could see'}"
            log.warning("%s: nothing to package after %g s (%s); ending the publish",
                        self.name, NO_TRACK_TIMEOUT, found or "no codec seen")  # fmt: skip
            self.publisher.fail(UNSUPPORTED, description)

    def _violated(self, violation: Violation) -> None:
        """The packager stopped this publish at a bound: the publisher is told why."""
        self._stopped = True
        log.warning("%s: %s; ending the publish", self.name, violation.description)
        self.publisher.fail(VIOLATION, violation.description)

    async def end(self, reason: str) -> None:
        self.count_bytes()
        log.info("publish of %s ended: %s", self.name, reason)
        if reason == TAKEN_OVER and self._on_taken_over is not None:
            self._on_taken_over(self.name, self.packager)  # by another worker: no ENDLIST
        else:
            self.packager.close()
        await self.lease.end()
        self._on_end(self, reason)

    def count_bytes(self) -> None:
        """Add what arrived since the last count to the bytes-received metric."""
        total = self.publisher.bytes_received
        self._metrics.bytes_received(total - self._bytes_counted)
        self._bytes_counted = total

    def _warn_gop(self, interval: float) -> None:
        if "gop" in self._warned:
            return
        self._warned.add("gop")
        fragment = self.health.fragment
        log.warning(
            "%s: keyframes every %.1f s, longer than the %g s segments ([hls] fragment): "
            "segments will be %.1f s; set a 2 s keyframe interval in the encoder (OBS: "
            "Keyframe Interval 2 s; FFmpeg: -g at twice the frame rate)",
            self.name, interval, fragment, interval,
        )  # fmt: skip

    def _warn_once(self, kind: str, message: str) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            log.warning("%s: %s; dropped", self.name, message)


def _describe(codec_id: int, *, video: bool) -> str:
    name = codec_name(codec_id, video=video)
    return f"{name} (refused: not supported by rtmpd)" if codec_id in _REFUSED else name
