"""Push and live play at a modest scale: one publisher (real time) pushed to destinations and
played by RTMP players, against the same publish alone; then memory with one stalled
destination and one stalled player held for a while.

    python -m bench.restream [--destinations 3] [--players 20] [--steady 30] [--hold 60]
                             [--workers 1] [--phases alone,fanout,stalled]

Phase "alone": the publish, nothing else. Phase "fanout": the same publish with the
destinations ([[push]] in rtmpd's config) and the players connected. Phase "stalled": the
same, plus one destination that accepts the publish and then reads nothing, and one player
that stops reading; RSS of rtmpd sampled every 0.5 s over `--hold` seconds (it must stay flat:
the queues are bounded, see docs/RELIABILITY.md). The destinations and players are rtmpd's own
client and server cores in this process (they cost rtmpd nothing); rtmpd's CPU and RSS are its
own process's (with `--workers 2`, the supervisor's and its workers': players then land on
either worker, and one that reached the worker without the publish is fed by a pull from the
other, rtmpd.pull). A player's lag is when a video message reached it less when the publisher's
clock made it due (both in this process). The load average is recorded with every result: the
machine is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import shlex
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from bench.loadgen import LoadGenerator, PreparedMedia
from bench.media import SPECS, ensure_media
from bench.run import MIB, RESULTS, Sampler, machine
from bench.servers import RtmpdServer, loadavg
from rtmpd.client_link import open_client_link
from rtmpd.rtmp.client import ClientEvent, ClientSession, MediaMessage
from rtmpd.rtmp.events import PublishRequest, RawMedia
from rtmpd.rtmp_contract import Accept, MediaEvent, Publisher
from rtmpd.server import RtmpServer


@dataclass
class _Count:
    messages: int = 0


class _Discard:
    def __init__(self, count: _Count) -> None:
        self.count = count

    def media(self, event: MediaEvent) -> None:
        if isinstance(event, RawMedia):  # (the parsed events come too: not counted twice)
            self.count.messages += 1

    async def end(self, reason: str) -> None:
        pass


@dataclass
class Destination:
    """An RTMP server that takes any publish and throws the media away; `stalled`: it stops
    reading every connection once the publish started (and keeps it so)."""

    stalled: bool = False
    count: _Count = field(default_factory=_Count)
    server: RtmpServer | None = None

    async def start(self) -> Destination:
        import logging

        quiet = logging.getLogger("bench.destination")  # its timeouts are its business
        quiet.propagate = False
        quiet.addHandler(logging.NullHandler())
        self.server = RtmpServer(self, host="127.0.0.1", port=0, log=quiet)
        await self.server.start()
        return self

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.port

    async def authorize(self, publisher: Publisher, request: PublishRequest) -> Accept:
        return Accept("mirror", _Discard(self.count), raw=True)

    def stall(self) -> None:
        assert self.server is not None
        for conn in self.server._conns.values():
            if conn.transport is not None and conn.bytes_received > 50_000:  # media came
                conn.transport.pause_reading()

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()


class Player:
    """One RTMP player (rtmpd's client core): plays `name` and counts the media; `stalled`
    players stop reading after `stall_after` seconds, and come back stalled when rtmpd drops
    them (so one stalled player is there the whole time)."""

    def __init__(self, port: int, name: str, *, stalled: bool = False) -> None:
        self.port, self.name, self.stalled = port, name, stalled
        self.media = 0
        self.sessions = 0
        #: (arrival, media timestamp in s) of each video message, once `measuring` is set.
        self.arrivals: list[tuple[float, float]] = []
        self.measuring = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def _event(self, event: ClientEvent) -> None:
        if isinstance(event, MediaMessage):
            self.media += 1
            if self.measuring and event.msg_type == 9:
                self.arrivals.append((time.monotonic(), event.timestamp / 1000))

    async def _run(self) -> None:
        while True:
            session = ClientSession()
            try:
                link = await open_client_link(session, self._event, "127.0.0.1", self.port)
            except OSError:
                await asyncio.sleep(1.0)
                continue
            self.sessions += 1
            session.connect("app", f"rtmp://127.0.0.1:{self.port}/app")
            session.create_stream()
            session.play(self.name)
            link.flush()
            if self.stalled:
                await asyncio.sleep(2.0)
                if link.transport is not None:
                    link.transport.pause_reading()
            await link.done
            await asyncio.sleep(0.5)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def _server(destinations: list[Destination], workers: int = 1) -> RtmpdServer:
    server = RtmpdServer(fragment=2.0, playlist_length=10.0, workers=workers)
    text = server.config.read_text().replace("[rtmp]\n", '[rtmp]\nallow_play = ["127.0.0.1"]\n')
    text = text.replace('level = "warning"', 'level = "info"')  # "playing" lines: which worker
    for dest in destinations:
        text += f'[[push]]\nurl = "rtmp://127.0.0.1:{dest.port}/live"\n'
    server.config.write_text(text)
    return server


async def phase(
    label: str, args: argparse.Namespace, media: PreparedMedia, *, fanout: bool, stalled: bool
) -> dict[str, Any]:
    dests = [await Destination().start() for _ in range(args.destinations if fanout else 0)]
    if stalled:
        dests.append(await Destination(stalled=True).start())
    server = _server(dests, args.workers)
    server.start()
    players: list[Player] = []
    try:
        [(key, name)] = server.make_streams(1)
        await asyncio.sleep(1.0)
        window = args.hold if stalled else args.steady
        warm = args.warm
        gen = LoadGenerator("127.0.0.1", server.rtmp_port, [(key, name)], media,
                            mode="realtime", seconds=warm + window + 2)  # fmt: skip
        sampler = Sampler(server.pid)
        sampler.start()
        t0 = time.monotonic()
        running = asyncio.create_task(gen.run())
        await asyncio.sleep(1.0)
        if fanout:
            players = [Player(server.rtmp_port, name) for _ in range(args.players)]
        if stalled:
            players.append(Player(server.rtmp_port, name, stalled=True))
        for player in players:
            player.start()
        staller: asyncio.Task[None] | None = None
        if stalled:

            async def keep_stalled() -> None:
                while True:
                    dests[-1].stall()
                    await asyncio.sleep(0.5)

            staller = asyncio.create_task(keep_stalled())
        await asyncio.sleep(max(0.0, t0 + warm - time.monotonic()))
        for player in players:
            player.measuring = True
        clock0 = min((p.clock0 for p in gen.active), default=0.0)  # media ts 0, monotonic
        res = await running
        if staller is not None:
            staller.cancel()
        await sampler.stop()
        start, end = t0 + warm, t0 + warm + window
        share, rss_max, span = sampler.window(start, end)
        inside = [s for s in sampler.samples if start <= s.t <= end]
        first_rss = inside[0].rss if inside else 0
        last_rss = inside[-1].rss if inside else 0
        lags = sorted((at - clock0 - ts) * 1000 for p in players if not p.stalled
                      for at, ts in p.arrivals if start <= at <= end)  # fmt: skip
        log = server.log.read_text(errors="replace") if server.log.exists() else ""
        per_worker = [len(re.findall(rf"\[w{i}\] rtmpd\.rtmp: .*: playing {name}", log))
                      for i in range(1, args.workers + 1)]  # fmt: skip
        row: dict[str, Any] = {
            "phase": label,
            "workers": args.workers,
            "players_per_worker": per_worker if args.workers > 1 else [len(players)],
            "player_lag_p50_ms": round(lags[len(lags) // 2]) if lags else None,
            "player_lag_p99_ms": round(lags[int(len(lags) * 0.99)]) if lags else None,
            "destinations": args.destinations if fanout else 0,
            "players": args.players if fanout else 0,
            "stalled": stalled,
            "window_s": round(span, 1),
            "cpu_share_of_core": round(share, 3),
            "rss_first_mib": round(first_rss / MIB, 1),
            "rss_max_mib": round(rss_max / MIB, 1),
            "rss_last_mib": round(last_rss / MIB, 1),
            "publish_errors": len(res.summary()["errors"]),
            "destination_messages": [d.count.messages for d in dests],
            "player_messages_min": min((p.media for p in players if not p.stalled), default=0),
            # (a stalled player reading nothing does not see rtmpd close it: it stays at 1)
            "stalled_player_sessions": sum(p.sessions for p in players if p.stalled),
            "loadavg_during": round(max(sampler.loads), 2) if sampler.loads else None,
        }
        return row
    finally:
        for player in players:
            await player.stop()
        server.stop()
        for dest in dests:
            await dest.close()


async def _main(args: argparse.Namespace) -> int:
    info = machine()
    cmd = "python -m bench.restream " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    print(f"# {cmd}\n# {json.dumps(info)}\n# load before: {loadavg()}", flush=True)
    media = PreparedMedia(ensure_media(SPECS[args.spec]), chunk_size=4096)
    rows = []
    for _ in range(args.repeat):
        for label, fanout, stalled in (("alone", False, False), ("fanout", True, False),
                                       ("stalled", True, True)):  # fmt: skip
            if label not in args.phases.split(","):
                continue
            row = await phase(label, args, media, fanout=fanout, stalled=stalled)
            row.update(command=cmd, machine=info)
            rows.append(row)
            print(json.dumps(row), flush=True)
    RESULTS.mkdir(exist_ok=True)
    with open(RESULTS / "results.jsonl", "a") as out:
        for row in rows:
            out.write(json.dumps({"scenario": "restream", **row}) + "\n")
    print("| phase | workers | dest | players (per worker) | stalled | CPU (core) | "
          "lag p50/p99 ms | RSS first/max/last MiB | load |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['phase']} | {r['workers']} | {r['destinations']} | {r['players']} "
              f"({' / '.join(map(str, r['players_per_worker']))}) | {r['stalled']} | "
              f"{r['cpu_share_of_core']} | {r['player_lag_p50_ms']}/{r['player_lag_p99_ms']} | "
              f"{r['rss_first_mib']}/{r['rss_max_mib']}/{r['rss_last_mib']} | "
              f"{r['loadavg_during']} |")  # fmt: skip
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.restream", description=__doc__.split("\n")[0])
    parser.add_argument("--spec", choices=sorted(SPECS), default="720p30")
    parser.add_argument("--destinations", type=int, default=3)
    parser.add_argument("--players", type=int, default=20)
    parser.add_argument("--steady", type=float, default=30.0)
    parser.add_argument("--hold", type=float, default=60.0)
    parser.add_argument("--warm", type=float, default=5.0, help="seconds before measuring")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1, help="[server] workers of rtmpd")
    parser.add_argument("--phases", default="alone,fanout,stalled", help="comma-separated")
    return asyncio.run(_main(parser.parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
