"""`pcidevices scan` agrees field for field with `lspci -D -vmmnnk`.

Checked on this machine's real `/sys` and on generated trees on disk.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fakesys import FakeDevice, SysfsTree
from pcicore.naming import resource_name

LSPCI = shutil.which("lspci")
pytestmark = [
    pytest.mark.lspci,
    pytest.mark.skipif(
        LSPCI is None and os.environ.get("CI") != "true",
        reason="lspci is not installed (apt-get install pciutils); CI installs it",
    ),
]
_NAMED_ID = re.compile(r"^(?P<name>.*?) ?\[(?P<id>[0-9a-f]{4})\]$")


def lspci_records(sysfs: Path | None) -> dict[str, dict[str, str]]:
    """The machine-readable records of lspci, by slot."""
    assert LSPCI is not None, "lspci is required here: apt-get install pciutils"
    argv = [LSPCI, "-D", "-vmmnnk"]
    if sysfs is not None:
        argv += ["-A", "linux-sysfs", "-O", f"sysfs.path={sysfs}/bus/pci"]
    text = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    records = {}
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(":\t", 1) for line in block.splitlines())
        records[fields["Slot"]] = fields
    return records


def scan_items(sysfs: Path) -> dict[str, dict]:
    """Our scan of ``sysfs``, run as a user runs it, by address."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pcidevices",
            "scan",
            "--sysfs",
            str(sysfs),
            "--node",
            "n1",
            "-o",
            "json",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return {item["status"]["address"]: item for item in json.loads(out)["items"]}


def named(field: str | None, unknown_word: str) -> tuple[str | None, str]:
    """Split lspci's ``Name [abcd]``; an unknown name (``Device [abcd]``) is None."""
    assert field is not None
    match = _NAMED_ID.match(field)
    assert match is not None, field
    name = match.group("name")
    return (None if name == unknown_word else name, match.group("id"))


def expected_status(record: dict[str, str]) -> dict:
    """The status fields lspci's record implies, by the naming rules of `pcicore.naming`."""
    class_name, class_id = named(record["Class"], "Class")
    vendor_name, vendor_id = named(record["Vendor"], "Vendor")
    device_name, device_id = named(record["Device"], "Device")
    description = (
        f"{class_name or 'Class ' + class_id}: {vendor_name or 'Vendor ' + vendor_id} "
        f"{device_name or 'Device ' + device_id}"
    )
    return {
        "address": record["Slot"],
        "vendorId": vendor_id,
        "deviceId": device_id,
        "classId": class_id,
        "kernelDriverInUse": record.get("Driver", ""),
        "iommuGroup": record.get("IOMMUGroup", ""),
        "numaNode": int(record.get("NUMANode", "-1")),
        "revision": record.get("Rev", "00"),
        "progIf": record.get("ProgIf", "00"),
        "description": description,
        "resourceName": resource_name(vendor_name, device_name, int(device_id, 16)),
    }


def assert_agrees(sysfs: Path, lspci_sysfs: Path | None) -> None:
    assert_items_agree(scan_items(sysfs), lspci_records(lspci_sysfs))


def assert_items_agree(ours: dict[str, dict], reference: dict[str, dict[str, str]]) -> None:
    """Scanned PCIDevice objects by address match lspci's records, device for device."""
    assert sorted(ours) == sorted(reference)
    for address, record in reference.items():
        expected = expected_status(record)
        status = ours[address]["status"]
        assert {key: status[key] for key in expected} == expected, address
        if "SVendor" in record:
            assert status["subsystemVendorId"] == named(record["SVendor"], "Unknown vendor")[1]
            assert status["subsystemDeviceId"] == named(record["SDevice"], "Device")[1]


def test_real_sys_agrees_with_lspci():
    """On this machine's own /sys, every device and field agrees with lspci."""
    assert_agrees(Path("/sys"), None)


def test_generated_tree_agrees_with_lspci(tmp_path):
    """On a generated tree with unknown ids, unbound devices, no groups and NUMA -1, it agrees."""
    SysfsTree(tmp_path).add(
        FakeDevice("0000:00:1c.0", klass=0x060400, device=0xA110, driver="pcieport", iommu_group=1),
        FakeDevice(
            "0000:02:00.0",
            vendor=0x10DE,
            device=0x2235,
            klass=0x030000,
            revision=0xA1,
            subsystem_vendor=0x10DE,
            subsystem_device=0x145A,
            driver="nvidia",
            iommu_group=2,
            parent="0000:00:1c.0",
            numa_node=1,
        ),
        FakeDevice(
            "0000:02:00.1",
            vendor=0x10DE,
            device=0x1AEF,
            klass=0x040300,
            iommu_group=2,
            parent="0000:00:1c.0",
            numa_node=1,
        ),
        FakeDevice("0000:03:00.0", vendor=0x1234, device=0x5678, klass=0x123400),
        FakeDevice("0000:03:00.1", vendor=0x8086, device=0xFFFE, klass=0xEE0000),
        FakeDevice(
            "0000:04:00.0",
            vendor=0x8086,
            device=0x1521,
            driver="igb",
            sriov_totalvfs=7,
            sriov_numvfs=1,
            subsystem_vendor=0x8086,
            subsystem_device=0x0001,
        ),
        FakeDevice(
            "0000:04:10.0", vendor=0x8086, device=0x1520, driver="igbvf", physfn="0000:04:00.0"
        ),
        FakeDevice("0001:00:00.0", vendor=0x15B3, device=0x101D, klass=0x020000, revision=0x3),
    )
    assert_agrees(tmp_path, tmp_path)
