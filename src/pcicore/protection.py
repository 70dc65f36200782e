"""Which devices may never be passed through, and the refusal each one gets.

One home for every refusal, used by the claim engine on the node and by the admission webhook
in the cluster, so that a user reads the same reason and fix from ``kubectl apply`` as from the
claim's condition:

- a PCI-to-PCI bridge is never passed through (the devices behind it are);
- a device with no IOMMU group is refused: passthrough without an IOMMU is not supported (Linux
  refuses ``vfio-pci`` there unless ``vfio.enable_unsafe_noiommu_mode=1``, and a VM given such a
  device could write anywhere in host memory);
- a device the running host depends on (`HostFacts`) is refused, and so is every device when
  what the host depends on could not be read (fail closed);
- a device on the operator's `DenyList` is refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

import attrs

from pcicore.address import PciAddress
from pcicore.claim import Reason
from pcicore.device import IommuGroup, PciClass, PciDevice
from pcicore.errors import (
    ClaimRefusedError,
    InvalidDenyEntryError,
    InvalidPciAddressError,
    RefusalReason,
)
from pcicore.hostfacts import HostFacts

THIS_NODE: Final = "this node"
"""How a refusal names the node when the caller is the node itself."""

NO_IOMMU_UNSUPPORTED: Final = (
    "passthrough without an IOMMU is not supported: Linux refuses vfio-pci on such a node "
    "unless vfio.enable_unsafe_noiommu_mode=1, and a VM given the device could reach all host "
    "memory; enable the IOMMU (VT-d or AMD-Vi in the firmware, intel_iommu=on or amd_iommu=on "
    "on the kernel command line) and drop this option"
)
"""Why the options that once allowed it (``--no-iommu``, ``--allow-no-iommu``) now fail."""

_HEX: Final = frozenset("0123456789abcdefABCDEF")
_CLASS_PREFIX_MAX: Final = 6

# What a claim's condition shows for each refusal. A bridge has always been reported as
# denied (a fixed entry of the deny list, in effect).
_CONDITION_REASONS: Final = {
    RefusalReason.PCI_BRIDGE: Reason.DENY_LISTED,
    RefusalReason.NO_IOMMU: Reason.NO_IOMMU,
    RefusalReason.HOST_DEPENDS_ON_DEVICE: Reason.HOST_DEPENDS_ON_DEVICE,
    RefusalReason.HOST_FACTS_UNREADABLE: Reason.HOST_FACTS_UNREADABLE,
    RefusalReason.DENY_LISTED: Reason.DENY_LISTED,
    RefusalReason.HELD_ELSEWHERE: Reason.HELD_ELSEWHERE,
}


def condition_reason(reason: RefusalReason) -> Reason:
    """The reason a claim's condition shows when its device is refused for ``reason``."""
    return _CONDITION_REASONS[reason]


@attrs.frozen
class Refusal:
    """Why a device may not be passed through, in the words the user reads.

    Attributes:
        reason: Which rule refused it.
        message: What was found and what to do about it.
    """

    reason: RefusalReason
    message: str

    def error(self, address: PciAddress) -> ClaimRefusedError:
        """The error that refuses ``address`` for this."""
        return ClaimRefusedError(address, self.reason, self.message)


def bridge_refusal(subject: str, pci_class: PciClass) -> Refusal:
    """The refusal of the bridge ``subject`` (how the caller names the device)."""
    return Refusal(
        RefusalReason.PCI_BRIDGE,
        f"{subject} is a PCI bridge (class {pci_class.class_id}); bridges are never passed "
        "through, claim the devices behind it instead",
    )


def no_iommu_refusal(subject: str, node: str = THIS_NODE) -> Refusal:
    """The refusal of ``subject``, which has no IOMMU group, on ``node`` (as the caller says)."""
    return Refusal(
        RefusalReason.NO_IOMMU,
        f"{subject} has no IOMMU group: {node} has no IOMMU enabled, and passthrough without "
        "one is not supported (vfio-pci refuses it, and a VM could reach all host memory); "
        "enable the IOMMU (VT-d or AMD-Vi in the firmware, intel_iommu=on or amd_iommu=on on "
        "the kernel command line), reboot the node and claim it again",
    )


def passthrough_refusal(
    subject: str,
    pci_class: PciClass | None,
    iommu_group: IommuGroup | None,
    node: str = THIS_NODE,
) -> Refusal | None:
    """Why a device of ``pci_class`` in ``iommu_group`` can never be passed through, or ``None``.

    These rules depend only on the device, never on what the host uses it for: the webhook
    applies them to what a node reported, the engine to what it reads now.
    """
    if pci_class is not None and pci_class.is_bridge:
        return bridge_refusal(subject, pci_class)
    if iommu_group is None:
        return no_iommu_refusal(subject, node)
    return None


def device_refusal(device: PciDevice) -> Refusal | None:
    """`passthrough_refusal` of a device read on this node."""
    return passthrough_refusal(str(device.address), device.pci_class, device.iommu_group)


@attrs.frozen
class DenyList:
    """Devices the operator never wants passed through.

    Attributes:
        addresses: Denied functions.
        classes: Denied class codes, as lower-case hex prefixes of ``CCSSPP`` (``03`` every
            display controller, ``0106`` SATA controllers, ``010802`` NVMe).
    """

    addresses: frozenset[PciAddress] = frozenset()
    classes: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> DenyList:
        """The deny list of ``entries``: each a PCI address or a hex class prefix.

        Raises:
            InvalidDenyEntryError: an entry is neither (the message names it).
        """
        addresses = set()
        classes = set()
        for entry in entries:
            if ":" in entry:
                try:
                    addresses.add(PciAddress.parse(entry))
                except InvalidPciAddressError as err:
                    raise InvalidDenyEntryError(entry) from err
            elif entry and len(entry) <= _CLASS_PREFIX_MAX and set(entry) <= _HEX:
                classes.add(entry.lower())
            else:
                raise InvalidDenyEntryError(entry)
        return cls(addresses=frozenset(addresses), classes=frozenset(classes))

    def denies(self, device: PciDevice) -> bool:
        """Whether ``device`` is on the list."""
        klass = device.pci_class
        code = f"{klass.base:02x}{klass.sub:02x}{klass.prog_if:02x}"
        return device.address in self.addresses or any(
            code.startswith(prefix.lower()) for prefix in self.classes
        )


@attrs.frozen
class HostProtection:
    """Refuses devices the host depends on, those on the deny list, and all when facts are missing.

    Attributes:
        deny: The operator's deny list.
    """

    deny: DenyList = DenyList()

    def refusal(self, device: PciDevice, facts: HostFacts) -> Refusal | None:
        """Why ``device`` may not be passed through on a host with ``facts``, or ``None``.

        Evidence that the host uses the device answers first, then the deny list; when neither
        refuses it but some input could not be read, the device is refused all the same,
        naming what could not be read.
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
            return Refusal(
                RefusalReason.HOST_DEPENDS_ON_DEVICE,
                f"refusing {address}: {evidence}; passing it through would take the node "
                "offline. Move the host off it first, then claim it again",
            )
        if self.deny.denies(device):
            return Refusal(
                RefusalReason.DENY_LISTED,
                f"refusing {address}: it is on this node's deny list (address or class "
                f"{device.pci_class.class_id}); remove it from the deny list to claim it",
            )
        if not facts.complete:
            unread = "; ".join(f"{path}: {why}" for path, why in sorted(facts.unreadable.items()))
            return Refusal(
                RefusalReason.HOST_FACTS_UNREADABLE,
                f"refusing {address}: could not read what the host depends on ({unread}), so "
                "it may be the node's network or disk; give the agent read access to the host's "
                "/proc and /sys (mounted as --proc and --sysfs), then claim it again",
            )
        return None

    def check(self, device: PciDevice, facts: HostFacts) -> None:
        """Return if ``device`` may be passed through.

        Raises:
            ClaimRefusedError: see `refusal`; the message carries the evidence and the fix.
        """
        refusal = self.refusal(device, facts)
        if refusal is not None:
            raise refusal.error(device.address)

    def check_all(self, devices: Sequence[PciDevice], facts: HostFacts) -> None:
        """`check` every device (a group moves together, so one protected member refuses all)."""
        for device in devices:
            self.check(device, facts)
