"""Settings of the publish decision: the `[auth]` and `[database]` sections of the
configuration file, loaded straight into these objects (rtmpd.config) and checked here once."""

from __future__ import annotations

import re
import socket
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import msgspec
from msgspec.structs import force_setattr

Seconds = Annotated[float, msgspec.Meta(ge=0)]
Count = Annotated[int, msgspec.Meta(ge=0)]


class Duplicate(StrEnum):
    """What a second publisher with a live key gets."""

    TAKEOVER = "takeover"  # the old connection is closed, the new one publishes
    REJECT = "reject"  # the new one is refused


class AuthConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """`on_publish` set means decisions come from nginx-rtmp style callbacks, not the database;
    `on_play` (with `on_play_done`) asks the same way whether a player may play, in either
    mode."""

    duplicate: Duplicate = Duplicate.TAKEOVER
    on_publish: str = ""
    on_publish_done: str = ""
    on_play: str = ""
    on_play_done: str = ""
    callback_timeout: Seconds = 10.0
    max_failures: Count = 5
    failure_window: Seconds = 60.0
    backoff: Seconds = 60.0

    def __post_init__(self) -> None:
        try:
            force_setattr(self, "duplicate", Duplicate(self.duplicate))
        except ValueError:
            choices = ", ".join(d.value for d in Duplicate)
            raise ValueError(f"duplicate: {self.duplicate!r} is not one of {choices}") from None
        for key in ("on_publish", "on_publish_done", "on_play", "on_play_done"):
            url = getattr(self, key)
            if url and not url.startswith(("http://", "https://")):
                raise ValueError(f"{key}: {url!r} is not an http:// or https:// URL")


class DatabaseConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Where users, key digests and live state are (shared with `rtmpd users`): the SQLite
    file `path`, or PostgreSQL at `url` (several nodes on one database). `node` names this
    server in live records (unique per server on one database); `lease` is how long a live
    record of a node that stopped renewing it stays."""

    path: Path = Path("rtmpd-data/rtmpd.sqlite3")
    url: str = ""
    node: str = ""
    lease: Seconds = 15.0

    def __post_init__(self) -> None:
        force_setattr(self, "path", Path(self.path))
        if self.url and not self.url.startswith(("postgresql://", "postgres://")):
            raise ValueError("url: must be a postgresql:// URL (or empty for the SQLite file)")
        if self.lease < 3:
            raise ValueError("lease: must be at least 3 seconds (it is renewed every third)")
        if not _NODE.fullmatch(self.node):
            raise ValueError("node: 1 to 64 characters of A-Z, a-z, 0-9, _ . - (or empty)")

    @property
    def node_name(self) -> str:
        """`node`, else this machine's host name."""
        return self.node or socket.gethostname() or "rtmpd"


_NODE = re.compile(r"[A-Za-z0-9_.-]{0,64}")
