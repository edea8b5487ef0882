"""The web layer's `LiveSource` (rtmpd.web.live), from rtmpd.hls: LL-HLS playlists and parts
held in memory. Lives in the composition root so web and hls stay unaware of each other.

The web layer names a request by what its URL says; in the flat layout a part's file is
`<name>-p<life>_<n>.m4s`, so its stream is the name before the last "-".
"""

from __future__ import annotations

from rtmpd.hls import HlsService
from rtmpd.hls.llhls import LivePlaylist


class HlsLiveSource:
    """Implements `rtmpd.web.live.LiveSource`."""

    def __init__(self, hls: HlsService, nested: bool) -> None:
        self._hls = hls
        self._nested = nested

    def playlist(self, name: str) -> LivePlaylist | None:
        return self._hls.live_playlist(name)

    def part(self, name: str, file: str) -> bytes | None:
        return self._hls.part(self._stream(name), file)

    def next_part(self, name: str, file: str) -> tuple[int, int] | None:
        return self._hls.hinted_part(self._stream(name), file)

    def _stream(self, name: str) -> str:
        return name if self._nested else name.rsplit("-", 1)[0]
