"""The OpenAPI document at /api/openapi.json is true: schemathesis generates requests from it
against a whole running rtmpd and checks every answer (status documented, body matching its
schema, auth enforced, invalid input refused, valid input accepted); and every /api route is
in the document and nothing else is.

schemathesis calls the server synchronously (requests), so the server runs on an event loop of
its own in a thread here. The example count is bounded to keep the run short for CI.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from rtmpd.web.openapi import PATHS, document

from rtmpd.app import Rtmpd
from tests.support.app import start_server

EXAMPLES = 25


class ThreadedServer:
    """A whole rtmpd on its own loop in a daemon thread."""

    def __init__(self, tmp_path: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        # no failed-token limit: schemathesis sends invalid tokens on purpose, by the hundred
        self.server: Rtmpd = self.run(start_server(tmp_path, auth={"max_failures": 0}))
        assert self.server.accounts is not None
        self.token: str = self.run(self.server.accounts.add_token("schemathesis"))
        for name in ("benw", "alice"):
            self.run(self.server.accounts.add_user(name))
        self.base = f"http://127.0.0.1:{self.server.http_port}"

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def stop(self) -> None:
        self.run(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedServer]:
    server = ThreadedServer(tmp_path_factory.mktemp("schema"))
    yield server
    server.stop()


#: The document as the server serves it (test_the_document_lists_exactly_the_api_routes checks
#: that the served one is this one); loaded here so the tests are made at collection time.
schema = schemathesis.openapi.from_dict(document())


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))  # fmt: skip
def test_every_answer_matches_the_document(case: Any, live_server: ThreadedServer) -> None:
    case.call_and_validate(
        base_url=live_server.base, headers={"Authorization": f"Bearer {live_server.token}"}
    )


def test_the_document_lists_exactly_the_api_routes(live_server: ThreadedServer) -> None:
    document = requests.get(f"{live_server.base}/api/openapi.json", timeout=10).json()
    assert document["openapi"] == "3.1.0" and document["paths"] == PATHS
    app = live_server.server._runner.app if live_server.server._runner else None
    assert app is not None
    routes = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter") or ""
        if path.startswith("/api/") and path != "/api/openapi.json" and route.method != "HEAD":
            routes.add((path.replace("{name:[A-Za-z0-9_-]{1,64}}", "{name}"), route.method.lower()))
    documented = {(path, method) for path, item in PATHS.items() for method in item}
    assert routes == documented
