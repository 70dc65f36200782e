"""Stage 2 on the real kernel: our agent takes over a claim Harvester's controller served.

Harvester's controller leaves behind, for a claimed NIC: the NIC on ``vfio-pci`` (moved its way,
``driver_override`` then ``drivers_probe``), the PCIDevice annotated with the driver it had
(``harvesterhci.io/pcideviceDriver``) and the claim with its controller's finalizer, an owner
reference to the PCIDevice, ``status.kernelDriverToUnbind`` and ``passthroughEnabled``. This test
makes that state by hand in the guest (`rawsysfs`, the API), then starts our agent, as
`test_guest_agent.py` does, on the same background API server.

What shows that nothing moves at take-over: a kernel uevent socket (`uevents`) opened before the
agent starts. The kernel sends a ``bind``/``unbind`` uevent for every driver bind and unbind of
the device (and e1000e would add a network interface), so a rebind, however brief, leaves events
in the socket's buffer; sampling the ``driver`` link could miss it. The same socket is first
checked to see the hand-made move to ``vfio-pci``, so an empty drain means "no move", not "no
events seen". Deleting the claim must return the NIC to e1000e and the claim must go, although
Harvester's finalizer is on it and Harvester's controller is not running.

It runs before `test_guest_agent.py` (the guest's conftest orders it) and removes the Node and
PCIDevice objects it made, so that test starts from an empty cluster.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.guest import rawsysfs
from e2e.guest.cluster import STAGE2_CLUSTER
from e2e.guest.uevents import UeventMonitor
from e2e.layout import FREE_NIC, GUEST_HOSTNAME
from harness.kube import KubeCluster
from harvester_objects import ORIGINAL_DRIVER, create_harvester_claim
from kubelet_standin import KubeletStandIn
from pcicore.claim_report import FINALIZER
from pcicore.takeover import HARVESTER_FINALIZER
from pcioperator.kube.api import NODES, PCIDEVICECLAIMS, PCIDEVICES, KubeApi
from pcioperator.kube.errors import ConflictError, NotFoundError
from polling import wait_for

CLUSTER_TIMEOUT = 900.0
"""Seconds to wait for the background cluster (it starts at collection; stage 1 runs first)."""
RANCHER_USER = "user-x7k2q"
"""A Rancher user id, the form Harvester's UI writes into ``spec.userName``."""


@pytest.fixture(scope="module")
def cluster() -> KubeCluster:
    """The stage-2 API server; `test_guest_agent.py`, which runs after this file, stops it."""
    return STAGE2_CLUSTER.wait(CLUSTER_TIMEOUT)


@pytest.fixture
def kubelet() -> Iterator[KubeletStandIn]:
    """A kubelet stand-in in a short folder (unix socket paths stay below 108 bytes)."""
    standin = KubeletStandIn(Path(tempfile.mkdtemp(prefix="dp-", dir="/run")))
    standin.start()
    yield standin
    standin.stop()


def _ready(api: KubeApi, name: str) -> dict | None:
    status = api.get(PCIDEVICECLAIMS, name).get("status") or {}
    found = next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), None)
    return found if (found or {}).get("status") == "True" else None


def _gone(api: KubeApi, name: str) -> bool:
    try:
        api.get(PCIDEVICECLAIMS, name)
    except NotFoundError:
        return True
    return False


def _harvester_state(api: KubeApi, name: str) -> None:
    """The NIC on vfio-pci, its PCIDevice and claim, as Harvester's controller leaves them."""
    rawsysfs.bind_to_vfio(FREE_NIC)
    create_harvester_claim(
        api,
        name,
        node=GUEST_HOSTNAME,
        address=FREE_NIC,
        original_driver="e1000e",
        user=RANCHER_USER,
    )


def _clean_up(api: KubeApi, claim: str) -> None:
    """Remove the objects this test made, so the next stage-2 test starts from none."""
    try:  # still there after a failure: let it go with no controller running
        api.patch(PCIDEVICECLAIMS, claim, {"metadata": {"finalizers": None}})
        api.delete(PCIDEVICECLAIMS, claim)
    except NotFoundError:
        pass
    items, _ = api.list_objects(PCIDEVICES, label_selector=f"nodename={GUEST_HOSTNAME}")
    for item in items:
        api.delete(PCIDEVICES, item["metadata"]["name"])
    with contextlib.suppress(NotFoundError):
        api.delete(NODES, GUEST_HOSTNAME)


def test_agent_takes_over_harvesters_claim_without_moving_the_nic(cluster, kubelet, tmp_path):
    """No bind or unbind at take-over, the claim gets our Ready; deletion returns the NIC."""
    api = KubeApi(cluster.api_client)
    with contextlib.suppress(ConflictError):
        api.create(
            NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": GUEST_HOSTNAME}}
        )
    name = f"{GUEST_HOSTNAME}-{FREE_NIC.replace(':', '').replace('.', '')}"
    assert rawsysfs.driver(FREE_NIC) == "e1000e"
    log = (tmp_path / "agent.log").open("w")
    agent: subprocess.Popen | None = None
    with UeventMonitor() as uevents:
        try:
            _harvester_state(api, name)
            assert rawsysfs.driver(FREE_NIC) == "vfio-pci"
            # The socket sees a move: Harvester's unbind from e1000e and bind to vfio-pci.
            moves = uevents.moves_of(FREE_NIC)
            assert {"unbind", "bind"} <= {action for action, _ in moves}, moves

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
                    "--device-plugins-dir",
                    str(kubelet.folder),
                ],
                stderr=log,
            )
            drivers_seen = set()

            def ready() -> dict | None:
                drivers_seen.add(rawsysfs.driver(FREE_NIC))
                return _ready(api, name)

            wait_for(ready, timeout=300, interval=0.5)
            assert drivers_seen == {"vfio-pci"}
            assert uevents.moves_of(FREE_NIC) == []
            claim = api.get(PCIDEVICECLAIMS, name)
            assert claim["status"]["passthroughEnabled"] is True
            assert claim["status"]["kernelDriverToUnbind"] == "e1000e"
            assert set(claim["metadata"]["finalizers"]) == {HARVESTER_FINALIZER, FINALIZER}
            assert claim["spec"]["userName"] == RANCHER_USER
            # Once the agent has written the PCIDevice's status, it has decided the annotation.
            wait_for(
                lambda: (api.get(PCIDEVICES, name).get("status") or {}).get("kernelDriverInUse")
            )
            device = api.get(PCIDEVICES, name)
            assert device["metadata"]["annotations"] == {ORIGINAL_DRIVER: "e1000e"}
            assert device["status"]["kernelDriverInUse"] == "vfio-pci"

            api.delete(PCIDEVICECLAIMS, name)
            wait_for(lambda: _gone(api, name), timeout=180, interval=1)
            assert rawsysfs.driver(FREE_NIC) == "e1000e"
            assert rawsysfs.net_interfaces(FREE_NIC)
            agent.terminate()
            assert agent.wait(timeout=60) == 0
        finally:
            if agent is not None and agent.poll() is None:
                agent.kill()
            log.close()
            _clean_up(api, name)
            print((tmp_path / "agent.log").read_text()[-3000:])  # noqa: T201 (in the guest's log)
