"""IOMMU group planning and host protection, pure, one case per row."""

from __future__ import annotations

import pytest

from pcicore.address import PciAddress
from pcicore.claim import Reason
from pcicore.device import DriverName, IommuGroup, PciClass, PciDevice
from pcicore.errors import ClaimRefusedError
from pcicore.hostfacts import HostFacts
from pcicore.policy import DenyList, GroupPolicy, HostProtection, IommuMode, plan_group


def _dev(address, base, sub, driver=None, group=1):
    return PciDevice(
        address=PciAddress.parse(address),
        vendor_id=0x10DE,
        device_id=0x1,
        pci_class=PciClass(base, sub),
        driver=DriverName(driver) if driver else None,
        iommu_group=IommuGroup(group) if group is not None else None,
    )


BRIDGE = _dev("0000:00:01.0", 0x06, 0x04, "pcieport")
GPU = _dev("0000:01:00.0", 0x03, 0x00, "nouveau")
AUDIO = _dev("0000:01:00.1", 0x04, 0x03, "snd_hda_intel")
AUDIO_FREE = _dev("0000:01:00.1", 0x04, 0x03, None)
AUDIO_STUB = _dev("0000:01:00.1", 0x04, 0x03, "pci-stub")
A = PciAddress.parse


class TestPlanGroup:
    """`plan_group` moves a group together or waits, naming what is missing."""

    @pytest.mark.parametrize(
        ("devices", "claimed", "policy", "members", "waiting"),
        [
            pytest.param(
                [BRIDGE, GPU, AUDIO],
                [],
                GroupPolicy.GROUP,
                [GPU, AUDIO],
                [],
                id="group-takes-audio-not-bridge",
            ),
            pytest.param(
                [BRIDGE, GPU, AUDIO],
                [],
                GroupPolicy.STRICT,
                [GPU],
                [AUDIO],
                id="strict-waits-for-audio",
            ),
            pytest.param(
                [BRIDGE, GPU, AUDIO],
                [AUDIO.address],
                GroupPolicy.STRICT,
                [GPU, AUDIO],
                [],
                id="strict-with-audio-claimed",
            ),
            pytest.param(
                [BRIDGE, GPU, AUDIO_FREE],
                [],
                GroupPolicy.STRICT,
                [GPU],
                [],
                id="strict-unbound-member-is-viable",
            ),
            pytest.param(
                [BRIDGE, GPU, AUDIO_STUB],
                [],
                GroupPolicy.STRICT,
                [GPU],
                [],
                id="strict-pci-stub-member-is-viable",
            ),
        ],
    )
    def test_plan(self, devices, claimed, policy, members, waiting):
        """Each row: what moves and what the claim waits for."""
        plan = plan_group(GPU, devices, claimed, policy)
        assert list(plan.members) == members
        assert list(plan.waiting_for) == waiting

    def test_waiting_message_names_members_and_the_fix(self):
        """The condition message names each missing member with its driver."""
        plan = plan_group(GPU, [GPU, AUDIO], [], GroupPolicy.STRICT)
        assert "0000:01:00.1 (snd_hda_intel)" in plan.waiting_message()
        assert "policy 'group'" in plan.waiting_message()

    def test_no_iommu_is_refused_unless_configured(self):
        """No IOMMU group: refused by default, the device alone in no-IOMMU mode."""
        lone = _dev("0000:04:00.0", 0x02, 0x00, "igb", group=None)
        with pytest.raises(ClaimRefusedError) as caught:
            plan_group(lone, [lone], [], GroupPolicy.GROUP)
        assert caught.value.reason is Reason.NO_IOMMU
        plan = plan_group(lone, [lone], [], GroupPolicy.GROUP, IommuMode.NO_IOMMU)
        assert plan.members == (lone,)

    def test_bridge_is_never_a_target(self):
        """Claiming a bridge is refused."""
        with pytest.raises(ClaimRefusedError):
            plan_group(BRIDGE, [BRIDGE], [], GroupPolicy.GROUP)


NIC = _dev("0000:00:1f.6", 0x02, 0x00, "e1000e", group=3)


class TestHostProtection:
    """`HostProtection.check` refuses what the host depends on, with evidence."""

    @pytest.mark.parametrize(
        ("facts", "deny", "reason", "evidence"),
        [
            pytest.param(
                HostFacts(default_route_nics={NIC.address: "eno1"}),
                DenyList(),
                Reason.HOST_DEPENDS_ON_DEVICE,
                "default route (eno1)",
                id="default-route",
            ),
            pytest.param(
                HostFacts(addressed_nics={NIC.address: "eno1"}),
                DenyList(),
                Reason.HOST_DEPENDS_ON_DEVICE,
                "node address",
                id="node-address",
            ),
            pytest.param(
                HostFacts(mounted_disk_controllers={NIC.address: "/dev/sda1 on /"}),
                DenyList(),
                Reason.HOST_DEPENDS_ON_DEVICE,
                "/dev/sda1 on /",
                id="mounted-disk",
            ),
            pytest.param(
                HostFacts(boot_vga=frozenset({NIC.address})),
                DenyList(),
                Reason.HOST_DEPENDS_ON_DEVICE,
                "boot_vga",
                id="boot-vga",
            ),
            pytest.param(
                HostFacts(),
                DenyList(addresses=frozenset({NIC.address})),
                Reason.DENY_LISTED,
                "deny list",
                id="deny-address",
            ),
            pytest.param(
                HostFacts(),
                DenyList(classes=frozenset({"0200"})),
                Reason.DENY_LISTED,
                "deny list",
                id="deny-class",
            ),
        ],
    )
    def test_refused(self, facts, deny, reason, evidence):
        """Each row: a dependency or deny entry refuses the device with that evidence."""
        with pytest.raises(ClaimRefusedError) as caught:
            HostProtection(deny).check(NIC, facts)
        assert caught.value.reason is reason
        assert evidence in str(caught.value)

    def test_unrelated_device_passes(self):
        """A device nothing depends on and nobody denies is allowed."""
        HostProtection(DenyList(classes=frozenset({"03"}))).check(NIC, HostFacts())

    def test_one_protected_member_refuses_the_whole_group(self):
        """A group containing the management NIC is refused as a whole."""
        facts = HostFacts(default_route_nics={NIC.address: "eno1"})
        with pytest.raises(ClaimRefusedError, match=r"0000:00:1f\.6"):
            HostProtection().check_all([GPU, NIC], facts)
