"""SR-IOV rules: which devices are PFs, their names and status, and how a VF count changes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pcicore.address import PciAddress
from pcicore.device import NodeName, PciClass, PciDevice, SriovInfo
from pcicore.errors import RefusalReason
from pcicore.protection import Refusal
from pcicore.sriov import (
    NumVfsPlan,
    SriovRefusalReason,
    SriovState,
    is_sriov_network_pf,
    is_sriov_pf,
    plan_num_vfs,
    sriov_device_name,
    sriov_pfs,
    sriov_status,
    vf_parents,
)

NODE = NodeName("node1")
PF = PciAddress.parse("0000:04:00.0")
NET = PciClass(0x02, 0x00)
NVME = PciClass(0x01, 0x08, 0x02)


def pf(num=0, total=8, klass=NET, address=PF) -> PciDevice:
    """A PF with ``num`` of ``total`` VFs enabled."""
    return PciDevice(address, 0x8086, 0x10FB, klass, sriov=SriovInfo(total_vfs=total, num_vfs=num))


def vf(address: str, parent: PciAddress = PF) -> PciDevice:
    """A VF of ``parent``."""
    return PciDevice(PciAddress.parse(address), 0x8086, 0x10ED, NET, sriov=SriovInfo(physfn=parent))


PROTECTED = Refusal(RefusalReason.HOST_DEPENDS_ON_DEVICE, "refusing 0000:04:00.0: default route")


class TestWhichDevicesArePfs:
    """is_sriov_pf and is_sriov_network_pf."""

    def test_a_nic_with_total_vfs_is_a_network_pf(self):
        """A class-0x02 function with sriov_totalvfs > 0 is an SR-IOV network PF."""
        assert is_sriov_network_pf(pf())

    def test_an_nvme_pf_is_a_pf_but_not_a_network_pf(self):
        """Any class can be a PF; only network PFs get an SRIOVNetworkDevice."""
        assert is_sriov_pf(pf(klass=NVME))
        assert not is_sriov_network_pf(pf(klass=NVME))

    @pytest.mark.parametrize(
        "device",
        [
            pf(total=0),
            PciDevice(PF, 0x8086, 0x1533, NET),
            vf("0000:04:10.0"),
        ],
        ids=["zero-total", "no-sriov", "a-vf"],
    )
    def test_others_are_not_pfs(self, device):
        """No sriov_totalvfs, a total of 0, or a VF: not a PF."""
        assert not is_sriov_pf(device)


class TestNaming:
    """sriov_device_name."""

    def test_named_node_dash_interface_as_harvester_names_it(self):
        """A PF with interface eno49 on node1 is node1-eno49."""
        assert sriov_device_name(NODE, PF, "eno49") == "node1-eno49"

    @pytest.mark.parametrize("interface", [None, "", "Eth_0", "a" * 260])
    def test_falls_back_to_the_pcidevice_name(self, interface):
        """No interface, or one that cannot be in an object name: <node>-<compact address>."""
        assert sriov_device_name(NODE, PF, interface) == "node1-000004000"

    def test_pfs_are_the_network_pfs_named_by_interface(self):
        """sriov_pfs keeps network PFs only, each with its interface's name."""
        nvme = pf(klass=NVME, address=PciAddress.parse("0000:05:00.0"))
        found = sriov_pfs(NODE, [nvme, vf("0000:04:10.0"), pf()], {PF: "eno49"})
        assert [(p.name, p.address, p.interface) for p in found] == [("node1-eno49", PF, "eno49")]


class TestStatusAndLabels:
    """sriov_status and vf_parents."""

    def test_status_lists_the_vfs_on_the_bus_in_address_order(self):
        """Enabled, with each VF's address and its PCIDevice name."""
        (the_pf,) = sriov_pfs(NODE, [pf(num=2)], {PF: "eno49"})
        devices = [pf(num=2), vf("0000:04:10.2"), vf("0000:04:10.0")]
        status = sriov_status(the_pf, devices)
        assert status.state is SriovState.ENABLED
        assert status.vf_addresses == ("0000:04:10.0", "0000:04:10.2")
        assert status.vf_pci_devices == ("node1-000004100", "node1-000004102")

    def test_status_without_vfs_is_disabled(self):
        """No VF enabled: disabled, with empty lists."""
        (the_pf,) = sriov_pfs(NODE, [pf()], {})
        status = sriov_status(the_pf, [pf()])
        assert (status.state, status.vf_addresses) == (SriovState.DISABLED, ())

    def test_each_vf_is_labelled_with_its_parents_name(self):
        """VFs of a published PF map to its name; VFs of other PFs get no label."""
        other = PciAddress.parse("0000:05:00.0")
        devices = [pf(num=1), vf("0000:04:10.0"), vf("0000:05:10.0", parent=other)]
        pfs = sriov_pfs(NODE, devices, {PF: "eno49"})
        assert vf_parents(pfs, devices) == {PciAddress.parse("0000:04:10.0"): "node1-eno49"}


class TestPlanNumVfs:
    """plan_num_vfs."""

    @pytest.mark.parametrize(
        ("current", "wanted", "writes"),
        [(0, 4, (4,)), (4, 0, (0,)), (4, 2, (0, 2)), (3, 3, ()), (0, 0, ())],
        ids=["enable", "disable", "change-through-zero", "unchanged", "stays-off"],
    )
    def test_writes_go_through_zero(self, current, wanted, writes):
        """A non-zero count follows a non-zero one only after a 0; an equal one writes nothing."""
        assert plan_num_vfs(pf(num=current), wanted) == NumVfsPlan(writes=writes)

    @pytest.mark.parametrize(
        ("device", "wanted", "reason", "words"),
        [
            (pf(total=8), 9, SriovRefusalReason.ABOVE_TOTAL, "between 0 and 8"),
            (pf(), -1, SriovRefusalReason.INVALID_COUNT, "negative"),
            (PciDevice(PF, 0x8086, 0x1533, NET), 2, SriovRefusalReason.NOT_SRIOV, "only a PF"),
            (None, 2, SriovRefusalReason.PF_MISSING, "pcidevices scan"),
        ],
        ids=["above-total", "negative", "not-a-pf", "gone"],
    )
    def test_refuses_counts_the_kernel_would_refuse(self, device, wanted, reason, words):
        """Above total, negative, not a PF, or gone: refused with a message naming the fix."""
        plan = plan_num_vfs(device, wanted, address=PF)
        assert plan.writes == ()
        assert plan.refusal is not None
        assert plan.refusal.reason is reason
        assert words in plan.refusal.message

    def test_refuses_while_a_vf_is_claimed(self):
        """Dropping to 0 with a claimed VF is refused, naming the VF and what to delete."""
        vfs = [vf("0000:04:10.0"), vf("0000:04:10.2")]
        plan = plan_num_vfs(pf(num=2), 0, vfs=vfs, claimed={PciAddress.parse("0000:04:10.2")})
        assert plan.refusal is not None
        assert plan.refusal.reason is SriovRefusalReason.VF_CLAIMED
        assert "0000:04:10.2 is claimed" in plan.refusal.message
        assert "PCIDeviceClaim" in plan.refusal.message

    def test_a_claim_on_another_device_does_not_block(self):
        """Only claims on this PF's VFs matter."""
        vfs = [vf("0000:04:10.0")]
        plan = plan_num_vfs(pf(num=1), 0, vfs=vfs, claimed={PciAddress.parse("0000:09:00.0")})
        assert plan == NumVfsPlan(writes=(0,))

    def test_refuses_a_host_protected_pf(self):
        """A PF the host depends on keeps its VFs, with the protection's evidence."""
        plan = plan_num_vfs(pf(), 2, protection=PROTECTED)
        assert plan.refusal is not None
        assert plan.refusal.reason is SriovRefusalReason.HOST_PROTECTED
        assert "default route" in plan.refusal.message

    def test_an_unchanged_count_is_never_refused(self):
        """Protection and claims only matter when something would be written."""
        vfs = [vf("0000:04:10.0")]
        plan = plan_num_vfs(pf(num=1), 1, vfs=vfs, claimed={vfs[0].address}, protection=PROTECTED)
        assert plan == NumVfsPlan()

    @given(
        total=st.integers(min_value=1, max_value=256),
        current=st.integers(min_value=0, max_value=256),
        wanted=st.integers(min_value=-2, max_value=300),
    )
    def test_never_writes_non_zero_over_non_zero(self, total, current, wanted):
        """For any counts: each write is 0 or follows a 0, ends at wanted, never above total."""
        current = min(current, total)
        plan = plan_num_vfs(pf(num=current, total=total), wanted)
        before = current
        for count in plan.writes:
            assert count == 0 or before == 0
            assert 0 <= count <= total
            before = count
        if plan.refusal is None:
            assert before == wanted
        else:
            assert plan.writes == ()
