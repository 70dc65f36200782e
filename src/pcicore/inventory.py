"""What to write so that a node's PCIDevice objects say what its PCI bus says.

The device sync observes the objects it keeps (one per PCI function of its node), builds the
records the objects should hold (`pcicore.catalog`), and asks `plan_device_writes` for the
difference: objects to create, metadata and status to patch, objects to delete. Equal in,
nothing out: an idle rescan writes nothing.

A status is compared as flat fields (name → scalar, named as the object reports them): the
fields the sync owns are compared one by one and only those that differ are written, so fields
others write into the same status (conditions, say) are never touched. Which fields there are
and how they are spelled is the wire mapping's business, not this module's.

Which devices get an object at all is `is_published`: every function but PCI-to-PCI bridges
(class 0604), as Harvester does: a bridge cannot be passed through (VFIO leaves it to the host),
and Harvester's UI offers every PCIDevice as claimable. ``pcidevices scan`` still lists bridges.

Everything here is pure: desired and observed in, writes out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import attrs

from pcicore.catalog import DeviceRecord
from pcicore.device import DriverName, NodeName, PciDevice

StatusValue = str | int | bool
"""One field of a PCIDevice's status as the sync writes it."""

StatusFields = Mapping[str, StatusValue]
"""A PCIDevice's status as flat fields, each named as the object reports it."""


def is_published(device: PciDevice) -> bool:
    """Whether the device gets a PCIDevice object: all but PCI-to-PCI bridges (class 0604)."""
    return not device.pci_class.is_bridge


@attrs.frozen
class OwnerRef:
    """A reference from an object to the object that owns it (the Node, for a PCIDevice).

    Kubernetes deletes an object when its owner is deleted; the sync gives every PCIDevice its
    Node as owner so a node removed from the cluster takes its devices with it.

    Attributes:
        api_version: The owner's API version (``v1`` for a Node).
        kind: The owner's kind (``Node``).
        name: The owner's name.
        uid: The owner's uid: a Node deleted and re-created under the same name is another owner.
        controller: Whether the owner is the managing controller (``None``: not stated).
        block_owner_deletion: Whether the owner's deletion waits for this object
            (``None``: not stated).
    """

    api_version: str
    kind: str
    name: str
    uid: str
    controller: bool | None = None
    block_owner_deletion: bool | None = None


@attrs.frozen
class DesiredDevice:
    """What one PCIDevice object should hold.

    Attributes:
        record: The device's record (name, node, original driver, …).
        status: The record's status as flat fields (built by the wire mapping).
    """

    record: DeviceRecord
    status: StatusFields

    @property
    def name(self) -> str:
        """The object's name."""
        return self.record.name

    @property
    def original_driver(self) -> DriverName | None:
        """The original-driver annotation the object should carry (``None``: none)."""
        return self.record.original_driver or None


@attrs.frozen
class ObservedDevice:
    """What one PCIDevice object holds now, as far as the sync is concerned.

    Attributes:
        name: The object's name.
        node_label: Its node label (``None`` when it has none).
        original_driver: Its original-driver annotation (``None`` when it has none).
        owners: Its owner references, in order.
        status: Its status as flat fields (empty when it has none).
        parent_sriov: Its parent-SR-IOV-device label (``None`` when it has none).
        resource_override: Its resource-name override annotation (``None`` when it has none):
            the resourceName it must report instead of its pool's.
    """

    name: str
    node_label: str | None = None
    original_driver: str | None = None
    owners: tuple[OwnerRef, ...] = ()
    status: Mapping[str, object] = attrs.field(factory=dict)
    parent_sriov: str | None = None
    resource_override: str | None = None


@attrs.frozen
class MetadataPatch:
    """The metadata of one object that must change (a merge patch: the rest stays).

    Attributes:
        node_label: The node label to set (``None``: leave the labels as they are).
        set_original_driver: Whether the original-driver annotation changes.
        original_driver: Its new value when it changes (``None``: remove it).
        owners: The whole new list of owner references (``None``: leave it).
        set_parent_sriov: Whether the parent-SR-IOV-device label changes.
        parent_sriov: Its new value when it changes (``None``: remove it).
    """

    node_label: NodeName | None = None
    set_original_driver: bool = False
    original_driver: DriverName | None = None
    owners: tuple[OwnerRef, ...] | None = None
    set_parent_sriov: bool = False
    parent_sriov: str | None = None

    def __bool__(self) -> bool:
        """Whether the patch changes anything."""
        return (
            self.node_label is not None
            or self.set_original_driver
            or self.owners is not None
            or self.set_parent_sriov
        )


@attrs.frozen
class CreateDevice:
    """Create the object for a device that has none (with its status).

    Attributes:
        device: What it should hold.
        owner: Its owner (``None`` while the node has no Node object).
    """

    device: DesiredDevice
    owner: OwnerRef | None


@attrs.frozen
class PatchDeviceMetadata:
    """Change an object's labels, annotations or owners.

    Attributes:
        name: The object.
        patch: What changes.
    """

    name: str
    patch: MetadataPatch


@attrs.frozen
class PatchDeviceStatus:
    """Change some fields of an object's status.

    Attributes:
        name: The object.
        fields: The fields to write, each with its new value.
    """

    name: str
    fields: StatusFields


@attrs.frozen
class DeleteDevice:
    """Delete the object of a device that left the bus.

    Attributes:
        name: The object.
    """

    name: str


DeviceWrite = CreateDevice | PatchDeviceMetadata | PatchDeviceStatus | DeleteDevice
"""One write to the cluster that `plan_device_writes` asks for."""


def metadata_patch(
    desired: DesiredDevice, observed: ObservedDevice, owner: OwnerRef | None
) -> MetadataPatch:
    """What must change in ``observed``'s metadata (a patch that is false when nothing must).

    The node label, the original-driver annotation and the parent-SR-IOV-device label are set
    to the desired values. With an
    ``owner``, an object that lacks a reference to it gets one: references to other Nodes
    (a Node re-created under the same name has a new uid) are dropped, other owners kept.
    """
    node = desired.record.node
    node_label = node if observed.node_label != node else None
    driver = desired.original_driver
    owners = None
    if owner is not None and all(ref.uid != owner.uid for ref in observed.owners):
        owners = (*(ref for ref in observed.owners if ref.kind != "Node"), owner)
    set_driver = driver != observed.original_driver
    parent = desired.record.parent_sriov
    set_parent = parent != observed.parent_sriov
    return MetadataPatch(
        node_label=node_label,
        set_original_driver=set_driver,
        original_driver=driver if set_driver else None,
        owners=owners,
        set_parent_sriov=set_parent,
        parent_sriov=parent if set_parent else None,
    )


def status_patch(desired: DesiredDevice, observed: ObservedDevice) -> StatusFields:
    """The status fields whose observed value differs from the desired one (empty if none)."""
    return {
        key: value for key, value in desired.status.items() if observed.status.get(key) != value
    }


def device_updates(
    desired: DesiredDevice, observed: ObservedDevice, owner: OwnerRef | None
) -> tuple[DeviceWrite, ...]:
    """The writes that make the existing object ``observed`` hold ``desired``."""
    writes: list[DeviceWrite] = []
    meta = metadata_patch(desired, observed, owner)
    if meta:
        writes.append(PatchDeviceMetadata(desired.name, meta))
    status = status_patch(desired, observed)
    if status:
        writes.append(PatchDeviceStatus(desired.name, status))
    return tuple(writes)


def plan_device_writes(
    desired: Sequence[DesiredDevice],
    observed: Iterable[ObservedDevice],
    owner: OwnerRef | None,
) -> tuple[DeviceWrite, ...]:
    """The writes that make the objects ``observed`` equal to ``desired``; none when equal.

    In the order of ``desired``, each device gets a create (no object yet) or the patches its
    object needs; then the objects of devices no longer desired are deleted, by name.
    """
    current = {device.name: device for device in observed}
    writes: list[DeviceWrite] = []
    for device in desired:
        found = current.get(device.name)
        if found is None:
            writes.append(CreateDevice(device, owner))
        else:
            writes.extend(device_updates(device, found, owner))
    wanted = {device.name for device in desired}
    writes.extend(DeleteDevice(name) for name in sorted(current.keys() - wanted))
    return tuple(writes)


__all__ = [
    "CreateDevice",
    "DeleteDevice",
    "DesiredDevice",
    "DeviceWrite",
    "MetadataPatch",
    "ObservedDevice",
    "OwnerRef",
    "PatchDeviceMetadata",
    "PatchDeviceStatus",
    "StatusFields",
    "StatusValue",
    "device_updates",
    "is_published",
    "metadata_patch",
    "plan_device_writes",
]
