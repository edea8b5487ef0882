"""HLS delivery with the seed's nginx semantics, and nothing outside the HLS folder reachable.

URLs are checked against strict patterns on the *raw* path (before any percent-decoding), so
`..`, `%2e%2e`, `%2f`, backslashes and NUL never match; the file is then resolved (symlinks
followed) and must still lie inside the folder. Headers follow nginx 1.22 with the seed's
`expires max` (segments) / `expires -1d` (playlists) and its two `add_header` CORS lines:
ETag is nginx's "<mtime hex>-<size hex>", single byte ranges give 206/416, If-None-Match,
If-Modified-Since, If-Match, If-Unmodified-Since and If-Range are honoured. File work runs in a
worker thread and bodies go out with loop.sendfile, as aiohttp's FileResponse does; this module
does not use FileResponse itself because its ETag format and If-Range handling differ from nginx.
A body goes out in chunks of `SEND_CHUNK` bytes, each of which the client must take within the
send timeout (or its connection is reset: see guard.py), so a client that stops reading cannot
hold a connection and an open file for as long as it likes.
"""

from __future__ import annotations

import asyncio
import os
import re
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path
from typing import BinaryIO

from aiohttp import web

#: Channel names as rtmpd.auth allows them: public names are [a-z0-9_], nginx-style ones add A-Z -
NAME = r"[A-Za-z0-9_-]{1,64}"
FRAGMENT = r"[A-Za-z0-9_-]{1,100}"
_NESTED = re.compile(rf"/live/(?P<name>{NAME})/(?P<file>{FRAGMENT}\.(?P<ext>m3u8|ts|m4s|mp4))")
# Flat layout: <name>.m3u8 and <name>-<fragment>.ts; a name may hold "-" too, so segments are
# only checked as a whole (their name part is not needed: viewers are counted on playlists).
_FLAT = re.compile(rf"/live/(?P<file>(?P<name>{FRAGMENT})\.(?P<ext>m3u8|ts|m4s|mp4))")

PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
SEGMENT_TYPE = "video/mp2t"
#: By extension: MPEG-TS segments, fMP4 media segments and parts, fMP4 init segments (and a
#: recording's MP4 and thumbnail: web/recordings.py).
CONTENT_TYPES = {"ts": SEGMENT_TYPE, "m4s": "video/iso.segment", "mp4": "video/mp4",
                 "jpg": "image/jpeg"}  # fmt: skip
EXPIRES_MAX = "Thu, 31 Dec 2037 23:55:55 GMT"  # nginx `expires max`
#: Bytes handed to sendfile at once; the client must take each chunk within the send timeout.
SEND_CHUNK = 256 * 1024
CORS = {"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": "GET"}


@dataclass(frozen=True, slots=True)
class HlsTarget:
    """A validated request: the channel name and the file path relative to the HLS folder."""

    name: str
    relpath: str
    playlist: bool
    ext: str = "ts"

    @property
    def file(self) -> str:
        """The last path component: what the playlist lists."""
        return self.relpath.rsplit("/", 1)[-1]

    @property
    def content_type(self) -> str:
        return PLAYLIST_TYPE if self.playlist else CONTENT_TYPES[self.ext]


def parse_hls_path(raw_path: str, nested: bool) -> HlsTarget | None:
    """Match a raw (still percent-encoded) URL path against the layout; None if it does not fit."""
    m = (_NESTED if nested else _FLAT).fullmatch(raw_path)
    if m is None:
        return None
    ext = m["ext"]
    playlist = ext == "m3u8"
    if nested:
        return HlsTarget(m["name"], f"{m['name']}/{m['file']}", playlist, ext)
    if not playlist and "-" not in m["name"]:
        return None  # a flat segment is always <name>-<fragment>.<ext>
    return HlsTarget(m["name"], m["file"], playlist, ext)


def cache_headers(playlist: bool, now: float | None = None) -> dict[str, str]:
    """nginx `expires -1d` for playlists, `expires max` for segments."""
    if playlist:
        now = time.time() if now is None else now
        return {
            "Expires": formatdate(now - 86400, usegmt=True),
            "Cache-Control": "no-cache",
        }
    return {"Expires": EXPIRES_MAX, "Cache-Control": "max-age=315360000"}


@dataclass(slots=True)
class _Opened:
    file: BinaryIO
    size: int
    mtime: int


def _open_inside(root: Path, relpath: str) -> _Opened | None:
    """Open root/relpath for reading if it is a regular file inside root (runs in a thread)."""
    try:
        real = (root / relpath).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not real.is_relative_to(root):
        return None  # a symlink pointing out of the HLS folder
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        return None
    return _Opened(os.fdopen(fd, "rb"), st.st_size, int(st.st_mtime))


#: An HTTP-date is 29 characters; anything much longer is not one (and is not parsed).
_MAX_DATE_CHARS = 64
#: nginx's NGX_MAX_OFF_T_VALUE: a range number past it is unsatisfiable (nginx: 416).
MAX_OFFSET = 2**63 - 1


def _http_date(value: str | None) -> float | None:
    if not value or len(value) > _MAX_DATE_CHARS:
        return None
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _etags(value: str) -> list[str]:
    """Entity tags of an If-Match/If-None-Match list, weakness stripped ("*" kept)."""
    tags = []
    for part in value.split(","):
        part = part.strip()
        if part.startswith("W/"):
            part = part[2:]
        if part:
            tags.append(part)
    return tags


_RANGE = re.compile(r"bytes=\s*(\d*)\s*-\s*(\d*)\s*", re.ASCII | re.IGNORECASE)


def parse_range(value: str, size: int) -> tuple[int, int] | None | bool:
    """(start, end inclusive) for one satisfiable range; False if unsatisfiable; None: ignore.

    Like nginx: a malformed bytes= value or a range past the end is unsatisfiable (416); other
    units and multiple ranges are ignored (full 200), which RFC 9110 allows.
    """
    if not value.lower().startswith("bytes=") or "," in value:
        return None
    m = _RANGE.fullmatch(value)
    if m is None or (not m[1] and not m[2]):
        return False
    if not m[1]:
        suffix = _offset(m[2])
        if not suffix:
            return False
        return (max(0, size - suffix), size - 1)
    start = _offset(m[1])
    end = _offset(m[2]) if m[2] else size - 1
    if start is None or end is None or start >= size or end < start:
        return False
    return (start, min(end, size - 1))


def _offset(digits: str) -> int | None:
    """A range number, None past MAX_OFFSET. Checked before int(): Python refuses to convert
    more than 4,300 digits (a ValueError, which was a 500), and nginx answers 416."""
    digits = digits.lstrip("0") or "0"
    if len(digits) > len(str(MAX_OFFSET)):
        return None
    number = int(digits)
    return number if number <= MAX_OFFSET else None


class SendTimeout(ConnectionResetError):
    """The client took no chunk within the send timeout; its connection was reset."""


@dataclass(frozen=True, slots=True)
class Sending:
    """How bodies go out: seconds each chunk may take, what resets a client that stalls, and
    what counts a client that went away."""

    timeout: float
    stalled: Callable[[asyncio.BaseTransport], None]
    gone: Callable[[], None]


async def serve_file(
    request: web.Request, root: Path, target: HlsTarget, sending: Sending
) -> web.StreamResponse:
    """Answer GET/HEAD for a validated target: 200, 206, 304, 412, 416 or 404."""
    loop = asyncio.get_running_loop()
    opened = await loop.run_in_executor(None, _open_inside, root, target.relpath)
    if opened is None:
        raise web.HTTPNotFound(headers=CORS)
    try:
        return await _respond(request, opened, target.playlist, sending, target.content_type)
    finally:
        opened.file.close()


async def _respond(
    request: web.Request, f: _Opened, playlist: bool, sending: Sending, content_type: str
) -> web.StreamResponse:
    etag = f'"{f.mtime:x}-{f.size:x}"'
    headers = {
        "Last-Modified": formatdate(f.mtime, usegmt=True),
        "ETag": etag,
        **cache_headers(playlist),
        **CORS,
    }
    status = _precondition(request, etag, f.mtime)
    if status == 412:
        return web.Response(status=412, headers=CORS)
    if status == 304:
        response = web.StreamResponse(status=304, headers=headers)
        return await _write(request, response, f, 0, 0, sending)
    offset, count = 0, f.size
    rng = request.headers.get("Range")
    if rng is not None and f.size > 0 and _if_range_holds(request, etag, f.mtime):
        parsed = parse_range(rng, f.size)
        if parsed is False:
            del headers["Last-Modified"], headers["ETag"]
            headers["Content-Range"] = f"bytes */{f.size}"
            return web.Response(status=416, text="416: Range Not Satisfiable", headers=headers)
        if isinstance(parsed, tuple):
            offset, count = parsed[0], parsed[1] - parsed[0] + 1
            headers["Content-Range"] = f"bytes {parsed[0]}-{parsed[1]}/{f.size}"
    if "Content-Range" not in headers:
        headers["Accept-Ranges"] = "bytes"
    response = web.StreamResponse(status=206 if "Content-Range" in headers else 200)
    response.headers.update(headers)
    response.content_type = content_type
    response.content_length = count
    return await _write(request, response, f, offset, count, sending)


async def _write(
    request: web.Request,
    response: web.StreamResponse,
    f: _Opened,
    offset: int,
    count: int,
    sending: Sending,
) -> web.StreamResponse:
    """Headers, then `count` bytes of the file from `offset`. A client that goes away meanwhile
    (a player seeking or switching quality, a load tool stopping) is normal: the response is
    returned as far as it got, and aiohttp, seeing the connection gone, writes nothing more."""
    try:
        writer = await response.prepare(request)
        if count and request.method != "HEAD" and writer is not None:
            transport = request.transport
            if transport is None:
                raise ConnectionResetError("client went away")
            await _send(transport, f.file, offset, count, sending)
            writer.output_size += count  # so the access log's %b counts what sendfile sent
        await response.write_eof()
    except SendTimeout:
        pass  # counted and logged as a send timeout
    except ConnectionError:
        sending.gone()
    return response


async def _send(
    transport: asyncio.Transport, file: BinaryIO, offset: int, count: int, sending: Sending
) -> None:
    """sendfile in chunks, each under the send timeout; a chunk not taken in time resets the
    connection (sendfile itself would wait for the client forever)."""
    loop = asyncio.get_running_loop()
    end = offset + count
    while offset < end:
        if transport.is_closing():  # sendfile would raise RuntimeError
            raise ConnectionResetError("the connection is closing")
        try:
            async with asyncio.timeout(sending.timeout):
                offset += await loop.sendfile(
                    transport, file, offset, min(SEND_CHUNK, end - offset)
                )
        except TimeoutError:
            sending.stalled(transport)
            raise SendTimeout("the client stopped reading") from None


def _precondition(request: web.Request, etag: str, mtime: int) -> int:
    """412, 304 or 200 from the conditional headers, in RFC 9110 section 13.2.2 order."""
    if_match = request.headers.get("If-Match")
    if if_match is not None:
        tags = _etags(if_match)
        if "*" not in tags and etag not in tags:
            return 412
    else:
        since = _http_date(request.headers.get("If-Unmodified-Since"))
        if since is not None and mtime > since:
            return 412
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match is not None:
        tags = _etags(if_none_match)
        return 304 if "*" in tags or etag in tags else 200
    since = _http_date(request.headers.get("If-Modified-Since"))
    if since is not None and mtime <= since:
        return 304
    return 200


def _if_range_holds(request: web.Request, etag: str, mtime: int) -> bool:
    """No If-Range, or one naming this very version (strong ETag or exact date)."""
    value = request.headers.get("If-Range")
    if value is None:
        return True
    value = value.strip()
    if value.startswith('"'):
        return value == etag
    return _http_date(value) == mtime
