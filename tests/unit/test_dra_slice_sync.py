"""`DraSliceSync` over an in-memory slice store: what the cluster holds after each reconcile."""

from __future__ import annotations

import itertools

import pytest

from pcicore.address import PciAddress
from pcicore.device import IommuGroup, NodeName, PciClass, PciDevice
from pcicore.dra_slices import ObservedSlice, SliceContent
from pcicore.inventory import OwnerRef
from pcicore.naming import DeviceNamer
from pcicore.pciids import PciIds
from pcicore.ports import ResourceSliceStore
from pcioperator.controllers.dra_slices import (
    DraSliceSync,
    DraUnavailableError,
    check_resource_slices_served,
)
from pcioperator.kube.errors import ConflictError, NotFoundError, PermanentApiError
from unit.cluster_fakes import FakeBus

NODE = NodeName("node1")
OWNER = OwnerRef("v1", "Node", "node1", "uid-1")
IDS = PciIds(b"8086  Intel Corporation\n\t1533  I210 Gigabit Network Connection\n")


class FakeSliceStore(ResourceSliceStore):
    """The node's slices as the API server would hold them; counts writes; can refuse them."""

    def __init__(self) -> None:
        self.slices: dict[str, ObservedSlice] = {}
        self.writes = 0
        self.refuse: PermanentApiError | None = None
        self._versions = itertools.count(1)

    def observed(self) -> list[ObservedSlice]:
        return list(self.slices.values())

    def node_owner(self) -> OwnerRef | None:
        return OWNER

    def _store(self, content: SliceContent, owner: OwnerRef | None) -> None:
        self.writes += 1
        if self.refuse is not None:
            raise self.refuse
        self.slices[content.name] = ObservedSlice(
            content.name,
            str(next(self._versions)),
            content.node,
            content.generation,
            content.slice_count,
            content.devices,
            (owner,) if owner else (),
        )

    def create(self, content: SliceContent, owner: OwnerRef | None) -> None:
        self._store(content, owner)

    def update(self, content: SliceContent, owner: OwnerRef | None, resource_version: str) -> None:
        if self.slices[content.name].resource_version != resource_version:
            raise ConflictError("changed", status=409)
        self._store(content, owner)

    def delete(self, name: str) -> None:
        self.writes += 1
        self.slices.pop(name, None)


class RecordedEvents:
    """Events as the sync emits them."""

    def __init__(self) -> None:
        self.emitted: list[dict[str, object]] = []

    def emit(self, resource, name, uid, *, warning, reason, message) -> None:
        self.emitted.append({"name": name, "uid": uid, "reason": reason, "message": message})


def nic(address: str, group: int) -> PciDevice:
    return PciDevice(
        PciAddress.parse(address),
        0x8086,
        0x1533,
        PciClass(0x02, 0x00),
        iommu_group=IommuGroup(group),
    )


@pytest.fixture
def parts():
    bus = FakeBus([nic("0000:03:00.0", 3), nic("0000:04:00.0", 4)])
    store = FakeSliceStore()
    claimed: set[PciAddress] = set()
    events = RecordedEvents()
    sync = DraSliceSync(
        node=NODE,
        bus=bus,
        namer=DeviceNamer(IDS),
        store=store,
        claimed=lambda: claimed,
        refused=lambda _devices: frozenset(),
        events=events,
    )
    return sync, bus, store, claimed, events


class TestDraSliceSync:
    """One reconcile makes the store hold the node's devices; an idle one writes nothing."""

    def test_publishes_then_stays_idle(self, parts):
        """First reconcile: one slice of both NICs; the second: no write."""
        sync, _bus, store, _claimed, _events = parts
        sync.reconcile()
        (only,) = store.slices.values()
        assert [d.name for d in only.devices] == ["pci-0000-03-00-0", "pci-0000-04-00-0"]
        assert only.devices[0].attributes["resourceName"].value == (
            "intel.com/I210_GIGABIT_NETWORK_CONNECTION"
        )
        writes = store.writes
        sync.reconcile()
        assert store.writes == writes

    def test_a_claim_takes_its_device_out(self, parts):
        """Dual mode: the claimed NIC leaves the slice at the next generation."""
        sync, _bus, store, claimed, _events = parts
        sync.reconcile()
        claimed.add(PciAddress.parse("0000:03:00.0"))
        sync.reconcile()
        (only,) = store.slices.values()
        assert [d.name for d in only.devices] == ["pci-0000-04-00-0"]
        assert only.generation == 2

    def test_a_refused_slice_is_an_event_on_the_node_and_an_error(self, parts):
        """The API server's 422 becomes a Warning Event naming the slice, and is raised."""
        sync, _bus, store, _claimed, events = parts
        store.refuse = PermanentApiError("spec.devices[0]: Invalid value", status=422)
        with pytest.raises(PermanentApiError):
            sync.reconcile()
        (event,) = events.emitted
        assert event["reason"] == "ResourceSliceRejected"
        assert (event["name"], event["uid"]) == ("node1", "uid-1")
        assert "node1-pci.devices.harvesterhci.io-0" in str(event["message"])
        assert "Invalid value" in str(event["message"])


class _NoDra:
    """An API server without resource.k8s.io/v1: every ResourceSlice request is a 404."""

    def list_objects(self, *_args, **_kwargs):
        raise NotFoundError("the server could not find the requested resource", status=404)


def test_no_resource_slices_served_is_one_error_with_the_fix():
    """On a cluster without DRA the agent stops at start with what to do."""
    with pytest.raises(DraUnavailableError, match=r"Kubernetes 1\.34 or later .* without --dra"):
        check_resource_slices_served(_NoDra(), NODE)
