"""The words of the claim's refusals and waits, in full, and the device a refusal names.

A refusal is read by someone who has to act on it: the IOMMU one names the firmware setting,
the kernel parameters and the reboot; the strict group's wait lists every function it waits for
with its driver and says both ways out.
"""

from __future__ import annotations

import pytest

from fakeclaims import a, device
from pcicore.errors import ClaimRefusedError, RefusalReason
from pcicore.hostfacts import HostFacts
from pcicore.policy import GroupPolicy, plan_group
from pcicore.protection import DenyList, HostProtection, no_iommu_refusal

GPU = "0000:01:00.0"
AUDIO = "0000:01:00.1"
USB = "0000:01:00.2"


def test_no_iommu_refusal_in_full():
    """Why it is refused, why there is no way round, and the three steps to fix it."""
    refusal = no_iommu_refusal("PCI device 0000:03:00.0", 'node "titan"')
    assert refusal.reason is RefusalReason.NO_IOMMU
    assert refusal.message == (
        'PCI device 0000:03:00.0 has no IOMMU group: node "titan" has no IOMMU enabled, and '
        "passthrough without one is not supported (vfio-pci refuses it, and a VM could reach all "
        "host memory); enable the IOMMU (VT-d or AMD-Vi in the firmware, intel_iommu=on or "
        "amd_iommu=on on the kernel command line), reboot the node and claim it again"
    )


def test_strict_group_wait_lists_each_missing_function_with_its_driver():
    """Audio and USB functions on their drivers: both named with the driver, comma-separated.

    (A function on no driver does not keep the group from being viable: it is never waited for.)
    """
    devices = [
        device(GPU, "nouveau", 1, 0x030000),
        device(AUDIO, "snd_hda_intel", 1, 0x040300),
        device(USB, "xhci_hcd", 1, 0x0C0330),
    ]
    plan = plan_group(devices[0], devices, (), GroupPolicy.STRICT)
    assert plan.waiting_message() == (
        f"IOMMU group 1 of {GPU} is not viable: {AUDIO} (snd_hda_intel), {USB} (xhci_hcd) must "
        "be claimed too; claim them, or claim with policy 'group' to take the whole group"
    )


def test_refusal_error_names_the_refused_device():
    """The error of a denied device carries its address, for the caller to report against."""
    nic = device("0000:03:00.0", "igb", 5)
    protection = HostProtection(DenyList(addresses=frozenset({a("0000:03:00.0")})))
    with pytest.raises(ClaimRefusedError) as caught:
        protection.check(nic, HostFacts())
    assert caught.value.address == a("0000:03:00.0")
    assert caught.value.reason is RefusalReason.DENY_LISTED


NIC = device("0000:03:00.0", "igb", 5)
WHY_REFUSED = (
    "; passing it through would take the node offline. Move the host off it first, then claim it "
    "again"
)


@pytest.mark.parametrize(
    ("facts", "evidence"),
    [
        (
            HostFacts(default_route_nics={NIC.address: "eno1"}),
            "it is the NIC of the default route (eno1)",
        ),
        (
            HostFacts(addressed_nics={NIC.address: "eno1 under br0"}),
            "it is a NIC carrying a node address (eno1 under br0)",
        ),
        (
            HostFacts(mounted_disk_controllers={NIC.address: "/dev/sda1 on /"}),
            "it controls a disk with a mounted filesystem (/dev/sda1 on /)",
        ),
        (HostFacts(boot_vga=frozenset({NIC.address})), "it is the boot console's GPU (boot_vga=1)"),
    ],
    ids=["default-route", "addressed", "mounted-disk", "boot-vga"],
)
def test_host_dependency_refusal_names_the_evidence_and_the_fix(facts, evidence):
    """Each kind of evidence in its words, then why and what to do."""
    refusal = HostProtection().refusal(NIC, facts)
    assert refusal is not None
    assert refusal.reason is RefusalReason.HOST_DEPENDS_ON_DEVICE
    assert refusal.message == f"refusing {NIC.address}: {evidence}{WHY_REFUSED}"


def test_unread_host_facts_refusal_names_each_input_and_the_fix():
    """Two inputs could not be read: both named with their errors, then how to give access."""
    facts = HostFacts(
        unreadable={
            "/proc/net/route": "No such file or directory",
            "/proc/mounts": "Permission denied",
        }
    )
    refusal = HostProtection().refusal(NIC, facts)
    assert refusal is not None
    assert refusal.reason is RefusalReason.HOST_FACTS_UNREADABLE
    assert refusal.message == (
        f"refusing {NIC.address}: could not read what the host depends on (/proc/mounts: "
        "Permission denied; /proc/net/route: No such file or directory), so it may be the "
        "node's network or disk; give the agent read access to the host's /proc and /sys "
        "(mounted as --proc and --sysfs), then claim it again"
    )


def test_group_plan_names_its_target_and_group():
    """Policy 'group': the plan says which device was claimed and which IOMMU group moves."""
    devices = [device(GPU, "nouveau", 1, 0x030000), device(AUDIO, "snd_hda_intel", 1, 0x040300)]
    plan = plan_group(devices[0], devices, (), GroupPolicy.GROUP)
    assert (plan.target, plan.group) == (devices[0], 1)
    assert [d.address for d in plan.members] == [a(GPU), a(AUDIO)]


def test_bridge_refused_by_the_group_plan_carries_its_address():
    """A PCI bridge cannot be planned: the error names the bridge, for the caller to report."""
    bridge = device("0000:00:01.0", "pcieport", 1, 0x060400)
    with pytest.raises(ClaimRefusedError) as caught:
        plan_group(bridge, [bridge], (), GroupPolicy.STRICT)
    assert caught.value.address == bridge.address
    assert caught.value.reason is RefusalReason.PCI_BRIDGE
