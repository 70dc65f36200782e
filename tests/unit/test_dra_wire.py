"""The wire form of our ResourceSlices: what is written reads back equal; all else is inexact."""

from __future__ import annotations

import copy

import pytest

from pcicore.device import NodeName
from pcicore.dra import DRIVER_NAME
from pcicore.dra_slices import AttributeKind, AttributeValue, DraDevice, SliceContent
from pcicore.inventory import OwnerRef
from pcioperator.wire.dra import observed_slice, slice_manifest, slices_of_node

OWNER = OwnerRef("v1", "Node", "node1", "uid-1")
CONTENT = SliceContent(
    name=f"node1-{DRIVER_NAME}-0",
    node=NodeName("node1"),
    generation=3,
    slice_count=1,
    devices=(
        DraDevice(
            "pci-0000-03-00-0",
            {
                "resource.kubernetes.io/pciBusID": AttributeValue.string("0000:03:00.0"),
                "iommuGroup": AttributeValue.integer(7),
                "flag": AttributeValue(AttributeKind.BOOL, value=True),
            },
        ),
    ),
)


def stored(manifest):
    """``manifest`` as the API server returns it (a resourceVersion added)."""
    obj = copy.deepcopy(manifest)
    obj["metadata"]["resourceVersion"] = "42"
    return obj


def test_manifest_names_driver_node_and_pool():
    """spec.driver, spec.nodeName, the pool (name, generation, count), typed attributes."""
    manifest = slice_manifest(CONTENT, OWNER, "41")
    assert manifest["metadata"]["resourceVersion"] == "41"
    assert manifest["spec"]["pool"] == {"name": "node1", "generation": 3, "resourceSliceCount": 1}
    assert manifest["spec"]["devices"][0]["attributes"]["flag"] == {"bool": True}
    assert manifest["spec"]["devices"][0]["attributes"]["iommuGroup"] == {"int": 7}


def test_what_is_written_reads_back_equal_and_exact():
    """A written slice, read back, holds the same devices, pool, owner."""
    seen = observed_slice(stored(slice_manifest(CONTENT, OWNER)))
    assert seen.exact
    assert seen.devices == CONTENT.devices
    assert (seen.pool, seen.generation, seen.slice_count) == ("node1", 3, 1)
    assert seen.owners == (OWNER,)
    assert seen.resource_version == "42"


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda o: o["spec"]["devices"][0].update(capacity={}), id="device-capacity"),
        pytest.param(lambda o: o["spec"].update(sharedCounters=[]), id="spec-shared-counters"),
        pytest.param(
            lambda o: o["spec"]["devices"][0]["attributes"].update(x={"int": True}),
            id="bool-as-int",
        ),
        pytest.param(
            lambda o: o["spec"]["devices"][0]["attributes"].update(x={"color": "red"}),
            id="unknown-type",
        ),
        pytest.param(
            lambda o: o["spec"]["devices"][0]["attributes"].update(x={"string": "a", "int": 1}),
            id="two-values",
        ),
    ],
)
def test_anything_this_driver_does_not_write_is_inexact(change):
    """A field we never write, or an attribute we cannot read: the slice is rewritten."""
    obj = stored(slice_manifest(CONTENT, OWNER))
    change(obj)
    assert not observed_slice(obj).exact


def test_field_selector_of_a_node():
    """The informer watches one node's slices of our driver."""
    assert slices_of_node(NodeName("n1")) == f"spec.nodeName=n1,spec.driver={DRIVER_NAME}"
