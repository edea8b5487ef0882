"""The web layer's one hook for streams served by another node: every /live/ request for such
a stream is a 307 to the same path and query there, uncached, before any file is looked at."""

from __future__ import annotations

from pathlib import Path

from tests.support.web import MemoryDirectory, serve


async def test_requests_for_a_stream_served_elsewhere_are_redirected(tmp_path: Path) -> None:
    (tmp_path / "benw").mkdir()
    (tmp_path / "benw" / "index.m3u8").write_text("#EXTM3U\n")  # stale files of an old publish
    directory = MemoryDirectory()
    directory.add("benw", live=True)
    directory.owners["benw"] = "http://node-b.example:8080/"
    async with serve(tmp_path, directory) as app:
        for path in ("/live/benw/index.m3u8?_HLS_msn=3&_HLS_part=1", "/live/benw/17.ts"):
            response = await app.get(path, allow_redirects=False)
            assert response.status == 307
            assert response.headers["Location"] == "http://node-b.example:8080" + path
            assert response.headers["Cache-Control"] == "no-store"
            assert response.headers["Access-Control-Allow-Origin"] == "*"
        del directory.owners["benw"]
        served = await app.get("/live/benw/index.m3u8", allow_redirects=False)
        assert served.status == 200 and await served.text() == "#EXTM3U\n"
