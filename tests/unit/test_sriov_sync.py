"""The SR-IOV controller on in-memory ports: objects published, counts applied, refusals shown."""

from __future__ import annotations

import errno
from collections.abc import Mapping, Sequence

import attrs
import pytest
from cluster_fakes import FakeBus

from pcicore.address import PciAddress
from pcicore.conditions import Condition, ConditionStatus, find_condition
from pcicore.device import NodeName, PciClass, PciDevice, SriovInfo
from pcicore.errors import RefusalReason, SriovWriteError
from pcicore.ports import SriovControl, SriovObjectStore
from pcicore.protection import Refusal
from pcicore.sriov import CONFIGURED, ObservedSriovDevice, SriovPf, SriovState, SriovStatus
from pcioperator.controllers.sriov import SriovSync

NODE = NodeName("node1")
PF = PciAddress.parse("0000:04:00.0")
NET = PciClass(0x02, 0x00)
NAME = "node1-eno49"


def _pf(num: int = 0) -> PciDevice:
    return PciDevice(
        PF, 0x8086, 0x10FB, NET, driver=None, sriov=SriovInfo(total_vfs=4, num_vfs=num)
    )


class FakeSriovHost(SriovControl):
    """A PF on a `FakeBus` whose count writes add and remove VFs as the kernel does."""

    def __init__(self, bus: FakeBus) -> None:
        self.bus = bus
        self.writes: list[int] = []

    def interfaces(self, addresses: Sequence[PciAddress]) -> Mapping[PciAddress, str]:
        return {a: "eno49" for a in addresses if a == PF}

    def write_num_vfs(self, address: PciAddress, count: int) -> None:
        pf = self.bus.device(address)
        assert pf is not None
        current = pf.sriov.num_vfs or 0
        if current and count and current != count:
            raise SriovWriteError(address, count, errno.EBUSY, "busy")
        self.writes.append(count)
        others = [d for d in self.bus.present if d.sriov.physfn != address and d != pf]
        vfs = [
            PciDevice(
                PciAddress.parse(f"0000:04:10.{i}"), 0x8086, 0x10ED, NET, sriov=SriovInfo(physfn=PF)
            )
            for i in range(count)
        ]
        sriov = attrs.evolve(pf.sriov, num_vfs=count)
        self.bus.present = [*others, attrs.evolve(pf, sriov=sriov), *vfs]


class FakeSriovStore(SriovObjectStore):
    """SRIOVNetworkDevice objects of one node, with what a user sets in their spec."""

    def __init__(self) -> None:
        self.objects: dict[str, ObservedSriovDevice] = {}
        self.created: dict[str, int] = {}
        self.status_writes = 0

    def observed(self) -> Sequence[ObservedSriovDevice]:
        return list(self.objects.values())

    def create(self, pf: SriovPf, num_vfs: int) -> None:
        self.created[pf.name] = num_vfs
        self.objects[pf.name] = ObservedSriovDevice(pf.name, num_vfs=num_vfs, generation=1)

    def delete(self, name: str) -> None:
        del self.objects[name]

    def write_status(self, name: str, status: SriovStatus, conditions: Sequence[Condition]) -> None:
        self.status_writes += 1
        self.objects[name] = attrs.evolve(
            self.objects[name], status=status, conditions=tuple(conditions)
        )

    def set_num_vfs(self, name: str, count: int) -> None:
        """What a user's `kubectl patch` of spec.numVFs does."""
        obj = self.objects[name]
        self.objects[name] = attrs.evolve(obj, num_vfs=count, generation=obj.generation + 1)


@attrs.define
class Node:
    """A node: its bus, host, objects, claims, protections and its controller."""

    bus: FakeBus
    host: FakeSriovHost
    store: FakeSriovStore
    claimed: set[PciAddress]
    protected: dict[PciAddress, Refusal]
    device_syncs: list[int]
    sync: SriovSync

    def condition(self) -> Condition:
        found = find_condition(self.store.objects[NAME].conditions, CONFIGURED)
        assert found is not None
        return found


@pytest.fixture
def node() -> Node:
    bus = FakeBus([_pf()])
    host = FakeSriovHost(bus)
    store = FakeSriovStore()
    claimed: set[PciAddress] = set()
    protected: dict[PciAddress, Refusal] = {}
    syncs: list[int] = []
    sync = SriovSync(
        node=NODE,
        bus=bus,
        control=host,
        store=store,
        claimed=lambda: claimed,
        protection=lambda device: protected.get(device.address),
        on_vfs_changed=lambda: syncs.append(1),
        now=lambda: "2026-11-30T12:00:00Z",
    )
    return Node(bus, host, store, claimed, protected, syncs, sync)


class TestSriovSync:
    """SriovSync.reconcile."""

    def test_publishes_the_pf_with_its_current_count(self, node):
        """A PF with no object gets node1-eno49, numVFs as the host has it, status disabled."""
        node.sync.reconcile()
        assert node.store.created == {NAME: 0}
        obj = node.store.objects[NAME]
        assert obj.status == SriovStatus(SriovState.DISABLED)
        assert node.condition().status is ConditionStatus.TRUE
        assert node.host.writes == []

    def test_a_second_reconcile_with_nothing_changed_writes_nothing(self, node):
        """Idle: no create, no status write, no sysfs write."""
        node.sync.reconcile()
        writes = node.store.status_writes
        node.sync.reconcile()
        assert node.store.status_writes == writes
        assert node.host.writes == []

    def test_numvfs_2_creates_vfs_and_reports_them(self, node):
        """The count is written, the VFs are listed by address and PCIDevice name."""
        node.sync.reconcile()
        node.store.set_num_vfs(NAME, 2)
        node.sync.reconcile()
        status = node.store.objects[NAME].status
        assert status == SriovStatus(
            SriovState.ENABLED,
            ("0000:04:10.0", "0000:04:10.1"),
            ("node1-000004100", "node1-000004101"),
        )
        assert node.device_syncs == [1]
        assert node.condition().reason == "Configured"

    def test_a_new_count_goes_through_zero(self, node):
        """2 → 3 writes 0 then 3; the host ends with three VFs."""
        node.sync.reconcile()
        node.store.set_num_vfs(NAME, 2)
        node.sync.reconcile()
        node.store.set_num_vfs(NAME, 3)
        node.sync.reconcile()
        assert node.host.writes == [2, 0, 3]
        status = node.store.objects[NAME].status
        assert status is not None
        assert len(status.vf_addresses) == 3

    def test_a_claimed_vf_blocks_a_change_until_released(self, node):
        """0 is refused with VfClaimed while a VF is claimed; after release it is applied."""
        node.sync.reconcile()
        node.store.set_num_vfs(NAME, 2)
        node.sync.reconcile()
        node.claimed.add(PciAddress.parse("0000:04:10.1"))
        node.store.set_num_vfs(NAME, 0)
        node.sync.reconcile()
        assert node.condition().status is ConditionStatus.FALSE
        assert node.condition().reason == "VfClaimed"
        assert node.condition().observed_generation == 3
        assert len(node.bus.present) == 3
        node.claimed.clear()
        node.sync.reconcile()
        assert node.condition().status is ConditionStatus.TRUE
        assert node.bus.present == [_pf(0)]
        assert node.store.objects[NAME].status == SriovStatus(SriovState.DISABLED)

    def test_a_protected_pf_keeps_its_count(self, node):
        """The host's refusal is the condition's message; nothing is written."""
        node.protected[PF] = Refusal(RefusalReason.HOST_DEPENDS_ON_DEVICE, "default route eno49")
        node.sync.reconcile()
        node.store.set_num_vfs(NAME, 2)
        node.sync.reconcile()
        assert node.host.writes == []
        assert node.condition().reason == "HostProtected"
        assert "default route eno49" in node.condition().message

    def test_above_total_is_refused(self, node):
        """A count of 5 on a PF of 4: AboveTotalVfs, naming the range."""
        node.sync.reconcile()
        node.store.set_num_vfs(NAME, 5)
        node.sync.reconcile()
        assert node.condition().reason == "AboveTotalVfs"
        assert "between 0 and 4" in node.condition().message

    def test_a_write_the_kernel_refuses_is_reported(self, node):
        """A host changed behind the agent's back: the kernel's answer is the condition."""
        node.sync.reconcile()
        node.store.set_num_vfs(NAME, 2)
        node.host.write_num_vfs = _refuse  # type: ignore[method-assign]
        node.sync.reconcile()
        assert node.condition().reason == "WriteFailed"
        assert "bind its network driver" in node.condition().message

    def test_the_object_of_a_pf_gone_from_the_bus_is_deleted(self, node):
        """A PF removed from the bus takes its object with it."""
        node.sync.reconcile()
        node.bus.present = []
        node.sync.reconcile()
        assert node.store.objects == {}


def _refuse(address: PciAddress, count: int) -> None:
    raise SriovWriteError(address, count, errno.ENOENT, "no driver: bind its network driver")
