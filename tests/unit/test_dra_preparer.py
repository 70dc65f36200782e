"""DraPreparer: prepare and unprepare ResourceClaims through in-memory ports.

The claim engine runs on `fakeclaims.FakeHost` (a driver core that keeps state); the API
server's claims, the checkpoint and the CDI/metadata files are `dra_fakes`. Every test asserts
on the resulting state: drivers, the checkpoint, the files, the kubelet's answer.
"""

from __future__ import annotations

import errno

import attrs
import pytest

from dra_fakes import DraNode, FakeVfio, ref, result
from fakeclaims import FakeHost, device
from pcicore.address import PciAddress
from pcicore.device import DriverName, IommuGroup
from pcicore.dra_prepare import DraCheckpoint, PreparedClaim, PreparePhase, allocated_devices
from pcicore.engine import ClaimRequest
from pcicore.errors import DraPrepareError
from pcicore.policy import GroupPolicy

NIC = "0000:03:00.0"
NIC_PORT2 = "0000:03:00.1"  # same IOMMU group
OTHER_NIC = "0000:04:00.0"
VFIO_SPEC = "pci.devices.harvesterhci.io-vfio_uid-1.json"
METADATA_SPEC = "pci.devices.harvesterhci.io_metadata_uid-1_nic.json"


def a(text: str) -> PciAddress:
    return PciAddress.parse(text)


def host() -> FakeHost:
    return FakeHost(device(NIC, "igb", 5), device(NIC_PORT2, "igb", 5), device(OTHER_NIC, "igb", 6))


@pytest.fixture
def node() -> DraNode:
    return DraNode(host())


def one_unpreparing_and_one_prepared(node: DraNode) -> None:
    """uid-1 (OTHER_NIC) stuck Unpreparing (its return failed), uid-2 (the card) Prepared."""
    node.claims.allocate(ref(), result(OTHER_NIC))
    node.claims.allocate(ref("card", "uid-2"), result(NIC), result(NIC_PORT2))
    node.preparer.prepare(ref())
    node.preparer.prepare(ref("card", "uid-2"))
    node.host.fail(OTHER_NIC, "bind", errno.EINVAL, times=1)
    with pytest.raises(DraPrepareError):
        node.preparer.unprepare(ref())
    assert list(node.checkpoint.checkpoint.claims) == ["uid-1", "uid-2"]


class UnplugOnCheck(FakeVfio):
    """VFIO nodes of a host whose device is hot-unplugged right after its group node is seen."""

    def __init__(self, host: FakeHost, address: str) -> None:
        """Unplug ``address`` from ``host`` at the next look at a group node."""
        super().__init__()
        self.host, self.address = host, address

    def group_node_exists(self, group: IommuGroup) -> bool:
        self.host.unplug(self.address)
        return super().group_node_exists(group)


class TestPrepare:
    """NodePrepareResources for one claim."""

    def test_prepare_binds_the_device_and_writes_its_cdi_spec(self, node):
        """The device ends on vfio-pci, the spec exists, the claim is recorded Prepared."""
        node.claims.allocate(ref(), result(OTHER_NIC))
        (prepared,) = node.preparer.prepare(ref())
        assert node.host.driver(OTHER_NIC) == "vfio-pci"
        assert prepared.device.name == "pci-0000-04-00-0"
        assert prepared.cdi_ids[0] == "pci.devices.harvesterhci.io/vfio=uid-1-pci-0000-04-00-0"
        assert VFIO_SPEC in node.files.specs
        assert node.checkpoint.checkpoint.claims["uid-1"].phase is PreparePhase.PREPARED
        assert node.host.ledger.originals == {a(OTHER_NIC): "igb"}

    def test_prepare_again_reads_nothing_and_writes_nothing(self, node):
        """A repeated call (kubelet retry or restart) answers the same, with zero writes."""
        node.claims.allocate(ref(), result(OTHER_NIC))
        first = node.preparer.prepare(ref())
        writes, reads, saves = len(node.host.writes), node.claims.reads, node.checkpoint.saves
        assert node.preparer.prepare(ref()) == first
        assert (len(node.host.writes), node.claims.reads, node.checkpoint.saves) == (
            writes,
            reads,
            saves,
        )

    def test_prepare_again_rewrites_a_spec_that_went_missing(self, node):
        """A prepared claim whose spec vanished gets it back on the next call."""
        node.claims.allocate(ref(), result(OTHER_NIC))
        node.preparer.prepare(ref())
        node.files.specs.clear()
        node.preparer.prepare(ref())
        assert VFIO_SPEC in node.files.specs

    def test_prepare_again_binds_a_device_someone_took_back(self, node):
        """The device went back to igb behind the plugin: the next prepare binds it again."""
        node.claims.allocate(ref(), result(OTHER_NIC))
        node.preparer.prepare(ref())
        node.host._set(a(OTHER_NIC), DriverName("igb"))
        node.preparer.prepare(ref())
        assert node.host.driver(OTHER_NIC) == "vfio-pci"

    def test_prepare_again_binds_when_the_group_node_is_gone(self):
        """Its group's /dev/vfio node missing (a member left vfio-pci): the engine runs again."""
        node = DraNode(host(), policy=GroupPolicy.GROUP)
        node.claims.allocate(ref(), result(NIC))
        node.preparer.prepare(ref())
        node.host._set(a(NIC_PORT2), DriverName("igb"))
        node.vfio.missing_groups.add(5)
        node.preparer.prepare(ref())
        assert node.host.driver(NIC_PORT2) == "vfio-pci"

    def test_a_claim_with_no_device_of_ours_prepares_nothing(self, node):
        """Only other drivers' results: an empty answer, nothing recorded."""
        node.claims.allocate(ref())
        assert node.preparer.prepare(ref()) == []
        assert node.checkpoint.checkpoint == DraCheckpoint()

    def test_strict_policy_refuses_half_a_group_and_moves_nothing(self, node):
        """One port of a two-port card: the error names the other; both stay on igb."""
        node.claims.allocate(ref(), result(NIC))
        with pytest.raises(DraPrepareError, match="IommuGroupIncomplete") as raised:
            node.preparer.prepare(ref())
        assert NIC_PORT2 in str(raised.value)
        assert node.host.driver(NIC) == "igb"
        assert node.host.driver(NIC_PORT2) == "igb"
        assert node.checkpoint.checkpoint == DraCheckpoint()
        assert node.host.ledger.claims == {}
        assert node.files.specs == {}

    def test_strict_policy_prepares_a_whole_group_allocated_together(self, node):
        """Both ports allocated to one claim: both move, each gets its CDI device."""
        node.claims.allocate(ref(), result(NIC), result(NIC_PORT2))
        prepared = node.preparer.prepare(ref())
        assert [p.device.address for p in prepared] == [a(NIC), a(NIC_PORT2)]
        assert node.host.driver(NIC) == node.host.driver(NIC_PORT2) == "vfio-pci"
        env = node.files.specs[VFIO_SPEC]["devices"][0]["containerEdits"]["env"]
        assert env == [f"PCI_RESOURCE_INTEL_COM_I210_GIGABIT_NETWORK_CONNECTION={NIC},{NIC_PORT2}"]

    def test_group_policy_moves_the_rest_of_the_group_and_returns_it(self):
        """Policy group: the other port moves along and comes back on unprepare."""
        node = DraNode(host(), policy=GroupPolicy.GROUP)
        node.claims.allocate(ref(), result(NIC))
        node.preparer.prepare(ref())
        assert node.host.driver(NIC_PORT2) == "vfio-pci"
        node.preparer.unprepare(ref())
        assert node.host.driver(NIC) == node.host.driver(NIC_PORT2) == "igb"

    def test_a_device_a_pci_device_claim_holds_is_refused(self):
        """No double booking: the device plugin's claim keeps its device; nothing moves."""
        node = DraNode(host(), held={a(OTHER_NIC): "a PCIDeviceClaim (device plugin)"})
        node.claims.allocate(ref(), result(OTHER_NIC))
        with pytest.raises(DraPrepareError, match="held by a PCIDeviceClaim"):
            node.preparer.prepare(ref())
        assert node.host.writes == []

    def test_a_device_another_resource_claim_holds_is_refused(self, node):
        """Two claims allocated one device: the second is refused, naming the first."""
        node.claims.allocate(ref(), result(OTHER_NIC))
        node.preparer.prepare(ref())
        node.claims.allocate(ref("other", "uid-2"), result(OTHER_NIC))
        with pytest.raises(DraPrepareError, match="held by ResourceClaim vms/vm-nic"):
            node.preparer.prepare(ref("other", "uid-2"))
        assert node.host.driver(OTHER_NIC) == "vfio-pci"

    def test_a_group_mate_moved_along_for_another_claim_is_refused(self):
        """Policy group moved port 2 with claim A's port 1: claim B may not share A's group.

        Both containers would get /dev/vfio/5 (one IOMMU group, two VMs), and B's unprepare
        could not return port 2 while A holds it.
        """
        node = DraNode(host(), policy=GroupPolicy.GROUP)
        node.claims.allocate(ref(), result(NIC))
        node.claims.allocate(ref("b", "uid-2"), result(NIC_PORT2))
        node.preparer.prepare(ref())
        with pytest.raises(DraPrepareError) as raised:
            node.preparer.prepare(ref("b", "uid-2"))
        assert str(raised.value).startswith(
            f"device pci-0000-03-00-1 ({NIC_PORT2}) of ResourceClaim vms/b is held by "
            f"ResourceClaim vms/vm-nic (moved to vfio-pci with {NIC}, in its IOMMU group); "
        )
        assert list(node.checkpoint.checkpoint.claims) == ["uid-1"]
        node.preparer.unprepare(ref())
        assert node.host.driver(NIC) == node.host.driver(NIC_PORT2) == "igb"

    def test_a_claim_whose_prepared_record_was_not_saved_is_prepared_on_the_retry(self):
        """The Prepared record hit a full disk: the kubelet's retry finishes, not refused by itself.

        Its devices are on vfio-pci for it (with the group mate policy group moved along).
        """
        node = DraNode(host(), policy=GroupPolicy.GROUP)
        node.claims.allocate(ref(), result(NIC))
        node.checkpoint.fail_save(after=1)  # Preparing is saved, Prepared is not
        with pytest.raises(DraPrepareError, match="No space left on device"):
            node.preparer.prepare(ref())
        assert node.checkpoint.checkpoint.claims["uid-1"].phase is PreparePhase.PREPARING
        (prepared,) = node.preparer.prepare(ref())
        assert prepared.device.address == a(NIC)
        assert node.checkpoint.checkpoint.claims["uid-1"].phase is PreparePhase.PREPARED
        assert node.host.driver(NIC) == node.host.driver(NIC_PORT2) == "vfio-pci"

    def test_a_failed_bind_is_rolled_back(self, node):
        """vfio-pci refuses the device (EINVAL): back on igb, nothing recorded, the errno named."""
        node.host.fail(OTHER_NIC, "bind", errno.EINVAL, times=2)  # probe, then bind
        node.claims.allocate(ref(), result(OTHER_NIC))
        with pytest.raises(DraPrepareError, match="pci-0000-04-00-0"):
            node.preparer.prepare(ref())
        assert node.host.driver(OTHER_NIC) == "igb"
        assert node.host.ledger.originals == {}
        assert node.checkpoint.checkpoint == DraCheckpoint()

    def test_a_busy_device_is_waited_for_within_the_call(self, node):
        """EBUSY once: the call backs off on the clock and prepares."""
        node.host.fail(OTHER_NIC, "unbind", errno.EBUSY, times=1)
        node.claims.allocate(ref(), result(OTHER_NIC))
        node.preparer.prepare(ref())
        assert node.host.driver(OTHER_NIC) == "vfio-pci"
        assert node.host.slept == [0.5]

    def test_a_spec_that_cannot_be_written_rolls_the_device_back(self, node):
        """The container could not get the device: it goes back to igb."""
        node.files.fail_writes = True
        node.claims.allocate(ref(), result(OTHER_NIC))
        with pytest.raises(DraPrepareError, match="Read-only file system"):
            node.preparer.prepare(ref())
        assert node.host.driver(OTHER_NIC) == "igb"
        assert node.checkpoint.checkpoint == DraCheckpoint()

    def test_a_recreated_claim_is_refused_and_nothing_moves(self, node):
        """The API's claim has another uid: the kubelet's pod is stale."""
        node.claims.allocate(ref(uid="uid-new"), result(OTHER_NIC))
        with pytest.raises(DraPrepareError, match="now has uid uid-new"):
            node.preparer.prepare(ref())
        assert node.host.writes == []

    def test_a_device_already_on_vfio_is_recorded_prepared(self):
        """A device an admin bound to vfio-pci before: prepared and recorded, not left Preparing.

        A claim left Preparing would be rolled back by the next restart under a running VM.
        """
        node = DraNode(FakeHost(device(OTHER_NIC, "vfio-pci", 6)))
        node.claims.allocate(ref(), result(OTHER_NIC))
        node.preparer.prepare(ref())
        assert node.checkpoint.checkpoint.claims["uid-1"].phase is PreparePhase.PREPARED
        assert VFIO_SPEC in node.files.specs

    def test_a_template_claims_metadata_is_found_by_the_pods_name_for_it(self, node):
        """A claim made from a template: its metadata is mounted under the pod's claim name."""
        node.claims.allocate(ref(), result(OTHER_NIC), pod_claim="nic")
        node.preparer.prepare(ref())
        (mount,) = node.files.specs[METADATA_SPEC]["devices"][0]["containerEdits"]["mounts"]
        assert mount["containerPath"] == (
            "/var/run/kubernetes.io/dra-device-attributes/resourceclaimtemplates/nic/nic/"
            "pci.devices.harvesterhci.io-metadata.json"
        )
        assert node.checkpoint.checkpoint.claims["uid-1"].pod_claim_name == "nic"

    def test_iommufd_nodes_and_the_numa_node_reach_the_container(self):
        """With iommufd, the device's vfioN and /dev/iommu are given; its NUMA node is shown."""
        on_node_1 = attrs.evolve(device(OTHER_NIC, "igb", 6), numa_node=1)
        node = DraNode(
            FakeHost(on_node_1), vfio=FakeVfio(iommufd=True, cdevs={a(OTHER_NIC): "vfio3"})
        )
        node.claims.allocate(ref(), result(OTHER_NIC))
        node.preparer.prepare(ref())
        edits = node.files.specs[VFIO_SPEC]["devices"][0]["containerEdits"]
        assert [n["path"] for n in edits["deviceNodes"]] == [
            "/dev/vfio/vfio",
            "/dev/vfio/6",
            "/dev/iommu",
            "/dev/vfio/devices/vfio3",
        ]
        (stream,) = node.files.metadata.values()
        (metadata,) = stream[0]["requests"][0]["devices"]
        assert metadata["attributes"]["numaNode"] == {"int": 1}

    def test_a_device_unplugged_while_its_files_are_written_is_named(self, node):
        """Hot-unplugged between the check and the spec: an error naming it, not a crash."""
        node.claims.allocate(ref(), result(OTHER_NIC))
        node.preparer.prepare(ref())
        node.files.specs.clear()
        node.vfio = UnplugOnCheck(node.host, OTHER_NIC)
        with pytest.raises(DraPrepareError) as raised:
            node.restart().prepare(ref())
        assert str(raised.value) == (
            "pci-0000-04-00-0 (0000:04:00.0) is gone from the bus; "
            "check the node's PCI devices (pcidevices status)"
        )

    def test_prepare_again_of_a_device_gone_from_the_bus_is_refused(self, node):
        """A prepared claim whose device was unplugged: an error naming it, the claim kept."""
        node.claims.allocate(ref(), result(OTHER_NIC))
        node.preparer.prepare(ref())
        node.host.unplug(OTHER_NIC)
        with pytest.raises(DraPrepareError, match="pci-0000-04-00-0"):
            node.preparer.prepare(ref())
        assert node.checkpoint.checkpoint.claims["uid-1"].phase is PreparePhase.PREPARED


class TestUnprepare:
    """NodeUnprepareResources for one claim."""

    def test_unprepare_returns_the_device_and_removes_the_files(self, node):
        """Back on igb, no spec, no metadata, no record, no original left."""
        node.claims.allocate(ref(), result(OTHER_NIC))
        node.preparer.prepare(ref())
        node.preparer.unprepare(ref())
        assert node.host.driver(OTHER_NIC) == "igb"
        assert node.files.specs == {}
        assert node.files.metadata == {}
        assert node.checkpoint.checkpoint == DraCheckpoint()
        assert node.host.ledger.originals == {}

    def test_unprepare_again_is_no_error_and_writes_nothing(self, node):
        """A repeated unprepare (or one of a claim never prepared) succeeds with no write."""
        node.claims.allocate(ref(), result(OTHER_NIC))
        node.preparer.prepare(ref())
        node.preparer.unprepare(ref())
        writes = len(node.host.writes)
        node.preparer.unprepare(ref())
        node.preparer.unprepare(ref("never", "uid-7"))
        assert len(node.host.writes) == writes

    def test_a_device_that_cannot_go_back_keeps_the_claim_until_it_does(self, node):
        """The return to igb fails once: an error names it; the claim stays, a retry finishes."""
        node.claims.allocate(ref(), result(OTHER_NIC))
        node.preparer.prepare(ref())
        node.host.fail(OTHER_NIC, "bind", errno.EINVAL, times=1)
        with pytest.raises(DraPrepareError) as raised:
            node.preparer.unprepare(ref())
        message = str(raised.value)
        assert message.startswith(
            "cannot return the devices of ResourceClaim vms/vm-nic to their drivers: "
            "pci-0000-04-00-0 (0000:04:00.0): "
        )
        assert "Invalid argument" in message  # the engine's reason reaches the kubelet
        assert node.checkpoint.checkpoint.claims["uid-1"].phase is PreparePhase.UNPREPARING
        with pytest.raises(DraPrepareError) as raised:
            node.preparer.prepare(ref())
        assert str(raised.value) == (
            "ResourceClaim vms/vm-nic (uid-1) is being unprepared; the kubelet retries "
            "NodeUnprepareResources until its devices are back"
        )
        node.preparer.unprepare(ref())
        assert node.host.driver(OTHER_NIC) == "igb"
        assert node.checkpoint.checkpoint == DraCheckpoint()

    def test_every_device_that_cannot_go_back_is_named_in_one_line(self, node):
        """Both ports refuse igb: each is named with its engine message, one after the other."""
        node.claims.allocate(ref(), result(NIC), result(NIC_PORT2))
        node.preparer.prepare(ref())
        node.host.fail(NIC, "bind", errno.EINVAL, times=1)
        node.host.fail(NIC_PORT2, "bind", errno.EINVAL, times=1)
        with pytest.raises(DraPrepareError) as raised:
            node.preparer.unprepare(ref())
        message = str(raised.value)
        assert f": pci-0000-03-00-0 ({NIC}): could not return {NIC} to igb: " in message
        assert f"; pci-0000-03-00-1 ({NIC_PORT2}): could not return {NIC_PORT2} to igb: " in message


class TestRestart:
    """What a new process does with what the previous one left."""

    def test_before_start_nothing_is_rolled_back(self, node):
        """The plugin host reads what start rolled back: before start, that is nothing."""
        assert node.restart().rolled_back == ()

    def test_a_prepared_claim_after_an_unpreparing_one_gets_its_files_back(self, node):
        """A claim being unprepared does not stop the next (in uid order) from its files."""
        one_unpreparing_and_one_prepared(node)
        node.files.specs.clear()
        node.files.metadata.clear()
        node.restart().start()
        assert "pci.devices.harvesterhci.io-vfio_uid-2.json" in node.files.specs

    def test_a_prepared_claim_that_cannot_be_bound_again_is_reported(self, node):
        """After a reboot vfio-pci refuses the device: start names the claim and the device."""
        node.claims.allocate(ref(), result(OTHER_NIC))
        node.preparer.prepare(ref())
        rebooted = host()
        rebooted.ledger = node.host.ledger
        rebooted.fail(OTHER_NIC, "bind", errno.EINVAL, times=10)
        node.host = rebooted
        (problem,) = node.restart().start()
        assert problem.startswith(
            "ResourceClaim vms/vm-nic (uid-1): pci-0000-04-00-0 (0000:04:00.0): "
        )

    def test_files_that_cannot_be_written_again_are_reported(self, node):
        """The CDI folder is read-only at start: the claim and the write error are named."""
        node.claims.allocate(ref(), result(OTHER_NIC))
        node.preparer.prepare(ref())
        node.files.fail_writes = True
        assert node.restart().start() == [
            (
                "ResourceClaim vms/vm-nic (uid-1): "
                "cannot write /var/run/cdi/x.json: Read-only file system"
            )
        ]

    def test_a_device_of_no_claim_that_cannot_be_returned_is_reported(self, node):
        """The record went but igb refuses the device back: start names it and why."""
        node.claims.allocate(ref(), result(OTHER_NIC))
        node.preparer.prepare(ref())
        node.checkpoint.save(DraCheckpoint())
        node.host.fail(OTHER_NIC, "bind", errno.EINVAL, times=10)
        (problem,) = node.restart().start()
        assert problem.startswith(f"{OTHER_NIC}: ")
        assert "Invalid argument" in problem

    def test_a_prepare_cut_short_is_rolled_back(self, node):
        """Recorded Preparing and the device on vfio-pci (killed before the answer): returned."""
        claim = PreparedClaim(
            ref(), allocated_devices(ref(), _allocation(node, OTHER_NIC), "titan")
        )
        node.checkpoint.save(DraCheckpoint().with_claim(claim))
        node.preparer._engine.bind(ClaimRequest(a(OTHER_NIC)))
        assert node.host.driver(OTHER_NIC) == "vfio-pci"
        problems = node.restart().start()
        assert problems == []
        assert node.host.driver(OTHER_NIC) == "igb"
        assert node.checkpoint.checkpoint == DraCheckpoint()
        assert node.host.ledger.originals == {}

    def test_a_prepared_claim_is_bound_again_after_a_reboot_with_its_files(self, node):
        """After a reboot the device is on igb and /var/run/cdi is empty: both come back."""
        node.claims.allocate(ref(), result(OTHER_NIC))
        node.preparer.prepare(ref())
        rebooted = host()
        rebooted.ledger = node.host.ledger
        node.host = rebooted
        node.files.specs.clear()
        node.files.metadata.clear()
        assert node.restart().start() == []
        assert node.host.driver(OTHER_NIC) == "vfio-pci"
        assert VFIO_SPEC in node.files.specs
        assert node.checkpoint.checkpoint.claims["uid-1"].phase is PreparePhase.PREPARED

    def test_files_of_no_claim_are_removed(self, node):
        """A spec left by an unprepare cut short after the record went: pruned on start."""
        node.claims.allocate(ref(), result(OTHER_NIC))
        node.preparer.prepare(ref())
        node.checkpoint.save(DraCheckpoint())  # the record went, the files stayed
        node.restart().start()
        assert node.files.specs == {}
        assert node.host.driver(OTHER_NIC) == "igb"

    def test_start_with_nothing_to_do_writes_nothing(self, node):
        """An idle node's start performs no write."""
        node.claims.allocate(ref(), result(OTHER_NIC))
        node.preparer.prepare(ref())
        writes, saves = len(node.host.writes), node.checkpoint.saves
        node.restart().start()
        assert (len(node.host.writes), node.checkpoint.saves) == (writes, saves)


def _allocation(node: DraNode, address: str):
    node.claims.allocate(ref(), result(address))
    return node.claims.get(ref().namespace, ref().name)


class TestHealth:
    """The health of prepared devices, as the health stream reports it."""

    def test_prepared_devices_are_healthy_until_they_leave_vfio(self, node):
        """Healthy on vfio-pci with its group node; a device back on igb says so."""
        node.claims.allocate(ref(), result(OTHER_NIC))
        node.preparer.prepare(ref())
        ((device, health),) = node.preparer.health()
        assert device.name == "pci-0000-04-00-0"
        assert health.healthy
        assert health.address == a(OTHER_NIC)
        node.host._set(a(OTHER_NIC), DriverName("igb"))
        ((_, health),) = node.preparer.health()
        assert not health.healthy
        assert health.reason == "bound to igb, not vfio-pci"

    def test_a_claim_not_prepared_has_no_health(self, node):
        """Only prepared claims' devices are reported."""
        node.host.fail(OTHER_NIC, "bind", 22, times=2)
        node.claims.allocate(ref(), result(OTHER_NIC))
        with pytest.raises(DraPrepareError):
            node.preparer.prepare(ref())
        assert node.preparer.health() == []

    def test_a_claim_being_unprepared_does_not_hide_the_next_ones_health(self, node):
        """Claims in uid order: one Unpreparing first, the Prepared one after is still reported."""
        one_unpreparing_and_one_prepared(node)
        assert [d.address for d, _ in node.preparer.health()] == [a(NIC), a(NIC_PORT2)]
