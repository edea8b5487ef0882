"""Sending a viewer to the node that serves a stream.

With several nodes on one database, any node answers for any channel, but a stream's playlist
and segments exist on the node that packages it. A /live/ request for a stream another node
holds is answered with a 307 to the same path there, not proxied: the bytes then go straight
from the owning node to the viewer (or to the CDN edge) instead of crossing two nodes, a
blocking LL-HLS reload does not hold a connection on a node that cannot answer it, and a node
that dies takes only its own streams' traffic with it. Players (hls.js, Safari, ExoPlayer)
follow redirects and resolve the playlist's relative URLs against where they landed, so
segments are fetched from the owner directly after the first request. The redirect itself is
not cached (the owner can change on a takeover).
"""

from __future__ import annotations

from aiohttp import web

from .hlsfiles import CORS


def elsewhere(base: str, request: web.Request) -> web.HTTPTemporaryRedirect:
    """307 to `base` plus the request's own path and query (307 keeps the method)."""
    headers = {**CORS, "Cache-Control": "no-store"}
    return web.HTTPTemporaryRedirect(base.rstrip("/") + request.rel_url.raw_path_qs,
                                     headers=headers)  # fmt: skip
