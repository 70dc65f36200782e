"""IOMMU group planning and host protection (`pcicore.policy`, `pcicore.protection`), pure."""

from __future__ import annotations

import pytest

from pcicore.address import PciAddress
from pcicore.claim import Reason
from pcicore.device import DriverName, IommuGroup, PciClass, PciDevice
from pcicore.errors import ClaimRefusedError, InvalidDenyEntryError, RefusalReason
from pcicore.hostfacts import HostFacts
from pcicore.policy import GroupPolicy, plan_group
from pcicore.protection import DenyList, HostProtection, condition_reason


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

    @pytest.mark.parametrize("policy", list(GroupPolicy))
    def test_device_without_iommu_group_is_refused_with_how_to_enable_the_iommu(self, policy):
        """No IOMMU group: refused under every policy, saying the node has none and the fix."""
        lone = _dev("0000:04:00.0", 0x02, 0x00, "igb", group=None)
        with pytest.raises(ClaimRefusedError) as caught:
            plan_group(lone, [lone], [], policy)
        assert caught.value.reason is RefusalReason.NO_IOMMU
        assert str(caught.value).startswith(
            "0000:04:00.0 has no IOMMU group: this node has no IOMMU enabled"
        )
        assert "intel_iommu=on or amd_iommu=on" in str(caught.value)

    def test_bridge_is_never_a_target(self):
        """Claiming a bridge is refused as a bridge, naming its class."""
        with pytest.raises(ClaimRefusedError) as caught:
            plan_group(BRIDGE, [BRIDGE], [], GroupPolicy.GROUP)
        assert caught.value.reason is RefusalReason.PCI_BRIDGE
        assert str(caught.value).startswith("0000:00:01.0 is a PCI bridge (class 0604)")


NIC = _dev("0000:00:1f.6", 0x02, 0x00, "e1000e", group=3)


class TestHostProtection:
    """`HostProtection.check` refuses what the host depends on, with evidence."""

    @pytest.mark.parametrize(
        ("facts", "deny", "reason", "evidence"),
        [
            pytest.param(
                HostFacts(default_route_nics={NIC.address: "eno1"}),
                DenyList(),
                RefusalReason.HOST_DEPENDS_ON_DEVICE,
                "default route (eno1)",
                id="default-route",
            ),
            pytest.param(
                HostFacts(addressed_nics={NIC.address: "eno1"}),
                DenyList(),
                RefusalReason.HOST_DEPENDS_ON_DEVICE,
                "node address",
                id="node-address",
            ),
            pytest.param(
                HostFacts(mounted_disk_controllers={NIC.address: "/dev/sda1 on /"}),
                DenyList(),
                RefusalReason.HOST_DEPENDS_ON_DEVICE,
                "/dev/sda1 on /",
                id="mounted-disk",
            ),
            pytest.param(
                HostFacts(boot_vga=frozenset({NIC.address})),
                DenyList(),
                RefusalReason.HOST_DEPENDS_ON_DEVICE,
                "boot_vga",
                id="boot-vga",
            ),
            pytest.param(
                HostFacts(),
                DenyList(addresses=frozenset({NIC.address})),
                RefusalReason.DENY_LISTED,
                "deny list",
                id="deny-address",
            ),
            pytest.param(
                HostFacts(),
                DenyList(classes=frozenset({"0200"})),
                RefusalReason.DENY_LISTED,
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

    def test_unreadable_facts_refuse_every_device_naming_what_was_not_read(self):
        """Fail closed: with /proc/net/route unread, a device not known to be used is refused."""
        facts = HostFacts(unreadable={"/proc/net/route": "Permission denied"})
        with pytest.raises(ClaimRefusedError) as caught:
            HostProtection().check(GPU, facts)
        assert caught.value.reason is RefusalReason.HOST_FACTS_UNREADABLE
        assert "/proc/net/route: Permission denied" in str(caught.value)

    def test_known_evidence_answers_before_unreadable_facts(self):
        """A device the host is known to use is refused with that evidence, not as unknown."""
        facts = HostFacts(
            default_route_nics={NIC.address: "eno1"}, unreadable={"/proc/mounts": "missing"}
        )
        with pytest.raises(ClaimRefusedError) as caught:
            HostProtection().check(NIC, facts)
        assert caught.value.reason is RefusalReason.HOST_DEPENDS_ON_DEVICE


class TestConditionReason:
    """What a claim's condition shows for each refusal."""

    @pytest.mark.parametrize(
        ("refusal", "reason"),
        [
            pytest.param(RefusalReason.PCI_BRIDGE, Reason.DENY_LISTED, id="bridge"),
            pytest.param(RefusalReason.NO_IOMMU, Reason.NO_IOMMU, id="no-iommu"),
            pytest.param(
                RefusalReason.HOST_DEPENDS_ON_DEVICE, Reason.HOST_DEPENDS_ON_DEVICE, id="host"
            ),
            pytest.param(
                RefusalReason.HOST_FACTS_UNREADABLE, Reason.HOST_FACTS_UNREADABLE, id="unread"
            ),
            pytest.param(RefusalReason.DENY_LISTED, Reason.DENY_LISTED, id="deny"),
        ],
    )
    def test_each_refusal_has_its_condition_reason(self, refusal, reason):
        """Every refusal maps to one condition reason (a bridge reads as denied, as before)."""
        assert condition_reason(refusal) is reason


class TestDenyListParse:
    """`DenyList.parse` reads ``--deny`` entries: addresses and hex class prefixes."""

    def test_addresses_and_classes(self):
        """Addresses are parsed; class prefixes are kept lower-case."""
        deny = DenyList.parse(["0000:03:00.0", "03:00.1", "0106", "0C"])
        assert deny.addresses == frozenset({A("0000:03:00.0"), A("0000:03:00.1")})
        assert deny.classes == frozenset({"0106", "0c"})

    def test_upper_case_class_prefix_denies_its_class(self):
        """``--deny 0C`` denies a USB controller (class 0c03), whatever the case."""
        usb = _dev("0000:05:00.0", 0x0C, 0x03, "xhci_hcd", group=9)
        with pytest.raises(ClaimRefusedError):
            HostProtection(DenyList.parse(["0C"])).check(usb, HostFacts())

    @pytest.mark.parametrize(
        "entry",
        [
            pytest.param("0000:zz:00.0", id="bad-address"),
            pytest.param("nic0", id="not-hex"),
            pytest.param("0102030", id="class-too-long"),
            pytest.param("", id="empty"),
        ],
    )
    def test_bad_entry_is_named(self, entry):
        """An entry that is neither is refused with a message that names it and both forms."""
        with pytest.raises(InvalidDenyEntryError) as caught:
            DenyList.parse(["03", entry])
        assert f"--deny {entry!r}" in str(caught.value)
        assert "0000:03:00.0" in str(caught.value)
