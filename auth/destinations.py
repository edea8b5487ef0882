"""Push destinations' URLs: another service's ingest URL, which carries that service's secret
stream key.

rtmpd needs the URL in clear to connect (it is stored so, in the 0600 database), but never
shows it again after it was entered: lists, the admin API and the logs show `redacted`, the
service's address and app with the key's fingerprint (`<key sha256:1a2b3c4d>`, the form
rtmpd's own keys take in logs) instead of the key.

    rtmp://a.rtmp.youtube.com/live2/KEY      app "live2", stream KEY
    rtmps://live-api-s.facebook.com:443/rtmp/KEY
    rtmp://10.0.0.5/hls-live                 app only: the stream is the public name

Query strings belong to the stream (`KEY?bandwidthtest=true`) and are as secret as the key;
user info (`rtmp://user:pass@host/...`) is refused: nothing would keep it out of sight.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .keys import key_fingerprint

#: Longest destination URL accepted.
MAX_URL_CHARS = 2048
DEFAULT_PORTS = {"rtmp": 1935, "rtmps": 443}


class InvalidDestination(ValueError):
    """Not a destination URL rtmpd can push to; the message never holds the URL's key."""


@dataclass(frozen=True, slots=True)
class DestinationUrl:
    scheme: str  # rtmp or rtmps
    host: str
    port: int
    app: str
    stream: str = field(repr=False)  # the key (and its query); "" to use the public name

    @property
    def tls(self) -> bool:
        return self.scheme == "rtmps"

    @property
    def tc_url(self) -> str:
        """What connect says (no key in it)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}/{self.app}"

    @property
    def redacted(self) -> str:
        """The URL as rtmpd shows it: everything but the key, which is a fingerprint."""
        if not self.stream:
            return self.tc_url
        return f"{self.tc_url}/<key {key_fingerprint(self.stream)}>"

    def stream_name(self, public_name: str) -> str:
        """The name published there: the URL's key, else the broadcast's public name."""
        return self.stream or public_name


def parse_url(url: str) -> DestinationUrl:
    """Check and split a destination URL (InvalidDestination, without the key, if wrong)."""
    url = url.strip()
    if not url or len(url) > MAX_URL_CHARS:
        raise InvalidDestination(f"a destination URL is 1 to {MAX_URL_CHARS} characters")
    if not url.isprintable() or any(c.isspace() for c in url):
        raise InvalidDestination("a destination URL has no spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise InvalidDestination("not a URL with a valid host and port") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise InvalidDestination("a destination URL starts with rtmp:// or rtmps://")
    if parts.username is not None or parts.password is not None:
        raise InvalidDestination("user names and passwords in the URL are not supported")
    host = parts.hostname or ""
    if not host:
        raise InvalidDestination("a destination URL names a host")
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise InvalidDestination("not a valid IPv6 address") from None
    path = parts.path.strip("/")
    app, _, stream = path.partition("/")
    if not app:
        raise InvalidDestination("a destination URL names an application: rtmp://host/app/key")
    if parts.query:
        stream = f"{stream}?{parts.query}"
    return DestinationUrl(scheme, host, port or DEFAULT_PORTS[scheme], app, stream)


def redact(url: str) -> str:
    """What may be shown of a stored URL (one that no longer parses: its scheme only)."""
    try:
        return parse_url(url).redacted
    except InvalidDestination:
        return url.partition("://")[0] + "://<invalid>"
