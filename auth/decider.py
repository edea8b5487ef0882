"""What a source of publish decisions does, so that `AuthService` can hold the rest once.

The service owns everything the sources share: the failed-attempt limit (`AttemptGuard`), the
table of live leases with takeover or reject, and the log line that says a publish was
accepted. A decider says yes or no to a key, records a granted publish as live, hears when it
ends and describes channels. Two implement it: `DatabaseDecider` (users and key digests in the
store) and `CallbackDecider` (nginx-rtmp style on_publish / on_publish_done endpoints).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from .lease import Lease
from .model import Channel, Denied, PublishAttempt

#: What a decider remembers of its yes until the lease exists (a key's owner, the request).
GrantT = TypeVar("GrantT")


@dataclass(frozen=True, slots=True)
class Request:
    """One publish attempt as a decider is asked it: the key split from its query, and the
    host that failed attempts are counted against."""

    attempt: PublishAttempt
    key: str
    query: str
    host: str


@dataclass(frozen=True, slots=True)
class Granted(Generic[GrantT]):
    """A decider's yes: the public name, and what `went_live` gets back with the lease."""

    name: str
    grant: GrantT


class Decider(Protocol[GrantT]):
    """A source of publish decisions. The service calls `start()` before the first decision
    and `stop()` after it has let go of every lease (those still live then end silently)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def decide(self, request: Request) -> Granted[GrantT] | Denied:
        """Yes or no to the key. A refusal of the key itself goes through
        `AttemptGuard.refused` so that it counts toward the limit (a yes does not undo it);
        the lookup runs inside `AttemptGuard.turn`, one at a time per address."""
        ...

    async def went_live(self, lease: Lease, grant: GrantT) -> Denied | None:
        """Record the granted publish as live (a Denied if that cannot be recorded). Called
        with the service's accept lock for that name held, before a publisher taken over is
        disconnected."""
        ...

    async def ended(self, lease: Lease) -> None:
        """The lease ended: it may have been taken over (then a newer lease holds its name)."""
        ...

    async def channel(self, name: str, live: Lease | None) -> Channel | None:
        """The channel `name` for pages and the API, `live` being its current lease; None if
        this decider does not know the name."""
        ...
