"""Which devices a claim moves: IOMMU group viability.

A VM can use a device only when VFIO can hand it the whole IOMMU group: every endpoint in the
group bound to ``vfio-pci`` (or to no driver, or ``pci-stub``); PCIe bridges are exempt (the
kernel's ``vfio_dev_viable``). Claiming the GPU without its audio function makes the VM
unbootable, so a claim either waits for the rest of the group (`GroupPolicy.STRICT`) or takes
it along (`GroupPolicy.GROUP`).

Which devices may never move at all (bridges, devices without an IOMMU group, those the host
depends on, the deny list) is `pcicore.protection`.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Sequence
from typing import Final

import attrs

from pcicore.address import PciAddress
from pcicore.device import VFIO_DRIVER, DriverName, PciDevice
from pcicore.protection import device_refusal, no_iommu_refusal

PCI_STUB_DRIVER: Final = DriverName("pci-stub")

_VIABLE_DRIVERS: Final = frozenset({None, VFIO_DRIVER, PCI_STUB_DRIVER})


class GroupPolicy(enum.Enum):
    """What a claim on one member of a multi-device IOMMU group does with the others."""

    STRICT = "strict"
    """Wait until every other endpoint is claimed too (or already free); move only this one."""
    GROUP = "group"
    """Move every endpoint of the group together, recording each one's original driver."""


def is_viable_member(device: PciDevice) -> bool:
    """Whether ``device`` lets its group be viable as it is now (or is exempt, a bridge)."""
    return device.pci_class.is_bridge or device.driver in _VIABLE_DRIVERS


@attrs.frozen
class GroupPlan:
    """What a claim on one device moves, and what it still waits for.

    Attributes:
        target: The claimed device.
        members: The devices to move to ``vfio-pci`` (the target first), non-bridge only.
        group: The IOMMU group.
        waiting_for: Other endpoints that keep the group from being viable (strict policy).
    """

    target: PciDevice
    members: tuple[PciDevice, ...]
    group: int
    waiting_for: tuple[PciDevice, ...] = ()

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
) -> GroupPlan:
    """What claiming ``target`` moves, given every device on the host and those claimed.

    Raises:
        ClaimRefusedError: ``target`` can never be passed through (`device_refusal`): it is a
            bridge or has no IOMMU group.
    """
    group = target.iommu_group
    refusal = device_refusal(target)
    if refusal is not None or group is None:  # no group is always refused: this is for mypy
        raise (refusal or no_iommu_refusal(str(target.address))).error(target.address)
    others = [
        device
        for device in devices
        if device.iommu_group == target.iommu_group
        and device.address != target.address
        and not device.pci_class.is_bridge
    ]
    if policy is GroupPolicy.GROUP:
        return GroupPlan(target=target, members=(target, *others), group=int(group))
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
        group=int(group),
    )
