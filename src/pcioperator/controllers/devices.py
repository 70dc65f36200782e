"""Keeps this node's PCIDevice objects equal to what sysfs says, writing only differences.

One key covers the whole node: a reconcile reads the bus (sysfs), reads the objects from the
informer's cache (no API request), computes what differs, and writes only that. With nothing
changed it makes no request at all, so an idle rescan costs the API server nothing.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from pcicore.address import PciAddress
from pcicore.catalog import DeviceCatalog, DeviceRecord
from pcicore.device import DriverName, PciDevice
from pcicore.ports import PciBus
from pcioperator.kube.api import NODES, PCIDEVICES, JsonObject, KubeApi
from pcioperator.kube.errors import ConflictError, NotFoundError
from pcioperator.kube.informer import Informer
from pcioperator.wire.pcidevice import (
    NODE_LABEL,
    ORIGINAL_DRIVER_ANNOTATION,
    pcidevice_manifest,
)

log = logging.getLogger(__name__)


def node_selector(node: str) -> str:
    """The label selector of one node's PCIDevices."""
    return f"{NODE_LABEL}={node}"


def _owner(node: JsonObject) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "name": node["metadata"]["name"],
        "uid": node["metadata"]["uid"],
    }


def metadata_patch(
    desired: JsonObject, observed: JsonObject, owner: dict[str, Any] | None
) -> JsonObject:
    """What must change in ``observed``'s metadata (empty if nothing)."""
    want, have = desired["metadata"], observed.get("metadata", {})
    patch: JsonObject = {}
    have_labels = have.get("labels") or {}
    if any(have_labels.get(key) != value for key, value in want["labels"].items()):
        patch["labels"] = want["labels"]
    want_driver = want.get("annotations", {}).get(ORIGINAL_DRIVER_ANNOTATION)
    have_driver = (have.get("annotations") or {}).get(ORIGINAL_DRIVER_ANNOTATION)
    if want_driver != have_driver:
        patch["annotations"] = {ORIGINAL_DRIVER_ANNOTATION: want_driver}
    if owner is not None:
        owners = have.get("ownerReferences") or []
        if not any(ref.get("uid") == owner["uid"] for ref in owners):
            others = [ref for ref in owners if ref.get("kind") != "Node"]
            patch["ownerReferences"] = [*others, owner]
    return patch


def status_patch(desired: JsonObject, observed: JsonObject) -> JsonObject:
    """The status fields that differ (fields set by others, like conditions, are kept)."""
    have = observed.get("status") or {}
    return {key: value for key, value in desired["status"].items() if have.get(key) != value}


class DeviceSync:
    """Reconciles one node's PCIDevice objects with its PCI bus."""

    KEY = "devices"

    def __init__(
        self,
        *,
        node: str,
        bus: PciBus,
        catalog: DeviceCatalog,
        api: KubeApi,
        informer: Informer,
        original_drivers: Callable[[], Mapping[PciAddress, DriverName | None]],
        rescan_interval: float = 30.0,
        protection: Callable[[Sequence[PciDevice]], Mapping[PciAddress, str]] | None = None,
    ) -> None:
        """Sync ``node``'s devices read from ``bus`` into objects cached by ``informer``."""
        self._node = node
        self._bus = bus
        self._catalog = catalog
        self._api = api
        self.informer = informer
        self._original_drivers = original_drivers
        self._rescan_interval = rescan_interval
        self._protection = protection
        self._owner: dict[str, Any] | None = None
        self.last_records: list[DeviceRecord] = []

    def reconcile(self, _key: str = KEY) -> float:
        """Make the objects match the bus; return when to rescan."""
        originals = {
            address: driver
            for address, driver in self._original_drivers().items()
            if driver is not None
        }
        devices = self._bus.devices()
        records = self._catalog.records(devices, originals)
        if self._protection is not None:
            refused = self._protection(devices)
            records = [
                attrs.evolve(r, protection=refused.get(r.device.address, "")) for r in records
            ]
        self.last_records = records
        desired = {record.name: pcidevice_manifest(record) for record in records}
        observed = {obj["metadata"]["name"]: obj for obj in self.informer.objects()}
        for name, manifest in desired.items():
            current = observed.get(name)
            if current is None:
                self._create(manifest)
            else:
                self._update(manifest, current)
        for name in observed.keys() - desired.keys():
            log.info("device %s is gone from the bus; deleting its PCIDevice", name)
            with contextlib.suppress(NotFoundError):
                self._api.delete(PCIDEVICES, name)
        return self._rescan_interval

    def _node_owner(self) -> dict[str, Any] | None:
        if self._owner is None:
            try:
                self._owner = _owner(self._api.get(NODES, self._node))
            except NotFoundError:
                log.warning("node %s has no Node object; PCIDevices get no owner", self._node)
                return None
        return self._owner

    def _create(self, manifest: JsonObject) -> None:
        owner = self._node_owner()
        body = {**manifest, "metadata": {**manifest["metadata"]}}
        status = body.pop("status")
        if owner is not None:
            body["metadata"]["ownerReferences"] = [owner]
        try:
            self._api.create(PCIDEVICES, body)
        except ConflictError:
            # It exists but not in our cache (e.g. its node label was removed): adopt it.
            current = self._api.get(PCIDEVICES, manifest["metadata"]["name"])
            self._update(manifest, current)
            return
        # The status subresource ignores status on create; it is written separately.
        self._api.patch(
            PCIDEVICES, manifest["metadata"]["name"], {"status": status}, subresource="status"
        )

    def _update(self, manifest: JsonObject, current: JsonObject) -> None:
        name = manifest["metadata"]["name"]
        meta = metadata_patch(manifest, current, self._node_owner())
        if meta:
            self._api.patch(PCIDEVICES, name, {"metadata": meta})
        status = status_patch(manifest, current)
        if status:
            self._api.patch(PCIDEVICES, name, {"status": status}, subresource="status")
