"""HLS delivery: nginx's headers for the seed's server block, ranges, conditionals, and no way out
of the HLS folder."""

from __future__ import annotations

import asyncio
import logging
import os
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest

from tests.support.web import raw_get, raw_request, serve

# 2024-01-02 03:04:05 UTC: the reference nginx 1.22 (shared/reference/nginx-rtmp.sh, the seed's
# server block) answered for a 1000-byte segment with this mtime: ETag "65937d25-3e8".
MTIME = 1704164645
SEGMENT = bytes(range(256)) * 3 + bytes(232)  # 1000 bytes, every offset distinguishable
PLAYLIST = b"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.000,\n1.ts\n"

# Header names nginx sent (Server, Date and Connection left out), per status.
NGINX_200 = {
    "content-type", "content-length", "last-modified", "etag", "expires", "cache-control",
    "access-control-allow-origin", "access-control-allow-methods", "accept-ranges",
}  # fmt: skip
NGINX_206 = NGINX_200 - {"accept-ranges"} | {"content-range"}
NGINX_304 = {
    "last-modified", "etag", "expires", "cache-control",
    "access-control-allow-origin", "access-control-allow-methods",
}  # fmt: skip
NGINX_416 = {
    "content-type", "content-length", "expires", "cache-control", "content-range",
    "access-control-allow-origin", "access-control-allow-methods",
}  # fmt: skip


def names(headers: object) -> set[str]:
    return {k.lower() for k in headers} - {"date", "server", "connection"}  # type: ignore[attr-defined]


@pytest.fixture
def hls(tmp_path: Path) -> Path:
    root = tmp_path / "hls"
    (root / "benw").mkdir(parents=True)
    (root / "benw" / "index.m3u8").write_bytes(PLAYLIST)
    segment = root / "benw" / "1477168823630.ts"
    segment.write_bytes(SEGMENT)
    os.utime(segment, (MTIME, MTIME))
    (tmp_path / "secret.ts").write_bytes(b"TOPSECRET")
    (tmp_path / "secret.m3u8").write_bytes(b"TOPSECRET")
    (tmp_path / "secret.txt").write_bytes(b"TOPSECRET")
    return root


async def test_segment_headers_are_nginx_expires_max(hls: Path) -> None:
    async with serve(hls) as s, s.get("/live/benw/1477168823630.ts") as r:
        assert r.status == 200
        assert await r.read() == SEGMENT
        assert names(r.headers) == NGINX_200
        assert r.headers["Content-Type"] == "video/mp2t"
        assert r.headers["Content-Length"] == "1000"
        assert r.headers["ETag"] == '"65937d25-3e8"'
        assert r.headers["Last-Modified"] == "Tue, 02 Jan 2024 03:04:05 GMT"
        assert r.headers["Expires"] == "Thu, 31 Dec 2037 23:55:55 GMT"
        assert r.headers["Cache-Control"] == "max-age=315360000"
        assert r.headers["Access-Control-Allow-Origin"] == "*"
        assert r.headers["Access-Control-Allow-Methods"] == "GET"
        assert r.headers["Accept-Ranges"] == "bytes"


async def test_playlist_headers_are_nginx_expires_minus_one_day(hls: Path) -> None:
    st = (hls / "benw" / "index.m3u8").stat()
    async with serve(hls) as s, s.get("/live/benw/index.m3u8") as r:
        assert r.status == 200
        assert await r.read() == PLAYLIST
        assert names(r.headers) == NGINX_200
        assert r.headers["Content-Type"] == "application/vnd.apple.mpegurl"
        assert r.headers["Cache-Control"] == "no-cache"
        date = parsedate_to_datetime(r.headers["Date"]).timestamp()
        expires = parsedate_to_datetime(r.headers["Expires"]).timestamp()
        assert abs((date - expires) - 86400) <= 1  # "now - 1 day", both stamped by the server
        assert r.headers["ETag"] == f'"{int(st.st_mtime):x}-{st.st_size:x}"'
        assert r.headers["Access-Control-Allow-Origin"] == "*"


async def test_head_gives_get_headers_without_body(hls: Path) -> None:
    async with serve(hls) as s:
        for path in ("/live/benw/1477168823630.ts", "/live/benw/index.m3u8"):
            async with s.get(path) as g, s.request("HEAD", path) as h:
                assert h.status == 200
                assert await h.read() == b""
                assert names(h.headers) == names(g.headers)
                for key in ("Content-Length", "ETag", "Last-Modified", "Content-Type"):
                    assert h.headers[key] == g.headers[key]


@pytest.mark.parametrize(
    ("value", "content_range", "body"),
    [
        ("bytes=0-99", "bytes 0-99/1000", SEGMENT[:100]),
        ("bytes=-100", "bytes 900-999/1000", SEGMENT[900:]),
        ("bytes=990-2000", "bytes 990-999/1000", SEGMENT[990:]),
        ("bytes=500-", "bytes 500-999/1000", SEGMENT[500:]),
        ("bytes=-5000", "bytes 0-999/1000", SEGMENT),
        ("bytes= 0-5", "bytes 0-5/1000", SEGMENT[:6]),
        ("bytes=" + "0" * 5000 + "5-9", "bytes 5-9/1000", SEGMENT[5:10]),  # leading zeros
    ],
)
async def test_single_range_is_206(hls: Path, value: str, content_range: str, body: bytes) -> None:
    async with serve(hls) as s, s.get("/live/benw/1477168823630.ts", headers={"Range": value}) as r:
        assert r.status == 206
        assert r.headers["Content-Range"] == content_range
        assert await r.read() == body
        assert names(r.headers) == NGINX_206


@pytest.mark.parametrize(
    "value",
    [
        "bytes=5000-", "bytes=1000-1001", "bytes=-0", "bytes=abc", "bytes=5-2",
        # numbers past nginx's off_t (and past Python's 4,300-digit int() limit): 416, not 500
        "bytes=" + "1" * 5000 + "-", "bytes=-" + "9" * 5000, "bytes=0-" + "9" * 5000,
        "bytes=0-9223372036854775808", "bytes=-9223372036854775808",
    ],
)  # fmt: skip
async def test_unsatisfiable_range_is_416(hls: Path, value: str) -> None:
    async with serve(hls) as s, s.get("/live/benw/1477168823630.ts", headers={"Range": value}) as r:
        assert r.status == 416
        assert r.headers["Content-Range"] == "bytes */1000"
        assert b"TOPSECRET" not in await r.read()
        assert names(r.headers) == NGINX_416


@pytest.mark.parametrize("value", ["items=0-5", "bytes=0-1,5-6"])
async def test_other_ranges_are_ignored(hls: Path, value: str) -> None:
    async with serve(hls) as s, s.get("/live/benw/1477168823630.ts", headers={"Range": value}) as r:
        assert r.status == 200
        assert await r.read() == SEGMENT


async def test_header_numbers_and_dates_of_any_length_are_no_error(hls: Path) -> None:
    """Dates (If-Modified-Since, If-Unmodified-Since, If-Range) with thousands of digits are
    ignored like any other malformed date; the largest range number nginx takes still works."""
    digits = "9" * 5000
    async with serve(hls) as s:
        for name in ("If-Modified-Since", "If-Unmodified-Since", "If-Range"):
            value = f"Mon, 01 Jan {digits} 00:00:00 GMT"
            headers = {name: value, "Range": "bytes=0-9"}
            async with s.get("/live/benw/1477168823630.ts", headers=headers) as r:
                assert r.status in (200, 206), name
                assert (await r.read())[:10] == SEGMENT[:10]
        largest = {"Range": "bytes=0-9223372036854775807"}
        async with s.get("/live/benw/1477168823630.ts", headers=largest) as r:
            assert r.status == 206 and await r.read() == SEGMENT


async def test_head_range_and_if_range(hls: Path) -> None:
    seg = "/live/benw/1477168823630.ts"
    async with serve(hls) as s:
        async with s.request("HEAD", seg, headers={"Range": "bytes=0-1"}) as r:
            assert (r.status, r.headers["Content-Length"]) == (206, "2")
            assert await r.read() == b""
        stale = {"Range": "bytes=0-1", "If-Range": '"65937d25-3e9"'}
        async with s.get(seg, headers=stale) as r:
            assert r.status == 200
            assert await r.read() == SEGMENT
        for validator in ('"65937d25-3e8"', "Tue, 02 Jan 2024 03:04:05 GMT"):
            async with s.get(seg, headers={"Range": "bytes=0-1", "If-Range": validator}) as r:
                assert r.status == 206
                assert await r.read() == SEGMENT[:2]


async def test_conditional_requests(hls: Path) -> None:
    seg = "/live/benw/1477168823630.ts"
    async with serve(hls) as s:
        for headers in (
            {"If-None-Match": '"65937d25-3e8"'},
            {"If-None-Match": 'W/"x", "65937d25-3e8"'},
            {"If-Modified-Since": "Tue, 02 Jan 2024 03:04:05 GMT"},
        ):
            async with s.get(seg, headers=headers) as r:
                assert r.status == 304
                assert await r.read() == b""
                assert names(r.headers) == NGINX_304
                assert r.headers["ETag"] == '"65937d25-3e8"'
        for headers in (
            {"If-None-Match": '"other"'},
            {"If-Modified-Since": "Mon, 01 Jan 2024 00:00:00 GMT"},
            {"If-Match": '"65937d25-3e8"'},
        ):
            async with s.get(seg, headers=headers) as r:
                assert r.status == 200
                assert await r.read() == SEGMENT
        for headers in (
            {"If-Match": '"other"'},
            {"If-Unmodified-Since": "Mon, 01 Jan 2024 00:00:00 GMT"},
        ):
            async with s.get(seg, headers=headers) as r:
                assert r.status == 412


async def test_options_preflight(hls: Path) -> None:
    preflight = {
        "Origin": "https://example.org",
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "range",
    }
    async with serve(hls) as s:
        for path in ("/live/benw/index.m3u8", "/live/benw/1477168823630.ts"):
            async with s.request("OPTIONS", path, headers=preflight) as r:
                assert r.status == 204
                assert r.headers["Access-Control-Allow-Origin"] == "*"
                assert r.headers["Access-Control-Allow-Methods"] == "GET"
                assert r.headers["Access-Control-Allow-Headers"] == "Range"
        async with s.request("OPTIONS", "/live/benw/../x.ts") as r:
            assert r.status == 404
        async with s.request("POST", "/live/benw/index.m3u8") as r:
            assert r.status == 405


@pytest.mark.parametrize(
    "path",
    [
        "/live/benw/missing.ts",  # missing segment
        "/live/nobody/index.m3u8",  # unknown stream
        "/live/benw/",  # a folder
        "/live/benw",
        "/live/",
        "/live/benw/index.m3u",
        "/live/benw/index.m3u8.bak",
        "/live/benw.m3u8",  # flat layout URL on a nested server
    ],
)
async def test_missing_is_404_with_cors(hls: Path, path: str) -> None:
    async with serve(hls) as s, s.get(path) as r:
        assert r.status == 404
        assert r.headers["Access-Control-Allow-Origin"] == "*"


async def test_finished_stream_is_404(hls: Path) -> None:
    async with serve(hls) as s:
        async with s.get("/live/benw/index.m3u8") as r:
            assert r.status == 200
        for f in (hls / "benw").iterdir():  # the packager cleans a finished stream up
            f.unlink()
        async with s.get("/live/benw/index.m3u8") as r:
            assert r.status == 404
        async with s.get("/live/benw/1477168823630.ts") as r:
            assert r.status == 404


TRAVERSALS = [
    "/live/../secret.txt",
    "/live/../secret.ts",
    "/live/%2e%2e/secret.ts",
    "/live/%2E%2E/secret.m3u8",
    "/live/.%2e/secret.ts",
    "/live/benw/../../secret.ts",
    "/live/benw/..%2f..%2fsecret.ts",
    "/live/benw%2f..%2f..%2fsecret.ts",
    "/live/..%2fsecret.ts",
    "/live/%2e%2e%2fsecret.ts",
    "/live/benw/..%5c..%5csecret.ts",
    "/live/benw/%5c..%5c..%5csecret.ts",
    "/live/%252e%252e/secret.ts",
    "/live/benw/%c0%ae%c0%ae/%c0%ae%c0%ae/secret.ts",
    "/live/benw/....//....//secret.ts",
    "/live//secret.ts",
    "/live/%2fetc%2fpasswd",
    "/live//etc/passwd",
    "/live/benw/%00.ts",
    "/live/benw/index.m3u8%00.ts",
    "/live/benw/..;/..;/secret.ts",
    "/live/./../secret.ts",
    "//live/../secret.ts",
    "/live/benw/./../../secret.ts",
    "/live/benw/index.m3u8/../../../secret.ts",
    "/static/../secret.txt",
    "/static/..%2f..%2fsecret.txt",
    "/static/vendor/..%2f..%2f..%2fsecret.txt",
    "/thumb/..%2f..%2fsecret.jpg",
    "/live/benw/%2e%2e/%2e%2e/secret.ts",
    "http://127.0.0.1/live/../secret.ts",
]


async def test_traversal_attempts_are_404(hls: Path) -> None:
    async with serve(hls) as s:
        for target in TRAVERSALS:
            status, body = await raw_get(s.port, target)
            assert status == 404, target
            assert b"TOPSECRET" not in body, target


@pytest.mark.parametrize(
    "target", [b"/live/benw\\..\\..\\secret.ts", b"/live/benw/\x00.ts", b"/live/benw/..\\secret.ts"]
)
async def test_raw_bytes_in_request_line_never_reach_files(hls: Path, target: bytes) -> None:
    async with serve(hls) as s:
        status, body = await raw_request(
            s.port, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        assert status in (400, 404)
        assert b"TOPSECRET" not in body


async def test_symlinks_out_of_the_folder_are_refused(hls: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "index.m3u8").write_bytes(b"TOPSECRET")
    (hls / "benw" / "evil.ts").symlink_to(tmp_path / "secret.ts")
    (hls / "benw" / "evil.m3u8").symlink_to(tmp_path / "secret.m3u8")
    (hls / "linked").symlink_to(outside, target_is_directory=True)
    (hls / "benw" / "alias.ts").symlink_to(hls / "benw" / "1477168823630.ts")
    async with serve(hls) as s:
        for path in ("/live/benw/evil.ts", "/live/benw/evil.m3u8", "/live/linked/index.m3u8"):
            async with s.get(path) as r:
                assert r.status == 404, path
                assert b"TOPSECRET" not in await r.read()
        async with s.get("/live/benw/alias.ts") as r:  # a link that stays inside is fine
            assert r.status == 200
            assert await r.read() == SEGMENT


async def test_special_files_are_refused(hls: Path) -> None:
    os.mkfifo(hls / "benw" / "fifo.ts")  # opening it for reading must not hang the server
    (hls / "benw" / "dir.ts").mkdir()
    async with serve(hls) as s:
        for path in ("/live/benw/fifo.ts", "/live/benw/dir.ts"):
            async with s.get(path) as r:
                assert r.status == 404


async def test_flat_layout(tmp_path: Path) -> None:
    root = tmp_path / "hls"
    root.mkdir()
    (root / "benw.m3u8").write_bytes(PLAYLIST)
    (root / "benw-17.ts").write_bytes(SEGMENT)
    (root / "benw").mkdir()
    (root / "benw" / "index.m3u8").write_bytes(PLAYLIST)
    async with serve(root, nested=False) as s:
        async with s.get("/live/benw.m3u8") as r:
            assert r.status == 200
            assert r.headers["Content-Type"] == "application/vnd.apple.mpegurl"
            assert r.headers["Cache-Control"] == "no-cache"
            assert await r.read() == PLAYLIST
        async with s.get("/live/benw-17.ts") as r:
            assert r.status == 200
            assert r.headers["Content-Type"] == "video/mp2t"
            assert r.headers["Expires"] == "Thu, 31 Dec 2037 23:55:55 GMT"
            assert await r.read() == SEGMENT
        for path in ("/live/benw/index.m3u8", "/live/benw.ts", "/live/benw-17.m3u8x"):
            async with s.get(path) as r:
                assert r.status == 404, path
        async with s.get("/api/streams") as r:
            assert r.status == 200


async def test_large_segment_goes_out_whole(hls: Path) -> None:
    big = os.urandom(3 * 1024 * 1024 + 7)
    (hls / "benw" / "big.ts").write_bytes(big)
    async with serve(hls) as s:
        async with s.get("/live/benw/big.ts") as r:
            assert await r.read() == big
        async with s.get("/live/benw/big.ts", headers={"Range": "bytes=1048576-"}) as r:
            assert r.status == 206
            assert await r.read() == big[1048576:]


async def test_player_abandoning_a_segment_is_not_an_error(
    hls: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (hls / "benw" / "huge.ts").write_bytes(bytes(32 * 1024 * 1024))  # more than socket buffers
    with caplog.at_level(logging.WARNING):
        async with serve(hls) as s:
            for _ in range(2):
                reader, writer = await asyncio.open_connection("127.0.0.1", s.port)
                writer.write(b"GET /live/benw/huge.ts HTTP/1.1\r\nHost: x\r\n\r\n")
                assert (await reader.readexactly(12)) == b"HTTP/1.1 200"
                writer.transport.abort()  # a reset mid-transfer, as a seeking player does
                await asyncio.sleep(0.2)
            async with s.get("/live/benw/1477168823630.ts") as r:  # still serving
                assert await r.read() == SEGMENT
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
