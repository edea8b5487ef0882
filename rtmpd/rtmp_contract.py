"""What the RTMP server and the composition root say to each other: data and protocols only.

The server (rtmpd.server) asks a `PublishHandler` or `PlayHandler` to decide each request and
feeds the `PublishSink` or is fed by the `PlaySink` the answer names; the composition root
(rtmpd.app and the modules it wires) implements those and holds a request's `Publisher` or
`Player`. Apart from the server so that the composition root's modules can speak this
language without importing the module that runs sockets, and so the contract reads in one
place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from rtmpd.rtmp.chunk import SerializedMessage
from rtmpd.rtmp.events import (
    Audio,
    AudioConfig,
    AudioMultichannel,
    Metadata,
    PlayRequest,
    PublishRequest,
    RawMedia,
    SequenceEnd,
    Video,
    VideoConfig,
    VideoMetadata,
)

MediaEvent = (
    VideoConfig | Video | AudioConfig | Audio | Metadata | SequenceEnd | VideoMetadata
    | AudioMultichannel | RawMedia
)  # fmt: skip
MEDIA = (Video, Audio, VideoConfig, AudioConfig, Metadata, SequenceEnd, VideoMetadata,
         AudioMultichannel, RawMedia)  # fmt: skip


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """Who is publishing: the peer and what it said in `connect`."""

    peer: str
    port: int
    conn_id: int
    app: str
    tc_url: str | None
    flashver: str | None
    swf_url: str | None
    page_url: str | None


class PublishSink(Protocol):
    """Where one accepted publish goes: its media, then its end (exactly once)."""

    def media(self, event: MediaEvent) -> None:
        """The hot path: called synchronously for every media message, in order."""

    async def end(self, reason: str) -> None:
        """The publish ended (whatever ended it); called exactly once, after the last media."""


@dataclass(frozen=True, slots=True)
class Accept:
    """Publish under this public name (the key itself is never used past authorize), into
    `sink`. With `raw`, the sink also gets each audio and video message as it came (RawMedia
    events, for relays and players); without, the core makes none."""

    name: str
    sink: PublishSink
    raw: bool = False


@dataclass(frozen=True, slots=True)
class Reject:
    code: str
    description: str


class Publisher(Protocol):
    """The connection side of one publish request, made before it is decided, so that the
    decision can keep it (to disconnect on takeover, ban or key rotation)."""

    @property
    def info(self) -> ConnectionInfo: ...

    @property
    def stream_id(self) -> int: ...

    @property
    def started(self) -> float:
        """time.monotonic() when the request came."""

    @property
    def bytes_received(self) -> int:
        """Bytes read on this publisher's connection so far (handshake included)."""

    def close(self, reason: str) -> None:
        """Disconnect the publisher; a publish it started ends with `reason`."""

    def fail(self, code: str, description: str) -> None:
        """End the publish with an onStatus error the publisher's software shows (OBS, FFmpeg
        print its description), then disconnect. Safe to call from a sink's `media`: it takes
        effect once the current batch of events is handled."""


class PublishHandler(Protocol):
    async def authorize(self, publisher: Publisher, request: PublishRequest) -> Accept | Reject: ...


class Player(Protocol):
    """The connection side of one play request, made before it is decided. Once the play is
    accepted (and its sink started), `send` writes media cut once for every player."""

    @property
    def info(self) -> ConnectionInfo: ...

    @property
    def stream_id(self) -> int: ...

    @property
    def chunk_size(self) -> int: ...

    @property
    def buffered(self) -> int:
        """Bytes written to this player and not yet taken by its socket."""

    @property
    def closing(self) -> bool: ...

    def send(self, msg: SerializedMessage) -> None: ...

    def send_data(self, payload: bytes) -> None:
        """A data message (onMetaData) on this player's stream."""

    def finish(self, description: str) -> None:
        """The stream is over: tell the player (FFmpeg stops with end of file), then close.
        Takes effect on the next turn of the loop (safe from inside another's media)."""

    def close(self, reason: str) -> None: ...


class PlaySink(Protocol):
    """Where one accepted play is fed from: started once Play.Start went out, ended once."""

    def start(self) -> None: ...

    def end(self, reason: str) -> None: ...


@dataclass(frozen=True, slots=True)
class PlayAccept:
    """Play the public stream `name`, fed by `sink`'s owner."""

    name: str
    sink: PlaySink


class PlayHandler(Protocol):
    async def authorize_play(self, player: Player, request: PlayRequest) -> PlayAccept | Reject: ...


@dataclass(frozen=True, slots=True)
class DrainResult:
    asked: int  # publishers asked to reconnect
    left: int  # connections that went by themselves within the grace
    ended: int  # connections still open when the grace ran out
