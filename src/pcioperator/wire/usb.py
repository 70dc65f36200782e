"""The wire forms of ``USBDevice`` and ``USBDeviceClaim``, converted by the one converter.

Field names are Harvester's (``devices.harvesterhci.io/v1beta1``): a USBDevice has only a
status (``vendorID``, ``productID``, ``nodeName``, ``resourceName``, ``devicePath``,
``description``, ``pciAddress``, ``classType``, ``enabled``, ``status``, ``message``) and the
``nodename`` label; a USBDeviceClaim has ``spec.userName`` and ``status.nodeName``,
``status.pciAddress``; its ``status.conditions`` are additive.
"""

from __future__ import annotations

from typing import Any, Final

import attrs

from pcicore.conditions import Condition, set_condition
from pcicore.usb import UsbClaim, UsbClaimDecision, UsbStatus
from pcihost.converter import CONVERTER
from pcihost.wirefields import OMIT_IF_DEFAULT, wire_name
from pcioperator.kube.api import JsonObject
from pcioperator.wire.pcidevice_text import API_VERSION, NODE_LABEL

USB_DEVICE_KIND: Final = "USBDevice"
USB_CLAIM_KIND: Final = "USBDeviceClaim"

__all__ = [
    "NODE_LABEL",
    "UsbClaimSpec",
    "UsbClaimWireStatus",
    "UsbDeviceWireStatus",
    "claim_from_object",
    "claim_status_to_wire",
    "status_from_object",
    "status_to_wire",
    "usb_device_manifest",
]


@attrs.frozen
class UsbDeviceWireStatus:
    """``status`` of a USBDevice, in Harvester's keys.

    Attributes:
        vendor_id: ``vendorID``.
        product_id: ``productID``.
        node_name: ``nodeName``.
        resource_name: ``resourceName``.
        device_path: ``devicePath``.
        description: ``description``.
        pci_address: ``pciAddress``.
        class_type: ``classType``.
        enabled: ``enabled``.
        status: ``status`` (``orphaned``, or empty).
        message: ``message``.
    """

    vendor_id: str = attrs.field(default="", metadata=wire_name("vendorID"))
    product_id: str = attrs.field(default="", metadata=wire_name("productID"))
    node_name: str = ""
    resource_name: str = ""
    device_path: str = ""
    description: str = ""
    pci_address: str = attrs.field(default="", metadata=wire_name("pciAddress"))
    class_type: str = ""
    enabled: bool = False
    status: str = ""
    message: str = ""


def usb_device_manifest(name: str, node: str) -> dict[str, Any]:
    """The object the agent creates (its status is written next, as Harvester does)."""
    return {
        "apiVersion": API_VERSION,
        "kind": USB_DEVICE_KIND,
        "metadata": {"name": name, "labels": {NODE_LABEL: node}},
    }


def status_from_object(obj: JsonObject) -> UsbStatus | None:
    """The status of a USBDevice (``None`` before its first status write).

    Raises:
        cattrs.BaseValidationError: the status does not have the CRD's shape.
    """
    raw = obj.get("status")
    if not raw:
        return None
    wire = CONVERTER.structure(raw, UsbDeviceWireStatus)
    return UsbStatus(**attrs.asdict(wire))


def status_to_wire(status: UsbStatus) -> dict[str, Any]:
    """The camelCase ``status`` body, every field written (so ``orphaned`` can be cleared)."""
    body: dict[str, Any] = CONVERTER.unstructure(UsbDeviceWireStatus(**attrs.asdict(status)))
    return body


@attrs.frozen
class UsbClaimSpec:
    """``spec`` of a USBDeviceClaim.

    Attributes:
        user_name: Who asked for the device.
    """

    user_name: str = ""


@attrs.frozen
class UsbClaimWireStatus:
    """``status`` of a USBDeviceClaim.

    Attributes:
        node_name: ``nodeName``: the node of the device.
        pci_address: ``pciAddress``: the device's host controller.
        conditions: Standard conditions (additive).
    """

    node_name: str = ""
    pci_address: str = attrs.field(default="", metadata=wire_name("pciAddress"))
    conditions: tuple[Condition, ...] = attrs.field(default=(), metadata=OMIT_IF_DEFAULT)


def claim_from_object(obj: JsonObject) -> UsbClaim:
    """A USBDeviceClaim as the agent reads it.

    Raises:
        cattrs.BaseValidationError: the spec or status does not have the CRD's shape.
        KeyError: the object has no name.
    """
    meta = obj["metadata"]
    spec = CONVERTER.structure(obj.get("spec") or {}, UsbClaimSpec)
    status = CONVERTER.structure(obj.get("status") or {}, UsbClaimWireStatus)
    return UsbClaim(
        name=meta["name"],
        uid=meta.get("uid", ""),
        generation=int(meta.get("generation", 0)),
        deleting=meta.get("deletionTimestamp") is not None,
        user_name=spec.user_name,
        node_name=status.node_name,
        pci_address=status.pci_address,
        conditions=status.conditions,
        finalizers=tuple(meta.get("finalizers") or ()),
        resource_version=str(meta.get("resourceVersion", "")),
    )


def claim_status_to_wire(claim: UsbClaim, decision: UsbClaimDecision) -> dict[str, Any]:
    """The camelCase ``status`` body of a claim after ``decision``."""
    wire = UsbClaimWireStatus(
        node_name=decision.node_name,
        pci_address=decision.pci_address,
        conditions=set_condition(claim.conditions, decision.condition),
    )
    body: dict[str, Any] = CONVERTER.unstructure(wire)
    for condition in body.get("conditions", []):
        if condition.get("observedGeneration") is None:
            condition.pop("observedGeneration", None)
    return body
