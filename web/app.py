"""The aiohttp application: HLS files, channel pages, the JSON API and /metrics.

Everything channel-related comes from a `Directory` (see directory.py); HLS files come straight
from the folder the packager writes. Request handling never touches the disk on the event loop:
HLS files are opened in a worker thread, templates and static files are loaded at startup.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2
from aiohttp import web

from . import admin_api, dashboard
from . import recordings as recorded
from .admin import Admin
from .admin_peers import Peers
from .config import DEFAULT_HLSJS_URL
from .directory import Channel, Directory, StreamStats
from .guard import HTTP_SEND_TIMEOUT, ConnectionGuard, busy_middleware, reset
from .hlsfiles import CORS, NAME, HlsTarget, Sending, cache_headers, parse_hls_path, serve_file
from .live import LiveSource, Waiters, blocking_playlist, cache_control, live_key, next_part
from .metrics import Metrics
from .openapi import document as openapi_document
from .owner import elsewhere
from .protocol import Runner, ServerLog, server_header
from .proxies import TrustedProxies
from .sessions import Sessions
from .siblings import Siblings, viewer_address
from .thumbnails import ThumbnailCache
from .viewers import ViewerTracker

#: Common Log Format (%b as the body's Content-Length, "-" for none): address, time, request
#: line, status and size only. No headers are logged, and no URL of this site carries a secret.
ACCESS_LOG_FORMAT = '%a - - %t "%r" %s %{Content-Length}o'
#: First path segments the site uses itself: these can never be channel names.
RESERVED_NAMES = frozenset({"admin", "api", "live", "metrics", "recordings", "static", "thumb"})
HLSJS_VENDOR = "vendor/hls.min.js"

_HERE = Path(__file__).resolve().parent
_STATIC_FILES = {
    "style.css": "text/css",
    "player.js": "text/javascript",
    "favicon.svg": "image/svg+xml",
    "admin.js": "text/javascript",
}
_TEMPLATES = ("index.html", "channel.html", "404.html", "admin.html", "admin_login.html")


@dataclass(frozen=True, slots=True)
class _Static:
    body: bytes
    content_type: str
    version: str


@dataclass(slots=True)
class _State:
    hls_root: Path
    nested: bool
    directory: Directory
    metrics: Metrics
    hlsjs_url: str
    hlsjs_file: Path | None
    access_log: logging.Logger | None
    viewers: ViewerTracker
    thumbs: ThumbnailCache
    templates: jinja2.Environment
    sending: Sending
    live: LiveSource | None = None
    waiters: Waiters = field(default_factory=Waiters)
    low_latency: bool = False
    static: dict[str, _Static] = field(default_factory=dict)
    #: rtmpd workers: the other workers' viewer counts of a channel.
    viewers_elsewhere: Callable[[str], int] | None = None
    #: rtmpd workers: the private socket of the sibling holding a stream, and how to ask it.
    sibling: Callable[[str], str | None] | None = None
    siblings: Siblings = field(default_factory=Siblings)


STATE = web.AppKey("rtmpd_web_state", _State)


def create_app(
    *,
    hls_path: Path,
    nested: bool,
    directory: Directory,
    hlsjs_url: str = DEFAULT_HLSJS_URL,
    metrics: Metrics | None = None,
    access_log: logging.Logger | None = None,
    hlsjs_file: Path | None = None,
    admin: Admin | None = None,
    trusted_proxies: TrustedProxies | None = None,
    guard: ConnectionGuard | None = None,
    live: LiveSource | None = None,
    waiters: Waiters | None = None,
    low_latency: bool = False,
    recordings: recorded.Recordings | None = None,
    worker: str = "",
    sibling: Callable[[str], str | None] | None = None,
    admin_worker: str = "",
    peers: Mapping[str, str] | None = None,
    viewers: ViewerTracker | None = None,
    viewers_elsewhere: Callable[[str], int] | None = None,
) -> web.Application:
    """The web application. `hlsjs_file`, if given, is served at /static/vendor/hls.min.js and
    used instead of `hlsjs_url` (self-hosting). With `admin`, the management API under
    /api/admin/ and the dashboard at /admin exist; `trusted_proxies` may say a request came
    over https and from whom. With the `guard` of its GuardedSite, requests mark their
    connection busy and files go out under the guard's send timeout; without one, under the
    default send timeout. With `live` (and the `waiters` its changes wake), LL-HLS playlists
    answer blocking reloads and parts come from memory. With `recordings`, past broadcasts
    are listed and served (web/recordings.py). As rtmpd `worker` N, responses name it
    (X-Rtmpd-Worker) and LL-HLS requests for a stream a `sibling` holds are asked of it. Start
    it with `make_runner` to get access logs. With `admin_worker` (another worker's private
    socket), /admin and /api/admin/ are asked of that worker; with `peers` (the other workers'
    private sockets by number), the admin API lists and kicks their publishes too. `viewers`
    counts this process's viewers (made here when not given); `viewers_elsewhere` gives the
    other workers' count of a channel, added to it."""
    templates = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_HERE / "templates"),
        autoescape=True,
        auto_reload=False,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    templates.filters["duration"] = format_duration
    metrics = metrics if metrics is not None else Metrics()
    sending = Sending(
        guard.send_timeout if guard is not None else HTTP_SEND_TIMEOUT,
        guard.send_stalled if guard is not None else reset,
        lambda: metrics.http_client_error("disconnected"),
    )
    state = _State(
        hls_root=Path(hls_path).resolve(),
        nested=nested,
        directory=directory,
        metrics=metrics,
        hlsjs_url=hlsjs_url,
        hlsjs_file=hlsjs_file,
        access_log=access_log,
        viewers=viewers if viewers is not None else ViewerTracker(),
        viewers_elsewhere=viewers_elsewhere,
        thumbs=ThumbnailCache(directory.thumbnail),
        templates=templates,
        sending=sending,
        live=live,
        waiters=waiters if waiters is not None else Waiters(),
        low_latency=low_latency,
        sibling=sibling,
    )
    templates.globals["static_url"] = lambda name: _static_url(state, name)
    outer = [busy_middleware(guard)] if guard is not None else []
    proxies = trusted_proxies or TrustedProxies()
    relay = [_admin_relay(admin_worker, proxies)] if admin_worker else []
    app = web.Application(middlewares=[*outer, _errors_and_metrics, *relay, admin_api.guard])
    app[STATE] = state
    app.on_startup.append(_load_assets)
    app.on_response_prepare.append(server_header)
    if worker:
        app.on_response_prepare.append(_worker_header(worker))
    app.on_cleanup.append(_close_siblings)
    r = app.router
    r.add_get("/", _index, name="index")
    r.add_get("/api/openapi.json", _openapi, name="api_openapi")
    r.add_get("/api/streams", _api_streams, name="api_streams")
    r.add_get(f"/api/streams/{{name:{NAME}}}", _api_stream, name="api_stream")
    if admin is not None:
        admin_api.add_routes(app, admin_api.AdminState(
            admin=admin,
            sessions=Sessions(),
            proxies=trusted_proxies or TrustedProxies(),
            media=lambda name: _media(state.directory.stats(name)),
            page=lambda request, template, context, status: _page(
                request, template, context, status, admin=True),
            worker=worker,
            peers=Peers(state.siblings, peers) if peers else None,
        ))  # fmt: skip
        dashboard.add_routes(app)

    async def exists(name: str) -> bool:
        return await directory.channel(name) is not None

    state_of_recordings = recorded.RecordingsState(recordings, sending, exists)
    recorded.add_routes(app, state_of_recordings, admin=admin is not None)
    r.add_get(f"/thumb/{{name:{NAME}}}.jpg", _thumb, name="thumb")
    r.add_get("/metrics", _metrics, name="metrics")
    r.add_get("/static/{file:[a-z0-9_.-]+(?:/[a-z0-9_.-]+)?}", _static, name="static")
    r.add_get("/live/{tail:.*}", _hls, name="hls")
    r.add_route("OPTIONS", "/live/{tail:.*}", _hls_options, name="hls_options")
    r.add_get(f"/{{name:{NAME}}}", _channel_page, name="channel")
    return app


def make_runner(app: web.Application, **kwargs: Any) -> web.AppRunner:
    """An AppRunner that writes one Common Log Format line per request to the app's logger, and
    counts routine client errors instead of logging their tracebacks (rtmpd.web.protocol)."""
    state = app[STATE]
    server_log = ServerLog(logging.getLogger("rtmpd.http"), state.metrics)
    return Runner(
        app,
        access_log=state.access_log,
        access_log_format=ACCESS_LOG_FORMAT,
        logger=server_log,
        **kwargs,
    )


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    s = int(seconds)
    hours, minutes = divmod(s // 60, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min"
    return f"{s} s"


async def _load_assets(app: web.Application) -> None:
    """Read templates and static files once, in a thread, before serving."""
    state = app[STATE]

    def load() -> dict[str, _Static]:
        for name in _TEMPLATES:
            state.templates.get_template(name)
        files = {
            name: _static_entry((_HERE / "static" / name).read_bytes(), ctype)
            for name, ctype in _STATIC_FILES.items()
        }
        if state.hlsjs_file is not None:
            files[HLSJS_VENDOR] = _static_entry(state.hlsjs_file.read_bytes(), "text/javascript")
        return files

    state.static = await asyncio.get_running_loop().run_in_executor(None, load)
    if state.hlsjs_file is not None:
        state.hlsjs_url = _static_url(state, HLSJS_VENDOR)


def _static_entry(body: bytes, content_type: str) -> _Static:
    return _Static(body, content_type, hashlib.sha256(body).hexdigest()[:12])


def _static_url(state: _State, name: str) -> str:
    return f"/static/{name}?v={state.static[name].version}"


def _script_origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


# -- middleware -------------------------------------------------------------------------------


@web.middleware
async def _errors_and_metrics(request: web.Request, handler: Any) -> web.StreamResponse:
    """Count every request by route and status; give errors a body fitting the path."""
    state = request.app[STATE]
    try:
        response: web.StreamResponse = await handler(request)
    except web.HTTPException as exc:
        response = _error_response(request, exc)
    except Exception:
        state.metrics.http_request(_route(request), 500)
        raise
    state.metrics.http_request(_route(request), response.status)
    return response


def _route(request: web.Request) -> str:
    """The metrics label: the route's name, with HLS split into playlists and segments."""
    name = request.match_info.route.name or "none"
    if name == "hls":
        return "hls_playlist" if request.path.endswith(".m3u8") else "hls_segment"
    return name


def _error_response(request: web.Request, exc: web.HTTPException) -> web.StreamResponse:
    path = request.path
    headers = {k: v for k, v in exc.headers.items() if k.lower() not in _BODY_HEADERS}
    if exc.status < 400:
        return web.Response(status=exc.status, headers=headers)
    if path.startswith("/api/"):
        return web.json_response({"error": exc.reason}, status=exc.status, headers=headers)
    if path.startswith("/live/") or exc.status != 404:
        return web.Response(status=exc.status, text=f"{exc.status}: {exc.reason}", headers=headers)
    return _page(request, "404.html", {"path": path}, status=404)


_BODY_HEADERS = frozenset({"content-type", "content-length"})


# -- pages ------------------------------------------------------------------------------------


def _page(
    request: web.Request,
    template: str,
    context: dict[str, Any],
    status: int = 200,
    *,
    admin: bool = False,
) -> web.Response:
    """A page with a strict Content-Security-Policy: scripts and styles from this site only
    (plus hls.js's origin on public pages); admin pages also post their forms to this site,
    may not be framed (clickjacking the kick and ban buttons) and are never cached."""
    state = request.app[STATE]
    html = state.templates.get_template(template).render(**context)
    if admin:
        csp = (
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
            "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
        )
    else:
        scripts = " ".join(filter(None, ["'self'", _script_origin(state.hlsjs_url)]))
        csp = (
            f"default-src 'none'; script-src {scripts}; style-src 'self'; img-src 'self'; "
            "media-src 'self' blob:; connect-src 'self'; worker-src 'self' blob:; "
            "base-uri 'none'; form-action 'none'"
        )
    headers = {
        "Cache-Control": "no-store" if admin else "no-cache",
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
    }
    if admin:
        headers["X-Frame-Options"] = "DENY"
    return web.Response(
        status=status, text=html, content_type="text/html", charset="utf-8", headers=headers
    )


async def _index(request: web.Request) -> web.Response:
    state = request.app[STATE]
    channels = await state.directory.live_channels()
    thumbs = await asyncio.gather(*(state.thumbs.get(c.name) for c in channels))
    items = [
        {**_info(state, c), "thumb": jpeg is not None}
        for c, jpeg in zip(channels, thumbs, strict=True)
    ]
    return _page(request, "index.html", {"channels": items})


async def _channel_page(request: web.Request) -> web.Response:
    state = request.app[STATE]
    channel = await state.directory.channel(request.match_info["name"])
    if channel is None:
        raise web.HTTPNotFound()
    return _page(
        request,
        "channel.html",
        {
            "info": _info(state, channel),
            "hlsjs_url": state.hlsjs_url,
            "low_latency": state.low_latency,
            "recordings": recorded.past(request.app, channel.name),
        },  # fmt: skip
    )


async def _thumb(request: web.Request) -> web.Response:
    state = request.app[STATE]
    name = request.match_info["name"]
    channel = await state.directory.channel(name)
    jpeg = await state.thumbs.get(name) if channel is not None and channel.live else None
    if jpeg is None:
        raise web.HTTPNotFound()
    return web.Response(
        body=jpeg, content_type="image/jpeg", headers={"Cache-Control": "max-age=10"}
    )


async def _static(request: web.Request) -> web.Response:
    item = request.app[STATE].static.get(request.match_info["file"])
    if item is None:
        raise web.HTTPNotFound()
    etag = f'"{item.version}"'
    headers = {"ETag": etag, "Cache-Control": "max-age=86400", "X-Content-Type-Options": "nosniff"}
    if request.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers=headers)
    return web.Response(body=item.body, content_type=item.content_type, headers=headers)


# -- API and metrics --------------------------------------------------------------------------


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _info(state: _State, channel: Channel) -> dict[str, Any]:
    """The API's view of a channel; pages render the same dictionary."""
    name = channel.name
    since = channel.live_since if channel.live else None
    media = _media(state.directory.stats(name) if channel.live else None)
    playlist = f"/live/{name}/index.m3u8" if state.nested else f"/live/{name}.m3u8"
    for rendition in media["renditions"]:  # beside index.m3u8 (the nested layout only)
        rendition["playlist_url"] = f"/live/{name}/{rendition['playlist_url']}"
    return {
        "name": name,
        "live": channel.live,
        "live_since": _iso(since),
        "uptime_seconds": None if since is None else max(0, int(time.time() - since)),
        "playlist_url": playlist,
        **media,
        "viewers": _viewers(state, name),
    }


def _viewers(state: _State, name: str) -> int:
    """The channel's viewers on the whole node: here and on the other workers."""
    here = state.viewers.count(name)
    return here + state.viewers_elsewhere(name) if state.viewers_elsewhere else here


def _media(stats: StreamStats | None) -> dict[str, Any]:
    """The "video" and "audio" objects of a live stream (None while unknown)."""
    video = audio = None
    if stats is not None and stats.video_codec is not None:
        video = {
            "codec": stats.video_codec,
            "name": stats.video_name,
            "width": stats.width,
            "height": stats.height,
            "fps": stats.fps,
            "kbps": stats.video_kbps,
        }
    if stats is not None and stats.audio_codec is not None:
        audio = {
            "codec": stats.audio_codec,
            "name": stats.audio_name,
            "sample_rate": stats.sample_rate,
            "channels": stats.channels,
            "kbps": stats.audio_kbps,
        }
    renditions = [
        {
            "track": r.track,
            "playlist_url": r.playlist,
            "codec": r.video_codec,
            "name": r.video_name,
            "width": r.width,
            "height": r.height,
            "fps": r.fps,
            "kbps": r.video_kbps,
        }
        for r in (stats.renditions if stats is not None else ())
    ]
    return {"video": video, "audio": audio, "renditions": renditions}


_API_HEADERS = {"Cache-Control": "no-cache", "Access-Control-Allow-Origin": "*"}


async def _api_streams(request: web.Request) -> web.Response:
    state = request.app[STATE]
    channels = await state.directory.live_channels()
    return web.json_response({"streams": [_info(state, c) for c in channels]}, headers=_API_HEADERS)


async def _api_stream(request: web.Request) -> web.Response:
    state = request.app[STATE]
    channel = await state.directory.channel(request.match_info["name"])
    if channel is None:
        raise web.HTTPNotFound(reason="Unknown channel")
    return web.json_response(_info(state, channel), headers=_API_HEADERS)


async def _openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document(), headers=_API_HEADERS)


async def _metrics(request: web.Request) -> web.Response:
    state = request.app[STATE]
    state.metrics.set_viewers(state.viewers.total())
    response = web.Response(body=state.metrics.render())
    response.headers["Content-Type"] = state.metrics.content_type
    return response


# -- HLS --------------------------------------------------------------------------------------


async def _hls(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    target = parse_hls_path(request.rel_url.raw_path, state.nested)
    if target is None:
        raise web.HTTPNotFound(headers=CORS)
    sibling = state.sibling(target.name) if state.sibling and state.live else None
    if sibling is not None:  # what a blocking reload or a part needs is in that worker's memory
        return await state.siblings.ask(sibling, request)
    if (owner := state.directory.elsewhere(target.name)) is not None:
        raise elsewhere(owner, request)
    if state.live is not None:
        answer = await _live(request, state, state.live, target)
        if answer is not None:
            return answer
    response = await serve_file(request, state.hls_root, target, state.sending)
    if target.playlist and response.status in (200, 206, 304):
        state.viewers.seen(target.name, viewer_address(request),
                          request.headers.get("User-Agent", ""))  # fmt: skip
    return response


async def _live(
    request: web.Request, state: _State, live: LiveSource, target: HlsTarget
) -> web.StreamResponse | None:
    """An LL-HLS playlist or a part from memory; None to serve the file instead."""
    key = live_key(target.name, target.file) if state.nested else target.name
    if target.playlist:
        view = live.playlist(key)
        if view is None:
            return None
        try:
            body, blocking = await blocking_playlist(view, state.waiters, key, request.query, live)
        except web.HTTPException as exc:
            exc.headers.update(CORS)
            raise
        headers = {**cache_headers(True), **CORS}
        headers["Cache-Control"] = cache_control(blocking, view.target_seconds())
        state.viewers.seen(target.name, viewer_address(request),
                          request.headers.get("User-Agent", ""))  # fmt: skip
    elif target.ext == "m4s":
        data = await next_part(live, state.waiters, key, target.file)
        if data is None:
            return None
        body = data
        headers = {**cache_headers(False), **CORS}
    else:
        return None
    return web.Response(body=body, headers=headers, content_type=target.content_type)


def _admin_relay(path: str, proxies: TrustedProxies) -> Any:
    """Middleware: the dashboard and the admin API are one worker's (its sessions in memory)."""

    @web.middleware
    async def relay(request: web.Request, handler: Any) -> web.StreamResponse:
        target = request.rel_url.path
        if target == "/admin" or target.startswith(("/admin/", "/api/admin/")):
            state = request.app[STATE]
            client, https = proxies.client(request), proxies.https(request)
            return await state.siblings.ask(path, request, client=client, https=https)
        response: web.StreamResponse = await handler(request)
        return response

    return relay


async def _close_siblings(app: web.Application) -> None:
    await app[STATE].siblings.close()


def _worker_header(worker: str) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    async def header(request: web.Request, response: web.StreamResponse) -> None:
        response.headers["X-Rtmpd-Worker"] = worker  # which worker answered (for operators)

    return header


async def _hls_options(request: web.Request) -> web.Response:
    """CORS preflight: the seed's nginx answers 405; browsers are better served by a 204."""
    if parse_hls_path(request.rel_url.raw_path, request.app[STATE].nested) is None:
        raise web.HTTPNotFound(headers=CORS)
    return web.Response(
        status=204,
        headers={
            **CORS,
            "Access-Control-Allow-Headers": "Range",
            "Access-Control-Max-Age": "86400",
        },
    )
