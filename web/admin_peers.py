"""The admin API's live publishes across rtmpd workers (rtmpd.worker).

Each worker holds its own publishes, and worker 1 answers /api/admin/ for all (web/siblings.py):
for the list of publishes, one publish, its health and a kick it asks every other worker too,
over the private unix sockets, at once. A worker answers these on its private socket only
(`PRIVATE`, the public port says 404), with the admin API's own JSON of its own publishes. A
worker that does not answer within `PEER_TIMEOUT` (stopped, restarting) is named in the answer
instead of holding it: one stuck worker never hangs the dashboard.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .siblings import Siblings

#: Where a worker answers for its own publishes, on its private socket.
PRIVATE = "/_worker/admin/publishes"
#: Seconds another worker may take to answer before it is reported as not answering.
PEER_TIMEOUT = 2.0

log = logging.getLogger("rtmpd.admin")


@dataclass(slots=True)
class Peers:
    """The other workers, by number, and the client that asks them."""

    siblings: Siblings
    #: Worker number (as a string, X-Rtmpd-Worker's) -> its private HTTP socket.
    paths: Mapping[str, str]

    async def ask(self, method: str, url: str) -> tuple[list[tuple[int, Any]], list[str]]:
        """`method url` asked of every other worker at once: the (status, JSON body) of those
        that answered, and the numbers of those that did not."""
        labels = sorted(self.paths, key=lambda label: (len(label), label))
        answers = await asyncio.gather(
            *(self.siblings.call(self.paths[label], method, url, timeout=PEER_TIMEOUT)
              for label in labels)
        )  # fmt: skip
        missing = [label for label, got in zip(labels, answers, strict=True) if got is None]
        if missing:
            log.warning("%s %s: worker(s) %s did not answer within %g s", method, url,
                        ", ".join(missing), PEER_TIMEOUT)  # fmt: skip
        return [got for got in answers if got is not None], missing
