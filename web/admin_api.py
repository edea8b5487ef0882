"""The management API under /api/admin/: users (keys handed out once), live publishes (stats,
health, kick), JSON in and out, errors as {"error": ...}.

Every request under /api/admin/ is authenticated before routing, so without a valid token the
answer is 401 whatever the path, and nothing tells which users or routes exist. A request
carries `Authorization: Bearer <token>` (API clients), or the dashboard's session cookie plus
its CSRF token for anything but GET. Push destinations hang off their user
(`/api/admin/users/{name}/destinations`): their URLs carry other services' keys, so an answer
only ever shows them redacted, the one that creates one included.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from aiohttp import web

from .admin import (
    Admin,
    AdminError,
    DestinationInfo,
    HealthSample,
    NewKey,
    Principal,
    PublishInfo,
    PushInfo,
    Refused,
    UserInfo,
)
from .admin_peers import PRIVATE, Peers
from .proxies import TrustedProxies
from .sessions import COOKIE, Sessions, csrf_ok
from .siblings import private

PREFIX = "/api/admin/"
#: Routes whose one successful answer carries a new stream key (rtmpd never shows it again).
KEY_ROUTES = frozenset({"admin_user_create", "admin_user_rotate"})
PRINCIPAL = web.RequestKey("rtmpd_admin_principal", Principal)
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
_NO_STORE = {"Cache-Control": "no-store"}
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="rtmpd admin"'}


Page = Callable[[web.Request, str, dict[str, Any], int], web.Response]


@dataclass(slots=True)
class AdminState:
    admin: Admin
    sessions: Sessions
    proxies: TrustedProxies
    #: Codec facts of a live stream for the publish view (the Directory's `stats`).
    media: Callable[[str], dict[str, Any]]
    #: Renders a page with the admin pages' Content-Security-Policy (web/app.py).
    page: Page
    #: As rtmpd worker N: its number ("" for one process), and the other workers to ask for
    #: their publishes (web/admin_peers.py).
    worker: str = ""
    peers: Peers | None = None


ADMIN = web.AppKey("rtmpd_admin_state", AdminState)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def add_routes(app: web.Application, state: AdminState) -> None:
    app[ADMIN] = state
    r = app.router
    r.add_get("/api/admin/users", _users, name="admin_users", allow_head=False)
    r.add_post("/api/admin/users", _create, name="admin_user_create")
    r.add_get("/api/admin/users/{name}", _user, name="admin_user", allow_head=False)
    r.add_delete("/api/admin/users/{name}", _remove, name="admin_user_remove")
    r.add_post("/api/admin/users/{name}/ban", _ban, name="admin_user_ban")
    r.add_post("/api/admin/users/{name}/unban", _unban, name="admin_user_unban")
    r.add_post("/api/admin/users/{name}/rotate-key", _rotate, name="admin_user_rotate")
    r.add_get("/api/admin/users/{name}/destinations", _destinations,
              name="admin_destinations", allow_head=False)  # fmt: skip
    r.add_post("/api/admin/users/{name}/destinations", _add_destination,
               name="admin_destination_add")  # fmt: skip
    r.add_delete("/api/admin/users/{name}/destinations/{id}", _remove_destination,
                 name="admin_destination_remove")  # fmt: skip
    r.add_get("/api/admin/publishes", _publishes, name="admin_publishes", allow_head=False)
    r.add_get("/api/admin/publishes/{name}", _publish, name="admin_publish", allow_head=False)
    r.add_delete("/api/admin/publishes/{name}", _kick, name="admin_publish_kick")
    r.add_get("/api/admin/publishes/{name}/health", _health, name="admin_publish_health",
              allow_head=False)  # fmt: skip
    # Another worker asking for this one's own publishes (its private socket only).
    r.add_get(PRIVATE, _own_publishes, name="worker_publishes", allow_head=False)
    r.add_delete(PRIVATE + "/{name}", _own_kick, name="worker_publish_kick")
    r.add_get(PRIVATE + "/{name}/health", _own_health, name="worker_publish_health",
              allow_head=False)  # fmt: skip


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# -- authentication ---------------------------------------------------------------------------


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authenticate everything under /api/admin/ before the route is looked at; turn
    `AdminError`s into their JSON answers."""
    path = request.path
    if not (path.startswith(PREFIX) or path == PREFIX.rstrip("/")) or ADMIN not in request.app:
        return await handler(request)
    state = request.app[ADMIN]
    try:
        request[PRINCIPAL] = await _principal(request, state)
        return await handler(request)
    except AdminError as exc:
        return web.json_response({"error": str(exc)}, status=exc.status, headers=_NO_STORE)


async def _principal(request: web.Request, state: AdminState) -> Principal:
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise web.HTTPUnauthorized(reason="a valid API token is required", headers=_CHALLENGE)
        found = await state.admin.authenticate(token.strip(), state.proxies.client(request))
        if found is Refused.RATE_LIMITED:
            raise web.HTTPTooManyRequests(reason="too many failed attempts")
        if not isinstance(found, Principal):
            raise web.HTTPUnauthorized(reason="a valid API token is required", headers=_CHALLENGE)
        return found
    session = state.sessions.get(request.cookies.get(COOKIE))
    if session is None or not await state.admin.still_valid(session.principal):
        raise web.HTTPUnauthorized(reason="a valid API token is required", headers=_CHALLENGE)
    checked = same_origin(request) and csrf_ok(session, request.headers.get("X-CSRF-Token"))
    if request.method not in _SAFE and not checked:
        raise web.HTTPForbidden(reason="missing or wrong CSRF token")
    return session.principal


def same_origin(request: web.Request) -> bool:
    """A cookie-carrying change must come from our own pages: an Origin (or, without one, a
    Referer) naming this host. Browsers send Origin with every cross-site POST or DELETE."""
    source = request.headers.get("Origin") or request.headers.get("Referer")
    if source is None:
        return False
    scheme, sep, rest = source.partition("://")
    return bool(sep) and rest.split("/", 1)[0] == request.host


# -- JSON -------------------------------------------------------------------------------------


def user_json(user: UserInfo) -> dict[str, Any]:
    return {
        "name": user.name,
        "active": user.active,
        "live": user.live_since is not None,
        "live_since": iso(user.live_since),
        "created": iso(user.created),
        "last_publish_end": iso(user.last_publish_end),
        "channel_url": f"/{user.name}",
    }


def sample_json(sample: HealthSample) -> dict[str, Any]:
    return {
        "t": round(sample.t, 3),
        "kbps": sample.kbps,
        "fps": sample.fps,
        "keyframe_interval": sample.keyframe_interval,
        "segment_lag": sample.segment_lag,
    }


def publish_json(state: AdminState, live: PublishInfo) -> dict[str, Any]:
    latest = live.latest
    return {
        "name": live.name,
        "since": iso(live.since),
        "peer": live.peer,
        "bytes_received": live.bytes_received,
        "ingest_kbps": latest.kbps if latest else None,
        "fps": latest.fps if latest else None,
        "keyframe_interval": latest.keyframe_interval if latest else None,
        "segment_lag": latest.segment_lag if latest else None,
        "segment_duration": live.segment_duration,
        "fragment": live.fragment,
        "warnings": list(live.warnings),
        "destinations": [push_json(p) for p in live.destinations],
        **state.media(live.name),
        "worker": state.worker or None,
    }


def push_json(push: PushInfo) -> dict[str, Any]:
    return {
        "id": push.destination_id,
        "url": push.url,
        "connected": push.connected,
        "kbps": push.kbps,
        "dropped": push.dropped,
        "last_error": push.last_error,
    }


def destination_json(dest: DestinationInfo) -> dict[str, Any]:
    return {
        "id": dest.destination_id,
        "url": dest.url,
        "created": iso(dest.created),
        "live": push_json(dest.live) if dest.live is not None else None,
    }


def _key_json(made: NewKey) -> dict[str, Any]:
    return {"user": user_json(made.user), "key": made.key}


async def _json_object(request: web.Request, allowed: frozenset[str]) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(reason="send JSON (Content-Type: application/json)")
    try:
        data = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise web.HTTPBadRequest(reason="the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(reason="the body must be a JSON object")
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise web.HTTPBadRequest(reason="unknown field in the body")
    return data


def _ok(data: Any, status: int = 200, **headers: str) -> web.Response:
    return web.json_response(data, status=status, headers={**_NO_STORE, **headers})


def _state(request: web.Request) -> AdminState:
    return request.app[ADMIN]


# -- users ------------------------------------------------------------------------------------


async def _users(request: web.Request) -> web.Response:
    users = await _state(request).admin.users()
    return _ok({"users": [user_json(u) for u in users]})


async def _create(request: web.Request) -> web.Response:
    data = await _json_object(request, frozenset({"name"}))
    name = data.get("name")
    if not isinstance(name, str):
        raise web.HTTPBadRequest(reason="name: a string is required")
    made = await _state(request).admin.create_user(name)
    return _ok(_key_json(made), 201, Location=f"/api/admin/users/{made.user.name}")


async def _user(request: web.Request) -> web.Response:
    return _ok(user_json(await _state(request).admin.user(request.match_info["name"])))


async def _remove(request: web.Request) -> web.Response:
    await _state(request).admin.remove(request.match_info["name"])
    return web.Response(status=204, headers=_NO_STORE)


async def _ban(request: web.Request) -> web.Response:
    return _ok(user_json(await _state(request).admin.ban(request.match_info["name"])))


async def _unban(request: web.Request) -> web.Response:
    return _ok(user_json(await _state(request).admin.unban(request.match_info["name"])))


async def _rotate(request: web.Request) -> web.Response:
    return _ok(_key_json(await _state(request).admin.rotate_key(request.match_info["name"])))


# -- push destinations ------------------------------------------------------------------------


async def _destinations(request: web.Request) -> web.Response:
    found = await _state(request).admin.destinations(request.match_info["name"])
    return _ok({"destinations": [destination_json(d) for d in found]})


async def _add_destination(request: web.Request) -> web.Response:
    data = await _json_object(request, frozenset({"url"}))
    url = data.get("url")
    if not isinstance(url, str):
        raise web.HTTPBadRequest(reason="url: a string is required")
    name = request.match_info["name"]
    made = await _state(request).admin.add_destination(name, url)
    where = f"/api/admin/users/{name}/destinations/{made.destination_id}"
    return _ok(destination_json(made), 201, Location=where)


async def _remove_destination(request: web.Request) -> web.Response:
    try:
        destination_id = int(request.match_info["id"])
    except ValueError:
        raise web.HTTPNotFound(reason="no such destination") from None
    await _state(request).admin.remove_destination(request.match_info["name"], destination_id)
    return web.Response(status=204, headers=_NO_STORE)


# -- live publishes ---------------------------------------------------------------------------
#
# With rtmpd workers, each holds its own publishes: the list, one publish, its health and a kick
# are also asked of the others (web/admin_peers.py).


def _own(state: AdminState) -> list[dict[str, Any]]:
    return [publish_json(state, p) for p in state.admin.publishes()]


async def _every_publish(state: AdminState) -> tuple[list[dict[str, Any]], list[str]]:
    """This worker's publishes and the others', the newest per name (a publish taken over on
    another worker lingers until its end), by name; and the workers that did not answer."""
    found, missing = _own(state), list[str]()
    if state.peers is not None:
        answers, missing = await state.peers.ask("GET", PRIVATE)
        for status, body in answers:
            listed = body.get("publishes") if status == 200 and isinstance(body, dict) else None
            for live in listed if isinstance(listed, list) else ():
                if isinstance(live, dict) and isinstance(live.get("name"), str):
                    found.append(live)
    newest: dict[str, dict[str, Any]] = {}
    for live in found:
        held = newest.get(live["name"])
        if held is None or str(live.get("since")) >= str(held.get("since")):
            newest[live["name"]] = live
    return [newest[name] for name in sorted(newest)], missing


def _not_live(missing: list[str]) -> web.HTTPException:
    """Not live here nor on the workers that answered: 404, or 503 if one did not answer."""
    if missing:
        reason = f"not live on the workers that answered; worker {', '.join(missing)} did not"
        return web.HTTPServiceUnavailable(reason=reason)
    return web.HTTPNotFound(reason="not live")


def _peer_url(name: str, tail: str = "") -> str:
    return f"{PRIVATE}/{quote(name, safe='')}{tail}"


async def _publishes(request: web.Request) -> web.Response:
    found, missing = await _every_publish(_state(request))
    return _ok({"publishes": found, "unanswered_workers": missing})


async def _publish(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    state = _state(request)
    for own in state.admin.publishes():
        if own.name == name:
            return _ok(publish_json(state, own))
    found, missing = await _every_publish(state) if state.peers else ([], [])
    for live in found:
        if live["name"] == name:
            return _ok(live)
    raise _not_live(missing)


async def _kick(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    state = _state(request)
    missing: list[str] = []
    if not state.admin.kick(name):
        if state.peers is None:
            raise _not_live(missing)
        answers, missing = await state.peers.ask("DELETE", _peer_url(name))
        if not any(status == 204 for status, _ in answers):
            raise _not_live(missing)
    return web.Response(status=204, headers=_NO_STORE)


async def _health(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    state = _state(request)
    samples = state.admin.history(name)
    if samples is not None:
        return _ok(_health_json(name, samples))
    missing: list[str] = []
    if state.peers is not None:
        answers, missing = await state.peers.ask("GET", _peer_url(name, "/health"))
        for status, body in answers:
            if status == 200 and isinstance(body, dict):
                return _ok(body)
    raise _not_live(missing)


def _health_json(name: str, samples: list[HealthSample]) -> dict[str, Any]:
    return {"name": name, "interval": 1.0, "samples": [sample_json(s) for s in samples]}


# -- this worker's own publishes, for the worker answering the admin API ----------------------


def _private_state(request: web.Request) -> AdminState:
    if not private(request):  # the public port has no such route
        raise web.HTTPNotFound()
    return _state(request)


async def _own_publishes(request: web.Request) -> web.Response:
    return _ok({"publishes": _own(_private_state(request))})


async def _own_kick(request: web.Request) -> web.Response:
    if not _private_state(request).admin.kick(request.match_info["name"]):
        raise web.HTTPNotFound(reason="not live")
    return web.Response(status=204, headers=_NO_STORE)


async def _own_health(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    samples = _private_state(request).admin.history(name)
    if samples is None:
        raise web.HTTPNotFound(reason="not live")
    return _ok(_health_json(name, samples))
