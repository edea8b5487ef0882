"""Prometheus metrics with their own registry, so every app (and every test) gets a fresh set.

The composition root calls the plain methods below from the RTMP and HLS sides; the web app counts
HTTP requests itself and renders everything at GET /metrics.

rtmpd workers run prometheus-client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR, set by each
worker before this is imported): every worker writes its values to files in one folder and
renders them all, counters and histograms summed, gauges summed over live workers (`livesum`),
so /metrics is the same view of all workers whichever answers.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

#: Segment lag: wall-clock delay between the end of a segment's media and it being listed.
LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)


class Metrics:
    """Counters and gauges for one rtmpd process."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        reg = self.registry
        #: The folder of every worker's values (multiprocess mode), or None: this process only.
        self.multiprocess_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        self._live = Gauge("rtmpd_live_publishers", "Streams being published now", registry=reg,
                           multiprocess_mode="livesum")  # fmt: skip
        self._players = Gauge("rtmpd_rtmp_players", "RTMP players playing now", registry=reg,
                              multiprocess_mode="livesum")  # fmt: skip
        self._pushes = Gauge(
            "rtmpd_push_connected",
            "Push destinations connected and publishing now",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self._relay_dropped = Counter(
            "rtmpd_relay_dropped_messages",
            "Media messages dropped for an output that could not take them (a slow RTMP "
            "player, a slow push destination): it goes on from the next keyframe",
            ["output"],
            registry=reg,
        )
        self._viewers = Gauge(
            "rtmpd_hls_viewers",
            "Distinct HLS clients in the last 30 seconds",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self._bytes = Counter(
            "rtmpd_received_bytes", "Bytes received from RTMP clients", registry=reg
        )
        self._segments = Counter(
            "rtmpd_hls_segments_written", "HLS segments written and listed", registry=reg
        )
        self._lag = Histogram(
            "rtmpd_hls_segment_lag_seconds",
            "Delay between a segment's last media and its listing in the playlist",
            buckets=LAG_BUCKETS,
            registry=reg,
        )
        self._attempts = Counter(
            "rtmpd_publish_attempts", "Publish attempts by outcome", ["outcome"], registry=reg
        )
        self._webhooks = Counter(
            "rtmpd_webhooks",
            "Webhook deliveries by outcome: delivered, retried (an attempt failed), failed "
            "(given up), dropped (the queue was full)",
            ["outcome"],
            registry=reg,
        )
        self._webhooks_pending = Gauge(
            "rtmpd_webhooks_pending",
            "Webhooks queued, in flight or waiting to retry",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self._workers = Gauge(
            "rtmpd_workers",
            "Worker processes running ([server] workers; 1 without)",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self._workers.set(1)
        self._http = Counter(
            "rtmpd_http_requests",
            "HTTP requests by route and status",
            ["route", "status"],
            registry=reg,
        )
        self._client_errors = Counter(
            "rtmpd_http_client_errors",
            "Routine client errors, counted instead of logged: malformed requests, clients "
            "that went away mid-response",
            ["kind"],
            registry=reg,
        )
        self._dropped = Counter(
            "rtmpd_http_connections_dropped",
            "HTTP connections rtmpd refused or closed: refused (503 at a cap), idle (closed at "
            "the total cap to make room), send_timeout (the client stopped reading), "
            "proxy_protocol (a PROXY header missing, malformed or from an untrusted peer)",
            ["reason"],
            registry=reg,
        )

    def set_pushes(self, count: int) -> None:
        self._pushes.set(count)

    def set_players(self, count: int) -> None:
        self._players.set(count)

    def relay_dropped(self, output: str, count: int = 1) -> None:
        """Messages a slow output dropped on the way to the next keyframe ("play", "push")."""
        self._relay_dropped.labels(output=output).inc(count)

    def set_live(self, count: int) -> None:
        self._live.set(count)

    def set_viewers(self, count: int) -> None:
        self._viewers.set(count)

    def bytes_received(self, count: int) -> None:
        self._bytes.inc(count)

    def segment_written(self, lag: float) -> None:
        """One segment listed, `lag` seconds after its media ended."""
        self._segments.inc()
        self._lag.observe(max(lag, 0.0))

    def publish_attempt(self, outcome: str) -> None:
        """Outcomes are short fixed words ("accepted", "unknown_key", "banned", ...)."""
        self._attempts.labels(outcome=outcome).inc()

    def webhook(self, outcome: str) -> None:
        self._webhooks.labels(outcome=outcome).inc()

    def set_webhooks_pending(self, count: int) -> None:
        self._webhooks_pending.set(count)

    def http_request(self, route: str, status: int) -> None:
        self._http.labels(route=route, status=str(status)).inc()

    def http_client_error(self, kind: str) -> None:
        """Kinds are short fixed words ("malformed", "disconnected")."""
        self._client_errors.labels(kind=kind).inc()

    def http_connection_dropped(self, reason: str) -> None:
        """Reasons are short fixed words ("refused", "idle", "send_timeout")."""
        self._dropped.labels(reason=reason).inc()

    def render(self) -> bytes:
        """The Prometheus text exposition of everything above (of every worker's)."""
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, self.multiprocess_dir)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
