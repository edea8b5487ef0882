"""The admin dashboard at /admin: sign in with an API token, then live streams with their
graphs, kick and ban, and users with key rotation (web/static/admin.js, over /api/admin/).

Sign-in trades the token for a session (web/sessions.py): a fresh random id in a cookie that
is HttpOnly and SameSite=Strict, and `Secure` when the browser's request came over https (to
rtmpd, or to a trusted proxy that says so in X-Forwarded-Proto). Sign-in and sign-out are
same-origin POSTs (checked by Origin or Referer), sign-out also carries the CSRF token.
"""

from __future__ import annotations

from aiohttp import web

from .admin import Principal, Refused
from .admin_api import ADMIN, same_origin
from .sessions import COOKIE, csrf_ok

LOGIN_PROBLEMS = {
    Refused.INVALID: "That token is not valid.",
    Refused.RATE_LIMITED: "Too many failed attempts from your address; try again later.",
}


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/admin", _dashboard, name="admin")
    r.add_post("/admin/login", _login, name="admin_login")
    r.add_post("/admin/logout", _logout, name="admin_logout")


async def _dashboard(request: web.Request) -> web.Response:
    state = request.app[ADMIN]
    session = state.sessions.get(request.cookies.get(COOKIE))
    if session is not None and await state.admin.still_valid(session.principal):
        context = {"csrf": session.csrf, "who": session.principal.name}
        return state.page(request, "admin.html", context, 200)
    return state.page(request, "admin_login.html", {"problem": None}, 200)


async def _login(request: web.Request) -> web.Response:
    state = request.app[ADMIN]
    if not same_origin(request):
        raise web.HTTPForbidden(reason="cross-site sign-in refused")
    form = await request.post()
    token = form.get("token")
    found: Principal | Refused = Refused.INVALID
    if isinstance(token, str) and token.strip():
        found = await state.admin.authenticate(token.strip(), state.proxies.client(request))
    if not isinstance(found, Principal):
        status = 429 if found is Refused.RATE_LIMITED else 401
        return state.page(request, "admin_login.html", {"problem": LOGIN_PROBLEMS[found]}, status)
    state.sessions.close(request.cookies.get(COOKIE))
    sid, _ = state.sessions.open(found)
    response = web.Response(status=303, headers={"Location": "/admin"})
    response.set_cookie(COOKIE, sid, path="/", httponly=True, samesite="Strict",
                        secure=state.proxies.https(request))  # fmt: skip
    return response


async def _logout(request: web.Request) -> web.Response:
    state = request.app[ADMIN]
    sid = request.cookies.get(COOKIE)
    session = state.sessions.get(sid)
    form = await request.post()
    csrf = form.get("csrf")
    if session is not None:
        if not same_origin(request) or not csrf_ok(
            session, csrf if isinstance(csrf, str) else None
        ):
            raise web.HTTPForbidden(reason="missing or wrong CSRF token")
        state.sessions.close(sid)
    response = web.Response(status=303, headers={"Location": "/admin"})
    response.del_cookie(COOKIE, path="/")
    return response
