"""What every long-running pcidevices process does the same way at start and stop.

Structured logs (one JSON object per line), the Kubernetes client configuration (file or
in-cluster), and waiting for SIGTERM/SIGINT. Used by the composition roots' ``run`` functions;
nothing here runs at import time.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

import injector
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from pcicore.errors import PciDevicesError
from pcioperator.kube.api import KubeApi
from pcioperator.kube.metrics import AgentMetrics

log = logging.getLogger(__name__)


class JsonLogFormatter(logging.Formatter):
    """One JSON object per log line: time, level, logger, message (and the error, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as JSON."""
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging() -> None:
    """Structured logs on stderr, at INFO."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLogFormatter())
    logging.basicConfig(level=logging.INFO, handlers=[handler])


def load_api_client(kubeconfig: Path | None) -> k8s_client.ApiClient:
    """An API client from ``kubeconfig``, else in-cluster, else ``$KUBECONFIG``.

    Raises:
        PciDevicesError: no usable configuration was found.
    """
    configuration = k8s_client.Configuration()
    try:
        if kubeconfig is not None:
            k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                str(kubeconfig), client_configuration=configuration
            )
        else:
            try:
                k8s_config.load_incluster_config(  # type: ignore[no-untyped-call]
                    client_configuration=configuration
                )
            except k8s_config.ConfigException:
                k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                    client_configuration=configuration
                )
    except (k8s_config.ConfigException, OSError, TypeError, ValueError) as err:
        raise PciDevicesError(
            f"cannot load a Kubernetes configuration ({err}); pass --kubeconfig PATH or run "
            "in a pod with a service account"
        ) from err
    return k8s_client.ApiClient(configuration)


def termination_signal() -> threading.Event:
    """An event set by the first SIGTERM or SIGINT (handlers installed now)."""
    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    return stop


class CountedApiModule(injector.Module):
    """The Kubernetes API for a process, every request counted in its metrics.

    Shared by the agent and the cluster controller; builds objects only.
    """

    def __init__(self, api_client: k8s_client.ApiClient) -> None:
        """Talk to the API through ``api_client`` (loaded by the process's ``run``)."""
        self._api_client = api_client

    @injector.singleton
    @injector.provider
    def metrics(self) -> AgentMetrics:
        """Reconcile and API-request metrics."""
        return AgentMetrics()

    @injector.singleton
    @injector.provider
    def api(self, metrics: AgentMetrics) -> KubeApi:
        """The Kubernetes API, with every request counted."""
        return KubeApi(self._api_client, on_request=metrics.request)
