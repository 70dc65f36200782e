"""The node the device plugin's integration tests serve: its devices, claims and resources.

A module of its own (not the plugin tests' conftest) so tests import it by a unique name.
"""

from __future__ import annotations

from fakesys.tree import FakeDevice
from pcicore.address import PciAddress
from pcicore.naming import ResourceName
from pcicore.resources import ClaimedDevice

NIC = ResourceName("intel.com/I350_GIGABIT_NETWORK_CONNECTION")
GPU = ResourceName("nvidia.com/GA104_RTX_A4500_EMBEDDED_GPU")

# Node: NUMA 0 has two NIC functions below root port 00:01.0, NUMA 1 one NIC below 80:01.0;
# a GPU without NUMA information sits on the root bus.
DEVICES = (
    FakeDevice("0000:00:01.0", klass=0x060400, numa_node=0, iommu_group=1, driver="pcieport"),
    FakeDevice("0000:80:01.0", klass=0x060400, numa_node=1, iommu_group=2, driver="pcieport"),
    FakeDevice(
        "0000:01:00.0", device=0x1521, driver="vfio-pci", iommu_group=12, numa_node=0,
        parent="0000:00:01.0",
    ),
    FakeDevice(
        "0000:01:00.1", device=0x1521, driver="vfio-pci", iommu_group=13, numa_node=0,
        parent="0000:00:01.0",
    ),
    FakeDevice(
        "0000:81:00.0", device=0x1521, driver="vfio-pci", iommu_group=40, numa_node=1,
        parent="0000:80:01.0",
    ),
    FakeDevice(
        "0000:05:00.0", vendor=0x10DE, device=0x2232, klass=0x030000, driver="vfio-pci",
        iommu_group=50, numa_node=-1,
    ),
)  # fmt: skip


class FakeClaims:
    """The `ClaimedDevices` port, as a list the test edits."""

    def __init__(self, claims):
        """Claim ``claims``."""
        self.claims = list(claims)

    def claimed(self):
        """Every claim now."""
        return list(self.claims)


def claim(address, resource=NIC, *, dedicated=False):
    """A claim on ``address``."""
    return ClaimedDevice(PciAddress.parse(address), resource, dedicated)
