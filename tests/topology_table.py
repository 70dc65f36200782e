"""Devices of the preferred-allocation tables, written short (shared by their test files)."""

from __future__ import annotations

from pcicore.address import PciAddress
from pcicore.device import IommuGroup
from pcicore.preferred import DeviceTopology


def dev(
    text: str, numa: int | None = None, root: str | None = None, group: int | None = None
) -> DeviceTopology:
    """A device of the table: address, NUMA node, root port, IOMMU group."""
    return DeviceTopology(
        address=PciAddress.parse(text),
        numa_node=numa,
        root_port=PciAddress.parse(root) if root else None,
        iommu_group=IommuGroup(group) if group is not None else None,
    )


def ids(addresses: list[PciAddress]) -> list[str]:
    """Addresses without the 0000: domain, for readable tables."""
    return [str(address)[5:] for address in addresses]
