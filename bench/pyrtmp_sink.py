"""A pyrtmp server that accepts every publish and discards the media: ingest cost only.

    python -m bench.pyrtmp_sink PORT

pyrtmp configures the root logger at DEBUG when pyrtmp.rtmp is imported; logging is reset to
WARNING right after, or the log lines alone would dominate the CPU we measure.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

from pyrtmp.rtmp import RTMPProtocol, SimpleRTMPController

logging.getLogger().setLevel(logging.WARNING)
logging.getLogger("pyrtmp").setLevel(logging.WARNING)
logging.getLogger("pyrtmp.rtmp").setLevel(logging.WARNING)


class DiscardController(SimpleRTMPController):  # type: ignore[misc]
    """Drops media, counting it, and prints one line per closed publisher (proof of work)."""

    def __init__(self) -> None:
        self.messages = 0
        self.last_ts = 0

    async def on_video_message(self, session: object, message: Any) -> None:
        self.messages += 1
        self.last_ts = message.timestamp

    async def on_audio_message(self, session: object, message: Any) -> None:
        self.messages += 1

    async def on_stream_closed(self, session: object, exception: Exception) -> None:
        return None

    async def cleanup(self, session: object) -> None:
        print(f"closed: {self.messages} media messages, last video ts {self.last_ts}", flush=True)


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: RTMPProtocol(controller=DiscardController()), host="127.0.0.1", port=port
    )
    await server.serve_forever()


def main() -> int:
    asyncio.run(serve(int(sys.argv[1])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
