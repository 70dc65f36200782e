"""The device sync's reconcile against an in-memory bus and PCIDevice store."""

from __future__ import annotations

import attrs
import pytest
from cluster_fakes import FakeBus, FakeDeviceStore

from pcicore.address import PciAddress
from pcicore.catalog import DeviceCatalog
from pcicore.device import DriverName, NodeName, PciClass, PciDevice
from pcicore.naming import DeviceNamer
from pcicore.pciids import PciIds
from pcioperator.controllers.devices import DeviceSync

NODE = "titan"
GPU = PciDevice(
    PciAddress.parse("0000:65:00.0"), 0x10DE, 0x2235, PciClass(3, 0), driver=DriverName("nvidia")
)
NIC = PciDevice(
    PciAddress.parse("0000:03:00.0"), 0x8086, 0x1521, PciClass(2, 0), driver=DriverName("igb")
)
GPU_NAME = "titan-000065000"
NIC_NAME = "titan-000003000"


@attrs.define
class Host:
    """One node's bus, its ledger of original drivers, and the cluster's PCIDevices."""

    bus: FakeBus
    store: FakeDeviceStore
    originals: dict[PciAddress, DriverName]
    sync: DeviceSync


@pytest.fixture
def host() -> Host:
    """A node with a GPU and a NIC on its bus, no objects yet, and a Node object."""
    bus = FakeBus([GPU, NIC])
    store = FakeDeviceStore(NODE)
    originals: dict[PciAddress, DriverName] = {}
    sync = DeviceSync(
        bus=bus,
        catalog=DeviceCatalog(NodeName(NODE), DeviceNamer(PciIds.empty())),
        store=store,
        informer=None,  # only the agent runs it; the reconcile reads through the store
        original_drivers=lambda: originals,
        rescan_interval=30.0,
        protection=lambda _devices: {NIC.address: "it carries the node's network"},
    )
    return Host(bus, store, originals, sync)


class TestDeviceSync:
    """`DeviceSync.reconcile` leaves the store equal to the bus, writing only differences."""

    def test_first_sync_creates_every_device_owned_and_labelled(self, host):
        """Each device on the bus gets an object with the node label, Node owner and status."""
        assert host.sync.reconcile() == 30.0
        assert set(host.store.objects) == {GPU_NAME, NIC_NAME}
        gpu = host.store.objects[GPU_NAME]
        assert gpu.node_label == NODE
        assert [owner.uid for owner in gpu.owners] == ["uid-1"]
        assert gpu.original_driver == "nvidia"
        assert gpu.status["kernelDriverInUse"] == "nvidia"
        assert gpu.status["hostProtected"] is False
        assert host.store.objects[NIC_NAME].status["protectionReason"] == (
            "it carries the node's network"
        )

    def test_second_sync_writes_nothing(self, host):
        """With nothing changed, a second reconcile makes no write."""
        host.sync.reconcile()
        before = host.store.writes
        host.sync.reconcile()
        assert host.store.writes == before

    def test_node_object_is_read_once(self, host):
        """The Node's owner reference is looked up once, not per reconcile."""
        host.sync.reconcile()
        host.sync.reconcile()
        assert host.store.node_reads == 1

    def test_missing_node_object_is_looked_for_again(self, host):
        """While the node has no Node object, objects get no owner; once it has, they get it."""
        host.store.node_uid = None
        host.sync.reconcile()
        assert host.store.objects[GPU_NAME].owners == ()
        host.store.node_uid = "uid-7"
        host.sync.reconcile()
        assert [owner.uid for owner in host.store.objects[GPU_NAME].owners] == ["uid-7"]

    def test_rebind_updates_driver_and_keeps_original(self, host):
        """A device moved to vfio-pci by a claim reports it, with its original driver kept."""
        host.sync.reconcile()
        host.bus.present = [attrs.evolve(GPU, driver=DriverName("vfio-pci")), NIC]
        host.originals[GPU.address] = DriverName("nvidia")
        host.sync.reconcile()
        gpu = host.store.objects[GPU_NAME]
        assert gpu.status["kernelDriverInUse"] == "vfio-pci"
        assert gpu.original_driver == "nvidia"

    def test_device_gone_from_bus_is_deleted(self, host):
        """A device that leaves the bus loses its object; the others stay."""
        host.sync.reconcile()
        host.bus.present = [GPU]
        host.sync.reconcile()
        assert set(host.store.objects) == {GPU_NAME}

    def test_unlabelled_object_is_adopted(self, host):
        """An object whose node label was removed is relabelled, not created twice."""
        host.sync.reconcile()
        gpu = host.store.objects[GPU_NAME]
        host.store.objects[GPU_NAME] = attrs.evolve(gpu, node_label=None, status={})
        host.sync.reconcile()
        adopted = host.store.objects[GPU_NAME]
        assert adopted.node_label == NODE
        assert adopted.status["kernelDriverInUse"] == "nvidia"

    def test_last_records_are_the_bus(self, host):
        """After a reconcile the sync holds the records it wrote (the agent's device metric)."""
        host.sync.reconcile()
        assert [record.name for record in host.sync.last_records] == [NIC_NAME, GPU_NAME]
