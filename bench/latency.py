"""Latency, glass to glass on loopback: a real-time publisher, the channel page in headless
Chromium with hls.js, the latency read from the player every second.

    python -m bench.latency [--mode ll|ts] [--fragment 2] [--part 0.2] [--warm 10] [--seconds 60]
                            [--hlsjs '{"maxLiveSyncPlaybackRate": 1.5}'] [--spec 720p30]

rtmpd runs with `[hls] low_latency = true` and `part_duration` (mode ll) or `format = "ts"`
(mode ts), `fragment` seconds, on the bench media (a keyframe every 2 s). The load generator
publishes in real time (bench/loadgen.py). Once the playlist lists a segment, Chromium opens the
channel page `/<name>?player=hlsjs` (hls.js even where Chromium has a native HLS player; the
page turns hls.js's lowLatencyMode on by itself when low_latency is on). The page is not
changed for the measurement: a script given to Chromium before the page loads
(Page.addScriptToEvaluateOnNewDocument) wraps `window.Hls` as hls.js defines it, so the player
the page makes is kept as `window.__benchHls` (and `--hlsjs` settings, for trying other hls.js
configurations, are merged into the page's own).

Sampled every second for `--seconds` after `--warm` seconds of playback:
- `hls.latency`: hls.js's estimate of the distance to the live edge;
- `Date.now() - hls.playingDate`: wall clock minus the PROGRAM-DATE-TIME of the frame on
  screen; rtmpd anchors PDT to the time the media arrived, which on loopback is the time the
  publisher sent it, so this is glass to glass less capture and encoding (none here);
- the page's own `data-latency` (what the page shows), stalls (`waiting` events), the
  playback rate and the buffer ahead.
Chromium, rtmpd and the publisher share the machine: under load, decoding 720p in software
competes with everything else.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.loadgen import LoadGenerator, PreparedMedia, percentile
from bench.media import SPECS, ensure_media
from bench.servers import RtmpdServer, cpu_seconds, loadavg

#: The page's hls.js instance, kept without changing the page: hls.js assigns globalThis.Hls
#: once it has loaded; the setter wraps the class so that each instance is remembered.
CAPTURE = """(() => {
  const overrides = %s;
  let wrapped;
  window.__benchWaiting = 0;
  document.addEventListener("waiting", () => { window.__benchWaiting += 1; }, true);
  Object.defineProperty(window, "Hls", {
    configurable: true,
    get() { return wrapped; },
    set(Hls) {
      wrapped = class extends Hls {
        constructor(config) {
          super(Object.assign({}, config, overrides));
          window.__benchHls = this;
        }
      };
    },
  });
})();"""

SAMPLE = """(() => {
  const h = window.__benchHls, v = document.querySelector("video");
  const root = document.getElementById("channel");
  if (!h || !v) return null;
  const date = h.playingDate;
  const ahead = v.buffered.length ? v.buffered.end(v.buffered.length - 1) - v.currentTime : 0;
  return {
    latency: typeof h.latency === "number" ? h.latency : null,
    pdt: date ? (Date.now() - date.getTime()) / 1000 : null,
    page: root.dataset.latency ? Number(root.dataset.latency) : null,
    target: typeof h.targetLatency === "number" ? h.targetLatency : null,
    rate: v.playbackRate, ahead, paused: v.paused, waiting: window.__benchWaiting,
    low_latency: Boolean(h.config && h.config.lowLatencyMode),
  };
})()"""


def hlsjs_path() -> Path:
    from tests.support.browser.cdp import HLSJS  # the file tests/setup_browser.sh installs

    return HLSJS


def _pcts(values: list[float]) -> dict[str, float | None]:
    values = sorted(v for v in values if v is not None)
    if not values:
        return {"p50": None, "p95": None, "max": None}
    return {
        "p50": round(percentile(values, 50), 3),
        "p95": round(percentile(values, 95), 3),
        "max": round(values[-1], 3),
    }


async def _wait_segment(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(url) as resp:
                    if resp.status == 200 and "#EXTINF" in await resp.text():
                        return
            await asyncio.sleep(0.2)
    raise TimeoutError(f"no segment listed at {url}")


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    from tests.support.browser.cdp import chromium  # a CDP client on aiohttp, no pytest

    hls: dict[str, object] = {}
    if args.mode == "ll":
        hls = {"low_latency": True, "part_duration": args.part}
    else:
        hls = {"format": "ts"}
    server = RtmpdServer(fragment=args.fragment, playlist_length=max(30.0, 6 * args.fragment),
                         hls=hls, hlsjs_file=hlsjs_path())  # fmt: skip
    server.start()
    media = PreparedMedia(args.flv or ensure_media(SPECS[args.spec]))
    try:
        streams = await asyncio.to_thread(server.make_streams, 1)
        name = streams[0][1]
        total = 15 + args.warm + args.seconds + 10
        gen = LoadGenerator("127.0.0.1", server.rtmp_port, streams, media, seconds=total)
        publishing = asyncio.create_task(gen.run())
        base = f"http://127.0.0.1:{server.http_port}"
        await _wait_segment(f"{base}/live/{name}/index.m3u8", 20)
        samples: list[dict[str, Any]] = []
        with tempfile.TemporaryDirectory(prefix="bench-chromium-") as profile:
            async with chromium(Path(profile)) as page:
                await page.open("about:blank")
                await page.send("Page.addScriptToEvaluateOnNewDocument",
                                source=CAPTURE % json.dumps(args.hlsjs or {}))  # fmt: skip
                await page.navigate(f"{base}/{name}?player=hlsjs")
                await page.wait_for(
                    "(() => { const v = document.querySelector('video');"
                    " return v && v.currentTime > 0 && !v.paused; })()",
                    30,
                )
                await asyncio.sleep(args.warm)
                c0, t0, load0 = cpu_seconds(server.pid), time.monotonic(), loadavg()[0]
                next_at = time.monotonic()
                for _ in range(round(args.seconds)):
                    sample = await page.evaluate(SAMPLE)
                    if sample is not None:
                        sample["t"] = round(time.monotonic() - t0, 2)
                        samples.append(sample)
                    next_at += 1.0
                    await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                cpu = (cpu_seconds(server.pid) - c0) / (time.monotonic() - t0)
                load1 = loadavg()[0]
                errors = [c for c in page.console if "error" in c.lower()]
        for pub in list(gen.active):
            pub.finish()
        await publishing
    finally:
        server.stop()
    first, last = (samples[0], samples[-1]) if samples else ({}, {})
    row: dict[str, Any] = {
        "mode": args.mode,
        "format": "fmp4" if args.mode == "ll" else "ts",
        "fragment_s": args.fragment,
        "part_s": args.part if args.mode == "ll" else None,
        "spec": args.flv.name if args.flv else args.spec,
        "hlsjs_overrides": args.hlsjs or {},
        "samples": len(samples),
        "hls_latency_s": _pcts([s["latency"] for s in samples]),
        "pdt_latency_s": _pcts([s["pdt"] for s in samples]),
        "page_latency_s": _pcts([s["page"] for s in samples]),
        "target_latency_s": last.get("target"),
        "hlsjs_low_latency": last.get("low_latency"),
        "stalls": (last.get("waiting", 0) or 0) - (first.get("waiting", 0) or 0),
        "buffer_ahead_s_p50": _pcts([s["ahead"] for s in samples])["p50"],
        "rate_max": max((s["rate"] for s in samples), default=None),
        "server_cpu_share": round(cpu, 3),
        "loadavg": [load0, load1],
        "console_errors": errors[:5],
    }
    return row


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench.latency", description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=["ll", "ts"], default="ll")
    parser.add_argument("--fragment", type=float, default=2.0, help="[hls] fragment, seconds")
    parser.add_argument("--part", type=float, default=0.2, help="[hls] part_duration (ll)")
    parser.add_argument("--warm", type=float, default=10.0, help="seconds of playback first")
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds sampled")
    parser.add_argument("--spec", choices=sorted(SPECS), default="720p30")
    parser.add_argument("--flv", type=Path, help="another FLV file instead of the bench media")
    parser.add_argument("--hlsjs", type=json.loads, default=None,
                        help="hls.js settings merged into the page's (JSON)")  # fmt: skip
    parser.add_argument("--repeat", type=int, default=1, help="runs of the same setup")
    return parser


def main(argv: list[str] | None = None) -> int:
    from bench.run import record, table

    args = build_parser().parse_args(argv)
    cmd = "python -m bench.latency " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    print(f"# {cmd}", flush=True)
    rows = []
    for _ in range(args.repeat):
        row = record("latency", {**asyncio.run(measure(args)), "command": cmd})
        print(json.dumps(row), flush=True)
        flat = {**row}
        for key in ("hls_latency_s", "pdt_latency_s"):
            flat[f"{key}_p50"], flat[f"{key}_p95"] = row[key]["p50"], row[key]["p95"]
        rows.append(flat)
    cols = ["mode", "fragment_s", "part_s", "hls_latency_s_p50", "hls_latency_s_p95",
            "pdt_latency_s_p50", "pdt_latency_s_p95", "target_latency_s", "stalls",
            "server_cpu_share", "loadavg"]  # fmt: skip
    print(table(rows, cols))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
