"""What a host tells us about one PCI function, as plain values."""

from __future__ import annotations

import re
from typing import Final, NewType

import attrs

from pcicore.address import PciAddress
from pcicore.errors import InvalidDriverNameError, InvalidNodeNameError

DriverName = NewType("DriverName", str)
"""A kernel driver name as it appears under ``/sys/bus/pci/drivers`` (``e1000e``, ``vfio-pci``)."""

IommuGroup = NewType("IommuGroup", int)
"""The number of an IOMMU group (``/sys/kernel/iommu_groups/<N>``)."""

NodeName = NewType("NodeName", str)
"""The name of a Kubernetes node."""

VFIO_DRIVER = DriverName("vfio-pci")

# What `struct device_driver.name` holds in practice, and a directory name under
# /sys/bus/pci/drivers: never empty, never a path, never "." or "..".
_DRIVER_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# A Kubernetes node name is a DNS subdomain (RFC 1123), at most 253 characters.
_NODE_NAME: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_NODE_NAME_MAX: Final = 253


def parse_driver_name(text: object, hint: str = "check the recorded original driver") -> DriverName:
    """``text`` as a `DriverName`, if it can name a driver's directory.

    Raises:
        InvalidDriverNameError: ``text`` is not a string of the kernel's driver-name alphabet
            (``hint`` is appended to the message: where the name came from, what to do).
    """
    if not isinstance(text, str) or not _DRIVER_NAME.fullmatch(text):
        raise InvalidDriverNameError(text, hint)
    return DriverName(text)


def parse_node_name(text: str) -> NodeName:
    """``text`` as a `NodeName`, if Kubernetes would accept it as a node's name.

    Raises:
        InvalidNodeNameError: ``text`` is not an RFC 1123 DNS subdomain of at most 253
            characters.
    """
    if len(text) > _NODE_NAME_MAX or not _NODE_NAME.fullmatch(text):
        raise InvalidNodeNameError(text)
    return NodeName(text)


# PCI class codes (PCI Code and ID Assignment Specification).
CLASS_BRIDGE = 0x06
SUBCLASS_HOST_BRIDGE = 0x00
SUBCLASS_PCI_BRIDGE = 0x04


@attrs.frozen
class PciClass:
    """The three-byte class code of a function.

    Attributes:
        base: Base class (``0x02`` network controller).
        sub: Subclass (``0x00`` Ethernet).
        prog_if: Programming interface.
    """

    base: int
    sub: int
    prog_if: int = 0

    @classmethod
    def from_code(cls, code: int) -> PciClass:
        """Split the 24-bit ``0xCCSSPP`` value found in sysfs ``class``."""
        return cls(base=(code >> 16) & 0xFF, sub=(code >> 8) & 0xFF, prog_if=code & 0xFF)

    @property
    def class_id(self) -> str:
        """Class and subclass as four lower-case hex digits (``0200``), as in ``classId``."""
        return f"{self.base:02x}{self.sub:02x}"

    @property
    def is_bridge(self) -> bool:
        """Whether this is a PCI-to-PCI bridge, which VFIO exempts from group viability."""
        return self.base == CLASS_BRIDGE and self.sub == SUBCLASS_PCI_BRIDGE


@attrs.frozen
class SriovInfo:
    """SR-IOV facts of a function, where the kernel reports them.

    Attributes:
        physfn: For a virtual function, the address of its physical function.
        total_vfs: For a physical function, how many VFs it can have.
        num_vfs: For a physical function, how many VFs are enabled.
    """

    physfn: PciAddress | None = None
    total_vfs: int | None = None
    num_vfs: int | None = None


@attrs.frozen
class PciDevice:
    """One PCI function as the host sees it right now.

    Attributes:
        address: Where it sits on the bus.
        vendor_id: 16-bit vendor id.
        device_id: 16-bit device id.
        subsystem_vendor_id: 16-bit subsystem vendor id (0 when none).
        subsystem_device_id: 16-bit subsystem device id (0 when none).
        pci_class: Class, subclass and programming interface.
        revision: Revision byte.
        driver: The kernel driver bound now, or ``None`` when unbound.
        iommu_group: The IOMMU group, or ``None`` on a host without an IOMMU.
        numa_node: The NUMA node, or ``None`` where the kernel reports -1.
        sriov: SR-IOV facts (empty for most devices).
        parent: The bridge directly upstream, or ``None`` when on a root bus.
        root_port: The topmost PCI function upstream (a PCIe root port), or ``None``.
    """

    address: PciAddress
    vendor_id: int
    device_id: int
    pci_class: PciClass
    subsystem_vendor_id: int = 0
    subsystem_device_id: int = 0
    revision: int = 0
    driver: DriverName | None = None
    iommu_group: IommuGroup | None = None
    numa_node: int | None = None
    sriov: SriovInfo = SriovInfo()
    parent: PciAddress | None = None
    root_port: PciAddress | None = None

    @property
    def vendor_hex(self) -> str:
        """The vendor id as four lower-case hex digits."""
        return f"{self.vendor_id:04x}"

    @property
    def device_hex(self) -> str:
        """The device id as four lower-case hex digits."""
        return f"{self.device_id:04x}"

    @property
    def is_bound_to_vfio(self) -> bool:
        """Whether ``vfio-pci`` drives the device now."""
        return self.driver == VFIO_DRIVER
