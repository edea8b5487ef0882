"""The lease an accepted publish holds: what was granted, and the one way to give it back.

A lease carries only what every decider uses (name, since, peer), read-only; each decider keeps
what else it needs about its leases in a record of its own (the database: the key's owner and
the live-state token; the callbacks: the request, for on_publish_done).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass


class Lease:
    """The right to publish under `name`; `end()` gives it back exactly once."""

    __slots__ = ("_name", "_since", "_peer", "_disconnect", "_on_end", "_ended")

    def __init__(
        self,
        name: str,
        since: float,
        peer: str,
        disconnect: Callable[[str], None],
        on_end: Callable[[Lease], Awaitable[None]],
    ) -> None:
        self._name = name
        self._since = since
        self._peer = peer
        self._disconnect = disconnect
        self._on_end = on_end
        self._ended = False

    @property
    def name(self) -> str:
        """The public name published under."""
        return self._name

    @property
    def since(self) -> float:
        """When the publish was granted (the service's clock)."""
        return self._since

    @property
    def peer(self) -> str:
        """The publisher's address as the attempt gave it."""
        return self._peer

    def disconnect(self, reason: str) -> None:
        """Ask the publisher's connection to close (takeover, ban, key rotation)."""
        self._disconnect(reason)

    async def end(self) -> None:
        if self._ended:
            return
        self._ended = True
        await self._on_end(self)

    def __repr__(self) -> str:
        return f"Lease(name={self._name!r}, ended={self._ended})"


@dataclass(frozen=True, slots=True)
class Accepted:
    name: str
    lease: Lease
