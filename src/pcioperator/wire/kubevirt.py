"""The wire forms of KubeVirt objects pcidevices reads or writes, converted by the one converter.

- the KubeVirt CR's ``spec.configuration.permittedHostDevices.pciHostDevices`` items
  (`PciHostDevice`) and the annotation in which the cluster controller records the entries it
  added (`ManagedEntry`, a JSON list);
- the parts of a ``VirtualMachineInstance`` the admission webhook reads (`VirtualMachineInstance`).

Readers are lenient where the object is someone else's: a missing field reads as empty, and a
``pciHostDevices`` item that is not an object reads as an entry with no selector (a user's,
which the controller never removes).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any, Final

import attrs
import cattrs

from pcicore.naming import ResourceName
from pcicore.permitted import PermittedEntry, PermittedKey
from pcihost.converter import CONVERTER, describe_error
from pcioperator.kube.api import JsonObject

log = logging.getLogger(__name__)

MANAGED_ANNOTATION: Final = "devices.harvesterhci.io/managed-pci-host-devices"
"""JSON list of ``{pciVendorSelector, resourceName}``: the entries the controller added."""

MANAGED_USB_ANNOTATION: Final = "devices.harvesterhci.io/managed-usb-host-devices"
"""JSON list of ``{pciVendorSelector: "vvvv:pppp", resourceName}``: the USB entries it added."""


@attrs.frozen
class PciHostDevice:
    """One item of ``permittedHostDevices.pciHostDevices``.

    Attributes:
        pci_vendor_selector: ``VENDOR:DEVICE`` in hex.
        resource_name: The resource a VM asks for.
        external_resource_provider: Whether a device plugin outside KubeVirt advertises it.
    """

    pci_vendor_selector: str | None = None
    resource_name: str | None = None
    external_resource_provider: bool | None = None

    def entry(self) -> PermittedEntry:
        """The item as the domain sees it."""
        return PermittedEntry(
            selector=self.pci_vendor_selector or "",
            resource_name=ResourceName(self.resource_name or ""),
            external=self.external_resource_provider is True,
        )


@attrs.frozen
class ManagedEntry:
    """One entry of `MANAGED_ANNOTATION`.

    Attributes:
        pci_vendor_selector: ``VENDOR:DEVICE`` in hex.
        resource_name: The resource.
    """

    pci_vendor_selector: str
    resource_name: str


@attrs.frozen
class UsbSelector:
    """One item of a ``usb`` entry's ``selectors``.

    Attributes:
        vendor: ``idVendor`` in hex.
        product: ``idProduct`` in hex.
    """

    vendor: str = ""
    product: str = ""


@attrs.frozen
class UsbHostDevice:
    """One item of ``permittedHostDevices.usb``.

    Attributes:
        selectors: The devices the entry covers.
        resource_name: The resource a VM asks for.
        external_resource_provider: Whether a device plugin outside KubeVirt advertises it.
    """

    selectors: tuple[UsbSelector, ...] | None = None
    resource_name: str | None = None
    external_resource_provider: bool | None = None

    def entry(self) -> PermittedEntry:
        """The item as the domain sees it: keyed ``vvvv:pppp`` when it has exactly one selector."""
        selectors = self.selectors or ()
        only = selectors[0] if len(selectors) == 1 else None
        return PermittedEntry(
            selector="" if only is None else f"{only.vendor}:{only.product}",
            resource_name=ResourceName(self.resource_name or ""),
            external=self.external_resource_provider is True,
        )


def usb_entry_from_wire(raw: object) -> PermittedEntry:
    """A ``usb`` item as the domain sees it (anything malformed is a user's entry)."""
    if not isinstance(raw, Mapping):
        return UsbHostDevice().entry()
    try:
        return CONVERTER.structure(raw, UsbHostDevice).entry()
    except cattrs.BaseValidationError:
        return UsbHostDevice().entry()


def usb_entry_to_wire(key: PermittedKey) -> JsonObject:
    """The ``usb`` item the controller writes for ``key`` (Harvester's form)."""
    vendor, _, product = key.selector.partition(":")
    item: JsonObject = CONVERTER.unstructure(
        UsbHostDevice(
            (UsbSelector(vendor, product),), key.resource_name, external_resource_provider=True
        )
    )
    return item


def entry_from_wire(raw: object) -> PermittedEntry:
    """A ``pciHostDevices`` item as the domain sees it (anything malformed is a user's entry)."""
    if not isinstance(raw, Mapping):
        return PciHostDevice().entry()
    try:
        return CONVERTER.structure(raw, PciHostDevice).entry()
    except cattrs.BaseValidationError:
        return PciHostDevice().entry()


def entry_to_wire(key: PermittedKey) -> JsonObject:
    """The item the controller writes for ``key``."""
    item: JsonObject = CONVERTER.unstructure(
        PciHostDevice(key.selector, key.resource_name, external_resource_provider=True)
    )
    return item


def managed_from_wire(
    cr: JsonObject, annotation: str = MANAGED_ANNOTATION
) -> frozenset[PermittedKey]:
    """The keys recorded in the CR's ``annotation`` (none if absent or unreadable)."""
    text = ((cr.get("metadata") or {}).get("annotations") or {}).get(annotation)
    if not text:
        return frozenset()
    try:
        entries = CONVERTER.structure(json.loads(text), list[ManagedEntry])
    except (ValueError, cattrs.BaseValidationError) as err:
        log.warning(
            "KubeVirt CR: annotation %s is not a JSON list of {pciVendorSelector, resourceName} "
            "(%s); treating every entry as a user's, so none is removed. Delete the annotation "
            "to let the controller start over",
            annotation,
            describe_error(err),
        )
        return frozenset()
    return frozenset(
        PermittedKey(entry.pci_vendor_selector.lower(), ResourceName(entry.resource_name))
        for entry in entries
    )


def managed_to_wire(keys: frozenset[PermittedKey]) -> str | None:
    """The annotation's value (``None`` removes it)."""
    if not keys:
        return None
    entries = [ManagedEntry(key.selector, key.resource_name) for key in sorted(keys)]
    return json.dumps(CONVERTER.unstructure(entries, list[ManagedEntry]), separators=(",", ":"))


def pci_host_devices(cr: JsonObject, kind: str = "pciHostDevices") -> list[Any]:
    """The CR's ``permittedHostDevices.<kind>`` (``pciHostDevices`` or ``usb``) as written."""
    spec = cr.get("spec") or {}
    permitted = (spec.get("configuration") or {}).get("permittedHostDevices") or {}
    items = permitted.get(kind) or []
    return list(items) if isinstance(items, list) else []


@attrs.frozen
class HostDevice:
    """One ``spec.domain.devices.hostDevices`` item of a VMI.

    Attributes:
        name: The device's name in the VM.
        device_name: The resource it uses (a device plugin's resourceName).
    """

    name: str = ""
    device_name: str = ""


@attrs.frozen
class VmiDevices:
    """``spec.domain.devices`` of a VMI (the host devices only).

    Attributes:
        host_devices: Host devices passed to the VM.
    """

    host_devices: tuple[HostDevice, ...] = ()


@attrs.frozen
class VmiDomain:
    """``spec.domain`` of a VMI.

    Attributes:
        devices: Its devices.
    """

    devices: VmiDevices = VmiDevices()


@attrs.frozen
class VmiSpec:
    """``spec`` of a VMI.

    Attributes:
        domain: The virtual machine's hardware.
    """

    domain: VmiDomain = VmiDomain()


@attrs.frozen
class VmiStatus:
    """``status`` of a VMI.

    Attributes:
        node_name: The node it runs on (empty: not scheduled).
        phase: ``Pending``, ``Scheduling``, ``Running``, ``Succeeded``, ``Failed``...
    """

    node_name: str = ""
    phase: str = ""


@attrs.frozen
class ObjectName:
    """Where an object is: ``metadata.namespace`` and ``metadata.name``.

    Attributes:
        namespace: Its namespace (empty for a cluster-scoped object).
        name: Its name.
    """

    namespace: str = ""
    name: str = ""


@attrs.frozen
class VirtualMachineInstance:
    """The parts of a ``VirtualMachineInstance`` the admission webhook reads.

    Attributes:
        metadata: Namespace and name.
        spec: The VM's host devices.
        status: Its node and phase.
    """

    metadata: ObjectName = ObjectName()
    spec: VmiSpec = VmiSpec()
    status: VmiStatus = VmiStatus()

    @property
    def host_device_names(self) -> tuple[str, ...]:
        """The resources its host devices use, in order (items without one left out)."""
        devices = self.spec.domain.devices.host_devices
        return tuple(host.device_name for host in devices if host.device_name)


def vmi_from_object(obj: JsonObject) -> VirtualMachineInstance:
    """Structure a VMI object (``null`` fields read as absent).

    Raises:
        cattrs.BaseValidationError: a field has the wrong shape.
    """
    vmi: VirtualMachineInstance = CONVERTER.structure(_without_nulls(obj), VirtualMachineInstance)
    return vmi


def _without_nulls(value: Any) -> Any:  # noqa: ANN401 - JSON in, JSON out
    if isinstance(value, Mapping):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(item) for item in value]
    return value
