"""The media hot path alone: a recorded FFmpeg publish fed through ServerSession, timed.

Recording: an rtmpd in this process, a recording relay in front of it (fuzz.record_seeds), and
FFmpeg's RTMP client (PyAV, a child process) publishing H.264 + AAC through the relay; what
the client sent is written to FILE. Timing: the recording fed to a fresh ServerSession in
64 KiB reads (as a socket delivers it), the publish accepted when requested, every event
drained; the best of `--rounds` runs, per media message. No sockets, no packager: only the
core, which is what a change to the parsers or the events costs.

    python -m bench.hotpath record FILE [--seconds 60]
    python -m bench.hotpath time FILE [--rounds 7]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

from rtmpd.rtmp.events import Audio, PublishRequest, Video
from rtmpd.rtmp.session import ServerSession

READ = 64 * 1024
MEDIA = {"seconds": 60.0, "fps": 30, "width": 320, "height": 240, "gop": 60,
         "bitrate": 400_000}  # fmt: skip


async def _record(path: Path, seconds: float) -> None:
    from fuzz.record_seeds import PUBLISH_CHILD, Relay
    from rtmpd.app import Rtmpd
    from rtmpd.config import from_dict

    media = dict(MEDIA, seconds=seconds)
    with tempfile.TemporaryDirectory() as tmp:
        config = from_dict(
            {"rtmp": {"listen": "127.0.0.1:0"}, "http": {"listen": "127.0.0.1:0"}}, Path(tmp)
        )
        server = Rtmpd(config)
        await server.start()
        relay = Relay(server.rtmp.port)
        await relay.start()
        try:
            assert server.auth.store is not None
            key = await server.auth.store.add_user("bench")
            url = f"rtmp://127.0.0.1:{relay.port}/app/{key}"
            root = str(Path(__file__).resolve().parents[1])
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", PUBLISH_CHILD, url, json.dumps(media), root
            )
            await asyncio.wait_for(proc.wait(), 300)
            await asyncio.sleep(0.3)
        finally:
            await relay.close()
            await server.stop()
    path.write_bytes(bytes(relay.sessions[0]))


def feed_once(data: bytes) -> tuple[float, int]:
    """Seconds spent in the session for the whole recording, and the media events made."""
    session = ServerSession()
    media = 0
    spent = 0.0
    clock = time.perf_counter
    for off in range(0, len(data), READ):
        piece = data[off : off + READ]
        start = clock()
        session.receive_data(piece, 0.0)
        while (event := session.next_event()) is not None:
            kind = type(event)
            if kind is Video or kind is Audio:
                media += 1
            elif kind is PublishRequest:
                session.accept_publish(event.stream_id)
        session.data_to_send()
        spent += clock() - start
    return spent, media


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.hotpath")
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record")
    rec.add_argument("file", type=Path)
    rec.add_argument("--seconds", type=float, default=MEDIA["seconds"])
    tim = sub.add_parser("time")
    tim.add_argument("file", type=Path)
    tim.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    if args.command == "record":
        asyncio.run(_record(args.file, args.seconds))
        print(f"recorded {args.file.stat().st_size} bytes to {args.file}")
        return
    data = args.file.read_bytes()
    runs = [feed_once(data) for _ in range(args.rounds)]
    best = min(spent for spent, _ in runs)
    media = runs[0][1]
    print(
        f"{len(data)} bytes, {media} media messages: best of {args.rounds} runs {best * 1e3:.1f} ms"
        f" = {best / media * 1e6:.3f} us per media message"
    )


if __name__ == "__main__":
    main()
