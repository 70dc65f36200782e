"""The agent's Prometheus metrics and its /metrics, /healthz and /readyz endpoints."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from pcioperator.kube.api import is_write


class AgentMetrics:
    """Every metric the agent exports, in a registry of its own."""

    def __init__(self) -> None:
        """Create the metrics (no I/O)."""
        self.registry = CollectorRegistry()
        self.devices = Gauge(
            "pcidevices_devices", "PCI devices on this node", registry=self.registry
        )
        self.claims = Gauge(
            "pcidevices_claims", "Claims on this node by phase", ["phase"], registry=self.registry
        )
        self.reconcile_seconds = Histogram(
            "pcidevices_reconcile_duration_seconds",
            "Time spent in one reconcile",
            ["controller"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.reconcile_errors = Counter(
            "pcidevices_reconcile_errors_total",
            "Reconciles that failed (and were retried)",
            ["controller"],
            registry=self.registry,
        )
        self.api_requests = Counter(
            "pcidevices_api_requests_total",
            "Requests made to the Kubernetes API",
            ["verb", "resource"],
            registry=self.registry,
        )
        self.api_writes = Counter(
            "pcidevices_api_writes_total",
            "Requests that changed state on the Kubernetes API",
            ["resource"],
            registry=self.registry,
        )

    def reconciled(self, controller: str, seconds: float, error: BaseException | None) -> None:
        """Record one reconcile (the `ReconcileObserver` protocol)."""
        self.reconcile_seconds.labels(controller).observe(seconds)
        if error is not None:
            self.reconcile_errors.labels(controller).inc()

    def request(self, verb: str, resource: str) -> None:
        """Record one API request."""
        self.api_requests.labels(verb, resource).inc()
        if is_write(verb):
            self.api_writes.labels(resource).inc()

    def set_claim_phases(self, phases: dict[str, str]) -> None:
        """Replace the claims-by-phase gauge with the phases of the claims now known."""
        self.claims.clear()
        for phase in phases.values():
            self.claims.labels(phase).inc()


class HealthServer:
    """Serves /metrics, /healthz (the loops are alive) and /readyz (caches are synced)."""

    def __init__(
        self,
        address: tuple[str, int],
        metrics: AgentMetrics,
        healthy: Callable[[], bool],
        ready: Callable[[], bool],
    ) -> None:
        """Bind to ``address`` (port 0 picks a free one)."""
        registry = metrics.registry

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/metrics":
                    self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
                elif self.path == "/healthz":
                    ok = healthy()
                    self._send(200 if ok else 503, b"ok\n" if ok else b"unhealthy\n")
                elif self.path == "/readyz":
                    ok = ready()
                    self._send(200 if ok else 503, b"ok\n" if ok else b"not ready\n")
                else:
                    self._send(404, b"not found\n")

            def _send(self, code: int, body: bytes, kind: str = "text/plain") -> None:
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - base name
                del format, args  # probes every few seconds would flood the log

        self._server = ThreadingHTTPServer(address, Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="health", daemon=True
        )

    @property
    def port(self) -> int:
        """The port it listens on."""
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
