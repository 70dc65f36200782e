"""Prints device records as a table, or as a Kubernetes ``List`` in JSON or YAML."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TextIO

from pcicore.catalog import DeviceRecord
from pcioperator.wire.pcidevice_text import pcidevice_json

_TABLE_COLUMNS = ("ADDRESS", "IDS", "DRIVER", "IOMMU", "NUMA", "RESOURCE NAME", "DESCRIPTION")


def _k8s_list(records: Sequence[DeviceRecord]) -> dict[str, Any]:
    # The wire classes are for YAML only: JSON, the common case, is printed without them.
    from pcioperator.wire.pcidevice import pcidevice_manifest  # noqa: PLC0415

    return {
        "apiVersion": "v1",
        "kind": "List",
        "metadata": {"resourceVersion": ""},
        "items": [pcidevice_manifest(record) for record in records],
    }


def write_json_list(records: Sequence[DeviceRecord], out: TextIO) -> None:
    """A ``List`` of PCIDevice objects as JSON, one object per line inside ``items``.

    One compact object per line keeps the output greppable and diffable; an indented dump is
    several times slower on thousands of devices.
    """
    out.write('{"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, ')
    out.write('"items": [')
    if records:
        out.write("\n")
        out.write(",\n".join(map(pcidevice_json, records)))
        out.write("\n")
    out.write("]}\n")


def write_yaml_list(records: Sequence[DeviceRecord], out: TextIO) -> None:
    """A ``List`` of PCIDevice objects as YAML."""
    import yaml  # noqa: PLC0415 - PyYAML is only needed for this format

    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    yaml.dump(_k8s_list(records), out, Dumper=dumper, sort_keys=False, default_flow_style=False)


def _row(record: DeviceRecord) -> tuple[str, ...]:
    device = record.device
    return (
        str(device.address),
        f"{device.vendor_hex}:{device.device_hex}",
        device.driver or "-",
        "-" if device.iommu_group is None else str(device.iommu_group),
        "-" if device.numa_node is None else str(device.numa_node),
        record.resource_name,
        record.description,
    )


def write_table(records: Sequence[DeviceRecord], out: TextIO) -> None:
    """An ``lspci``-like table with the resourceName and IOMMU group of each device."""
    rows = [_TABLE_COLUMNS, *(_row(record) for record in records)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_TABLE_COLUMNS) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        out.write("  ".join([*cells, row[-1]]).rstrip() + "\n")
