"""`pcidevices scan` on the guest's real kernel agrees with the guest's own `lspci` (guest only).

The field-by-field rules are those of `tests/integration/test_scan_vs_lspci.py` (imported, not
copied); here they meet real PCI config space, real IOMMU groups and real driver links.
"""

import json
import subprocess

from e2e.guest import rawsysfs
from e2e.layout import BRIDGE, FREE_NIC, MGMT_NIC, SHARED_PAIR
from integration.test_scan_vs_lspci import assert_items_agree, lspci_records


def _scan() -> dict[str, dict]:
    """One `pcidevices scan -o json` of the guest, as a user runs it, by address."""
    out = subprocess.run(
        ["pcidevices", "scan", "-o", "json"], check=True, capture_output=True, text=True
    ).stdout
    return {item["status"]["address"]: item for item in json.loads(out)["items"]}


def test_scan_agrees_with_lspci_on_every_device_of_the_guest():
    """Every device lspci lists is scanned with the same ids, class, driver, group and NUMA node."""
    ours = _scan()
    assert_items_agree(ours, lspci_records(None))
    # The layout as the kernel sees it, not only as lspci prints it.
    for address in (MGMT_NIC, FREE_NIC, BRIDGE, *SHARED_PAIR):
        status = ours[address]["status"]
        assert status["kernelDriverInUse"] == (rawsysfs.driver(address) or "")
        assert status["iommuGroup"] == str(rawsysfs.iommu_group(address))
    pair_groups = {ours[address]["status"]["iommuGroup"] for address in (BRIDGE, *SHARED_PAIR)}
    assert len(pair_groups) == 1
    assert ours[FREE_NIC]["status"]["iommuGroup"] not in pair_groups
