"""`pcidevices agent` as a process: real API server, this machine's real /sys (read only)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pcioperator.kube.api import NODES, PCIDEVICES, KubeApi
from polling import wait_for

pytestmark = pytest.mark.kube


def _free_port() -> int:
    import socket  # noqa: PLC0415

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, ""
    except OSError:
        return 0, ""


def _sample(exposition: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus text exposition (0 when it is not there)."""
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def test_agent_process_discovers_serves_metrics_and_stops_on_sigterm(kube, unique_name, tmp_path):
    """The agent process writes this machine's devices, answers probes, exits 0 on SIGTERM."""
    node = unique_name("proc")
    api = KubeApi(kube.api_client)
    api.create(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}})
    port = _free_port()
    log = (tmp_path / "agent.log").open("w")
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "pcidevices"),
            "agent",
            "--node",
            node,
            "--kubeconfig",
            str(kube.kubeconfig),
            "--state-file",
            str(tmp_path / "claims.json"),
            "--metrics-address",
            f"127.0.0.1:{port}",
            "--no-device-plugin",
        ],
        stderr=log,
    )
    try:
        expected = len(list(Path("/sys/bus/pci/devices").iterdir()))
        wait_for(
            lambda: (
                len(api.list_objects(PCIDEVICES, label_selector=f"nodename={node}")[0]) == expected
            ),
            timeout=60,
        )
        assert wait_for(lambda: _get(f"http://127.0.0.1:{port}/readyz")[0] == 200)
        assert _get(f"http://127.0.0.1:{port}/healthz")[0] == 200
        status, metrics = _get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200
        assert f"pcidevices_devices {float(expected)}" in metrics
        # A fresh registry prints every counter at 0: the value, not the name, shows writes.
        assert (
            _sample(metrics, "pcidevices_api_writes_total", resource=PCIDEVICES.plural) >= expected
        )
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
        log.close()
    lines = (tmp_path / "agent.log").read_text().splitlines()
    assert lines, "the agent logged nothing"
    assert all(json.loads(line)["level"] for line in lines)  # structured: one JSON per line
