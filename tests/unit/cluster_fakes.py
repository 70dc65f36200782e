"""In-memory stand-ins for the cluster ports of the device sync and the KubeVirt controller.

Each keeps state the way the API server would, so tests assert on what the cluster holds
afterwards; each also counts the writes it was asked for, so "nothing changed, nothing written"
can be checked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import attrs

from pcicore.device import PciDevice
from pcicore.inventory import DesiredDevice, MetadataPatch, ObservedDevice, OwnerRef, StatusFields
from pcicore.permitted import (
    ClaimedAddress,
    DeviceKind,
    PermittedChange,
    PermittedDocument,
    PermittedEntry,
    PermittedKey,
)
from pcicore.ports import ClaimedDeviceKinds, DeviceObjectStore, PciBus, PermittedDevicesStore


class FakeBus(PciBus):
    """A PCI bus whose devices a test sets."""

    def __init__(self, devices: Sequence[PciDevice] = ()) -> None:
        self.present = list(devices)

    def devices(self) -> Sequence[PciDevice]:
        return sorted(self.present, key=lambda device: device.address)

    def device(self, address):
        return next((d for d in self.present if d.address == address), None)


class FakeDeviceStore(DeviceObjectStore):
    """PCIDevice objects of a whole cluster; `observed` shows those labelled with ``node``.

    Like a label-selected informer, an object whose node label is changed or removed is not
    observed, but it still exists: creating one of its name hands it back.
    """

    def __init__(self, node: str, node_uid: str | None = "uid-1") -> None:
        self.node = node
        self.node_uid = node_uid
        self.objects: dict[str, ObservedDevice] = {}
        self.writes = 0
        self.node_reads = 0

    def observed(self) -> Sequence[ObservedDevice]:
        return [obj for obj in self.objects.values() if obj.node_label == self.node]

    def node_owner(self) -> OwnerRef | None:
        self.node_reads += 1
        if self.node_uid is None:
            return None
        return OwnerRef("v1", "Node", self.node, self.node_uid)

    def create(self, device: DesiredDevice, owner: OwnerRef | None) -> ObservedDevice | None:
        if device.name in self.objects:
            return self.objects[device.name]
        self.writes += 1
        self.objects[device.name] = ObservedDevice(
            name=device.name,
            node_label=device.record.node,
            original_driver=device.original_driver,
            owners=() if owner is None else (owner,),
            status=dict(device.status),
        )
        return None

    def patch_metadata(self, name: str, patch: MetadataPatch) -> None:
        self.writes += 1
        obj = self.objects[name]
        changes: dict[str, object] = {}
        if patch.node_label is not None:
            changes["node_label"] = patch.node_label
        if patch.set_original_driver:
            changes["original_driver"] = patch.original_driver
        if patch.owners is not None:
            changes["owners"] = patch.owners
        self.objects[name] = attrs.evolve(obj, **changes)

    def patch_status(self, name: str, fields: StatusFields) -> None:
        self.writes += 1
        obj = self.objects[name]
        self.objects[name] = attrs.evolve(obj, status={**obj.status, **fields})

    def delete(self, name: str) -> None:
        self.writes += 1
        self.objects.pop(name, None)


class FakeClaims(ClaimedDeviceKinds):
    """The claims and PCIDevices of a cluster, as the KubeVirt controller reads them."""

    def __init__(self) -> None:
        self.is_synced = True
        self.claims: dict[str, ClaimedAddress] = {}
        self.devices: dict[str, DeviceKind] = {}

    def synced(self) -> bool:
        return self.is_synced

    def claimed(self) -> Sequence[ClaimedAddress]:
        return list(self.claims.values())

    def kinds(self) -> Mapping[str, DeviceKind]:
        return dict(self.devices)


@attrs.define
class StoredEntry:
    """A ``pciHostDevices`` item as a user or the controller wrote it, with a field we ignore."""

    entry: PermittedEntry
    note: str = ""


class FakePermitted(PermittedDevicesStore):
    """A KubeVirt CR: its entries (with a field the domain does not model), record and version."""

    def __init__(self, entries: Sequence[StoredEntry] = (), *, exists: bool = True) -> None:
        self.exists = exists
        self.is_synced = True
        self.entries = list(entries)
        self.managed: frozenset[PermittedKey] = frozenset()
        self.version = 1
        self.writes = 0

    def synced(self) -> bool:
        return self.is_synced

    def read(self) -> PermittedDocument | None:
        if not self.exists:
            return None
        return PermittedDocument(
            str(self.version), tuple(stored.entry for stored in self.entries), self.managed
        )

    def write(self, change: PermittedChange) -> bool:
        if not self.exists or change.version != str(self.version):
            return False
        self.writes += 1
        kept = [self.entries[position] for position in change.keep]
        added = [
            StoredEntry(PermittedEntry(key.selector, key.resource_name, external=True))
            for key in change.add
        ]
        self.entries = kept + added
        self.managed = change.managed
        self.version += 1
        return True

    def user_edit(self, entries: Sequence[StoredEntry]) -> None:
        """Replace the list as a user with ``kubectl edit`` would."""
        self.entries = list(entries)
        self.version += 1
