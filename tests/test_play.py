"""RTMP live play: by public name from the addresses in [rtmp] allow_play, an instant start from
the GOP cache (headers, metadata, then the last keyframe), slow players dropping to the next
keyframe without slowing anyone, players that stop reading closed, the end of the broadcast
told to players; FFmpeg (PyAV, in a child process) as the real player."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from rtmpd.app import Rtmpd
from rtmpd.rtmp.messages import MessageType, parse_data
from tests.support.app import HeldPlayer, HeldPublisher, LiveStream, media_tags, start_server
from tests.support.media import TAG_VIDEO
from tests.support.rtmp_player import play

GUARD = 20.0


async def until(check: object, timeout: float = GUARD) -> None:
    async with asyncio.timeout(timeout):
        while not check():  # type: ignore[operator]
            await asyncio.sleep(0.02)


async def play_server(tmp_path: Path, allow: list[str] | None = None, **extra: dict) -> Rtmpd:
    sections = {
        "rtmp": {"allow_play": allow or ["127.0.0.1"]},
        "hls": {"grace": 1.0, "speed_burst": 3600},  # flat out: the HLS speed bound is not tested
    }
    for name, values in extra.items():
        sections.setdefault(name, {}).update(values)
    server = await start_server(tmp_path, **sections)
    assert server.accounts is not None
    return server


async def add_user(server: Rtmpd, name: str = "benw") -> str:
    assert server.accounts is not None
    return (await server.accounts.add_user(name)).key


def video_kinds(player: HeldPlayer) -> list[tuple[int, bool, bool]]:
    """(timestamp, keyframe, sequence header) of each video message the player got."""
    return [(m.timestamp, m.payload[0] >> 4 == 1, m.payload[1] == 0)
            for m in player.media if m.msg_type == MessageType.VIDEO]  # fmt: skip


async def test_a_player_starts_with_headers_metadata_and_the_last_keyframe(
    tmp_path: Path,
) -> None:
    server = await play_server(tmp_path)
    key = await add_user(server)
    tags = media_tags(seconds=2, fps=25, gop=25)
    publisher = HeldPublisher(server.rtmp.port, key)
    await publisher.start()
    publisher.session.send_metadata({"width": 320.0, "height": 240.0, "encoder": "test"})
    headers = [t for t in tags if t.is_sequence_header]
    media = [t for t in tags if not t.is_sequence_header]
    keys = [i for i, t in enumerate(media) if t.is_keyframe]
    sent = media[: keys[1] + 6]  # the second GOP has begun: five messages after its keyframe
    publisher.send_tags(headers + sent)
    fanout = server.broadcasts["benw"].fanout
    await until(lambda: fanout.gop and fanout.gop[-1].timestamp == sent[-1].timestamp)
    player = HeldPlayer(server.rtmp.port, "benw")
    status = await player.start()
    assert status.code == "NetStream.Play.Reset" and "NetStream.Play.Start" in player.codes()
    expected = 1 + 2 + len(sent) - keys[1]  # metadata, two headers, the GOP so far
    await until(
        lambda: (
            len(
                [
                    m
                    for m in player.media
                    if m.msg_type != 18 or parse_data(m.payload)[0] == "onMetaData"
                ]
            )
            >= expected
        )
    )
    data = [parse_data(m.payload) for m in player.media if m.msg_type == MessageType.DATA_AMF0]
    assert ["onMetaData", {"width": 320.0, "height": 240.0, "encoder": "test"}] in data
    got = video_kinds(player)
    assert got[0][2] and not got[1][2], "the sequence header first, then media"
    assert got[1][1] and got[1][0] == media[keys[1]].timestamp, "from the last keyframe"
    gop_video = [t for t in sent[keys[1] :] if t.kind == TAG_VIDEO]
    assert [ts for ts, _, _ in got[1:]] == [t.timestamp for t in gop_video]
    # then live: what the publisher sends next arrives as it is
    nxt = media[keys[1] + 6 : keys[1] + 12]
    publisher.send_tags(nxt)
    last_video = [t for t in nxt if t.kind == TAG_VIDEO][-1]
    await until(lambda: video_kinds(player)[-1][0] == last_video.timestamp)
    payloads = [bytes(m.payload) for m in player.media if m.msg_type == MessageType.VIDEO]
    assert payloads[-1] == last_video.body, "relayed as it came"
    await player.close()
    await publisher.close()
    await server.stop()


async def test_ffmpeg_plays_by_public_name_and_stops_when_the_broadcast_ends(
    tmp_path: Path,
) -> None:
    server = await play_server(tmp_path)
    key = await add_user(server)
    live = LiveStream(server.rtmp.port, key, media_tags(seconds=2, fps=25, gop=25))
    await live.start()
    await until(lambda: server.broadcasts["benw"].fanout.gop)
    url = f"rtmp://127.0.0.1:{server.rtmp.port}/app/benw"
    result = await play(url, 3.0)
    assert result.report["error"] is None, result
    report = result.report
    assert (report["width"], report["height"]) == (320, 240)
    assert report["first_key_index"] == 0, "the first picture is a keyframe"
    assert report["pictures"] >= 50 and report["audio"] > 50 and report["keyframes"] >= 2
    # by key: nothing plays (a player never learns or uses a key)
    by_key = await play(f"rtmp://127.0.0.1:{server.rtmp.port}/app/{key}", 2.0)
    assert by_key.report["error"] is not None and by_key.report["video"] == 0
    # the broadcast ends (the grace, 1 s, runs out): FFmpeg reads to its end of file
    from tests.support.rtmp_player import finish_player, start_player

    proc = await start_player(url, 30.0)
    await until(lambda: server._players)
    await asyncio.sleep(1.0)
    await live.stop()
    ended = await finish_player(proc, 30.0)
    assert ended.report["error"] is None and ended.report["video"] > 0, ended
    assert ended.report["elapsed"] < 25
    assert not server._players
    await server.stop()


async def test_play_is_refused_outside_allow_play_and_for_names_not_on_the_air(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = await play_server(tmp_path, ["127.0.0.1/32", "10.0.0.0/8"])
    key = await add_user(server)
    publisher = HeldPublisher(server.rtmp.port, key)
    await publisher.start()
    outsider = HeldPlayer(server.rtmp.port, "benw", source="127.0.0.2")
    status = await outsider.start()
    assert (status.level, status.code) == ("error", "NetStream.Play.Failed")
    await outsider.closed.wait()
    nobody = HeldPlayer(server.rtmp.port, "carol")
    assert (await nobody.start()).code == "NetStream.Play.StreamNotFound"
    await nobody.closed.wait()
    assert "playback is not allowed from this address" in caplog.text
    await publisher.close()
    await server.stop()
    off = await start_server(tmp_path / "off")  # allow_play empty: as nginx's deny play all
    player = HeldPlayer(off.rtmp.port, "benw")
    assert (await player.start()).code == "NetStream.Play.Failed"
    await off.stop()


async def test_a_slow_player_drops_to_the_next_keyframe_and_a_stalled_one_is_closed(
    tmp_path: Path,
) -> None:
    server = await play_server(tmp_path)
    server.rtmp.write_stall_timeout = 2.0
    key = await add_user(server)
    tags = media_tags(seconds=2, fps=25, gop=10, bitrate=2_000_000)
    headers = [t for t in tags if t.is_sequence_header]
    media = [t for t in tags if not t.is_sequence_header]
    publisher = HeldPublisher(server.rtmp.port, key)
    await publisher.start()
    publisher.send_tags(headers + media)
    await until(lambda: server.broadcasts["benw"].fanout.gop)
    slow = HeldPlayer(server.rtmp.port, "benw", rcvbuf=4096)
    fast = HeldPlayer(server.rtmp.port, "benw")
    await slow.start()
    await fast.start()
    slow.stall()
    period = media[-1].timestamp + 40
    rounds = 60  # ~ 30 MB: far more than a stalled player may queue
    for n in range(1, rounds + 1):
        publisher.send_tags(media, n * period)
        await asyncio.sleep(0.01)
    last = rounds * period + media[-1].timestamp
    await until(lambda: video_kinds(fast) and video_kinds(fast)[-1][0] >= last - 40)
    frames = [k for k in video_kinds(fast) if not k[2]]
    assert len(frames) >= rounds * len([t for t in media if t.kind == TAG_VIDEO])
    drops = sorted(p.dropped for p in server._players)
    assert drops[0] == 0 and drops[1] > 0, "the stalled player dropped, the other did not"
    metrics = server.metrics.render().decode()
    assert 'rtmpd_relay_dropped_messages_total{output="play"}' in metrics
    # the publisher was never slowed: every segment of all that media was written
    assert not publisher.closed.is_set()
    # the stalled player reads again: after the gap it starts at a keyframe
    slow.resume()
    await asyncio.sleep(0.5)
    got = video_kinds(slow)
    gaps = [i for i in range(1, len(got)) if got[i][0] - got[i - 1][0] > 40 and not got[i][2]]
    assert gaps and all(got[i][1] for i in gaps), "every gap ends at a keyframe"
    # a player that stops reading for good is disconnected after the stall timeout
    slow.stall()
    for n in range(rounds + 1, rounds + 40):
        publisher.send_tags(media, n * period)
        await asyncio.sleep(0.05)
        if len(server._players) == 1:
            break
    await until(lambda: len(server._players) == 1)
    await fast.close()
    await slow.close()
    await publisher.close()
    await server.stop()


async def test_on_play_decides_with_nginx_fields_and_on_play_done_is_told(
    tmp_path: Path,
) -> None:
    from aiohttp import web

    calls: list[dict[str, str]] = []

    async def hook(request: web.Request) -> web.Response:
        form = dict(await request.post())
        calls.append({k: str(v) for k, v in form.items()})
        if form["call"] == "play_done":
            return web.Response(text="ok")
        if form["name"] == "alias":
            return web.Response(status=302, headers={"Location": "benw"})
        if form["name"] == "benw":
            return web.Response(text="ok")
        return web.Response(status=403)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}/hook"
    server = await play_server(tmp_path, auth={"on_play": url, "on_play_done": url})
    key = await add_user(server)
    publisher = HeldPublisher(server.rtmp.port, key)
    await publisher.start()
    player = HeldPlayer(server.rtmp.port, "alias?token=abc")
    assert (await player.start()).code == "NetStream.Play.Reset"
    first = calls[0]
    assert [k for k in first][:12] == [
        "app",
        "flashver",
        "swfurl",
        "tcurl",
        "pageurl",
        "addr",
        "clientid",
        "call",
        "name",
        "start",
        "duration",
        "reset",
    ]
    assert (first["call"], first["name"], first["addr"], first["token"]) == (
        "play", "alias", "127.0.0.1", "abc")  # fmt: skip
    refused = HeldPlayer(server.rtmp.port, "other")
    status = await refused.start()
    assert (status.code, status.description) == ("NetStream.Play.Failed", "play refused (HTTP 403)")
    await player.close()
    await until(lambda: any(c["call"] == "play_done" for c in calls))
    await publisher.close()
    await server.stop()
    await runner.cleanup()


def test_on_play_without_allow_play_is_a_config_error(tmp_path: Path) -> None:
    from rtmpd.config import ConfigError, from_dict

    with pytest.raises(ConfigError, match=r"\[auth\] on_play: .*\[rtmp\] allow_play"):
        from_dict({"auth": {"on_play": "http://127.0.0.1:1/x"}}, tmp_path)
    with pytest.raises(ConfigError, match=r"\[rtmp\] allow_play: 'nowhere' is not an address"):
        from_dict({"rtmp": {"allow_play": ["nowhere"]}}, tmp_path)
