"""Suite-wide key sweep: no stream key the suite creates may show up anywhere public.

From the start of the session this records (a) every key `rtmpd.auth.keys.new_key` makes
and every API token `new_token` makes (tokens get the same care), and every other service's
stream key found in a push destination URL rtmpd parses (`rtmpd.auth.destinations.parse_url`:
the key part of `rtmp://host/app/KEY`, when it is long and varied enough to be a secret and not
a word; the tests make theirs with tests.support.push.destination_key, which records them too),
(b) every log record of every logger (a root handler at DEBUG; the root level is lowered to
DEBUG so INFO and DEBUG records reach it, logger levels set by tests and caplog still work),
(c) the status, headers and text bodies of every HTTP response an app made by
`rtmpd.web.create_app` serves, and at the end (d) every file and folder name under pytest's
basetemp plus the text of every playlist left there. When the session ends, any key or its
first 8 characters (or its first 4 followed by "…", the form logs once showed) found in any of
these fails the run with a message saying where.

Child processes (the `rtmpd` command, FFmpeg publishers) log to their own stderr: tests that
run them check that output themselves.

One deliberate, narrow exception: the two admin API answers whose job is to hand out a new key
once (routes `rtmpd.web.admin_api.KEY_ROUTES`: creating a user, rotating a key; status 200 or
201) are recorded with the value of their top-level "key" field replaced by a placeholder. The
rest of those bodies and their headers are swept as usual, and so is every other response
(errors of those routes included), so the key showing up anywhere else still fails the run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

# The real servers' fixtures (a PostgreSQL cluster per session, a database per test).
from tests.support.engines import pg_cluster, pg_url  # noqa: F401

#: What of a key counts as a leak: the whole key or this many leading characters.
PREFIX_CHARS = 8
#: Response content types whose bodies are searched (images and video are not text).
_TEXT_TYPES = ("text/", "application/json", "application/vnd.apple.mpegurl")


@dataclass(slots=True)
class SweepRecord:
    """Everything the session produced that must not hold a key."""

    keys: list[str] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)
    http: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    responses: int = 0
    keys_handed_out: int = 0  # key fields left out of the sweep (admin API, KEY_ROUTES)
    basetemp: Path | None = None
    leaks: list[str] = field(default_factory=list)
    checked: bool = False


def find_leaks(keys: Iterable[str], sources: dict[str, list[str]]) -> list[str]:
    """One line per (key, source) where the key or its first PREFIX_CHARS characters occur."""
    found = []
    joined = {name: "\n".join(texts) for name, texts in sources.items()}
    for key in dict.fromkeys(keys):
        for needle in dict.fromkeys((key, key[:PREFIX_CHARS], key[:4] + "…")):
            for name, text in joined.items():
                at = text.find(needle)
                if at >= 0:
                    context = text[max(0, at - 60) : at + len(needle) + 60].replace("\n", " | ")
                    found.append(f"key {key[:4]}… ({needle!r}) in {name}: …{context}…")
    return found


RECORD = SweepRecord()


class _RecordingHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # a bad format string still leaves its raw parts
            text = f"{record.msg!r} {record.args!r}"
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        RECORD.logs.append(f"{record.name} {record.levelname} {text}")


_HANDLER = _RecordingHandler(logging.DEBUG)
_undo: list[Callable[[], None]] = []


def _patch(obj: Any, name: str, value: Any) -> None:
    old = getattr(obj, name)
    setattr(obj, name, value)
    _undo.append(lambda: setattr(obj, name, old))


async def _record_response(request: Any, response: Any) -> None:
    RECORD.responses += 1
    RECORD.http.append(f"{response.status} {response.reason}")
    RECORD.http.extend(f"{k}: {v}" for k, v in response.headers.items())
    body = getattr(response, "body", None)  # file responses have none: their files are swept
    ctype = response.headers.get("Content-Type", "")
    if isinstance(body, bytes | bytearray) and ctype.startswith(_TEXT_TYPES):
        text = bytes(body).decode("utf-8", "replace")
        if _hands_out_a_key(request, response):
            answer = json.loads(text)
            answer["key"] = "(the new key, handed out once)"
            text = json.dumps(answer)
            RECORD.keys_handed_out += 1
        RECORD.http.append(text)


def _hands_out_a_key(request: Any, response: Any) -> bool:
    """The one answer of a key route that carries the new key: leave only that value out."""
    from rtmpd.web.admin_api import KEY_ROUTES

    route = request.match_info.route.name if request.match_info is not None else None
    return route in KEY_ROUTES and response.status in (200, 201)


def pytest_configure(config: pytest.Config) -> None:
    import rtmpd.web
    import rtmpd.web.app
    from rtmpd.auth import keys

    import rtmpd.app

    make_key = keys.new_key

    def recording_new_key() -> str:
        key: str = make_key()
        RECORD.keys.append(key)
        return key

    _patch(keys, "new_key", recording_new_key)
    make_token = keys.new_token

    def recording_new_token() -> str:
        token: str = make_token()
        RECORD.keys.append(token)
        return token

    _patch(keys, "new_token", recording_new_token)
    from rtmpd.auth import destinations

    parse_url = destinations.parse_url

    def recording_parse_url(url: str) -> Any:
        parsed = parse_url(url)
        key = parsed.stream.partition("?")[0]
        if len(key) >= 16 and len(set(key)) >= 8 and key not in RECORD.keys:
            RECORD.keys.append(key)
        return parsed

    _patch(destinations, "parse_url", recording_parse_url)
    create_app = rtmpd.web.app.create_app

    def recording_create_app(*args: Any, **kwargs: Any) -> Any:
        app = create_app(*args, **kwargs)
        app.on_response_prepare.append(_record_response)
        return app

    for module in (rtmpd.web.app, rtmpd.web, rtmpd.app):
        _patch(module, "create_app", recording_create_app)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.DEBUG)
    _undo.append(lambda: root.setLevel(level))
    root.addHandler(_HANDLER)
    # aiosqlite narrates every statement at DEBUG (digests, never keys): noise in failure
    # reports, not evidence.
    quiet = logging.getLogger("aiosqlite")
    quiet_level = quiet.level
    quiet.setLevel(logging.INFO)
    _undo.append(lambda: quiet.setLevel(quiet_level))
    _undo.append(lambda: root.removeHandler(_HANDLER))


def pytest_unconfigure(config: pytest.Config) -> None:
    while _undo:
        _undo.pop()()


@pytest.fixture(scope="session", autouse=True)
def _sweep_basetemp(tmp_path_factory: pytest.TempPathFactory) -> None:
    RECORD.basetemp = tmp_path_factory.getbasetemp()


@pytest.fixture
def sweep() -> SweepRecord:
    """The session's record, for tests of the sweep itself."""
    return RECORD


@pytest.fixture
def sweep_find_leaks() -> Callable[[Iterable[str], dict[str, list[str]]], list[str]]:
    return find_leaks


def _files(base: Path) -> tuple[list[str], list[str]]:
    names: list[str] = []
    playlists: list[str] = []
    for folder, dirs, files in os.walk(base):
        rel = os.path.relpath(folder, base)
        names.extend(os.path.join(rel, n) for n in dirs + files)
        for name in files:
            if name.endswith(".m3u8"):
                with contextlib.suppress(OSError):  # removed by cleanup meanwhile
                    playlists.append(Path(folder, name).read_text(errors="replace"))
    return names, playlists


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if RECORD.basetemp is not None and RECORD.basetemp.exists():
        RECORD.files, playlists = _files(RECORD.basetemp)
    else:
        playlists = []
    RECORD.leaks = find_leaks(
        RECORD.keys,
        {
            "log records": RECORD.logs,
            "HTTP responses": RECORD.http,
            "file names": RECORD.files,
            "playlists": playlists,
        },
    )
    RECORD.checked = True
    if RECORD.leaks:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RECORD.checked:
        return
    summary = (
        f"key sweep: {len(RECORD.keys)} keys against {len(RECORD.logs)} log records, "
        f"{RECORD.responses} HTTP responses ({RECORD.keys_handed_out} key fields handed out "
        f"by the admin API left out), {len(RECORD.files)} file names"
    )
    if RECORD.leaks:
        terminalreporter.section("stream keys leaked", sep="=", red=True, bold=True)
        for line in RECORD.leaks[:50]:
            terminalreporter.line(line)
        terminalreporter.line(f"{summary}: {len(RECORD.leaks)} leak(s), the run fails")
    else:
        terminalreporter.line(f"{summary}: none found")
