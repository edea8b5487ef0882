"""Public channel names: the only identity that ever reaches a URL, a page or a file name.

Names are checked here once, so routes like /api or /live can never be claimed by a user.
"""

from __future__ import annotations

import re

PUBLIC_NAME = re.compile(r"[a-z0-9_]{2,32}")
# nginx-rtmp semantics (a 2xx from on_publish) publish under the stream name itself, which
# only has to be a safe single path component.
PATH_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")

# Names that collide with HTTP routes or would confuse viewers.
RESERVED: frozenset[str] = frozenset(
    {
        "about", "admin", "api", "app", "assets", "channel", "channels", "crossdomain.xml",
        "docs", "embed", "favicon.ico", "health", "healthz", "help", "hls", "index", "live",
        "login", "logout", "metrics", "null", "player", "recordings", "robots.txt", "root", "rtmp",
        "settings", "static", "status", "stream", "streams", "thumb", "thumbnails",
        "undefined", "user", "users", "www",
    }
)  # fmt: skip


def public_name_problem(name: str) -> str | None:
    """Why `name` cannot be a public name, or None when it can."""
    if not PUBLIC_NAME.fullmatch(name):
        return "a name is 2 to 32 characters of a-z, 0-9 and _"
    if name in RESERVED:
        return f"the name {name!r} is reserved"
    return None


def valid_public_name(name: str) -> bool:
    return public_name_problem(name) is None


def valid_path_name(name: str) -> bool:
    """A name accepted as-is (nginx-rtmp 2xx semantics): one safe path component."""
    return bool(PATH_NAME.fullmatch(name)) and name.lower() not in RESERVED
