"""The DRA slices at their edges: boundary lengths, NUMA node 0, and pools out of step.

`test_dra_slices.py` checks the common cases; these pin the limits Kubernetes sets (253-character
names, 64-character attribute values) and the observed pools that must be rewritten.
"""

from __future__ import annotations

import hashlib

from pcicore.address import PciAddress
from pcicore.device import IommuGroup, NodeName, PciClass, PciDevice
from pcicore.dra import DRIVER_NAME
from pcicore.dra_slices import (
    ATTRIBUTE_VALUE_MAX,
    NUMA_NODE,
    AttributeKind,
    AttributeValue,
    ObservedSlice,
    dra_device,
    plan_slice_writes,
    slice_name,
)
from pcicore.inventory import OwnerRef
from pcicore.naming import ResourceName

NODE = NodeName("node1")
OWNER = OwnerRef("v1", "Node", "node1", "uid-1", controller=True)
SUFFIX = f"-{DRIVER_NAME}-0"


def dev(address: str, **kw) -> PciDevice:
    return PciDevice(
        PciAddress.parse(address),
        0x8086,
        0x1533,
        PciClass(0x02, 0x00),
        iommu_group=IommuGroup(1),
        **kw,
    )


class TestAttributes:
    """Attribute kinds and the boundaries of what is published."""

    def test_string_and_integer_values_carry_their_kind(self):
        """The two constructors give the kind the wire form writes (string, int) and the value."""
        assert AttributeValue.string("x") == AttributeValue(AttributeKind.STRING, "x")
        assert AttributeValue.integer(7) == AttributeValue(AttributeKind.INT, 7)

    def test_numa_node_0_is_published(self):
        """Node 0 is a NUMA node (only -1 means none)."""
        attributes = dra_device(dev("0000:03:00.0", numa_node=0), None).attributes
        assert attributes[NUMA_NODE] == AttributeValue(AttributeKind.INT, 0)

    def test_resource_name_of_exactly_64_characters_is_published(self):
        """The API's limit is 64: a name of that length is kept, as a string."""
        name = ResourceName("x.com/" + "A" * (ATTRIBUTE_VALUE_MAX - 6))
        attributes = dra_device(dev("0000:03:00.0"), name).attributes
        assert attributes["resourceName"] == AttributeValue(AttributeKind.STRING, name)


class TestSliceNames:
    """Slice names fit Kubernetes' 253 characters; long node names are cut and hashed."""

    def test_name_of_exactly_253_characters_is_not_cut(self):
        """A node name that just fits gives ``<node><suffix>`` unchanged."""
        node = NodeName("n" * (253 - len(SUFFIX)))
        assert slice_name(node, 0) == f"{node}{SUFFIX}"

    def test_long_node_name_is_cut_and_followed_by_ten_digest_characters(self):
        """One character over: cut to fit 253 exactly, then ``-`` and the name's digest."""
        node = NodeName("n" * (254 - len(SUFFIX)))
        digest = hashlib.sha256(node.encode()).hexdigest()[:10]
        room = 253 - len(SUFFIX) - len(digest) - 1
        name = slice_name(node, 0)
        assert name == f"{node[:room]}-{digest}{SUFFIX}"
        assert len(name) == 253

    def test_cut_ending_in_a_dot_or_dash_drops_it(self):
        """A cut after ``.`` or ``-`` would give ``.-`` or ``--``: the ending is dropped."""
        room = 253 - len(SUFFIX) - 11
        for tail in (".", "-", ".-"):
            node = NodeName("n" * (room - len(tail)) + tail + "m" * 40)
            name = slice_name(node, 0)
            assert name.startswith("n" * (room - len(tail)) + "-")
            assert ".-" not in name
            assert "--" not in name.removesuffix(SUFFIX).split(DRIVER_NAME)[0]


def observed(**changes) -> ObservedSlice:
    """The slice a write of one device on NODE leaves, changed by ``changes``."""
    values = {
        "name": slice_name(NODE, 0),
        "resource_version": "7",
        "pool": NODE,
        "generation": 3,
        "slice_count": 1,
        "devices": (dra_device(dev("0000:03:00.0"), None),),
        "owners": (OWNER,),
    } | changes
    return ObservedSlice(**values)


class TestPoolsOutOfStep:
    """Any difference in what was observed makes every slice be written again."""

    def desired(self):
        return [dra_device(dev("0000:03:00.0"), None)]

    def test_the_slice_as_written_needs_no_write(self):
        """The baseline: nothing differs, nothing is written."""
        assert plan_slice_writes(NODE, self.desired(), [observed()], OWNER) == []

    def test_slice_of_another_pool_is_rewritten(self):
        """Same name and count, pool of another node: rewritten."""
        assert plan_slice_writes(NODE, self.desired(), [observed(pool="node2")], OWNER) != []

    def test_slice_holding_fields_we_do_not_write_is_rewritten(self):
        """Inexact (a field this driver does not write): rewritten."""
        assert plan_slice_writes(NODE, self.desired(), [observed(exact=False)], OWNER) != []

    def test_slice_under_another_name_is_replaced(self):
        """One slice, but not under the expected name: created anew, the stray deleted."""
        writes = plan_slice_writes(NODE, self.desired(), [observed(name="stray")], OWNER)
        assert writes != []

    def test_two_slices_of_two_generations_are_rewritten(self):
        """Two devices in two slices at generations 3 and 4: rewritten at generation 5."""
        desired = [dra_device(dev("0000:03:00.0"), None), dra_device(dev("0000:04:00.0"), None)]
        slices = [
            observed(slice_count=2, devices=(desired[0],)),
            observed(name=slice_name(NODE, 1), slice_count=2, generation=4, devices=(desired[1],)),
        ]
        writes = plan_slice_writes(NODE, desired, slices, OWNER, max_devices=1)
        assert [w.content.generation for w in writes] == [5, 5]
