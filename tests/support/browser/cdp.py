"""A minimal Chrome DevTools Protocol client on aiohttp's websocket, for headless Chromium.

Chromium is started with --remote-debugging-port=0 and prints the browser's websocket URL on
stderr; one page target is created and attached in flat mode, so every command for the page
carries its session id. Only what the tests need: navigate, evaluate, screenshot.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM = os.environ.get("RTMPD_CHROMIUM", "/usr/bin/chromium")
CACHE = Path(os.environ.get("RTMPD_TEST_CACHE", Path.home() / ".cache" / "rtmpd-test"))
HLSJS = CACHE / "node_modules" / "hls.js" / "dist" / "hls.min.js"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--mute-audio",
    "--disable-dev-shm-usage",
    "--window-size=1024,768",
    "--remote-debugging-port=0",
]
_WS = re.compile(rb"DevTools listening on (ws://\S+)")


class CdpError(RuntimeError):
    pass


class Page:
    """One tab: send commands, evaluate JavaScript, take screenshots."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._session: str | None = None
        self._reader = asyncio.create_task(self._read())
        self.console: list[str] = []  # console calls, browser log entries, uncaught exceptions

    async def _read(self) -> None:
        async for msg in self._ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            future = self._waiting.pop(data.get("id", -1), None)
            if future is not None and not future.done():
                future.set_result(data)
            elif data.get("method") == "Runtime.consoleAPICalled":
                args = data["params"]["args"]
                text = " ".join(str(a.get("value", a.get("type"))) for a in args)
                self.console.append(f"console.{data['params']['type']}: {text}")
            elif data.get("method") == "Log.entryAdded":
                entry = data["params"]["entry"]
                where = entry.get("url", "")
                self.console.append(f"{entry['source']} {entry['level']}: {entry['text']} {where}")
            elif data.get("method") == "Runtime.exceptionThrown":
                details = data["params"]["exceptionDetails"]
                self.console.append(f"exception: {details.get('exception', details)}")
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(CdpError("browser connection closed"))

    async def send(self, method: str, session: bool = True, **params: Any) -> dict[str, Any]:
        ident = next(self._ids)
        message: dict[str, Any] = {"id": ident, "method": method, "params": params}
        if session and self._session is not None:
            message["sessionId"] = self._session
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[ident] = future
        await self._ws.send_str(json.dumps(message))
        reply = await asyncio.wait_for(future, timeout=30)
        if "error" in reply:
            raise CdpError(f"{method}: {reply['error']}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    async def open(self, url: str) -> None:
        target = await self.send("Target.createTarget", session=False, url="about:blank")
        attached = await self.send(
            "Target.attachToTarget", session=False, targetId=target["targetId"], flatten=True
        )
        self._session = attached["sessionId"]
        await self.send("Runtime.enable")
        await self.send("Log.enable")
        await self.send("Page.enable")
        await self.navigate(url)

    async def navigate(self, url: str) -> None:
        """Load `url` and wait until that document has finished loading."""
        await self.send("Page.navigate", url=url)
        await self.wait_for(
            f"document.readyState === 'complete' && location.href === {json.dumps(url)}", 30
        )

    async def evaluate(self, expression: str) -> Any:
        reply = await self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in reply:
            raise CdpError(f"{expression}: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    async def wait_for(self, expression: str, timeout: float) -> Any:
        """Poll `expression` until it is truthy; a guard against hangs, not a speed check."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"still false after {timeout} s: {expression}")
            await asyncio.sleep(0.25)

    async def screenshot(self, path: Path) -> None:
        shot = await self.send("Page.captureScreenshot", format="png")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


@contextlib.asynccontextmanager
async def chromium(profile: Path) -> AsyncIterator[Page]:
    """Start headless Chromium with a throwaway profile; yield a Page ready for `open`."""
    if shutil.which(CHROMIUM) is None:
        raise RuntimeError(f"{CHROMIUM} is missing: run tests/setup_browser.sh first")
    proc = await asyncio.create_subprocess_exec(
        CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    try:
        url = await asyncio.wait_for(_devtools_url(proc.stderr), timeout=30)
        async with aiohttp.ClientSession() as http, http.ws_connect(url, max_msg_size=0) as ws:
            drain = asyncio.create_task(_drain(proc.stderr))
            page = Page(ws)
            try:
                yield page
            finally:
                with contextlib.suppress(CdpError, TimeoutError, ConnectionError):
                    await page.send("Browser.close", session=False)  # exits with its children
                await page.close()
                drain.cancel()
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), timeout=10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def _devtools_url(stderr: asyncio.StreamReader) -> str:
    while line := await stderr.readline():
        if m := _WS.search(line):
            return m[1].decode()
    raise RuntimeError("Chromium exited before printing its DevTools URL")


async def _drain(stderr: asyncio.StreamReader) -> None:
    """Keep reading Chromium's stderr so it never blocks on a full pipe."""
    while await stderr.read(65536):
        pass
