"""Stage 2 on the real kernel: the agent process against a real API server inside the guest.

The kube test harness (`tests/harness/kube.py`: etcd + kube-apiserver + controller manager from
the host's cache, which the guest sees at the same path) runs on the guest's loopback; the agent
runs as `pcidevices agent` against the guest's real `/sys`. A PCIDeviceClaim for the free e1000e
must reach `passthroughEnabled` with the NIC on vfio-pci, and deleting it must return the NIC.
Every phase's duration goes to `stage2-timings.json` on the result share (TCG is slow).
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.guest import rawsysfs, vfio
from e2e.layout import FREE_NIC, GUEST_HOSTNAME
from e2e.qemu import RESULT_MOUNT
from harness.kube import CRD_DIR, KubeCluster
from pcioperator.kube.api import NODES, PCIDEVICECLAIMS, PCIDEVICES, KubeApi
from pcioperator.kube.errors import NotFoundError
from polling import wait_for

READY_TIMEOUT = 420.0
"""Seconds for kube-apiserver's `/readyz` under TCG (measured: not ready after 120 s)."""
TIMINGS: dict[str, float] = {}
_TIMINGS_FILE = Path(RESULT_MOUNT, "stage2-timings.json")


class _Phase:
    """Time one phase into `TIMINGS` and the result share."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> None:
        self.started = time.monotonic()

    def __exit__(self, *exc: object) -> None:
        TIMINGS[self.name] = round(time.monotonic() - self.started, 1)
        _TIMINGS_FILE.write_text(json.dumps(TIMINGS, indent=2) + "\n")


class _PatientCluster(KubeCluster):
    """The kube harness with start-up deadlines for TCG: `/readyz` takes minutes, not seconds."""

    def _wait_ready(self, timeout: float) -> None:
        super()._wait_ready(max(timeout, READY_TIMEOUT))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    """etcd, kube-apiserver and the controller manager on the guest's loopback, CRDs installed."""
    with _Phase("cluster_start"):
        running = _PatientCluster.start(tmp_path_factory.mktemp("kube"))
    with _Phase("crds"):
        running.install_crds(sorted(CRD_DIR.glob("*.yaml")), timeout=300)
    yield running
    with _Phase("cluster_stop"):
        running.stop()


def _devices(api: KubeApi) -> dict[str, dict]:
    items, _ = api.list_objects(PCIDEVICES, label_selector=f"nodename={GUEST_HOSTNAME}")
    # The agent creates each object, then writes its status (a subresource): wait for both.
    return {item["status"]["address"]: item for item in items if item.get("status")}


def _passthrough(api: KubeApi, name: str) -> dict | None:
    claim = api.get(PCIDEVICECLAIMS, name)
    return claim if (claim.get("status") or {}).get("passthroughEnabled") else None


def _gone(api: KubeApi, name: str) -> bool:
    try:
        api.get(PCIDEVICECLAIMS, name)
    except NotFoundError:
        return True
    return False


def test_agent_claim_moves_the_free_nic_to_vfio_and_deletion_returns_it(cluster, tmp_path):
    """The agent publishes the guest's devices, binds a claimed e1000e, and returns it."""
    api = KubeApi(cluster.api_client)
    api.create(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": GUEST_HOSTNAME}})
    expected = {entry.name for entry in Path("/sys/bus/pci/devices").iterdir()}
    log = (tmp_path / "agent.log").open("w")
    agent = subprocess.Popen(
        [
            "pcidevices",
            "agent",
            "--node",
            GUEST_HOSTNAME,
            "--kubeconfig",
            str(cluster.kubeconfig),
            "--state-file",
            str(tmp_path / "claims.json"),
            "--metrics-address",
            "off",
            "--no-device-plugin",
        ],
        stderr=log,
    )
    name = f"{GUEST_HOSTNAME}-{FREE_NIC.replace(':', '').replace('.', '')}"
    try:
        with _Phase("agent_publishes_devices"):
            wait_for(lambda: set(_devices(api)) == expected, timeout=300, interval=1)
        assert _devices(api)[FREE_NIC]["status"]["kernelDriverInUse"] == "e1000e"

        with _Phase("claim_to_passthrough"):
            api.create(
                PCIDEVICECLAIMS,
                {
                    "apiVersion": "devices.harvesterhci.io/v1beta1",
                    "kind": "PCIDeviceClaim",
                    "metadata": {"name": name},
                    "spec": {"address": FREE_NIC, "nodeName": GUEST_HOSTNAME, "userName": "e2e"},
                },
            )
            claim = wait_for(lambda: _passthrough(api, name), timeout=180, interval=1)
        assert claim["status"]["kernelDriverToUnbind"] == "e1000e"
        assert rawsysfs.driver(FREE_NIC) == "vfio-pci"
        assert vfio.group_status(rawsysfs.iommu_group(FREE_NIC)) == vfio.GroupStatus(
            viable=True, container_set=False
        )

        with _Phase("deletion_to_return"):
            api.delete(PCIDEVICECLAIMS, name)
            wait_for(lambda: _gone(api, name), timeout=180, interval=1)
        assert rawsysfs.driver(FREE_NIC) == "e1000e"
        assert rawsysfs.net_interfaces(FREE_NIC)

        with _Phase("agent_sigterm"):
            agent.send_signal(signal.SIGTERM)
            assert agent.wait(timeout=60) == 0
    finally:
        if agent.poll() is None:
            agent.kill()
        log.close()
        print((tmp_path / "agent.log").read_text()[-3000:])  # noqa: T201 (in the guest's log)
        print(f"stage 2 timings: {TIMINGS}")  # noqa: T201
