"""SR-IOV at its edges: one-VF PFs, exact limits, the Configured condition, refusal texts.

`test_sriov.py` covers the usual counts; these pin the boundaries (a PF of one VF, a count equal
to the total, a name of exactly 253 characters) and the words of each refusal and condition.
"""

from __future__ import annotations

from pcicore.address import PciAddress
from pcicore.conditions import ConditionStatus
from pcicore.device import NodeName, PciClass, PciDevice, SriovInfo
from pcicore.errors import RefusalReason
from pcicore.naming import object_name
from pcicore.protection import Refusal
from pcicore.sriov import (
    CONFIGURED,
    NumVfsPlan,
    SriovRefusalReason,
    SriovState,
    configured_condition,
    is_sriov_pf,
    plan_num_vfs,
    sriov_device_name,
    sriov_pfs,
    sriov_status,
)

NODE = NodeName("node1")
PF = PciAddress.parse("0000:04:00.0")
NET = PciClass(0x02, 0x00)


def pf(
    num: int | None = 0, total: int | None = 8, address: PciAddress = PF, physfn=None
) -> PciDevice:
    return PciDevice(
        address, 0x8086, 0x10FB, NET, sriov=SriovInfo(physfn=physfn, total_vfs=total, num_vfs=num)
    )


def vf(address: str) -> PciDevice:
    return PciDevice(PciAddress.parse(address), 0x8086, 0x10ED, NET, sriov=SriovInfo(physfn=PF))


class TestLimits:
    """A PF of one VF, a count equal to the total, a name of exactly 253 characters."""

    def test_a_pf_of_one_vf_is_a_pf(self):
        """sriov_totalvfs 1 is enough."""
        assert is_sriov_pf(pf(total=1))

    def test_a_pf_of_one_vf_may_enable_it(self):
        """NumVFs 1 of 1: one write of 1."""
        assert plan_num_vfs(pf(total=1), 1) == NumVfsPlan(writes=(1,))

    def test_all_vfs_may_be_enabled(self):
        """NumVFs equal to sriov_totalvfs is allowed."""
        assert plan_num_vfs(pf(total=8), 8) == NumVfsPlan(writes=(8,))

    def test_a_vf_claiming_vfs_is_not_a_pf(self):
        """A VF that reports a total (some drivers do) is still refused: only a PF has VFs."""
        plan = plan_num_vfs(pf(total=4, physfn=PciAddress.parse("0000:03:00.0")), 2)
        assert plan.refusal is not None
        assert plan.refusal.reason is SriovRefusalReason.NOT_SRIOV
        assert plan.refusal.message == (
            f"{PF} is not an SR-IOV physical function (no sriov_totalvfs); only a PF can have VFs"
        )

    def test_a_total_of_zero_is_not_sriov(self):
        """sriov_totalvfs 0: not a PF (the count cannot be changed)."""
        plan = plan_num_vfs(pf(total=0), 0)
        assert plan.refusal is not None
        assert plan.refusal.reason is SriovRefusalReason.NOT_SRIOV

    def test_interface_name_of_exactly_253_characters_is_used(self):
        """``<node>-<interface>`` at the limit is still the name."""
        interface = "e" * (253 - len(NODE) - 1)
        assert sriov_device_name(NODE, PF, interface) == f"{NODE}-{interface}"

    def test_pfs_are_listed_by_address_text(self):
        """Two PFs given out of order come back in address order."""
        second = PciAddress.parse("0000:05:00.0")
        pfs = sriov_pfs(NODE, [pf(address=second), pf()], {PF: "eno1", second: "eno2"})
        assert [p.address for p in pfs] == [PF, second]


class TestStatus:
    """Enabled when VFs are on the bus or the PF counts some."""

    def test_vfs_counted_but_not_yet_on_the_bus_is_enabled(self):
        """num_vfs 2, no VF listed yet (the kernel is still adding them): Enabled."""
        (one,) = sriov_pfs(NODE, [pf(num=2)], {PF: "eno1"})
        status = sriov_status(one, [])
        assert status.state is SriovState.ENABLED
        assert status.vf_addresses == ()

    def test_vfs_on_the_bus_with_a_stale_count_is_enabled(self):
        """A VF listed while num_vfs reads 0: Enabled, the VF named."""
        (one,) = sriov_pfs(NODE, [pf(num=0)], {PF: "eno1"})
        status = sriov_status(one, [vf("0000:04:10.0")])
        assert status.state is SriovState.ENABLED
        assert status.vf_pci_devices == (object_name(NODE, PciAddress.parse("0000:04:10.0")),)

    def test_one_vf_counted_is_enabled(self):
        """num_vfs 1: Enabled."""
        (one,) = sriov_pfs(NODE, [pf(num=1)], {PF: "eno1"})
        assert sriov_status(one, []).state is SriovState.ENABLED


class TestWords:
    """The refusals and the Configured condition, word for word."""

    def test_missing_pf_names_the_address(self):
        """A PF gone from the bus: named by the address the caller gave, with the check."""
        plan = plan_num_vfs(None, 2, address=PF)
        assert plan.refusal is not None
        assert plan.refusal.message == (
            f"no PCI device at {PF} on this node; it was removed or the address is wrong: "
            "check spec.address against `pcidevices scan`"
        )

    def test_missing_pf_without_an_address_names_none(self):
        """No address given: the message has an empty address, not a made-up one."""
        plan = plan_num_vfs(None, 2)
        assert plan.refusal is not None
        assert plan.refusal.message.startswith("no PCI device at  on this node")

    def test_claimed_vfs_refusal_names_them_and_the_counts(self):
        """Two claimed VFs: both named, 'are', the counts from and to, the way out."""
        vfs = [vf("0000:04:10.0"), vf("0000:04:10.2")]
        plan = plan_num_vfs(pf(num=2), 4, vfs=vfs, claimed={v.address for v in vfs})
        assert plan.refusal is not None
        assert plan.refusal.message == (
            f"not changing the VFs of {PF} from 2 to 4: 0000:04:10.0, 0000:04:10.2 are claimed "
            "and would be removed (the count goes through 0); delete those PCIDeviceClaims first"
        )

    def test_one_claimed_vf_is(self):
        """One claimed VF: 'is'; a PF reporting no count reads as 0."""
        vfs = [vf("0000:04:10.0")]
        plan = plan_num_vfs(pf(num=None), 0, vfs=vfs, claimed={vfs[0].address})
        assert plan == NumVfsPlan()
        plan = plan_num_vfs(pf(num=None), 3, vfs=vfs, claimed={vfs[0].address})
        assert plan.refusal is not None
        assert "from 0 to 3: 0000:04:10.0 is claimed" in plan.refusal.message

    def test_configured_condition_says_how_many_vfs_are_enabled(self):
        """Written as asked: True, Configured, the count, the time and generation given."""
        condition = configured_condition(
            pf(num=4), NumVfsPlan(writes=(4,)), failure=None, generation=3, now="t1"
        )
        assert (condition.type, condition.status, condition.reason) == (
            CONFIGURED,
            ConditionStatus.TRUE,
            "Configured",
        )
        assert condition.message == "4 VFs enabled, as spec.numVFs asks"
        assert (condition.last_transition_time, condition.observed_generation) == ("t1", 3)

    def test_configured_condition_of_a_pf_counting_none_says_0(self):
        """A PF that reports no count (or is gone) has 0 VFs enabled."""
        for device in (pf(num=None), None):
            condition = configured_condition(
                device, NumVfsPlan(), failure=None, generation=1, now="t1"
            )
            assert condition.message == "0 VFs enabled, as spec.numVFs asks"

    def test_refused_condition_carries_the_time(self):
        """Refused: False with the refusal's reason and message, at the time given."""
        refusal = plan_num_vfs(
            pf(), 2, protection=Refusal(RefusalReason.HOST_DEPENDS_ON_DEVICE, "default route")
        )
        condition = configured_condition(pf(), refusal, failure=None, generation=2, now="t2")
        assert condition.status is ConditionStatus.FALSE
        assert condition.message == f"not changing the VFs of {PF}: default route"
        assert (condition.last_transition_time, condition.observed_generation) == ("t2", 2)
