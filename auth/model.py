"""Plain data the publish decision takes and gives; no RTMP types, no I/O."""

from __future__ import annotations

from dataclasses import dataclass

BAD_NAME = "NetStream.Publish.BadName"
DENIED = "NetStream.Publish.Denied"


@dataclass(frozen=True, slots=True)
class PublishAttempt:
    """One publish request, as nginx-rtmp would describe it to on_publish."""

    app: str
    key: str
    query: str
    addr: str
    tcurl: str = ""
    flashver: str = ""
    swfurl: str = ""
    pageurl: str = ""
    clientid: str = ""
    publish_type: str = "live"


@dataclass(frozen=True, slots=True)
class PlayAttempt:
    """One play request, as nginx-rtmp would describe it to on_play."""

    app: str
    name: str
    query: str
    addr: str
    tcurl: str = ""
    flashver: str = ""
    swfurl: str = ""
    pageurl: str = ""
    clientid: str = ""
    start: float = -2.0
    duration: float = -1.0
    reset: bool = False


@dataclass(frozen=True, slots=True)
class Denied:
    """A refusal: `code` and `description` go to the publisher in onStatus."""

    code: str
    description: str


@dataclass(frozen=True, slots=True)
class Channel:
    """A public channel, for pages and the API."""

    name: str
    active: bool
    live_since: float | None


UNKNOWN_APP = Denied(DENIED, "unknown application")
UNKNOWN_KEY = Denied(BAD_NAME, "unknown stream key")
INACTIVE = Denied(DENIED, "inactive user")
RATE_LIMITED = Denied(DENIED, "too many failed attempts")
ALREADY_LIVE = Denied(DENIED, "already publishing")
UNAVAILABLE = Denied(DENIED, "authorization temporarily unavailable")
PLAY_FAILED = "NetStream.Play.Failed"
PLAY_NOT_FOUND = "NetStream.Play.StreamNotFound"
