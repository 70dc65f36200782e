"""Which devices a claim may move: IOMMU group viability and host protection.

A VM can use a device only when VFIO can hand it the whole IOMMU group: every endpoint in the
group bound to ``vfio-pci`` (or to no driver, or ``pci-stub``); PCIe bridges are exempt (BRIEF
section 3). Claiming the GPU without its audio function makes the VM unbootable, so a claim
either waits for the rest of the group (`GroupPolicy.STRICT`) or takes it along
(`GroupPolicy.GROUP`).

Independently, a device the host depends on is refused whatever the policy: the NIC with the
default route or an address of the node, the controller of a disk with a mounted filesystem,
the boot console's GPU, and anything on the operator's deny list.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Sequence
from typing import Final

import attrs

from pcicore.address import PciAddress
from pcicore.claim import Reason
from pcicore.device import VFIO_DRIVER, DriverName, PciDevice
from pcicore.errors import ClaimRefusedError
from pcicore.hostfacts import HostFacts

PCI_STUB_DRIVER: Final = DriverName("pci-stub")

_VIABLE_DRIVERS: Final = frozenset({None, VFIO_DRIVER, PCI_STUB_DRIVER})


class GroupPolicy(enum.Enum):
    """What a claim on one member of a multi-device IOMMU group does with the others."""

    STRICT = "strict"
    """Wait until every other endpoint is claimed too (or already free); move only this one."""
    GROUP = "group"
    """Move every endpoint of the group together, recording each one's original driver."""


class IommuMode(enum.Enum):
    """Whether the node may pass through devices without an IOMMU."""

    REQUIRED = "required"
    """Refuse devices that have no IOMMU group (the safe default)."""
    NO_IOMMU = "no-iommu"
    """Allow them (``vfio enable_unsafe_noiommu_mode``): the VM can DMA anywhere in the host."""


def is_viable_member(device: PciDevice) -> bool:
    """Whether ``device`` lets its group be viable as it is now (or is exempt, a bridge)."""
    return device.pci_class.is_bridge or device.driver in _VIABLE_DRIVERS


@attrs.frozen
class GroupPlan:
    """What a claim on one device moves, and what it still waits for.

    Attributes:
        target: The claimed device.
        members: The devices to move to ``vfio-pci`` (the target first), non-bridge only.
        waiting_for: Other endpoints that keep the group from being viable (strict policy).
        group: The IOMMU group, or ``None`` without an IOMMU.
    """

    target: PciDevice
    members: tuple[PciDevice, ...]
    waiting_for: tuple[PciDevice, ...] = ()
    group: int | None = None

    @property
    def ready(self) -> bool:
        """Whether the plan can be carried out now."""
        return not self.waiting_for

    def waiting_message(self) -> str:
        """What the claim waits for and how to unblock it."""
        missing = ", ".join(
            f"{device.address} ({device.driver or 'no driver'})" for device in self.waiting_for
        )
        return (
            f"IOMMU group {self.group} of {self.target.address} is not viable: {missing} must "
            "be claimed too; claim them, or claim with policy 'group' to take the whole group"
        )


def plan_group(
    target: PciDevice,
    devices: Sequence[PciDevice],
    claimed: Collection[PciAddress],
    policy: GroupPolicy,
    iommu: IommuMode = IommuMode.REQUIRED,
) -> GroupPlan:
    """What claiming ``target`` moves, given every device on the host and those claimed.

    Raises:
        ClaimRefusedError: ``target`` has no IOMMU group and ``iommu`` is not no-IOMMU, or
            ``target`` is a bridge.
    """
    if target.pci_class.is_bridge:
        raise ClaimRefusedError(
            target.address,
            Reason.DENY_LISTED,
            f"{target.address} is a PCI bridge; bridges are never passed through, claim the "
            "devices behind it instead",
        )
    if target.iommu_group is None:
        if iommu is IommuMode.NO_IOMMU:
            return GroupPlan(target=target, members=(target,))
        raise ClaimRefusedError(
            target.address,
            Reason.NO_IOMMU,
            f"{target.address} has no IOMMU group: this node has no IOMMU or it is disabled; "
            "enable it (intel_iommu=on / amd_iommu=on, or the firmware's VT-d/AMD-Vi setting) "
            "or, accepting that a VM could then reach all host memory, allow no-IOMMU mode",
        )
    others = [
        device
        for device in devices
        if device.iommu_group == target.iommu_group
        and device.address != target.address
        and not device.pci_class.is_bridge
    ]
    if policy is GroupPolicy.GROUP:
        return GroupPlan(target=target, members=(target, *others), group=int(target.iommu_group))
    waiting = tuple(
        device
        for device in others
        if device.address not in claimed and not is_viable_member(device)
    )
    claimed_others = tuple(device for device in others if device.address in claimed)
    return GroupPlan(
        target=target,
        members=(target, *claimed_others),
        waiting_for=waiting,
        group=int(target.iommu_group),
    )


@attrs.frozen
class DenyList:
    """Devices the operator never wants passed through.

    Attributes:
        addresses: Denied functions.
        classes: Denied class codes, as hex prefixes of ``CCSSPP`` (``03`` every display
            controller, ``0106`` SATA controllers, ``010802`` NVMe).
    """

    addresses: frozenset[PciAddress] = frozenset()
    classes: frozenset[str] = frozenset()

    def denies(self, device: PciDevice) -> bool:
        """Whether ``device`` is on the list."""
        klass = device.pci_class
        code = f"{klass.base:02x}{klass.sub:02x}{klass.prog_if:02x}"
        return device.address in self.addresses or any(
            code.startswith(prefix.lower()) for prefix in self.classes
        )


@attrs.frozen
class HostProtection:
    """Refuses devices the host depends on, and those on the deny list.

    Attributes:
        deny: The operator's deny list.
    """

    deny: DenyList = DenyList()

    def check(self, device: PciDevice, facts: HostFacts) -> None:
        """Return if ``device`` may be passed through.

        Raises:
            ClaimRefusedError: the host depends on it (reason `Reason.HOST_DEPENDS_ON_DEVICE`)
                or it is denied (`Reason.DENY_LISTED`), with the evidence in the message.
        """
        address = device.address
        evidence = None
        if address in facts.default_route_nics:
            evidence = f"it is the NIC of the default route ({facts.default_route_nics[address]})"
        elif address in facts.addressed_nics:
            evidence = f"it is a NIC carrying a node address ({facts.addressed_nics[address]})"
        elif address in facts.mounted_disk_controllers:
            evidence = (
                "it controls a disk with a mounted filesystem "
                f"({facts.mounted_disk_controllers[address]})"
            )
        elif address in facts.boot_vga:
            evidence = "it is the boot console's GPU (boot_vga=1)"
        if evidence is not None:
            raise ClaimRefusedError(
                address,
                Reason.HOST_DEPENDS_ON_DEVICE,
                f"refusing {address}: {evidence}; passing it through would take the node "
                "offline. Move the host off it first, then claim it again",
            )
        if self.deny.denies(device):
            raise ClaimRefusedError(
                address,
                Reason.DENY_LISTED,
                f"refusing {address}: it is on this node's deny list (address or class "
                f"{device.pci_class.class_id}); remove it from the deny list to claim it",
            )

    def check_all(self, devices: Sequence[PciDevice], facts: HostFacts) -> None:
        """`check` every device (a group moves together, so one protected member refuses all)."""
        for device in devices:
            self.check(device, facts)
