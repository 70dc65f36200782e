"""PCIDevice objects as the JSON text ``pcidevices scan -o json`` prints, and the API's names.

`pcidevice_json` builds the text of a whole object directly from a `DeviceRecord`, without the
wire classes of `pcioperator.wire.pcidevice` (a test checks it parses to exactly that module's
`pcidevice_manifest`). Scan is bound by its start-up, and building those attrs classes at import
cost more than printing a hundred devices; this module defines no class. The names of the API
(group, version, labels, annotation) live here for the same reason.
"""

from __future__ import annotations

from typing import Final

from pcicore.catalog import DeviceRecord

API_GROUP: Final = "devices.harvesterhci.io"
API_VERSION: Final = f"{API_GROUP}/v1beta1"
NODE_LABEL: Final = "nodename"
ORIGINAL_DRIVER_ANNOTATION: Final = "harvesterhci.io/pcideviceDriver"
PARENT_SRIOV_LABEL: Final = "harvesterhci.io/parent-sriov-network-device"
"""The label of a VF's PCIDevice: the name of its PF's SRIOVNetworkDevice."""


_QUOTED: dict[str, str] = {}


def _quoted(text: str) -> str:
    """``text`` as a JSON string, exactly as ``json.dumps`` writes it.

    Cached: most hosts have few distinct values (drivers, descriptions). Printable ASCII
    without a quote or a backslash, as almost every pci.ids name is, needs no escape, so only
    other texts go through ``json.dumps`` (whose call costs five times the checks).
    """
    quoted = _QUOTED.get(text)
    if quoted is None:
        if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
            quoted = f'"{text}"'
        else:
            import json  # noqa: PLC0415 - rare (names are printable ASCII), and scan is start-up bound

            quoted = json.dumps(text)
        _QUOTED[text] = quoted
    return quoted


# The two runs of number fields of `pcidevice_json`, each one printf-style call: the rest of
# the object is an f-string, whose fixed text is copied, where a printf template of the whole
# object was scanned for "%" character by character (a tenth of the JSON's cost).
_IDS: Final = '", "vendorId": "%04x", "deviceId": "%04x", "classId": "%02x%02x", "iommuGroup": "'
_MORE_IDS: Final = (
    ', "subsystemVendorId": "%04x", "subsystemDeviceId": "%04x", "revision": "%02x", '
    '"progIf": "%02x"'
)


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
    parent = (
        f', "{PARENT_SRIOV_LABEL}": {_quoted(record.parent_sriov)}' if record.parent_sriov else ""
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
    group = device.iommu_group
    numa = device.numa_node
    node = record.node
    ids = _IDS % (device.vendor_id, device.device_id, klass.base, klass.sub)
    more_ids = _MORE_IDS % (
        device.subsystem_vendor_id,
        device.subsystem_device_id,
        device.revision,
        klass.prog_if,
    )
    return (
        f'{{"apiVersion": "{API_VERSION}", "kind": "PCIDevice", "metadata": {{"name": '
        f'"{record.name}", "labels": {{"{NODE_LABEL}": "{node}"{parent}}}{annotations}}}, '
        f'"status": {{"address": "{device.address}{ids}{"" if group is None else group}", '
        f'"nodeName": "{node}", "resourceName": "{record.resource_name}", '
        f'"description": {_quoted(record.description)}, '
        f'"kernelDriverInUse": {_quoted(device.driver or "")}, '
        f'"numaNode": {-1 if numa is None else numa}{more_ids}{extra}}}}}'
    )
