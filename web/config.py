"""Settings of the pages: the `[web]` section of the configuration file, loaded straight into
this object (rtmpd.config) and checked here once."""

from __future__ import annotations

import msgspec

DEFAULT_HLSJS_URL = "https://cdn.jsdelivr.net/npm/hls.js@1/dist/hls.min.js"


class WebConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """`hlsjs_file` (a local hls.min.js, resolved against the config file's folder by the
    loader) is served at /static/vendor/hls.min.js and used instead of `hlsjs_url`."""

    hlsjs_url: str = DEFAULT_HLSJS_URL
    hlsjs_file: str = ""
    # The publish URL `rtmpd users add` shows streamers; derived from [rtmp] when empty.
    public_rtmp_url: str = ""
    # Where viewers reach this node over HTTP (other nodes send a stream's viewers there);
    # derived from [http] listen when empty.
    public_http_url: str = ""

    def __post_init__(self) -> None:
        url = self.public_rtmp_url
        if url and not url.startswith(("rtmp://", "rtmps://")):
            raise ValueError(f"public_rtmp_url: {url!r} is not an rtmp:// or rtmps:// URL")
        http = self.public_http_url
        if http and (not http.startswith(("http://", "https://")) or "?" in http):
            raise ValueError(f"public_http_url: {http!r} is not an http:// or https:// URL")
