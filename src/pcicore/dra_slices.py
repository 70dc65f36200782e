"""What this node publishes under DRA: the ResourceSlices of its pool, and the writes to get there.

Kubernetes' Dynamic Resource Allocation (``resource.k8s.io/v1``) learns a node's devices from
ResourceSlices: each names the driver (`pcicore.dra.DRIVER_NAME`), a pool (here: the node's
name) with a generation and the number of slices the pool has at that generation, the node, and
up to `MAX_DEVICES_PER_SLICE` devices, each with typed attributes that DeviceClass and claim
selectors (CEL) match on.

Which functions are published (`publishable`): every function that could be passed through —
not a bridge of any kind (class 06: host, ISA, PCI-to-PCI bridges), in an IOMMU group, not
refused by host protection (the host's NIC or boot disk, the deny list) — and that no
``PCIDeviceClaim`` holds. A claimed function belongs
to the device plugin (dual mode: one device, one mode), and so does every function in an IOMMU
group with a claimed member, because the group moves to ``vfio-pci`` as one.

Attributes (`dra_device`) use Kubernetes' standard names where they exist
(``resource.kubernetes.io/pciBusID``, ``pcieRoot``, ``numaNode``) and this driver's otherwise;
a name without a domain belongs to the driver's domain, so ``vendorId`` is read in CEL as
``device.attributes["pci.devices.harvesterhci.io"].vendorId``. Nothing that changes when a
device is prepared (the kernel driver bound now) is published, so preparing a claim never
rewrites a slice. A function is allocated whole: no capacity is published.

`plan_slice_writes` compares the desired devices with the observed slices and returns the
writes: none when they already agree; otherwise every slice of the pool at the next generation,
and the deletion of slices the pool no longer has. Everything here is pure.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Final, TypeAlias

import attrs

from pcicore.address import PciAddress
from pcicore.device import CLASS_BRIDGE, NodeName, PciDevice
from pcicore.dra import DRIVER_NAME, device_name
from pcicore.errors import InvalidSliceSizeError
from pcicore.inventory import OwnerRef
from pcicore.naming import ResourceName
from pcicore.protection import passthrough_refusal

MAX_DEVICES_PER_SLICE: Final = 128
"""``resource.k8s.io/v1`` ResourceSliceMaxDevices: more devices make more slices of one pool."""

ATTRIBUTE_VALUE_MAX: Final = 64
"""``resource.k8s.io/v1`` DeviceAttributeMaxValueLength: the longest string attribute."""

_OBJECT_NAME_MAX: Final = 253

STANDARD_PREFIX: Final = "resource.kubernetes.io/"
PCI_BUS_ID: Final = STANDARD_PREFIX + "pciBusID"
"""Standard attribute: the function's address in extended BDF notation (``0000:03:00.0``)."""
PCIE_ROOT: Final = STANDARD_PREFIX + "pcieRoot"
"""Standard attribute: the PCIe root complex above the function, ``pci<domain>:<bus>``."""
NUMA_NODE: Final = STANDARD_PREFIX + "numaNode"
"""Standard attribute: the function's NUMA node; left out when the kernel reports none."""

VENDOR_ID: Final = "vendorId"
DEVICE_ID: Final = "deviceId"
CLASS_ID: Final = "classId"
SUBSYSTEM_VENDOR_ID: Final = "subsystemVendorId"
SUBSYSTEM_DEVICE_ID: Final = "subsystemDeviceId"
IOMMU_GROUP: Final = "iommuGroup"
RESOURCE_NAME: Final = "resourceName"


class AttributeKind(enum.Enum):
    """The type of a device attribute, spelled as the API's one-of field."""

    STRING = "string"
    INT = "int"
    BOOL = "bool"
    VERSION = "version"


@attrs.frozen
class AttributeValue:
    """One typed attribute value (``int`` 1 and ``bool`` true are different values).

    Attributes:
        kind: Its type.
        value: The value (``str`` for strings and versions).
    """

    kind: AttributeKind
    value: str | int | bool

    @classmethod
    def string(cls, value: str) -> AttributeValue:
        """A string attribute."""
        return cls(AttributeKind.STRING, value)

    @classmethod
    def integer(cls, value: int) -> AttributeValue:
        """An int attribute."""
        return cls(AttributeKind.INT, value)


@attrs.frozen
class DraDevice:
    """One device of a ResourceSlice.

    Attributes:
        name: Its name in the pool (`pcicore.dra.device_name`).
        attributes: Its attributes by qualified name.
    """

    name: str
    attributes: Mapping[str, AttributeValue] = attrs.field(factory=dict, hash=False)


@attrs.frozen
class SliceContent:
    """What one ResourceSlice of this node's pool holds.

    Attributes:
        name: The object's name.
        node: The node (also the pool's name).
        generation: The pool's generation.
        slice_count: How many slices the pool has at that generation.
        devices: Its devices, in address order.
    """

    name: str
    node: NodeName
    generation: int
    slice_count: int
    devices: tuple[DraDevice, ...]


@attrs.frozen
class ObservedSlice:
    """A ResourceSlice of this driver on this node, as read from the cluster.

    Attributes:
        name: The object's name.
        resource_version: Its resourceVersion (an update names it: no lost writes).
        pool: Its pool's name.
        generation: Its pool generation.
        slice_count: Its pool's resourceSliceCount.
        devices: Its devices, in the order they are listed.
        owners: Its owner references.
        exact: Whether it holds only what this driver writes (``False``: a field it does not
            write, such as capacity or taints, or an attribute it could not read).
    """

    name: str
    resource_version: str
    pool: str
    generation: int
    slice_count: int
    devices: tuple[DraDevice, ...]
    owners: tuple[OwnerRef, ...] = ()
    exact: bool = True


@attrs.frozen
class CreateSlice:
    """Create a slice (owned by ``owner``).

    Attributes:
        content: What it holds.
        owner: Its owner (the Node), or ``None`` when unknown.
    """

    content: SliceContent
    owner: OwnerRef | None


@attrs.frozen
class UpdateSlice:
    """Replace a slice's content, if it is still at ``resource_version``.

    Attributes:
        content: What it holds afterwards.
        owner: Its owner (the Node), or ``None`` when unknown.
        resource_version: The version the plan was made against.
    """

    content: SliceContent
    owner: OwnerRef | None
    resource_version: str


@attrs.frozen
class DeleteSlice:
    """Delete a slice the pool no longer has.

    Attributes:
        name: The object's name.
    """

    name: str


SliceWrite: TypeAlias = CreateSlice | UpdateSlice | DeleteSlice


def pcie_root(device: PciDevice) -> str:
    """The root complex above ``device`` as ``pci<domain>:<bus>`` (``pci0000:00``).

    The root bus is the bus of the topmost function upstream (the root port), or of the device
    itself when it sits on a root bus; Kubernetes' ``deviceattribute`` package reads the same
    thing from the first component of the device's ``/sys/devices`` path.
    """
    top = device.root_port or device.address
    return f"pci{top.domain:04x}:{top.bus:02x}"


def dra_device(device: PciDevice, resource_name: ResourceName | None) -> DraDevice:
    """The DRA device of one function, with its attributes.

    ``resource_name`` is the device plugin's name for the device's kind (its pool), published
    so that one selector can name a kind the same way in both modes; a name longer than the
    API's 64-character attribute limit (or none) is left out.
    """
    attributes: dict[str, AttributeValue] = {
        PCI_BUS_ID: AttributeValue.string(str(device.address)),
        PCIE_ROOT: AttributeValue.string(pcie_root(device)),
        VENDOR_ID: AttributeValue.string(device.vendor_hex),
        DEVICE_ID: AttributeValue.string(device.device_hex),
        CLASS_ID: AttributeValue.string(device.pci_class.class_id),
        SUBSYSTEM_VENDOR_ID: AttributeValue.string(f"{device.subsystem_vendor_id:04x}"),
        SUBSYSTEM_DEVICE_ID: AttributeValue.string(f"{device.subsystem_device_id:04x}"),
    }
    if device.numa_node is not None and device.numa_node >= 0:
        attributes[NUMA_NODE] = AttributeValue.integer(device.numa_node)
    if device.iommu_group is not None:
        attributes[IOMMU_GROUP] = AttributeValue.integer(device.iommu_group)
    if resource_name and len(resource_name) <= ATTRIBUTE_VALUE_MAX:
        attributes[RESOURCE_NAME] = AttributeValue.string(resource_name)
    return DraDevice(device_name(device.address), attributes)


def publishable(
    devices: Iterable[PciDevice],
    *,
    refused: Collection[PciAddress],
    claimed: Collection[PciAddress],
) -> list[PciDevice]:
    """The functions offered under DRA, in address order.

    Left out: bridges of every kind (class 06; a PCI-to-PCI bridge is refused outright, and a
    host or ISA bridge is the platform's own), functions without an IOMMU group (never passed
    through), those host protection ``refused``, those a PCIDeviceClaim has ``claimed`` (the
    device plugin's), and every function sharing an IOMMU group with a claimed one.
    """
    every = list(devices)
    claimed_groups = {
        device.iommu_group
        for device in every
        if device.address in claimed and device.iommu_group is not None
    }
    return sorted(
        (
            device
            for device in every
            if device.pci_class.base != CLASS_BRIDGE
            and passthrough_refusal(str(device.address), device.pci_class, device.iommu_group)
            is None
            and device.address not in refused
            and device.address not in claimed
            and device.iommu_group not in claimed_groups
        ),
        key=lambda device: device.address.sort_key,
    )


def slice_name(node: NodeName, index: int) -> str:
    """The name of the pool's ``index``-th slice: ``<node>-pci.devices.harvesterhci.io-<index>``.

    A node name long enough to push it past Kubernetes' 253 characters is cut and followed by
    a digest of the whole name, so two long node names never share a slice name.
    """
    suffix = f"-{DRIVER_NAME}-{index}"
    if len(node) + len(suffix) <= _OBJECT_NAME_MAX:
        return f"{node}{suffix}"
    digest = hashlib.sha256(node.encode()).hexdigest()[:10]
    room = _OBJECT_NAME_MAX - len(suffix) - len(digest) - 1
    return f"{node[:room].rstrip('.-')}-{digest}{suffix}"


def chunk(
    devices: Sequence[DraDevice], max_devices: int = MAX_DEVICES_PER_SLICE
) -> list[tuple[DraDevice, ...]]:
    """``devices`` cut into slices of at most ``max_devices``, in order (none for none).

    Raises:
        InvalidSliceSizeError: ``max_devices`` is not within 1 to `MAX_DEVICES_PER_SLICE`.
    """
    if not 1 <= max_devices <= MAX_DEVICES_PER_SLICE:
        raise InvalidSliceSizeError(max_devices, MAX_DEVICES_PER_SLICE)
    return [tuple(devices[i : i + max_devices]) for i in range(0, len(devices), max_devices)]


def _in_step(
    node: NodeName,
    groups: Sequence[tuple[DraDevice, ...]],
    observed: Sequence[ObservedSlice],
    owner: OwnerRef | None,
) -> bool:
    """Whether the observed slices are exactly the desired pool at one generation."""
    by_name = {s.name: s for s in observed}
    if len(by_name) != len(observed) or len(observed) != len(groups):
        return False
    generations = {s.generation for s in observed}
    if len(generations) > 1:
        return False
    for index, devices in enumerate(groups):
        seen = by_name.get(slice_name(node, index))
        if (
            seen is None
            or not seen.exact
            or seen.pool != node
            or seen.slice_count != len(groups)
            or seen.devices != devices
            or (owner is not None and owner not in seen.owners)
        ):
            return False
    return True


def plan_slice_writes(
    node: NodeName,
    devices: Sequence[DraDevice],
    observed: Sequence[ObservedSlice],
    owner: OwnerRef | None,
    max_devices: int = MAX_DEVICES_PER_SLICE,
) -> list[SliceWrite]:
    """The writes that make this node's slices hold ``devices``; none when they already do.

    ``observed`` are every slice of this driver on this node. When anything differs, every
    slice of the pool is written at the next generation (one above the highest observed), so
    a reader never mixes slices of two generations, and then slices no longer wanted are
    deleted. ``owner`` (the Node) is set on every slice written.

    Raises:
        InvalidSliceSizeError: ``max_devices`` is out of range (see `chunk`).
    """
    groups = chunk(devices, max_devices)
    if _in_step(node, groups, observed, owner):
        return []
    generation = max((s.generation for s in observed), default=0) + 1
    versions = {s.name: s.resource_version for s in observed}
    writes: list[SliceWrite] = []
    wanted: set[str] = set()
    for index, group in enumerate(groups):
        name = slice_name(node, index)
        wanted.add(name)
        content = SliceContent(name, node, generation, len(groups), group)
        if name in versions:
            writes.append(UpdateSlice(content, owner, versions[name]))
        else:
            writes.append(CreateSlice(content, owner))
    writes.extend(DeleteSlice(s.name) for s in observed if s.name not in wanted)
    return writes


def desired_devices(
    devices: Iterable[PciDevice],
    resource_name: Callable[[PciDevice], ResourceName | None],
    *,
    refused: Collection[PciAddress],
    claimed: Collection[PciAddress],
) -> list[DraDevice]:
    """The DRA devices of a node: `publishable` functions as `dra_device`, in address order.

    ``resource_name`` names each function's kind as the device plugin does.
    """
    return [
        dra_device(device, resource_name(device))
        for device in publishable(devices, refused=refused, claimed=claimed)
    ]
