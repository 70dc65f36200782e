"""The node agent against a real kube-apiserver + etcd, on a fake kernel."""

from __future__ import annotations

import errno
import time
from pathlib import Path

import pytest

from fakesys.hosts import FREE_NIC, GPU, MGMT_NIC, ROOT_PORT, workstation
from fakesys.tree import FakeDevice, SysfsTree
from kube_events import reasons_about, wait_for_events
from pcicore.address import PciAddress
from pcicore.device import DriverName
from pcicore.ledger import ClaimRecord, Ledger
from pcicore.policy import GroupPolicy
from pcicore.protection import DenyList
from pcidevices.wiring.agent import AgentConfig, agent_injector
from pcioperator.agent import Agent
from pcioperator.kube.api import NODES, PCIDEVICECLAIMS, PCIDEVICES, KubeApi
from pcioperator.kube.errors import NotFoundError
from polling import wait_for

pytestmark = pytest.mark.kube

PUBLISHED = 7
"""The workstation's 8 functions less its PCIe root port (a bridge: not published)."""


def devices_of(api, node):
    items, _ = api.list_objects(PCIDEVICES, label_selector=f"nodename={node}")
    return {item["metadata"]["name"]: item for item in items}


def published(api, node, count):
    """This node's devices once there are ``count`` and each has its status (else ``None``).

    The agent creates objects first and writes their status next (the API ignores a status
    sent with a create), so a reader can see an object without status in between.
    """
    devices = devices_of(api, node)
    if len(devices) != count or not all("status" in obj for obj in devices.values()):
        return None
    return devices


def compact(address):
    return address.replace(":", "").replace(".", "")


def claim_body(node, address, user="alice", **spec):
    return {
        "apiVersion": "devices.harvesterhci.io/v1beta1",
        "kind": "PCIDeviceClaim",
        "metadata": {"name": f"{node}-{compact(address)}"},
        "spec": {"address": address, "nodeName": node, "userName": user, **spec},
    }


def requests_made(agent):
    """The agent's API requests so far, by verb and resource (its request metric)."""
    return {
        (sample.labels["verb"], sample.labels["resource"]): sample.value
        for metric in agent.metrics.api_requests.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    }


def ready_condition(claim):
    conditions = (claim.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == "Ready"), None)


class TestDeviceSync:
    """PCIDevice objects follow the node's bus."""

    def test_devices_appear_with_owner_label_and_status(self, start_agent):
        """Every device on the bus gets an object owned by the Node, labelled and with status."""
        running = start_agent()
        devices = wait_for(lambda: published(running.api, running.node, PUBLISHED))
        nic = devices[f"{running.node}-{compact(MGMT_NIC)}"]
        assert nic["metadata"]["labels"] == {"nodename": running.node}
        assert nic["metadata"]["annotations"] == {"harvesterhci.io/pcideviceDriver": "e1000e"}
        assert nic["metadata"]["ownerReferences"][0]["kind"] == "Node"
        assert nic["status"]["kernelDriverInUse"] == "e1000e"
        assert nic["status"]["iommuGroup"] == "3"
        assert nic["status"]["resourceName"] == "intel.com/ETHERNET_CONNECTION_7_I219LM"
        # The management NIC is reported as one the host depends on; a free NIC is not.
        assert nic["status"]["hostProtected"] is True
        assert "default route" in nic["status"]["protectionReason"]
        free = devices[f"{running.node}-{compact(FREE_NIC)}"]
        assert (free["status"]["hostProtected"], free["status"]["protectionReason"]) == (False, "")
        # As in Harvester, the PCIe root port (a PCI-to-PCI bridge, class 0604) is not published.
        assert f"{running.node}-{compact(ROOT_PORT)}" not in devices

    def test_idle_rescans_write_nothing(self, start_agent):
        """With nothing changed, rescans make no API request at all."""
        running = start_agent(rescan_interval=0.1)
        wait_for(lambda: len(devices_of(running.api, running.node)) == PUBLISHED)
        wait_for(lambda: running.agent.queue.failures("devices") == 0)
        time.sleep(1.0)  # let the writes of the first sync settle
        before = requests_made(running.agent)
        time.sleep(1.5)  # about 15 rescans at 0.1 s
        assert requests_made(running.agent) == before

    def test_device_added_and_removed_in_sysfs_follows(self, start_agent):
        """A hot-added device appears and an unplugged one disappears within a rescan."""
        running = start_agent()
        name = f"{running.node}-{compact(FREE_NIC)}"
        wait_for(lambda: name in devices_of(running.api, running.node))
        running.host.kernel.unplug(FREE_NIC)
        wait_for(lambda: name not in devices_of(running.api, running.node))

    def test_deleted_object_is_recreated(self, start_agent):
        """An object deleted by hand comes back (level-triggered)."""
        running = start_agent()
        name = f"{running.node}-{compact(GPU)}"
        wait_for(lambda: name in devices_of(running.api, running.node))
        running.api.delete(PCIDEVICES, name)
        wait_for(lambda: name in devices_of(running.api, running.node))

    def test_deleting_the_node_garbage_collects_its_devices(self, start_agent, kube):
        """Objects are owned by the Node: deleting the Node removes them (real GC)."""
        running = start_agent()
        wait_for(lambda: len(devices_of(running.api, running.node)) == PUBLISHED)
        running.agent.stop()
        running.api.delete(NODES, running.node)
        wait_for(lambda: not devices_of(running.api, running.node), timeout=60)


class TestClaims:
    """Claims move devices and report on it."""

    def test_claim_binds_device_and_deletion_returns_it(self, start_agent):
        """A claim reaches passthroughEnabled with vfio-pci in the kernel; deletion restores."""
        running = start_agent()
        body = claim_body(running.node, FREE_NIC)
        name = body["metadata"]["name"]
        running.api.create(PCIDEVICECLAIMS, body)
        claim = wait_for(
            lambda: (
                (c := running.api.get(PCIDEVICECLAIMS, name))
                .get("status", {})
                .get("passthroughEnabled")
                and c
            )
        )
        assert running.host.driver(FREE_NIC) == "vfio-pci"
        assert claim["status"]["kernelDriverToUnbind"] == "igb"
        assert ready_condition(claim)["status"] == "True"
        assert ready_condition(claim)["reason"] == "BoundToVfio"
        device_name = f"{running.node}-{compact(FREE_NIC)}"
        wait_for(
            lambda: (
                devices_of(running.api, running.node)[device_name]["status"]["kernelDriverInUse"]
                == "vfio-pci"
            )
        )
        assert (
            devices_of(running.api, running.node)[device_name]["metadata"]["annotations"][
                "harvesterhci.io/pcideviceDriver"
            ]
            == "igb"
        )
        running.api.delete(PCIDEVICECLAIMS, name)

        def gone():
            try:
                running.api.get(PCIDEVICECLAIMS, name)
            except NotFoundError:
                return True
            return False

        wait_for(gone)
        assert running.host.driver(FREE_NIC) == "igb"

    def test_management_nic_claim_is_refused_with_reason(self, start_agent):
        """A claim on the NIC with the default route is refused; the device stays."""
        running = start_agent()
        body = claim_body(running.node, MGMT_NIC)
        running.api.create(PCIDEVICECLAIMS, body)
        claim = wait_for(
            lambda: (
                (c := running.api.get(PCIDEVICECLAIMS, body["metadata"]["name"]))
                and ready_condition(c)
                and ready_condition(c)["reason"] != "InProgress"
                and c
            )
        )
        condition = ready_condition(claim)
        assert condition["status"] == "False"
        assert condition["reason"] == "HostDependsOnDevice"
        assert "default route" in condition["message"]
        assert running.host.driver(MGMT_NIC) == "e1000e"

    def test_claim_for_another_node_is_ignored(self, start_agent, make_node):
        """An agent acts only on claims for its own node."""
        running = start_agent()
        other = make_node()
        body = claim_body(other, FREE_NIC)
        running.api.create(PCIDEVICECLAIMS, body)
        time.sleep(2.0)
        claim = running.api.get(PCIDEVICECLAIMS, body["metadata"]["name"])
        assert "status" not in claim or not claim["status"].get("passthroughEnabled")
        assert not claim["metadata"].get("finalizers")
        assert running.host.driver(FREE_NIC) == "igb"


class TestResilience:
    """Restarts of the agent and of the API server."""

    def test_agent_killed_between_unbind_and_bind_converges_on_restart(
        self, start_agent, make_node, fake_fs, kube
    ):
        """Agent killed mid-bind, claim still in the cluster: the restart finishes the bind.

        It recovers where it stopped (one write: the probe), rather than returning the device
        to igb and binding it again, which would pass the same end state through the host.
        """
        node = make_node()
        host = workstation(fake_fs)
        address = PciAddress.parse(FREE_NIC)
        # What a killed agent leaves: claim and original driver recorded, device unbound, the
        # override written, the probe never made; the claim object stays in the cluster.
        host.state.save(
            Ledger()
            .claim(ClaimRecord(address, GroupPolicy.STRICT))
            .remember(address, DriverName("igb"))
        )
        device = Path("/sys/bus/pci/devices") / FREE_NIC
        (device / "driver" / "unbind").write_text(FREE_NIC)
        (device / "driver_override").write_text("vfio-pci")
        assert host.driver(FREE_NIC) is None
        body = claim_body(node, FREE_NIC)
        KubeApi(kube.api_client).create(PCIDEVICECLAIMS, body)
        before = len(host.kernel.writes)
        running = start_agent(node=node, host=host)
        claim = wait_for(
            lambda: (
                (c := running.api.get(PCIDEVICECLAIMS, body["metadata"]["name"]))
                .get("status", {})
                .get("passthroughEnabled")
                and c
            ),
            timeout=60,
        )
        assert claim["status"]["kernelDriverToUnbind"] == "igb"
        assert running.host.driver(FREE_NIC) == "vfio-pci"
        assert host.kernel.writes[before:] == [("bus/pci/drivers_probe", FREE_NIC)]

    def test_busy_device_reports_device_busy_then_binds(self, start_agent):
        """vfio-pci answers EBUSY twice: the claim reports DeviceBusy (attempt 1), then binds.

        The agent requeues the claim at the end of each backoff instead of sleeping in its
        only worker; the Events record the DeviceBusy step between the claim and the bind.
        """
        running = start_agent()
        # Each attempt probes (a silent failure) then binds: four faults are two EBUSY answers.
        running.host.kernel.fail(FREE_NIC, "bind", errno.EBUSY, times=4, driver="vfio-pci")
        body = claim_body(running.node, FREE_NIC)
        name = body["metadata"]["name"]
        running.api.create(PCIDEVICECLAIMS, body)
        claim = wait_for(
            lambda: (
                (c := running.api.get(PCIDEVICECLAIMS, name))
                .get("status", {})
                .get("passthroughEnabled")
                and c
            ),
            timeout=60,
        )
        assert ready_condition(claim)["reason"] == "BoundToVfio"
        assert running.host.driver(FREE_NIC) == "vfio-pci"
        events = wait_for_events(
            running.api, lambda events: "BoundToVfio" in reasons_about(events, name)
        )
        assert reasons_about(events, name) == ["DeviceBusy", "BoundToVfio"]
        busy = next(e for e in events if e["reason"] == "DeviceBusy")
        assert "retry 1 of" in busy["message"]

    def test_deny_entry_added_and_agent_restarted_keeps_the_bound_device_and_says_so(
        self, start_agent
    ):
        """The operator denies a bound NIC and restarts the agent: it stays, DenyListed shown.

        Returning it would pull the device from under a VM that may be using it; the claim
        keeps passthroughEnabled, Ready True with reason DenyListed, until it is deleted.
        """
        running = start_agent()
        body = claim_body(running.node, FREE_NIC)
        name = body["metadata"]["name"]
        running.api.create(PCIDEVICECLAIMS, body)
        wait_for(
            lambda: (
                running.api.get(PCIDEVICECLAIMS, name).get("status", {}).get("passthroughEnabled")
            )
        )
        running.agent.stop()
        writes = len(running.host.kernel.writes)
        restarted = start_agent(
            node=running.node,
            host=running.host,
            deny=DenyList(addresses=frozenset({PciAddress.parse(FREE_NIC)})),
        )
        claim = wait_for(
            lambda: (
                (c := restarted.api.get(PCIDEVICECLAIMS, name))
                and ready_condition(c)["reason"] == "DenyListed"
                and c
            ),
            timeout=60,
        )
        assert ready_condition(claim)["status"] == "True"
        assert claim["status"]["passthroughEnabled"] is True
        assert running.host.driver(FREE_NIC) == "vfio-pci"
        assert running.host.kernel.writes[writes:] == []

    def test_api_server_restart_under_a_running_agent(self, kube, make_node, pci_ids, tmp_path):
        """After the API server restarts, the agent carries on without lost or duplicate objects.

        The agent reads a sysfs tree on disk here (no fake kernel): the harness restarts the
        API server with real processes and files, which a global pyfakefs patch would break.
        """
        node = make_node()
        tree = SysfsTree(tmp_path / "sys").add(
            FakeDevice("0000:00:1f.6", driver="e1000e", iommu_group=1),
            FakeDevice("0000:03:00.0", device=0x1533, driver="igb", iommu_group=2),
        )
        config = AgentConfig(
            node=node,
            sysfs=tree.root,
            proc=tmp_path / "proc",
            state_file=tmp_path / "claims.json",
            metrics_address=None,
            device_plugin=False,
            kernel_events=False,
            rescan_interval=0.5,
        )
        agent = agent_injector(config, kube.api_client, pci_ids).get(Agent)
        agent.start()
        api = KubeApi(kube.api_client)
        try:
            wait_for(lambda: len(devices_of(api, node)) == 2)
            relists = agent.devices.informer.relists
            kube.restart_apiserver()
            tree.add(FakeDevice("0000:04:00.0", device=0x10D3, driver="e1000e", iommu_group=3))
            wait_for(lambda: len(devices_of(api, node)) == 3, timeout=60)
            wait_for(lambda: agent.devices.informer.relists > relists, timeout=60)
            names = sorted(devices_of(api, node))
            assert names == [f"{node}-0000001f6", f"{node}-000003000", f"{node}-000004000"]
        finally:
            agent.stop()
