"""The resource a device is advertised under, as Harvester names it (`pcicore.resources`)."""

from __future__ import annotations

import pytest

from pcicore.address import PciAddress
from pcicore.device import NodeName
from pcicore.naming import ResourceName
from pcicore.resources import dedicated_resource_name, device_resource_name, is_resource_name
from pciplugin.server import SOCKET_PREFIX

POOL = ResourceName("intel.com/I350_GIGABIT_NETWORK_CONNECTION")
# A DNS subdomain of exactly 253 characters (the longest a prefix may be), of 63-letter labels.
PREFIX_253 = ".".join(["a" * 63] * 3 + ["a" * 61])
A = PciAddress.parse("0000:03:00.0")


class TestDedicatedResourceName:
    """The per-device resource of a claim that disables pooling."""

    def test_with_node_is_harvesters_name(self):
        """``<vendor part>/<PCIDevice name>``, as Harvester writes into the PCIDevice."""
        assert dedicated_resource_name(POOL, A, NodeName("node1")) == "intel.com/node1-000003000"

    def test_applied_twice_changes_nothing(self):
        """A name already per-device gives itself back."""
        own = dedicated_resource_name(POOL, A, NodeName("node1"))
        assert dedicated_resource_name(own, A, NodeName("node1")) == own


class TestDeviceResourceName:
    """What a PCIDevice reports as status.resourceName."""

    @pytest.mark.parametrize(
        ("override", "dedicated", "expected"),
        [
            pytest.param(None, False, POOL, id="pool"),
            pytest.param(None, True, "intel.com/node1-000003000", id="dedicated"),
            pytest.param(
                "nvidia.com/NVIDIA_L40S-1A", True, "nvidia.com/NVIDIA_L40S-1A", id="override-wins"
            ),
            pytest.param("not a name", False, POOL, id="invalid-override-ignored"),
            pytest.param("", False, POOL, id="empty-override-ignored"),
        ],
    )
    def test_order(self, override, dedicated, expected):
        """Override annotation, else the per-device name while dedicated, else the pool."""
        name = device_resource_name(POOL, "node1-000003000", override=override, dedicated=dedicated)
        assert name == expected

    def test_a_device_is_pooled_unless_told_its_claim_disables_pooling(self):
        """Without the dedicated flag (no claim, or a pooled one), the device reports the pool."""
        assert device_resource_name(POOL, "node1-000003000") == POOL


class TestIsResourceName:
    """Which texts the kubelet would accept as an extended-resource name."""

    @pytest.mark.parametrize(
        ("text", "valid"),
        [
            ("intel.com/node1-000003000", True),
            ("nvidia.com/NVIDIA_L40S-1A", True),
            ("intel.com/", False),
            ("noslash", False),
            ("Intel.com/x", False),
            ("intel.com/" + "x" * 63, True),
            ("intel.com/" + "x" * 64, False),
            (PREFIX_253 + "/x", True),
            (PREFIX_253 + "a/x", False),
        ],
        ids=["per-device", "vgpu", "no-name", "no-slash", "upper-prefix", "63", "64", "253", "254"],
    )
    def test_valid(self, text, valid):
        """A DNS-subdomain prefix, ``/``, and a name part of at most 63 characters."""
        assert is_resource_name(text) is valid


class TestSocketName:
    """Our plugin's sockets cannot collide with Harvester's plugin on the same node."""

    def test_prefix_differs_from_harvesters(self):
        """Harvester's plugin names its sockets ``kubevirt-<name>.sock``; ours start otherwise."""
        assert not SOCKET_PREFIX.startswith("kubevirt-")
