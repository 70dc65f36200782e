"""Keeps this node's PCIDevice objects equal to what sysfs says, writing only differences.

One key covers the whole node: a reconcile reads the bus (sysfs), reads the objects from the
informer's cache (no API request), asks `pcicore.inventory.plan_device_writes` what differs,
and writes only that. With nothing changed it makes no request at all, so an idle rescan costs
the API server nothing.

`DeviceSync` is the reconcile, written against the `pcicore.ports.DeviceObjectStore` port;
`KubeDeviceStore` is that port on the API server (reads from an `Informer`, writes with
`KubeApi`).

As Harvester, it publishes no PCI-to-PCI bridges (`pcicore.inventory.is_published`), and a
PCIDevice's ``status.resourceName`` is its `RESOURCE_OVERRIDE_ANNOTATION` when it has one, else
the device's own resource while a claim disables pooling, else its pool
(`pcicore.resources.device_resource_name`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import attrs

from pcicore.address import PciAddress
from pcicore.catalog import DeviceCatalog, DeviceRecord
from pcicore.device import VFIO_DRIVER, DriverName, PciDevice
from pcicore.inventory import (
    CreateDevice,
    DeleteDevice,
    DesiredDevice,
    DeviceWrite,
    MetadataPatch,
    ObservedDevice,
    OwnerRef,
    PatchDeviceMetadata,
    PatchDeviceStatus,
    StatusFields,
    device_updates,
    is_published,
    plan_device_writes,
)
from pcicore.ports import DeviceObjectStore, PciBus
from pcicore.resources import device_resource_name
from pcicore.takeover import original_driver
from pcioperator.kube.api import NODES, PCIDEVICES, JsonObject, KubeApi
from pcioperator.kube.errors import ConflictError, NotFoundError
from pcioperator.kube.informer import Informer
from pcioperator.wire.owners import owner_from_wire, owner_to_wire
from pcioperator.wire.pcidevice import pcidevice_manifest, pcidevice_status
from pcioperator.wire.pcidevice_text import (
    NODE_LABEL,
    ORIGINAL_DRIVER_ANNOTATION,
    PARENT_SRIOV_LABEL,
)

log = logging.getLogger(__name__)

RESOURCE_OVERRIDE_ANNOTATION = "pcidevice.harvesterhci.io/override-resource-name"
"""On a PCIDevice: the resourceName it reports instead of its pool's (Harvester's key)."""


def node_selector(node: str) -> str:
    """The label selector of one node's PCIDevices."""
    return f"{NODE_LABEL}={node}"


class DeviceSync:
    """Reconciles one node's PCIDevice objects with its PCI bus."""

    KEY = "devices"

    def __init__(
        self,
        *,
        bus: PciBus,
        catalog: DeviceCatalog,
        store: DeviceObjectStore,
        informer: Informer,
        original_drivers: Callable[[], Mapping[PciAddress, DriverName | None]],
        rescan_interval: float = 30.0,
        protection: Callable[[Sequence[PciDevice]], Mapping[PciAddress, str]] | None = None,
        dedicated: Callable[[], Collection[PciAddress]] | None = None,
        sriov_parents: Callable[[Sequence[PciDevice]], Mapping[PciAddress, str]] | None = None,
    ) -> None:
        """Sync the devices read from ``bus`` into the objects of ``store``.

        ``sriov_parents`` names each VF's parent SRIOVNetworkDevice (the VF's label).

        ``informer`` is the cache behind ``store``; the sync only holds it for the agent, which
        runs it and waits for it to fill. ``dedicated`` gives the devices whose live claims
        disable resource pooling (none when not given).
        """
        self._bus = bus
        self._catalog = catalog
        self._store = store
        self.informer = informer
        self._original_drivers = original_drivers
        self._rescan_interval = rescan_interval
        self._protection = protection
        self._dedicated = dedicated
        self._sriov_parents = sriov_parents
        self._owner: OwnerRef | None = None
        self.last_records: list[DeviceRecord] = []
        # The override annotations last seen, by PCIDevice name: the agent's device plugin
        # advertises a claimed device under the same name its PCIDevice shows.
        self.last_overrides: Mapping[str, str] = {}

    def reconcile(self, _key: str = KEY) -> float:
        """Make the objects match the bus; return when to rescan."""
        originals = {
            address: driver
            for address, driver in self._original_drivers().items()
            if driver is not None
        }
        records = self._records(originals)
        observed = self._store.observed()
        overrides = {obj.name: obj.resource_override for obj in observed if obj.resource_override}
        self.last_overrides = overrides
        recorded = {obj.name: obj.original_driver for obj in observed if obj.original_driver}
        dedicated = frozenset(self._dedicated()) if self._dedicated is not None else frozenset()
        records = [
            _with_resource_name(
                _with_original_driver(record, originals, recorded.get(record.name)),
                overrides.get(record.name),
                dedicated,
            )
            for record in records
        ]
        self.last_records = records
        desired = [DesiredDevice(record, pcidevice_status(record)) for record in records]
        owner = self._node_owner() if desired else None
        for write in plan_device_writes(desired, observed, owner):
            self._apply(write)
        return self._rescan_interval

    def _records(self, originals: Mapping[PciAddress, DriverName]) -> list[DeviceRecord]:
        devices = [device for device in self._bus.devices() if is_published(device)]
        records = self._catalog.records(devices, originals)
        if self._protection is not None:
            refused = self._protection(devices)
            records = [
                attrs.evolve(r, protection=refused.get(r.device.address, "")) for r in records
            ]
        if self._sriov_parents is not None:
            parents = self._sriov_parents(devices)
            records = [
                attrs.evolve(r, parent_sriov=parents[r.device.address])
                if r.device.address in parents
                else r
                for r in records
            ]
        return records

    def _node_owner(self) -> OwnerRef | None:
        if self._owner is None:
            self._owner = self._store.node_owner()  # asked again next time while it is None
        return self._owner

    def _apply(self, write: DeviceWrite) -> None:
        match write:
            case CreateDevice(device=device, owner=owner):
                existing = self._store.create(device, owner)
                if existing is not None:
                    # It exists but was not observed (e.g. its node label was removed): adopt it.
                    for update in device_updates(device, existing, owner):
                        self._apply(update)
            case PatchDeviceMetadata(name=name, patch=patch):
                self._store.patch_metadata(name, patch)
            case PatchDeviceStatus(name=name, fields=fields):
                self._store.patch_status(name, fields)
            case DeleteDevice(name=name):
                log.info("device %s is gone from the bus; deleting its PCIDevice", name)
                self._store.delete(name)


def _with_original_driver(
    record: DeviceRecord, ledger: Mapping[PciAddress, DriverName], annotation: str | None
) -> DeviceRecord:
    """``record`` keeping Harvester's record of the original driver of a device it moved.

    A device on ``vfio-pci`` that our ledger does not know (or knows only as ``vfio-pci``, as
    when a claim was taken over on a device already moved) was moved by someone else (Harvester,
    before the switch): its annotation, if it names a real driver, is kept rather than replaced
    by ``vfio-pci`` (`pcicore.takeover.original_driver`).
    """
    device = record.device
    known = ledger.get(device.address)
    if (known is not None and known != VFIO_DRIVER) or not device.is_bound_to_vfio:
        return record
    driver = original_driver(device.driver, device_annotation=annotation)
    if driver is None or driver == record.original_driver:
        return record
    return attrs.evolve(record, original_driver=driver)


def _with_resource_name(
    record: DeviceRecord, override: str | None, dedicated: frozenset[PciAddress]
) -> DeviceRecord:
    """``record`` reporting the resourceName its object must show (see the module's docstring)."""
    name = device_resource_name(
        record.resource_name,
        record.name,
        override=override,
        dedicated=record.device.address in dedicated,
    )
    return record if name == record.resource_name else attrs.evolve(record, resource_name=name)


# --- The port on the API server ------------------------------------------------------------


def observed_from_wire(obj: JsonObject) -> ObservedDevice:
    """A PCIDevice object as the device sync sees it."""
    metadata = obj.get("metadata") or {}
    labels = metadata.get("labels") or {}
    annotations = metadata.get("annotations") or {}
    return ObservedDevice(
        name=str(metadata["name"]),
        node_label=labels.get(NODE_LABEL),
        parent_sriov=labels.get(PARENT_SRIOV_LABEL),
        original_driver=annotations.get(ORIGINAL_DRIVER_ANNOTATION),
        owners=tuple(owner_from_wire(ref) for ref in metadata.get("ownerReferences") or []),
        status=obj.get("status") or {},
        resource_override=annotations.get(RESOURCE_OVERRIDE_ANNOTATION) or None,
    )


def metadata_patch_to_wire(patch: MetadataPatch) -> JsonObject:
    """The merge patch of ``metadata`` that carries out ``patch``."""
    wire: JsonObject = {}
    labels: JsonObject = {}
    if patch.node_label is not None:
        labels[NODE_LABEL] = patch.node_label
    if patch.set_parent_sriov:
        labels[PARENT_SRIOV_LABEL] = patch.parent_sriov  # None removes it (merge patch)
    if labels:
        wire["labels"] = labels
    if patch.set_original_driver:
        wire["annotations"] = {ORIGINAL_DRIVER_ANNOTATION: patch.original_driver}
    if patch.owners is not None:
        wire["ownerReferences"] = [owner_to_wire(ref) for ref in patch.owners]
    return wire


def node_owner(api: KubeApi, node: str, objects: str) -> OwnerRef | None:
    """A reference to ``node``'s Node object (one GET), or ``None`` (logged) if it has none.

    ``objects`` names what the owner is for, in the log line.
    """
    try:
        found = api.get(NODES, node)
    except NotFoundError:
        log.warning("node %s has no Node object; %s get no owner", node, objects)
        return None
    return OwnerRef("v1", "Node", found["metadata"]["name"], found["metadata"]["uid"])


class KubeDeviceStore:
    """`pcicore.ports.DeviceObjectStore` on the API server: one node's PCIDevices."""

    def __init__(self, api: KubeApi, informer: Informer, node: str) -> None:
        """Read ``node``'s objects from ``informer`` (watching them by `node_selector`)."""
        self._api = api
        self._informer = informer
        self._node = node

    def observed(self) -> list[ObservedDevice]:
        """Every cached object."""
        return [observed_from_wire(obj) for obj in self._informer.objects()]

    def node_owner(self) -> OwnerRef | None:
        """A reference to the Node object (one GET), or ``None`` if it has none."""
        return node_owner(self._api, self._node, "PCIDevices")

    def create(self, device: DesiredDevice, owner: OwnerRef | None) -> ObservedDevice | None:
        """Create, then write the status (the status subresource ignores it on create)."""
        manifest = pcidevice_manifest(device.record)
        body: dict[str, Any] = {**manifest, "metadata": {**manifest["metadata"]}}
        body.pop("status")
        if owner is not None:
            body["metadata"]["ownerReferences"] = [owner_to_wire(owner)]
        try:
            self._api.create(PCIDEVICES, body)
        except ConflictError:
            return observed_from_wire(self._api.get(PCIDEVICES, device.name))
        self.patch_status(device.name, device.status)
        return None

    def patch_metadata(self, name: str, patch: MetadataPatch) -> None:
        """One merge patch of the object."""
        self._api.patch(PCIDEVICES, name, {"metadata": metadata_patch_to_wire(patch)})

    def patch_status(self, name: str, fields: StatusFields) -> None:
        """One merge patch of the status subresource."""
        self._api.patch(PCIDEVICES, name, {"status": dict(fields)}, subresource="status")

    def delete(self, name: str) -> None:
        """One DELETE; NotFound means done."""
        with contextlib.suppress(NotFoundError):
            self._api.delete(PCIDEVICES, name)
