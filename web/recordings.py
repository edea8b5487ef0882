"""Past broadcasts over HTTP: their files under /recordings/, the public list in the stream API,
and the admin API's list and removal (under /api/admin/, so authenticated by its guard).

The recordings come from a `Recordings` object the composition root hands to `create_app`
(rtmpd.hls.recorder's `Recorder` fits it as it is); web never imports hls. Files are served
like live HLS files (web/hlsfiles.py: the raw path checked against strict patterns, the file
resolved inside the recordings folder, ETag, ranges, conditional requests, the send timeout),
so the MP4 downloads and seeks by range. URLs carry the public name and the recording's id,
never a key: `/recordings/<name>/<id>/index.m3u8`, `.../recording.mp4`, `.../thumb.jpg`.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from .hlsfiles import CORS, NAME, HlsTarget, Sending, serve_file

#: As rtmpd.hls.recording writes them.
ID = r"\d{8}-\d{6}(?:-\d{1,4})?"
_FILE = r"(?:index\.m3u8|\d{5,9}\.(?:ts|m4s)|init\d{1,6}\.mp4|recording\.mp4|thumb\.jpg)"
_PATH = re.compile(rf"/recordings/(?P<name>{NAME})/(?P<id>{ID})/(?P<file>{_FILE})")
_ID = re.compile(ID)
_NAME = re.compile(NAME)
_API_HEADERS = {"Cache-Control": "no-cache", "Access-Control-Allow-Origin": "*"}
_NO_STORE = {"Cache-Control": "no-store"}


class Recording(Protocol):
    """One recording, as the web shows it."""

    @property
    def name(self) -> str: ...
    @property
    def id(self) -> str: ...
    @property
    def started_at(self) -> float: ...
    @property
    def ended_at(self) -> float | None: ...
    @property
    def duration_ms(self) -> int: ...
    @property
    def bytes(self) -> int: ...
    @property
    def discontinuities(self) -> int: ...
    @property
    def lost(self) -> int: ...
    @property
    def mp4(self) -> bool: ...
    @property
    def mp4_error(self) -> str | None: ...
    @property
    def thumbnail(self) -> bool: ...
    @property
    def stopped(self) -> str | None: ...
    @property
    def recording(self) -> bool: ...


class Recordings(Protocol):
    """The recordings on this server; called on the event loop, must be quick."""

    @property
    def root(self) -> Path:
        """The folder holding <name>/<id>/ of every recording."""
        ...

    def recordings(self, name: str | None = None) -> Sequence[Recording]:
        """Of `name` (None: all), newest first, those being recorded included."""
        ...

    def remove(self, name: str, rec_id: str) -> bool:
        """Remove a finished one; False if there is none, ValueError while it records."""
        ...


@dataclass(slots=True)
class RecordingsState:
    recordings: Recordings | None
    sending: Sending
    #: Whether a channel exists (the Directory's `channel`), for the API's 404.
    exists: Callable[[str], Awaitable[bool]]


RECORDINGS = web.AppKey("rtmpd_recordings_state", RecordingsState)


def add_routes(app: web.Application, state: RecordingsState, *, admin: bool) -> None:
    app[RECORDINGS] = state
    r = app.router
    r.add_get(f"/api/streams/{{name:{NAME}}}/recordings", _api_list, name="api_recordings")
    r.add_get("/recordings/{tail:.*}", _file, name="recording_file")
    if admin:
        r.add_get("/api/admin/recordings", _admin_all, name="admin_recordings",
                  allow_head=False)  # fmt: skip
        r.add_get("/api/admin/recordings/{name}", _admin_list, name="admin_recordings_of",
                  allow_head=False)  # fmt: skip
        r.add_delete("/api/admin/recordings/{name}/{id}", _admin_remove,
                     name="admin_recording_remove")  # fmt: skip


def past(app: web.Application, name: str) -> list[dict[str, Any]]:
    """The finished recordings of `name`, newest first, as the API shows them (channel page)."""
    found = app[RECORDINGS].recordings
    if found is None:
        return []
    return [recording_json(r) for r in found.recordings(name) if not r.recording]


def recording_json(r: Recording) -> dict[str, Any]:
    base = f"/recordings/{r.name}/{r.id}/"
    return {
        "id": r.id,
        "name": r.name,
        "started_at": _iso(r.started_at),
        "ended_at": _iso(r.ended_at),
        "duration_seconds": round(r.duration_ms / 1000, 3),
        "bytes": r.bytes,
        "recording": r.recording,
        "playlist_url": base + "index.m3u8",
        "mp4_url": base + "recording.mp4" if r.mp4 else None,
        "thumbnail_url": base + "thumb.jpg" if r.thumbnail else None,
        "discontinuities": r.discontinuities,
        "lost_segments": r.lost,
    }


def _admin_json(r: Recording) -> dict[str, Any]:
    return {**recording_json(r), "mp4_error": r.mp4_error, "stopped": r.stopped}


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


async def _api_list(request: web.Request) -> web.Response:
    state = request.app[RECORDINGS]
    name = request.match_info["name"]
    if not await state.exists(name):
        raise web.HTTPNotFound(reason="Unknown channel")
    return web.json_response({"recordings": past(request.app, name)}, headers=_API_HEADERS)


async def _file(request: web.Request) -> web.StreamResponse:
    state = request.app[RECORDINGS]
    m = _PATH.fullmatch(request.rel_url.raw_path)
    if m is None or state.recordings is None:
        raise web.HTTPNotFound(headers=CORS)
    file = m["file"]
    ext = file.rsplit(".", 1)[1]
    target = HlsTarget(m["name"], f"{m['name']}/{m['id']}/{file}", ext == "m3u8", ext)
    return await serve_file(request, state.recordings.root, target, state.sending)


def _all(request: web.Request, name: str | None) -> list[dict[str, Any]]:
    found = request.app[RECORDINGS].recordings
    return [] if found is None else [_admin_json(r) for r in found.recordings(name)]


async def _admin_all(request: web.Request) -> web.Response:
    return web.json_response({"recordings": _all(request, None)}, headers=_NO_STORE)


async def _admin_list(request: web.Request) -> web.Response:
    if not _NAME.fullmatch(request.match_info["name"]):
        raise web.HTTPNotFound(reason="no such channel")
    return web.json_response(
        {"recordings": _all(request, request.match_info["name"])}, headers=_NO_STORE
    )


async def _admin_remove(request: web.Request) -> web.Response:
    found = request.app[RECORDINGS].recordings
    name, rec_id = request.match_info["name"], request.match_info["id"]
    if found is None or not _ID.fullmatch(rec_id):
        raise web.HTTPNotFound(reason="no such recording")
    try:
        removed = found.remove(name, rec_id)
    except ValueError as exc:
        raise web.HTTPConflict(reason=str(exc)) from None
    if not removed:
        raise web.HTTPNotFound(reason="no such recording")
    return web.Response(status=204, headers=_NO_STORE)
