"""Which devices of a pool to hand a container: the answer to ``GetPreferredAllocation``.

The kubelet asks which ``size`` devices, out of those available and including those it must,
the plugin would prefer. Good answers keep a VM's devices close together and never split what
must not be split:

1. every ``must_include`` device, then the rest of their IOMMU groups (a group is handed out
   whole: VFIO opens a group, not a function, and a VM with half a group does not boot);
2. devices on one NUMA node (the one ``must_include`` already uses, else the node that holds
   enough devices with the fewest to spare, so bigger nodes stay free for bigger requests);
3. within that, devices below one PCIe root port (peer-to-peer traffic stays under it);
4. whole IOMMU groups, the bigger first, so that no group is split when singles can fill up;
5. in address order, so identical cards are always handed out the same way (never at random).

Pure: the facts come in as `DeviceTopology` values.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import TypeVar

import attrs

from pcicore.address import PciAddress
from pcicore.device import IommuGroup

_Key = TypeVar("_Key", bound=Hashable)


@attrs.frozen
class DeviceTopology:
    """Where a device sits, as far as choosing companions for it goes.

    Attributes:
        address: The device (kubelet id ``str(address)``).
        numa_node: Its NUMA node, or ``None``.
        root_port: Its PCIe root port, or ``None``.
        iommu_group: Its IOMMU group, or ``None``.
    """

    address: PciAddress
    numa_node: int | None = None
    root_port: PciAddress | None = None
    iommu_group: IommuGroup | None = None


def _preference(
    keys: Mapping[str, _Key], pinned: set[_Key], need: int, order: Callable[[_Key], str]
) -> dict[_Key, int]:
    """Rank each key: pinned ones first, then those that can satisfy ``need`` (best fit), rest."""
    capacity: dict[_Key, int] = {}
    for key in keys.values():
        capacity[key] = capacity.get(key, 0) + 1

    def rank(key: _Key) -> tuple[int, int, str]:
        if key in pinned:
            return (0, 0, order(key))
        if capacity[key] >= need:
            return (1, capacity[key], order(key))
        return (2, -capacity[key], order(key))

    return {key: index for index, key in enumerate(sorted(capacity, key=rank))}


def _order_numa(node: int | None) -> str:
    return f"{node:010d}" if node is not None else "~"


def _order_root(root: PciAddress | None) -> str:
    return str(root) if root is not None else "~"


def preferred_allocation(
    available: Sequence[DeviceTopology],
    must_include: Sequence[PciAddress],
    size: int,
) -> list[PciAddress]:
    """The ``size`` devices to prefer (fewer only when fewer are available), best first.

    ``must_include`` devices come first even beyond ``size``; unknown ones are kept as given
    (the kubelet decides), devices listed twice count once.
    """
    by_address = {device.address: device for device in available}
    chosen: list[PciAddress] = []
    for address in must_include:
        if address not in chosen:
            chosen.append(address)
    if len(chosen) >= size:
        return chosen

    rest = sorted(address for address in by_address if address not in chosen)
    need = size - len(chosen)
    chosen_facts = [by_address[address] for address in chosen if address in by_address]
    chosen_groups = {d.iommu_group for d in chosen_facts if d.iommu_group is not None}
    numa_rank = _preference(
        {str(a): by_address[a].numa_node for a in rest},
        {d.numa_node for d in chosen_facts},
        need,
        _order_numa,
    )
    root_rank = _preference(
        {str(a): by_address[a].root_port for a in rest},
        {d.root_port for d in chosen_facts},
        need,
        _order_root,
    )

    # Units: an IOMMU group's members travel together; a device without a group is alone.
    units: dict[object, list[PciAddress]] = {}
    for address in rest:
        group = by_address[address].iommu_group
        units.setdefault(("group", group) if group is not None else address, []).append(address)

    def unit_rank(members: list[PciAddress]) -> tuple[int, int, int, int, PciAddress]:
        first = by_address[members[0]]
        return (
            0 if first.iommu_group in chosen_groups else 1,
            numa_rank[first.numa_node],
            root_rank[first.root_port],
            -len(members),  # bigger whole groups first, so the small ones fill the remainder
            members[0],
        )

    ordered = sorted(units.values(), key=unit_rank)
    # Whole units first; a unit larger than what is left is skipped rather than split...
    mates = _mates(chosen_groups, by_address)
    leftovers: list[PciAddress] = []
    for members in ordered:
        if need > 0 and (len(members) <= need or members[0] in mates):
            taken = members[:need]
            chosen.extend(taken)
            leftovers.extend(members[len(taken) :])
            need -= len(taken)
        else:
            leftovers.extend(members)
    # ...unless nothing else fills the request: then the kubelet still gets its count.
    chosen.extend(leftovers[:need])
    return chosen


def _mates(
    groups: set[IommuGroup], by_address: Mapping[PciAddress, DeviceTopology]
) -> set[PciAddress]:
    """Devices sharing an IOMMU group with a must-include device."""
    return {
        a for a, d in by_address.items() if d.iommu_group is not None and d.iommu_group in groups
    }
