"""The device diff: from desired records and observed PCIDevice objects to the writes."""

from __future__ import annotations

import attrs
import pytest

from pcicore.address import PciAddress
from pcicore.catalog import DeviceRecord
from pcicore.device import DriverName, NodeName, PciClass, PciDevice
from pcicore.inventory import (
    CreateDevice,
    DeleteDevice,
    DesiredDevice,
    MetadataPatch,
    ObservedDevice,
    OwnerRef,
    PatchDeviceMetadata,
    PatchDeviceStatus,
    is_published,
    metadata_patch,
    plan_device_writes,
)
from pcicore.naming import ResourceName

NODE = NodeName("titan")
OWNER = OwnerRef("v1", "Node", "titan", "uid-1")
OLD_NODE = OwnerRef("v1", "Node", "titan", "uid-0")
OTHER_OWNER = OwnerRef("example.com/v1", "Rack", "r7", "uid-r", controller=True)


def desired(address="0000:65:00.0", *, driver="nvidia", **status) -> DesiredDevice:
    """The desired object of one device, with a two-field status unless given."""
    name = f"titan-{address.replace(':', '').replace('.', '')}"
    device = PciDevice(PciAddress.parse(address), 0x10DE, 0x2235, PciClass(0x03, 0x00))
    record = DeviceRecord(
        name=name,
        node=NODE,
        device=device,
        resource_name=ResourceName("nvidia.com/GA102GL_A40"),
        description="VGA compatible controller",
        original_driver=DriverName(driver) if driver else None,
    )
    return DesiredDevice(record, status or {"address": address, "kernelDriverInUse": "nvidia"})


def observed_as(want: DesiredDevice, **changes) -> ObservedDevice:
    """The object exactly as the sync would have written ``want``, then changed by ``changes``."""
    obj = ObservedDevice(
        name=want.name,
        node_label=NODE,
        original_driver=want.original_driver,
        owners=(OWNER,),
        status=dict(want.status),
        parent_sriov=want.record.parent_sriov,
    )
    return attrs.evolve(obj, **changes)


GPU = desired()
NIC = desired("0000:03:00.0", driver="igb")
VF = attrs.evolve(NIC, record=attrs.evolve(NIC.record, parent_sriov="titan-enp6s0"))

CASES = [
    pytest.param([GPU], [observed_as(GPU)], OWNER, (), id="equal-writes-nothing"),
    pytest.param([], [], OWNER, (), id="nothing-at-all"),
    pytest.param([GPU], [], OWNER, (CreateDevice(GPU, OWNER),), id="missing-is-created"),
    pytest.param([GPU], [], None, (CreateDevice(GPU, None),), id="created-without-node-owner"),
    pytest.param(
        [GPU],
        [observed_as(GPU), observed_as(NIC)],
        OWNER,
        (DeleteDevice(NIC.name),),
        id="gone-from-bus-is-deleted",
    ),
    pytest.param(
        [GPU],
        [observed_as(GPU, status={**GPU.status, "kernelDriverInUse": "vfio-pci"})],
        OWNER,
        (PatchDeviceStatus(GPU.name, {"kernelDriverInUse": "nvidia"}),),
        id="only-differing-status-field-written",
    ),
    pytest.param(
        [GPU],
        [observed_as(GPU, status={**GPU.status, "conditions": ["set by someone else"]})],
        OWNER,
        (),
        id="others-status-fields-left-alone",
    ),
    pytest.param(
        [GPU],
        [observed_as(GPU, original_driver="nouveau")],
        OWNER,
        (
            PatchDeviceMetadata(
                GPU.name,
                MetadataPatch(set_original_driver=True, original_driver=DriverName("nvidia")),
            ),
        ),
        id="original-driver-annotation-corrected",
    ),
    pytest.param(
        [desired(driver=None)],
        [observed_as(GPU)],
        OWNER,
        (PatchDeviceMetadata(GPU.name, MetadataPatch(set_original_driver=True)),),
        id="original-driver-annotation-removed",
    ),
    pytest.param(
        [GPU],
        [observed_as(GPU, owners=(OLD_NODE, OTHER_OWNER))],
        OWNER,
        (PatchDeviceMetadata(GPU.name, MetadataPatch(owners=(OTHER_OWNER, OWNER))),),
        id="recreated-node-replaces-old-node-owner-keeps-others",
    ),
    pytest.param(
        [GPU],
        [observed_as(GPU, owners=(OTHER_OWNER, OWNER))],
        OWNER,
        (),
        id="node-owner-present-among-others",
    ),
    pytest.param(
        [GPU],
        [observed_as(GPU, owners=())],
        None,
        (),
        id="no-node-object-no-owner-patch",
    ),
    pytest.param(
        [GPU],
        [observed_as(GPU, node_label="atlas", original_driver=None, status={})],
        OWNER,
        (
            PatchDeviceMetadata(
                GPU.name,
                MetadataPatch(
                    node_label=NODE, set_original_driver=True, original_driver=DriverName("nvidia")
                ),
            ),
            PatchDeviceStatus(GPU.name, GPU.status),
        ),
        id="metadata-then-status",
    ),
    pytest.param([VF], [observed_as(VF)], OWNER, (), id="vf-label-in-place-writes-nothing"),
    pytest.param(
        [VF],
        [observed_as(NIC)],
        OWNER,
        (
            PatchDeviceMetadata(
                NIC.name, MetadataPatch(set_parent_sriov=True, parent_sriov="titan-enp6s0")
            ),
        ),
        id="vf-gets-its-parent-label",
    ),
    pytest.param(
        [NIC],
        [observed_as(VF)],
        OWNER,
        (PatchDeviceMetadata(NIC.name, MetadataPatch(set_parent_sriov=True)),),
        id="parent-label-removed-when-pf-unpublished",
    ),
    pytest.param(
        [NIC, GPU],
        [observed_as(desired("0000:66:00.0")), observed_as(desired("0000:04:00.0"))],
        OWNER,
        (
            CreateDevice(NIC, OWNER),
            CreateDevice(GPU, OWNER),
            DeleteDevice("titan-000004000"),
            DeleteDevice("titan-000066000"),
        ),
        id="creates-in-desired-order-then-deletes-by-name",
    ),
]


class TestPlanDeviceWrites:
    """`plan_device_writes` returns exactly the writes that make the objects match."""

    @pytest.mark.parametrize(("want", "have", "owner", "writes"), CASES)
    def test_writes(self, want, have, owner, writes):
        """Each case yields exactly the listed writes, in order."""
        assert plan_device_writes(want, have, owner) == writes


class TestMetadataPatch:
    """A metadata patch is false exactly when it changes nothing."""

    @pytest.mark.parametrize(
        ("patch", "changes"),
        [
            pytest.param(MetadataPatch(), False, id="empty"),
            pytest.param(MetadataPatch(node_label=NODE), True, id="label"),
            pytest.param(MetadataPatch(set_original_driver=True), True, id="annotation-removed"),
            pytest.param(MetadataPatch(owners=()), True, id="owners-emptied"),
            pytest.param(MetadataPatch(set_parent_sriov=True), True, id="parent-label-removed"),
        ],
    )
    def test_truth(self, patch, changes):
        """Only a patch with some change is true."""
        assert bool(patch) is changes


class TestIsPublished:
    """Which devices get a PCIDevice object."""

    @pytest.mark.parametrize(
        ("klass", "published"),
        [
            pytest.param(PciClass(6, 4), False, id="pci-bridge"),
            pytest.param(PciClass(6, 0), True, id="host-bridge"),
            pytest.param(PciClass(2, 0), True, id="ethernet"),
        ],
    )
    def test_bridges_are_not(self, klass, published):
        """PCI-to-PCI bridges (class 0604) are not published, as in Harvester; others are."""
        device = PciDevice(PciAddress.parse("0000:00:1c.0"), 0x8086, 0x06B8, klass)
        assert is_published(device) is published


def test_unchanged_vf_needs_an_empty_metadata_patch():
    """A VF whose parent label is already right: the patch is empty, not one carrying the label."""
    assert metadata_patch(VF, observed_as(VF), OWNER) == MetadataPatch()
