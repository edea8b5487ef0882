"""Push (restreaming): each destination its own connection with rtmpd's client, starting at a
keyframe with the headers first, relaying the messages as they came, ending with the broadcast;
destinations that never read, refuse, stall or vanish cost nothing to the ingest, HLS or
another destination; the destinations managed like keys (CLI, admin API, never shown again)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from rtmpd import push
from rtmpd.app import Rtmpd
from rtmpd.rtmp.events import RawKind
from tests.support.app import HeldPublisher, LiveStream, media_tags, start_server
from tests.support.media import TAG_VIDEO
from tests.support.push import (
    NeverReads,
    RecordingDestination,
    destination_key,
    starts_at_keyframe,
)

GUARD = 20.0


def last_video(dest: RecordingDestination) -> int:
    """The timestamp of the latest video message there (-1: none yet)."""
    video = dest.publishes[-1].video() if dest.publishes else []
    return video[-1].timestamp if video else -1


async def until(check: object, timeout: float = GUARD) -> None:
    async with asyncio.timeout(timeout):
        while not check():  # type: ignore[operator]
            await asyncio.sleep(0.02)


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(push, "BACKOFF_FIRST", 0.2)
    monkeypatch.setattr(push, "CONNECT_TIMEOUT", 1.5)


async def source(tmp_path: Path, **sections: Any) -> tuple[Rtmpd, str]:
    # media goes flat out: the real-time bound of HLS is not the point here
    server = await start_server(tmp_path, hls={"grace": 1.0, "speed_burst": 3600}, **sections)
    assert server.accounts is not None
    key = (await server.accounts.add_user("benw")).key
    return server, key


def url(port: int, key: str) -> str:
    return f"rtmp://127.0.0.1:{port}/app/{key}"


async def test_a_destination_gets_the_broadcast_from_a_keyframe_as_it_came(
    tmp_path: Path,
) -> None:
    dest_key = destination_key()
    dest = await RecordingDestination({dest_key}).start()
    server, key = await source(tmp_path)
    assert server.accounts is not None
    await server.accounts.add_destination("benw", url(dest.port, dest_key))
    tags = media_tags(seconds=2, fps=25, gop=25)
    headers = [t for t in tags if t.is_sequence_header]
    media = [t for t in tags if not t.is_sequence_header]
    publisher = HeldPublisher(server.rtmp.port, key)
    await publisher.start()
    await until(lambda: dest.publishes)
    await until(lambda: server.push_status("benw")[0].connected)
    publisher.send_tags(headers + media)
    await until(lambda: dest.last.video() and dest.last.video()[-1].timestamp
                == [t for t in media if t.kind == TAG_VIDEO][-1].timestamp)  # fmt: skip
    got = dest.last
    assert got.key == dest_key and starts_at_keyframe(got)
    bodies = [m.payload for m in got.messages if m.kind != RawKind.HEADER]
    sent_from = next(i for i, t in enumerate(media) if t.body == bodies[0])
    assert media[sent_from].is_keyframe
    assert bodies == [t.body for t in media[sent_from:]], "every message from there, as it came"
    assert {m.payload for m in got.messages if m.kind == RawKind.HEADER} == {
        t.body for t in headers
    }
    status = server.push_status("benw")[0]
    assert status.connected and status.dropped == 0 and status.last_error is None
    assert status.url.endswith(">") and dest_key not in status.url
    # the publisher drops and comes back within the grace: one publish there, one timeline
    await publisher.close()
    again = HeldPublisher(server.rtmp.port, key)
    await again.start()
    again.send_tags(headers + media)
    await until(lambda: len(got.video()) > 60)
    assert len(dest.publishes) == 1 and got.ended is None
    stamps = [m.timestamp for m in got.video()]
    assert stamps == sorted(stamps), "the second publish continues the timeline"
    # the broadcast ends when the grace runs out: the destination's publish ends
    await again.close()
    await until(lambda: got.ended is not None)
    assert not server.broadcasts
    await server.stop()
    await dest.close()


async def test_destinations_that_never_read_refuse_or_are_closed_cost_nothing(
    tmp_path: Path,
) -> None:
    good_key, wrong_key = destination_key(), destination_key()
    good = await RecordingDestination({good_key}).start()
    picky = await RecordingDestination({"some-other-key-entirely"}).start()
    deaf = await NeverReads().start()
    closed_port = NeverReads()
    await closed_port.start()
    nothing_there = closed_port.port
    await closed_port.close()
    server, key = await source(tmp_path)
    assert server.accounts is not None
    for target in (url(deaf.port, destination_key()), url(picky.port, wrong_key),
                   url(nothing_there, destination_key()), url(good.port, good_key)):  # fmt: skip
        await server.accounts.add_destination("benw", target)
    live = LiveStream(server.rtmp.port, key, media_tags(seconds=2, fps=25, gop=25))
    await live.start()
    await until(lambda: good.publishes and len(good.last.video()) > 75)
    await until(lambda: picky.refused >= 2)  # refused, retried with backoff
    status = {s.destination_id: s for s in server.push_status("benw")}
    deaf_s, picky_s, nothing_s, good_s = (status[i] for i in sorted(status))
    assert good_s.connected and good_s.dropped == 0
    assert not deaf_s.connected and "no publish within" in (deaf_s.last_error or "")
    assert not picky_s.connected and "NetStream.Publish.BadName" in (picky_s.last_error or "")
    assert wrong_key not in (picky_s.last_error or "") and "<key>" in (picky_s.last_error or "")
    assert not nothing_s.connected and nothing_s.last_error
    assert deaf.connections >= 1
    # ingest and HLS went on meanwhile
    assert not live.publisher.closed.is_set() and server.hls.playing("benw")
    video = good.last.video()
    gaps = [b.timestamp - a.timestamp for a, b in zip(video, video[1:], strict=False)]
    assert max(gaps) <= 80, "the good destination lost nothing to the bad ones"
    metrics = server.metrics.render().decode()
    assert "rtmpd_push_connected 1.0" in metrics
    await live.stop()
    await server.stop()
    for dest in (good, picky, deaf):
        await dest.close()


async def test_a_stalled_destination_drops_to_the_next_keyframe(tmp_path: Path) -> None:
    slow_key, fast_key = destination_key(), destination_key()
    slow = await RecordingDestination({slow_key}).start()
    fast = await RecordingDestination({fast_key}).start()
    server, key = await source(tmp_path)
    assert server.accounts is not None
    await server.accounts.add_destination("benw", url(slow.port, slow_key))
    await server.accounts.add_destination("benw", url(fast.port, fast_key))
    tags = media_tags(seconds=2, fps=25, gop=10, bitrate=2_000_000)
    headers = [t for t in tags if t.is_sequence_header]
    media = [t for t in tags if not t.is_sequence_header]
    publisher = HeldPublisher(server.rtmp.port, key)
    await publisher.start()
    publisher.send_tags(headers + media)
    await until(lambda: all(s.connected for s in server.push_status("benw")))
    slow.stall()
    period = media[-1].timestamp + 40
    rounds = 50
    for n in range(1, rounds + 1):
        publisher.send_tags(media, n * period)
        await asyncio.sleep(0.01)
    last = rounds * period + media[-1].timestamp
    await until(lambda: last_video(fast) >= last - 40)
    slow_status, fast_status = sorted(server.push_status("benw"), key=lambda s: s.dropped)[::-1]
    assert slow_status.dropped > 0 and fast_status.dropped == 0
    assert 'rtmpd_relay_dropped_messages_total{output="push"}' in server.metrics.render().decode()
    slow.resume()
    # the live stream goes on: the slow destination starts again at a keyframe once its
    # queue is under the bound
    n = rounds
    async with asyncio.timeout(GUARD):
        while last_video(slow) < n * period:
            n += 1
            publisher.send_tags(media, n * period)
            await asyncio.sleep(0.1)
    assert len(slow.publishes) == 1, "the same connection, caught up"
    video = slow.last.video()
    gaps = [i for i in range(1, len(video)) if video[i].timestamp - video[i - 1].timestamp > 40]
    assert gaps and all(video[i].kind == RawKind.KEYFRAME for i in gaps)
    await publisher.close()
    await server.stop()
    for dest in (slow, fast):
        await dest.close()


async def test_a_destination_that_vanishes_and_comes_back_is_reconnected(tmp_path: Path) -> None:
    dest_key = destination_key()
    dest = await RecordingDestination({dest_key}).start()
    port = dest.port
    server, key = await source(tmp_path)
    assert server.accounts is not None
    await server.accounts.add_destination("benw", url(port, dest_key))
    live = LiveStream(server.rtmp.port, key, media_tags(seconds=2, fps=25, gop=25))
    await live.start()
    await until(lambda: dest.publishes and len(dest.last.video()) > 10)
    await dest.close()
    await until(lambda: not server.push_status("benw")[0].connected)
    assert server.push_status("benw")[0].last_error
    back = await RecordingDestination({dest_key}, port=port).start()
    await until(lambda: back.publishes and len(back.last.video()) > 10)
    assert starts_at_keyframe(back.last) and server.push_status("benw")[0].connected
    assert server.hls.playing("benw") and not live.publisher.closed.is_set()
    await live.stop()
    await server.stop()
    await back.close()


async def test_config_push_goes_for_every_broadcast_under_its_public_name(
    tmp_path: Path,
) -> None:
    dest = await RecordingDestination().start()
    server, key = await source(tmp_path, push=[{"url": f"rtmp://127.0.0.1:{dest.port}/hls-live"}])
    live = LiveStream(server.rtmp.port, key, media_tags(seconds=2, fps=25, gop=25))
    await live.start()
    await until(lambda: dest.publishes)
    assert dest.last.key == "benw"
    [status] = server.push_status("benw")
    assert status.destination_id is None
    await live.stop()
    await server.stop()
    await dest.close()


async def test_the_admin_api_manages_destinations_and_shows_their_state_redacted(
    tmp_path: Path,
) -> None:
    import aiohttp

    dest_key = destination_key()
    dest = await RecordingDestination({dest_key}).start()
    server, key = await source(tmp_path)
    assert server.accounts is not None
    token = await server.accounts.add_token("site")
    base = f"http://127.0.0.1:{server.http_port}/api/admin"
    auth = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=auth) as http:
        target = url(dest.port, dest_key)
        async with http.post(f"{base}/users/benw/destinations", json={"url": target}) as r:
            assert r.status == 201
            made = await r.json()
        text = json.dumps(made)
        assert dest_key not in text and dest_key[:8] not in text
        assert made["url"].startswith(f"rtmp://127.0.0.1:{dest.port}/app/<key sha256:")
        assert made["live"] is None
        async with http.post(f"{base}/users/benw/destinations", json={"url": "ftp://x/y"}) as r:
            assert r.status == 400
        async with http.post(f"{base}/users/nobody/destinations", json={"url": target}) as r:
            assert r.status == 404
        live = LiveStream(server.rtmp.port, key, media_tags(seconds=2, fps=25, gop=25))
        await live.start()
        await until(lambda: dest.publishes and len(dest.last.video()) > 30)
        async with http.get(f"{base}/users/benw/destinations") as r:
            [listed] = (await r.json())["destinations"]
        assert listed["id"] == made["id"] and listed["live"]["connected"] is True
        assert listed["live"]["kbps"] > 0 and listed["live"]["dropped"] == 0
        async with http.get(f"{base}/publishes/benw") as r:
            publish = await r.json()
        assert [d["url"] for d in publish["destinations"]] == [made["url"]]
        async with http.delete(f"{base}/users/benw/destinations/{made['id']}") as r:
            assert r.status == 204
        async with http.delete(f"{base}/users/benw/destinations/{made['id']}") as r:
            assert r.status == 404
        await live.stop()
    await server.stop()
    await dest.close()


async def run(db: Path, *args: str, stdin: str = "") -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rtmpd", "-c", str(db), *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate(stdin.encode())
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_push_commands_add_list_remove_without_printing_the_key(tmp_path: Path) -> None:
    config = tmp_path / "rtmpd.toml"
    config.write_text('[database]\npath = "db.sqlite3"\n')
    assert (await run(config, "users", "add", "benw"))[0] == 0
    dest_key = destination_key()
    code, out, err = await run(config, "push", "add", "benw", "-",
                               stdin=f"rtmp://a.rtmp.example.com/live2/{dest_key}\n")  # fmt: skip
    assert code == 0, err
    assert "added destination 1 for benw: rtmp://a.rtmp.example.com:1935/live2/<key sha256:" in out
    other_key = destination_key()
    code, out, err = await run(config, "push", "add", "benw", f"rtmps://x.example/app/{other_key}")
    assert code == 0 and "rtmps://x.example:443/app/<key sha256:" in out
    code, out, _ = await run(config, "push", "list", "benw")
    assert code == 0 and out.count("<key sha256:") == 2 and "rtmps://x.example:443/" in out
    code, _, err = await run(config, "push", "add", "benw", "http://nope/x")
    assert code == 1 and "rtmp:// or rtmps://" in err
    code, _, err = await run(config, "push", "add", "carol", f"rtmp://h/app/{dest_key}")
    assert code == 1 and "no user named 'carol'" in err
    code, out, _ = await run(config, "push", "remove", "benw", "1")
    assert code == 0 and "removed destination 1 of benw" in out
    code, out, _ = await run(config, "push", "list", "benw")
    assert out.count("<key sha256:") == 1 and "rtmps://x.example:443/app/<key" in out
    for text in (out, err):
        for key in (dest_key, other_key):
            assert key not in text and key[:8] not in text


async def test_nginx_rtmp_as_a_destination_writes_hls_that_ffmpeg_decodes(tmp_path: Path) -> None:
    """The seed's own server, nginx-rtmp, takes the push as its `hls-live` application took
    the seed's: its HLS, written by its code, decodes in FFmpeg."""
    from tests.support import engines
    from tests.support.player import play
    from tests.support.publisher import run_publisher

    conf = Path(__file__).parent / "support" / "nginx-rtmp-destination.conf"
    with engines.nginx("-", conf, writable=("live",)) as ng:
        target = f"rtmp://127.0.0.1:{ng.port}/hls-live"
        server, key = await source(tmp_path, push=[{"url": target}])
        try:
            result = await run_publisher(
                f"rtmp://127.0.0.1:{server.rtmp.port}/app/{key}", seconds=4, gop=25
            )
            assert result.returncode == 0, result.stderr
            await until(lambda: not server.broadcasts)  # the grace ran out: unpublished there
        finally:
            await server.stop()
        folder = ng.prefix / "live" / "benw"
        playlist = folder / "index.m3u8"
        await until(lambda: playlist.exists() and playlist.read_text().count(".ts") >= 2)
        # nginx-rtmp leaves a live playlist; the ended copy makes FFmpeg read it to its end
        ended = folder / "ended.m3u8"
        ended.write_text(playlist.read_text() + "#EXT-X-ENDLIST\n")
        played = await play(str(ended))
    assert played.video >= 50, played  # 4 s at 25 fps, from the first keyframe it saw
    assert played.audio > 0
    assert not [w for w in played.warnings if "error" in w.lower()], played.warnings


async def test_rtmps_destination_with_its_certificate_checked(tmp_path: Path) -> None:
    """Another rtmpd over RTMPS as the destination: pushed to once its certificate is trusted,
    refused (and retried) while it is not."""
    import ssl

    from tests.support.tls import write_certificate

    cert, cert_key, _ = write_certificate(tmp_path / "tls", "rtmpd-destination")
    far = await start_server(
        tmp_path / "far",
        rtmps={"listen": "127.0.0.1:0", "cert": str(cert), "key": str(cert_key)},
    )
    assert far.accounts is not None
    far_key = (await far.accounts.add_user("carol")).key
    server, key = await source(tmp_path / "near")
    assert server.accounts is not None
    await server.accounts.add_destination(
        "benw", f"rtmps://127.0.0.1:{far.rtmp.tls_port}/app/{far_key}"
    )
    live = LiveStream(server.rtmp.port, key, media_tags(seconds=2, fps=25, gop=25))
    await live.start()
    await until(lambda: server.push_status("benw")[0].last_error is not None)
    untrusted = server.push_status("benw")[0]
    assert not untrusted.connected and "CERTIFICATE_VERIFY_FAILED" in (untrusted.last_error or "")
    await live.stop()
    await until(lambda: not server.broadcasts)
    server.push_tls = lambda: ssl.create_default_context(cafile=str(cert))
    live = LiveStream(server.rtmp.port, key, media_tags(seconds=2, fps=25, gop=25))
    await live.start()
    await until(lambda: far.hls.playing("carol"))
    assert server.push_status("benw")[0].connected
    await live.stop()
    await server.stop()
    await far.stop()


async def test_a_destination_that_stops_reading_for_good_is_reconnected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(push, "STALL_TIMEOUT", 1.0)
    dest_key = destination_key()
    dest = await RecordingDestination({dest_key}).start()
    server, key = await source(tmp_path)
    assert server.accounts is not None
    await server.accounts.add_destination("benw", url(dest.port, dest_key))
    tags = media_tags(seconds=2, fps=25, gop=10, bitrate=2_000_000)
    headers = [t for t in tags if t.is_sequence_header]
    media = [t for t in tags if not t.is_sequence_header]
    publisher = HeldPublisher(server.rtmp.port, key)
    await publisher.start()
    publisher.send_tags(headers + media)
    await until(lambda: server.push_status("benw") and server.push_status("benw")[0].connected)
    dest.stall()
    period = media[-1].timestamp + 40
    n = 0
    # the stream goes on: the relay gives up on that connection, connects again, and the new
    # connection (read, as a fresh one is) gets media from a keyframe
    async with asyncio.timeout(GUARD):
        while len(dest.publishes) < 2 or last_video(dest) < 0:
            n += 1
            publisher.send_tags(media, n * period)
            await asyncio.sleep(0.05)
    assert "took nothing for 1 s" in (server.push_status("benw")[0].last_error or "")
    assert starts_at_keyframe(dest.last) and not publisher.closed.is_set()
    await publisher.close()
    await server.stop()
    await dest.close()
