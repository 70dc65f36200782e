"""One claim on one NIC, as the admission rules' tests read it in (shared by their files)."""

from __future__ import annotations

from pcicore.admission import ClaimSpecFacts, CreateRequest, DeviceFacts
from pcicore.device import IommuGroup, PciClass

NIC_CLASS = PciClass(0x02, 0x00)
GROUP = IommuGroup(7)
NODE = "titan"
ADDRESS = "0000:03:00.0"
NAME = "titan-000003000"
POOL = "intel.com/I350_GIGABIT_NETWORK_CONNECTION"
DEVICE = DeviceFacts(
    name=NAME,
    address=ADDRESS,
    node_name=NODE,
    resource_name=POOL,
    iommu_group=GROUP,
    pci_class=NIC_CLASS,
)
SPEC = ClaimSpecFacts(address=ADDRESS, node_name=NODE, user_name="alice")


def create(**changes) -> CreateRequest:
    """A create request for the NIC, with ``changes`` to its fields."""
    values = {"claim_name": NAME, "spec": SPEC, "user": "alice", "device": DEVICE} | changes
    return CreateRequest(**values)
