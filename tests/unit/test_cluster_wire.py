"""The wire mapping of the device sync's and the KubeVirt controller's adapters."""

from __future__ import annotations

import logging

from pcicore.address import PciAddress
from pcicore.device import DriverName, NodeName
from pcicore.inventory import MetadataPatch, OwnerRef
from pcicore.naming import ResourceName
from pcicore.permitted import ClaimedAddress, DeviceKind, PermittedChange, PermittedKey
from pcioperator.controllers.devices import metadata_patch_to_wire, observed_from_wire
from pcioperator.controllers.kubevirt import (
    MANAGED_ANNOTATION,
    change_to_wire,
    claimed_from_wire,
    document_from_wire,
    kind_from_wire,
)

NIC = ResourceName("intel.com/I350_GIGABIT_NETWORK_CONNECTION")
NIC_KEY = PermittedKey("8086:1521", NIC)
NODE_REF = {"apiVersion": "v1", "kind": "Node", "name": "titan", "uid": "u1"}
RACK_REF = {
    "apiVersion": "example.com/v1",
    "kind": "Rack",
    "name": "r7",
    "uid": "r",
    "controller": True,
    "blockOwnerDeletion": False,
}


class TestPciDeviceWire:
    """PCIDevice objects read into observed values, and metadata patches written back."""

    def test_owner_references_round_trip(self):
        """Owner references, optional flags included, are written back as they were read."""
        obj = {"metadata": {"name": "titan-000003000", "ownerReferences": [RACK_REF, NODE_REF]}}
        observed = observed_from_wire(obj)
        patch = MetadataPatch(owners=observed.owners)
        assert metadata_patch_to_wire(patch) == {"ownerReferences": [RACK_REF, NODE_REF]}

    def test_bare_object_reads_as_empty(self):
        """An object with only a name has no label, annotation, owner or status."""
        observed = observed_from_wire({"metadata": {"name": "titan-000003000"}})
        assert (observed.node_label, observed.original_driver, observed.owners) == (None, None, ())
        assert dict(observed.status) == {}

    def test_annotation_removal_is_a_null(self):
        """Removing the original-driver annotation is a merge-patch null; nothing else is sent."""
        patch = MetadataPatch(set_original_driver=True)
        assert metadata_patch_to_wire(patch) == {
            "annotations": {"harvesterhci.io/pcideviceDriver": None}
        }

    def test_label_and_driver(self):
        """The node label and the driver annotation are written under their wire names."""
        patch = MetadataPatch(
            node_label=NodeName("titan"),
            set_original_driver=True,
            original_driver=DriverName("igb"),
            owners=(OwnerRef("v1", "Node", "titan", "u1"),),
        )
        assert metadata_patch_to_wire(patch) == {
            "labels": {"nodename": "titan"},
            "annotations": {"harvesterhci.io/pcideviceDriver": "igb"},
            "ownerReferences": [NODE_REF],
        }


USERS_ENTRY = {"pciVendorSelector": "1af4:1000", "resourceName": "x.io/v", "note": "kept"}
OURS_ENTRY = {
    "pciVendorSelector": "8086:1521",
    "resourceName": NIC,
    "externalResourceProvider": True,
}


def kubevirt_cr(items, annotation=None) -> dict:
    """A KubeVirt CR at resourceVersion 42 with ``items`` and, if given, the ownership record."""
    annotations = {} if annotation is None else {MANAGED_ANNOTATION: annotation}
    return {
        "metadata": {"name": "kubevirt", "resourceVersion": "42", "annotations": annotations},
        "spec": {"configuration": {"permittedHostDevices": {"pciHostDevices": items}}},
    }


class TestKubeVirtWire:
    """The CR's entries and ownership record read into a document, and changes written back."""

    def test_document_reads_entries_and_record(self):
        """Entries keep their order; the record's selectors are compared in upper case."""
        annotation = f'[{{"pciVendorSelector":"8086:1521","resourceName":"{NIC}"}}]'
        document = document_from_wire(kubevirt_cr([USERS_ENTRY, "garbage", OURS_ENTRY], annotation))
        assert document.version == "42"
        assert [entry.key for entry in document.entries][2] == NIC_KEY
        assert document.entries[1].resource_name == ""
        assert document.managed == {NIC_KEY}

    def test_unreadable_record_owns_nothing_and_says_why(self, caplog):
        """An annotation that is not the expected JSON owns nothing, with a warning naming it."""
        caplog.set_level(logging.WARNING)
        document = document_from_wire(kubevirt_cr([OURS_ENTRY], "{not json"))
        assert document.managed == frozenset()
        assert MANAGED_ANNOTATION in caplog.text

    def test_change_writes_kept_items_verbatim(self):
        """Kept items (even malformed ones, unknown fields included) are written as found."""
        cr = kubevirt_cr([USERS_ENTRY, "garbage", OURS_ENTRY])
        change = PermittedChange(
            "42", (0, 1), (PermittedKey("10DE:2236", ResourceName("n/a")),), {}
        )
        patch = change_to_wire(cr, change)
        assert patch["metadata"] == {
            "resourceVersion": "42",
            "annotations": {MANAGED_ANNOTATION: None},
        }
        assert patch["spec"]["configuration"]["permittedHostDevices"]["pciHostDevices"] == [
            USERS_ENTRY,
            "garbage",
            {
                "pciVendorSelector": "10DE:2236",
                "resourceName": "n/a",
                "externalResourceProvider": True,
            },
        ]


class TestClaimsAndKindsWire:
    """Claims and PCIDevices read into what the KubeVirt controller joins."""

    def test_claim(self):
        """A claim gives its node, normalised address and pooling choice."""
        obj = {
            "metadata": {"name": "titan-000003000"},
            "spec": {
                "address": "0000:03:00.0",
                "nodeName": "titan",
                "userName": "alice",
                "disableResourcePooling": True,
            },
        }
        assert claimed_from_wire(obj) == ClaimedAddress(
            NodeName("titan"), PciAddress.parse("0000:03:00.0"), dedicated=True
        )

    def test_claim_with_bad_address_is_left_out(self):
        """A claim whose address does not parse asks for nothing."""
        obj = {"metadata": {"name": "c"}, "spec": {"address": "03:00", "nodeName": "titan"}}
        assert claimed_from_wire(obj) is None

    def test_kind(self):
        """A PCIDevice's hex ids and resourceName make its kind."""
        obj = {"status": {"vendorId": "8086", "deviceId": "1521", "resourceName": NIC}}
        assert kind_from_wire(obj) == DeviceKind(0x8086, 0x1521, NIC)

    def test_kind_needs_ids_and_resource(self):
        """Without readable ids or a resourceName a PCIDevice reports no kind yet."""
        assert kind_from_wire({"status": {"vendorId": "8086", "resourceName": NIC}}) is None
        assert kind_from_wire({"status": {"vendorId": "zz", "deviceId": "1521"}}) is None
        assert kind_from_wire({"status": {"vendorId": "8086", "deviceId": "1521"}}) is None
        assert kind_from_wire(None) is None
