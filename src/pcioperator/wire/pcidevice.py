"""The wire form of ``PCIDevice`` objects (``devices.harvesterhci.io/v1beta1``).

Field names and values here are the compatibility contract with Harvester's objects; camelCase
lives in this module and nowhere in the domain. `PciDeviceStatus` is converted by the one
converter (`pcihost.converter`); ``pcidevices scan -o json`` instead builds the same text by hand
(`pcioperator.wire.pcidevice_text`, which also holds the API's names), because it prints
thousands of objects on a start-up-bound path and the converter made that several times slower
(a test checks both give the same objects). For the same reason the converter, and cattrs with
it, is imported only when a function here converts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from pcicore.catalog import DeviceRecord
from pcihost.wirefields import OMIT_IF_DEFAULT, wire_name
from pcioperator.wire.pcidevice_text import (
    API_VERSION,
    NODE_LABEL,
    ORIGINAL_DRIVER_ANNOTATION,
    PARENT_SRIOV_LABEL,
)


@attrs.frozen
class PciDeviceStatus:
    """``status`` of a PCIDevice: Harvester's fields, then additive ones.

    Attributes:
        address: The canonical PCI address.
        vendor_id: Vendor id, four lower-case hex digits.
        device_id: Device id, four lower-case hex digits.
        class_id: Class and subclass, four lower-case hex digits.
        iommu_group: The IOMMU group number (empty: no IOMMU).
        node_name: The node the device is on.
        resource_name: The resourceName the device plugin advertises it under.
        description: Vendor and device names from pci.ids.
        kernel_driver_in_use: The driver bound now (empty: none).
        numa_node: The NUMA node (-1: none reported). Additive, like every field below.
        subsystem_vendor_id: Subsystem vendor id, four hex digits.
        subsystem_device_id: Subsystem device id, four hex digits.
        revision: Revision, two hex digits.
        prog_if: Programming interface, two hex digits.
        host_protected: Whether the host refuses to hand the device over (absent: not checked).
        protection_reason: Why it refuses.
        phys_fn: For a virtual function, its physical function's address.
        total_vfs: For a physical function, how many VFs it can have.
        num_vfs: For a physical function, how many VFs are enabled.
    """

    address: str
    vendor_id: str
    device_id: str
    class_id: str
    iommu_group: str
    node_name: str
    resource_name: str
    description: str
    kernel_driver_in_use: str
    numa_node: int
    subsystem_vendor_id: str
    subsystem_device_id: str
    revision: str
    prog_if: str
    host_protected: bool | None = attrs.field(default=None, metadata=OMIT_IF_DEFAULT)
    protection_reason: str | None = attrs.field(default=None, metadata=OMIT_IF_DEFAULT)
    phys_fn: str | None = attrs.field(default=None, metadata=OMIT_IF_DEFAULT)
    total_vfs: int | None = attrs.field(
        default=None, metadata=wire_name("totalVFs", omit_if_default=True)
    )
    num_vfs: int | None = attrs.field(
        default=None, metadata=wire_name("numVFs", omit_if_default=True)
    )

    @classmethod
    def of(cls, record: DeviceRecord) -> PciDeviceStatus:
        """The status that reports ``record``."""
        device = record.device
        klass = device.pci_class
        sriov = device.sriov
        protected = record.protection
        return cls(
            address=str(device.address),
            vendor_id=device.vendor_hex,
            device_id=device.device_hex,
            class_id=klass.class_id,
            iommu_group="" if device.iommu_group is None else str(device.iommu_group),
            node_name=record.node,
            resource_name=record.resource_name,
            description=record.description,
            kernel_driver_in_use=device.driver or "",
            numa_node=-1 if device.numa_node is None else device.numa_node,
            subsystem_vendor_id=f"{device.subsystem_vendor_id:04x}",
            subsystem_device_id=f"{device.subsystem_device_id:04x}",
            revision=f"{device.revision:02x}",
            prog_if=f"{klass.prog_if:02x}",
            host_protected=None if protected is None else bool(protected),
            protection_reason=protected,
            phys_fn=None if sriov.physfn is None else str(sriov.physfn),
            total_vfs=sriov.total_vfs,
            num_vfs=None if sriov.total_vfs is None else sriov.num_vfs or 0,
        )


def pcidevice_status(record: DeviceRecord) -> dict[str, Any]:
    """The ``status`` of a PCIDevice, as JSON-ready camelCase."""
    from pcihost.converter import CONVERTER  # noqa: PLC0415 - see the module docstring

    status: dict[str, Any] = CONVERTER.unstructure(PciDeviceStatus.of(record))
    return status


@attrs.frozen
class ReportedStatus:
    """A PCIDevice's ``status`` as a reader finds it: any field may be missing (read as empty).

    The admission webhook and the cluster controller read other nodes' devices through this.

    Attributes:
        address: The canonical PCI address.
        node_name: The node the device is on.
        resource_name: The resourceName it is advertised under.
        iommu_group: The IOMMU group (empty: none).
        class_id: Class and subclass in hex (``0200``).
        vendor_id: Vendor id in hex.
        device_id: Device id in hex.
        host_protected: Whether the host refuses to hand the device over.
        protection_reason: Why.
    """

    address: str = ""
    node_name: str = ""
    resource_name: str = ""
    iommu_group: str = ""
    class_id: str = ""
    vendor_id: str = ""
    device_id: str = ""
    host_protected: bool = False
    protection_reason: str = ""


def reported_status(obj: Mapping[str, Any]) -> ReportedStatus:
    """The `ReportedStatus` of a PCIDevice object (``null`` and missing fields read as empty).

    Raises:
        cattrs.BaseValidationError: a field has the wrong shape.
    """
    from pcihost.converter import CONVERTER  # noqa: PLC0415 - see the module docstring

    status = obj.get("status") or {}
    present = {key: value for key, value in status.items() if value is not None}
    reported: ReportedStatus = CONVERTER.structure(present, ReportedStatus)
    return reported


def pcidevice_manifest(record: DeviceRecord) -> dict[str, Any]:
    """A whole PCIDevice object as the agent writes it (owner references aside)."""
    labels: dict[str, str] = {NODE_LABEL: record.node}
    if record.parent_sriov:
        labels[PARENT_SRIOV_LABEL] = record.parent_sriov
    metadata: dict[str, Any] = {"name": record.name, "labels": labels}
    if record.original_driver:
        metadata["annotations"] = {ORIGINAL_DRIVER_ANNOTATION: record.original_driver}
    return {
        "apiVersion": API_VERSION,
        "kind": "PCIDevice",
        "metadata": metadata,
        "status": pcidevice_status(record),
    }
