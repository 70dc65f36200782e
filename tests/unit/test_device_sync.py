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


BRIDGE = PciDevice(PciAddress.parse("0000:00:1c.0"), 0x8086, 0x06B8, PciClass(6, 4))


class TestHarvesterNames:
    """What Harvester's clients expect of the objects: no bridges, its resource names."""

    def test_bridges_get_no_object(self, host):
        """A PCI-to-PCI bridge on the bus gets no PCIDevice (Harvester publishes none)."""
        host.bus.present.append(BRIDGE)
        host.sync.reconcile()
        assert set(host.store.objects) == {GPU_NAME, NIC_NAME}

    def test_override_annotation_is_the_resource_name(self, host):
        """A PCIDevice's override annotation becomes its status.resourceName."""
        host.sync.reconcile()
        pooled = host.store.objects[GPU_NAME].status["resourceName"]
        host.store.objects[GPU_NAME] = attrs.evolve(
            host.store.objects[GPU_NAME], resource_override="nvidia.com/NVIDIA_L40S-1A"
        )
        host.sync.reconcile()
        assert host.store.objects[GPU_NAME].status["resourceName"] == "nvidia.com/NVIDIA_L40S-1A"
        host.store.objects[GPU_NAME] = attrs.evolve(
            host.store.objects[GPU_NAME], resource_override=None
        )
        host.sync.reconcile()
        assert host.store.objects[GPU_NAME].status["resourceName"] == pooled

    def test_invalid_override_is_ignored(self, host):
        """An override that is no resource name leaves the pool's name."""
        host.sync.reconcile()
        pooled = host.store.objects[GPU_NAME].status["resourceName"]
        host.store.objects[GPU_NAME] = attrs.evolve(
            host.store.objects[GPU_NAME], resource_override="not a resource"
        )
        host.sync.reconcile()
        assert host.store.objects[GPU_NAME].status["resourceName"] == pooled

    def test_dedicated_claim_reports_harvesters_per_device_name(self, host):
        """While a claim disables pooling the device reports ``<vendor>/<PCIDevice name>``."""
        dedicated: set[PciAddress] = {NIC.address}
        sync = DeviceSync(
            bus=host.bus,
            catalog=DeviceCatalog(NodeName(NODE), DeviceNamer(PciIds.empty())),
            store=host.store,
            informer=None,
            original_drivers=lambda: host.originals,
            dedicated=lambda: dedicated,
        )
        sync.reconcile()
        vendor = str(host.store.objects[NIC_NAME].status["resourceName"]).split("/")[0]
        assert vendor == "unknown.com"  # no pci.ids here
        assert host.store.objects[NIC_NAME].status["resourceName"] == f"{vendor}/{NIC_NAME}"
        dedicated.clear()
        sync.reconcile()
        assert host.store.objects[NIC_NAME].status["resourceName"] != f"{vendor}/{NIC_NAME}"


class TestHarvestersOriginalDriver:
    """A device Harvester moved to vfio-pci keeps Harvester's record of its driver."""

    def moved(self, host) -> None:
        """The NIC as Harvester leaves it: on vfio-pci, its object annotated with igb."""
        host.sync.reconcile()
        host.bus.present = [
            attrs.evolve(d, driver=DriverName("vfio-pci")) if d.address == NIC.address else d
            for d in host.bus.present
        ]
        host.store.objects[NIC_NAME] = attrs.evolve(
            host.store.objects[NIC_NAME], original_driver="igb"
        )

    def test_annotation_is_not_replaced_by_vfio(self, host):
        """Unknown to our ledger: the annotation still names igb after a sync."""
        self.moved(host)
        host.sync.reconcile()
        assert host.store.objects[NIC_NAME].original_driver == "igb"

    def test_ledger_record_of_vfio_does_not_win(self, host):
        """A ledger that took the claim over on vfio-pci records vfio-pci: igb is kept."""
        self.moved(host)
        host.originals[NIC.address] = DriverName("vfio-pci")
        host.sync.reconcile()
        assert host.store.objects[NIC_NAME].original_driver == "igb"

    def test_ledger_record_of_a_real_driver_wins(self, host):
        """Our own record of a real driver is what the annotation says."""
        self.moved(host)
        host.originals[NIC.address] = DriverName("e1000e")
        host.sync.reconcile()
        assert host.store.objects[NIC_NAME].original_driver == "e1000e"
