"""The agent's PCIDevices as Harvester's clients read them, on a real kube-apiserver + etcd."""

from __future__ import annotations

import errno

import pytest

from fakesys.hosts import FREE_NIC, workstation
from fakesys.tree import FakeDevice
from harvester_objects import ORIGINAL_DRIVER, create_harvester_claim, create_harvester_device
from pcicore.takeover import HARVESTER_FINALIZER
from pcioperator.controllers.devices import RESOURCE_OVERRIDE_ANNOTATION
from pcioperator.kube.api import PCIDEVICECLAIMS, PCIDEVICES, KubeApi
from pcioperator.kube.errors import NotFoundError
from polling import wait_for

pytestmark = pytest.mark.kube

POOL = "intel.com/I210_GIGABIT_NETWORK_CONNECTION"


def resource_name(running, name):
    """The object's status.resourceName now (``None`` while it has none)."""
    items, _ = running.api.list_objects(PCIDEVICES, label_selector=f"nodename={running.node}")
    found = next((i for i in items if i["metadata"]["name"] == name), None)
    return ((found or {}).get("status") or {}).get("resourceName")


class TestOverrideAnnotation:
    """Harvester's override-resource-name annotation on a PCIDevice is honoured."""

    def test_annotation_sets_and_its_removal_restores_the_resource_name(self, start_agent):
        """With the annotation the status says its value; without it, the pool's name again."""
        running = start_agent()
        name = f"{running.node}-{FREE_NIC.replace(':', '').replace('.', '')}"
        wait_for(lambda: resource_name(running, name) == POOL)
        own = f"intel.com/{name}"
        running.api.patch(
            PCIDEVICES, name, {"metadata": {"annotations": {RESOURCE_OVERRIDE_ANNOTATION: own}}}
        )
        wait_for(lambda: resource_name(running, name) == own)
        running.api.patch(
            PCIDEVICES, name, {"metadata": {"annotations": {RESOURCE_OVERRIDE_ANNOTATION: None}}}
        )
        wait_for(lambda: resource_name(running, name) == POOL)


class TestDedicatedResource:
    """A claim that disables pooling: the PCIDevice reports Harvester's per-device name."""

    def test_claim_sets_and_its_deletion_restores_the_resource_name(self, start_agent):
        """While the claim lives the status says ``<vendor>/<PCIDevice name>``; then the pool."""
        running = start_agent()
        name = f"{running.node}-{FREE_NIC.replace(':', '').replace('.', '')}"
        wait_for(lambda: resource_name(running, name) == POOL)
        running.api.create(
            PCIDEVICECLAIMS,
            {
                "apiVersion": PCIDEVICECLAIMS.api_version,
                "kind": PCIDEVICECLAIMS.kind,
                "metadata": {"name": name},
                "spec": {
                    "address": FREE_NIC,
                    "nodeName": running.node,
                    "userName": "alice",
                    "disableResourcePooling": True,
                },
            },
        )
        wait_for(lambda: resource_name(running, name) == f"intel.com/{name}")
        running.api.delete(PCIDEVICECLAIMS, name)
        wait_for(lambda: resource_name(running, name) == POOL)


MOVED = "0000:05:00.0"
"""A NIC that Harvester's controller put on vfio-pci before the switch."""


def read(running, name):
    """The object now."""
    return running.api.get(PCIDEVICES, name)


class TestTakeOverOfAMovedDevice:
    """Harvester's record of a moved device's driver survives our agent's take-over."""

    def test_harvesters_driver_annotation_is_kept(self, start_agent, kube, fake_fs, make_node):
        """A device on vfio-pci whose PCIDevice says igb (Harvester's record) still says igb."""
        host = workstation(
            fake_fs,
            extra=(FakeDevice(MOVED, 0x8086, 0x1533, 0x020000, driver="vfio-pci", iommu_group=6),),
        )
        node = make_node()
        name = f"{node}-000005000"
        create_harvester_device(KubeApi(kube.api_client), name, node=node, original_driver="igb")
        running = start_agent(node=node, host=host)
        # Once our agent has written the status, it has decided the annotation too.
        wait_for(lambda: (read(running, name).get("status") or {}).get("kernelDriverInUse"))
        assert read(running, name)["status"]["kernelDriverInUse"] == "vfio-pci"
        assert read(running, name)["metadata"]["annotations"] == {ORIGINAL_DRIVER: "igb"}


class TestTakeOverOfAHarvesterClaim:
    """A claim Harvester made and served is taken over without moving its device, and ends."""

    def test_nothing_is_unbound_or_rebound_at_take_over(
        self, start_agent, kube, fake_fs, make_node
    ):
        """Device stays on vfio-pci (any unbind or bind would fail), claim Ready, records kept."""
        host = workstation(
            fake_fs,
            extra=(FakeDevice(MOVED, 0x8086, 0x1533, 0x020000, driver="vfio-pci", iommu_group=6),),
        )
        for operation in ("unbind", "bind", "override"):
            host.kernel.fail(MOVED, operation, errno.EIO)
        node = make_node()
        name = f"{node}-000005000"
        api = KubeApi(kube.api_client)
        create_harvester_claim(
            api,
            name,
            node=node,
            address=MOVED,
            original_driver="igb",
            user="admin",
        )
        running = start_agent(node=node, host=host)

        def ready():
            conditions = (api.get(PCIDEVICECLAIMS, name).get("status") or {}).get("conditions")
            return next((c for c in conditions or [] if c["type"] == "Ready"), None)

        # Accepted (InProgress) first, then Ready: True once the engine has seen it on vfio-pci.
        wait_for(lambda: (ready() or {}).get("status") == "True")
        assert running.host.driver(MOVED) == "vfio-pci"
        claim = api.get(PCIDEVICECLAIMS, name)
        assert HARVESTER_FINALIZER in claim["metadata"]["finalizers"]
        assert claim["status"]["passthroughEnabled"] is True
        assert claim["status"]["kernelDriverToUnbind"] == "igb"
        assert read(running, name)["metadata"]["annotations"] == {ORIGINAL_DRIVER: "igb"}
        # Deleting the claim returns the device to the driver Harvester recorded, and neither
        # finalizer (ours, Harvester's) keeps the claim.
        host.kernel.devices[MOVED].faults.clear()
        api.delete(PCIDEVICECLAIMS, name)
        wait_for(lambda: gone(api, name))
        assert running.host.driver(MOVED) == "igb"


def gone(api, name) -> bool:
    """Whether the claim no longer exists."""
    try:
        api.get(PCIDEVICECLAIMS, name)
    except NotFoundError:
        return True
    return False


class TestSkipVfioBinding:
    """A claim Harvester's vGPU support made is left to it."""

    def test_marked_claim_is_left_alone(self, start_agent, kube, fake_fs):
        """Its device keeps its driver and the claim gets no finalizer of ours; others bind."""
        host = workstation(
            fake_fs,
            extra=(FakeDevice(MOVED, 0x8086, 0x1533, 0x020000, driver="igb", iommu_group=6),),
        )
        running = start_agent(host=host)
        api = KubeApi(kube.api_client)
        marked = f"{running.node}-{FREE_NIC.replace(':', '').replace('.', '')}"
        plain = f"{running.node}-000005000"
        for name, address, marks in (
            (marked, FREE_NIC, {"pcidevices.harvesterhci.io/skip-vfio-binding": "true"}),
            (plain, MOVED, {}),
        ):
            api.create(
                PCIDEVICECLAIMS,
                {
                    "apiVersion": PCIDEVICECLAIMS.api_version,
                    "kind": PCIDEVICECLAIMS.kind,
                    "metadata": {"name": name, "annotations": marks},
                    "spec": {"address": address, "nodeName": running.node, "userName": "admin"},
                },
            )
        # The agent handles the node's claims in one pass: once the plain one is bound, the
        # marked one has been seen too.
        wait_for(
            lambda: (api.get(PCIDEVICECLAIMS, plain).get("status") or {}).get("passthroughEnabled")
        )
        assert running.host.driver(MOVED) == "vfio-pci"
        assert running.host.driver(FREE_NIC) == "igb"
        left = api.get(PCIDEVICECLAIMS, marked)
        assert left["metadata"].get("finalizers") is None
        assert left.get("status") is None
        api.delete(PCIDEVICECLAIMS, marked)
