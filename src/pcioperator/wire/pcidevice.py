"""The wire form of ``PCIDevice`` objects (``devices.harvesterhci.io/v1beta1``).

Field names and values here are the compatibility contract with Harvester's objects; camelCase
lives in this module and nowhere in the domain. Built by hand rather than through cattrs because
``pcidevices scan`` builds thousands of these on its start-up-bound path.
"""

from __future__ import annotations

import json
from typing import Any, Final

from pcicore.catalog import DeviceRecord

API_GROUP: Final = "devices.harvesterhci.io"
API_VERSION: Final = f"{API_GROUP}/v1beta1"
NODE_LABEL: Final = "nodename"
ORIGINAL_DRIVER_ANNOTATION: Final = "harvesterhci.io/pcideviceDriver"


def pcidevice_status(record: DeviceRecord) -> dict[str, Any]:
    """The ``status`` of a PCIDevice: Harvester's fields, then additive ones."""
    device = record.device
    klass = device.pci_class
    status: dict[str, Any] = {
        "address": str(device.address),
        "vendorId": device.vendor_hex,
        "deviceId": device.device_hex,
        "classId": klass.class_id,
        "iommuGroup": "" if device.iommu_group is None else str(device.iommu_group),
        "nodeName": record.node,
        "resourceName": record.resource_name,
        "description": record.description,
        "kernelDriverInUse": device.driver or "",
        # Additive fields: absent from Harvester's objects, ignored by its clients.
        "numaNode": -1 if device.numa_node is None else device.numa_node,
        "subsystemVendorId": f"{device.subsystem_vendor_id:04x}",
        "subsystemDeviceId": f"{device.subsystem_device_id:04x}",
        "revision": f"{device.revision:02x}",
        "progIf": f"{klass.prog_if:02x}",
    }
    if record.protection is not None:
        status["hostProtected"] = bool(record.protection)
        status["protectionReason"] = record.protection
    sriov = device.sriov
    if sriov.physfn is not None:
        status["physFn"] = str(sriov.physfn)
    if sriov.total_vfs is not None:
        status["totalVFs"] = sriov.total_vfs
        status["numVFs"] = sriov.num_vfs or 0
    return status


def pcidevice_manifest(record: DeviceRecord) -> dict[str, Any]:
    """A whole PCIDevice object as the agent writes it (owner references aside)."""
    metadata: dict[str, Any] = {"name": record.name, "labels": {NODE_LABEL: record.node}}
    if record.original_driver:
        metadata["annotations"] = {ORIGINAL_DRIVER_ANNOTATION: record.original_driver}
    return {
        "apiVersion": API_VERSION,
        "kind": "PCIDevice",
        "metadata": metadata,
        "status": pcidevice_status(record),
    }


_QUOTED: dict[str, str] = {}


def _quoted(text: str) -> str:
    """``text`` as a JSON string; few distinct values (drivers, descriptions), so cached."""
    quoted = _QUOTED.get(text)
    if quoted is None:
        quoted = _QUOTED[text] = json.dumps(text)
    return quoted


def pcidevice_json(record: DeviceRecord) -> str:
    """`pcidevice_manifest` as compact JSON text, built directly.

    ``pcidevices scan -o json`` prints thousands of these and building the dictionaries and
    encoding them was a third of its time. Names, addresses, hex ids and resourceNames are
    built by us from a safe alphabet; every other text goes through ``json.dumps``. A test
    checks that this parses to exactly `pcidevice_manifest`.
    """
    device = record.device
    klass = device.pci_class
    annotations = (
        f', "annotations": {{"{ORIGINAL_DRIVER_ANNOTATION}": {_quoted(record.original_driver)}}}'
        if record.original_driver
        else ""
    )
    extra = ""
    if record.protection is not None:
        flag = "true" if record.protection else "false"
        extra += f', "hostProtected": {flag}, "protectionReason": {_quoted(record.protection)}'
    sriov = device.sriov
    if sriov.physfn is not None:
        extra += f', "physFn": "{sriov.physfn}"'
    if sriov.total_vfs is not None:
        extra += f', "totalVFs": {sriov.total_vfs}, "numVFs": {sriov.num_vfs or 0}'
    return (
        f'{{"apiVersion": "{API_VERSION}", "kind": "PCIDevice", "metadata": '
        f'{{"name": "{record.name}", "labels": {{"{NODE_LABEL}": "{record.node}"}}{annotations}}}, '
        f'"status": {{"address": "{device.address}", "vendorId": "{device.vendor_id:04x}", '
        f'"deviceId": "{device.device_id:04x}", "classId": "{klass.base:02x}{klass.sub:02x}", '
        f'"iommuGroup": "{"" if device.iommu_group is None else device.iommu_group}", '
        f'"nodeName": "{record.node}", "resourceName": "{record.resource_name}", '
        f'"description": {_quoted(record.description)}, '
        f'"kernelDriverInUse": {_quoted(device.driver or "")}, '
        f'"numaNode": {-1 if device.numa_node is None else device.numa_node}, '
        f'"subsystemVendorId": "{device.subsystem_vendor_id:04x}", '
        f'"subsystemDeviceId": "{device.subsystem_device_id:04x}", '
        f'"revision": "{device.revision:02x}", "progIf": "{klass.prog_if:02x}"{extra}}}}}'
    )
