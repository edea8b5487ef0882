"""How one server session behaves: its timeouts, what it announces after connect, and what it
allows. A module of its own so that the session, the command handlers and the composition
root can all name it without importing one another; the defaults are the named limits."""

from __future__ import annotations

from dataclasses import dataclass

from . import limits


@dataclass(frozen=True, slots=True)
class SessionConfig:
    handshake_timeout: float = limits.HANDSHAKE_TIMEOUT
    publish_timeout: float = limits.CONNECT_TO_PUBLISH_TIMEOUT
    idle_timeout: float = limits.PUBLISH_IDLE_TIMEOUT
    chunk_size: int = limits.SERVER_CHUNK_SIZE
    window_ack_size: int = limits.WINDOW_ACK_SIZE
    peer_bandwidth: int = limits.PEER_BANDWIDTH
    max_name_bytes: int = limits.MAX_NAME_BYTES
    max_streams: int = limits.MAX_STREAMS_PER_CONNECTION
