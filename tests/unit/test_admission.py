"""The admission rules as pure functions: request and what was read in, verdict out.

Pure and fast (plain values, no API server); ``tests/integration/webhook`` checks the same rules
through a real API server, with the exact text users see.
"""

from __future__ import annotations

import pytest

from admission_facts import ADDRESS, DEVICE, GROUP, NAME, NODE, POOL, SPEC, create
from pcicore.admission import (
    ClaimSpecFacts,
    DeviceFacts,
    VmiFacts,
    review_create,
    review_delete,
    review_requested_by,
    review_update,
    user_name_to_set,
)
from pcicore.device import IommuGroup, PciClass

BRIDGE_CLASS = PciClass(0x06, 0x04)
USB_CLASS = PciClass(0x0C, 0x03)


class TestReviewCreate:
    """Which new claims are admitted, and the first reason a refused one gets."""

    @pytest.mark.parametrize(
        ("request_", "fragment"),
        [
            pytest.param(create(), None, id="valid"),
            pytest.param(create(user="u-rancher-sa"), None, id="ui-user-name-is-a-label"),
            pytest.param(
                create(spec=ClaimSpecFacts("03:00.0", NODE, "alice")), None, id="short-address"
            ),
            pytest.param(create(may_claim=False), 'RBAC verb "claim"', id="rbac"),
            pytest.param(
                create(spec=ClaimSpecFacts("nic0", NODE, "alice")),
                "is not a PCI address",
                id="addr",
            ),
            pytest.param(create(device=None), 'no PCIDevice "titan-000003000"', id="missing"),
            pytest.param(
                create(claim_name="nic", device=None), 'claim name "nic" must be', id="name"
            ),
            pytest.param(
                create(claim_name="nic"), 'claim name "nic" must be', id="name-of-a-present-device"
            ),
            pytest.param(
                create(spec=ClaimSpecFacts("0000:03:00.1", NODE, "alice")),
                'which is at "0000:03:00.0"',
                id="address-mismatch",
            ),
            pytest.param(
                create(spec=ClaimSpecFacts(ADDRESS, "other", "alice")),
                'which is on node "titan"',
                id="node-mismatch",
            ),
            pytest.param(
                create(
                    device=DeviceFacts(
                        name=NAME,
                        address=ADDRESS,
                        node_name=NODE,
                        iommu_group=GROUP,
                        host_protected=True,
                        protection_reason="default route",
                    )
                ),
                'host-protected by node "titan": default route',
                id="protected",
            ),
            pytest.param(
                create(device=DeviceFacts(name=NAME, address=ADDRESS, node_name=NODE)),
                "has no IOMMU group",
                id="no-iommu",
            ),
            pytest.param(
                create(
                    device=DeviceFacts(
                        name=NAME,
                        address=ADDRESS,
                        node_name=NODE,
                        iommu_group=IommuGroup(1),
                        pci_class=BRIDGE_CLASS,
                    )
                ),
                "is a PCI bridge",
                id="bridge",
            ),
            pytest.param(
                create(
                    node_devices=[
                        DEVICE,
                        DeviceFacts(
                            name="titan-000003001",
                            address="0000:03:00.1",
                            node_name=NODE,
                            iommu_group=GROUP,
                            pci_class=USB_CLASS,
                            host_protected=True,
                        ),
                    ]
                ),
                'member "titan-000003001" (0000:03:00.1) is host-protected (no reason reported)',
                id="group-member-protected",
            ),
            pytest.param(
                create(
                    node_devices=[
                        DeviceFacts(
                            name="titan-000000100",
                            address="0000:00:01.0",
                            node_name=NODE,
                            iommu_group=GROUP,
                            pci_class=BRIDGE_CLASS,
                            host_protected=True,
                        )
                    ]
                ),
                None,
                id="protected-bridge-in-group-is-exempt",
            ),
        ],
    )
    def test_verdict(self, request_, fragment):
        """Each case is admitted (None) or refused with a message holding the fragment."""
        verdict = review_create(request_)
        if fragment is None:
            assert verdict.allowed, verdict.message
        else:
            assert not verdict.allowed
            assert fragment in verdict.message

    def test_device_without_iommu_group_is_refused_with_how_to_enable_it(self):
        """No IOMMU group: refused for good, naming the node and the kernel options to set."""
        request = create(device=DeviceFacts(name=NAME, address=ADDRESS, node_name=NODE))
        verdict = review_create(request)
        assert not verdict.allowed
        assert verdict.message.startswith(
            'PCIDevice "titan-000003000" (0000:03:00.0) has no IOMMU group: node "titan" has no '
            "IOMMU enabled"
        )
        assert "intel_iommu=on or amd_iommu=on" in verdict.message

    def test_bridge_refusal_is_the_engines_text(self):
        """A bridge is refused in the words of `pcicore.protection`, naming the device."""
        request = create(
            device=DeviceFacts(
                name=NAME,
                address=ADDRESS,
                node_name=NODE,
                iommu_group=GROUP,
                pci_class=BRIDGE_CLASS,
            )
        )
        assert review_create(request).message == (
            'PCIDevice "titan-000003000" (0000:03:00.0) is a PCI bridge (class 0604); bridges '
            "are never passed through, claim the devices behind it instead"
        )


class TestUserNameToSet:
    """The mutating webhook fills an empty userName and leaves a given one alone."""

    def test_empty_is_filled(self):
        """An empty userName becomes the requesting user."""
        assert user_name_to_set(ClaimSpecFacts(ADDRESS, NODE), "bob") == "bob"

    def test_given_is_kept(self):
        """A given userName is not patched (it is the client's label; who asked is recorded)."""
        assert user_name_to_set(SPEC, "bob") is None


class TestReviewUpdate:
    """The spec cannot change after creation."""

    def test_same_spec(self):
        """An update that keeps the spec is admitted."""
        assert review_update(SPEC, SPEC).allowed

    def test_changed_field_named(self):
        """A changed field is named with both values."""
        verdict = review_update(
            SPEC, ClaimSpecFacts(ADDRESS, NODE, "alice", disable_resource_pooling=True)
        )
        assert verdict.message == (
            "spec is immutable: spec.disableResourcePooling changed from false to true; delete "
            "the claim and create a new one"
        )


class TestReviewDelete:
    """A claim a running VMI on its node uses stays."""

    @pytest.mark.parametrize(
        ("vmi", "allowed"),
        [
            pytest.param(VmiFacts("ns", "vm", NODE, "Running", (POOL,)), False, id="running"),
            pytest.param(VmiFacts("ns", "vm", NODE, "Scheduling", (POOL,)), False, id="starting"),
            pytest.param(
                VmiFacts("ns", "vm", NODE, "Running", (f"{POOL}-000003000",)),
                False,
                id="dedicated-resource",
            ),
            pytest.param(VmiFacts("ns", "vm", NODE, "Succeeded", (POOL,)), True, id="finished"),
            pytest.param(VmiFacts("ns", "vm", NODE, "Failed", (POOL,)), True, id="failed"),
            pytest.param(VmiFacts("ns", "vm", "other", "Running", (POOL,)), True, id="other-node"),
            pytest.param(VmiFacts("ns", "vm", NODE, "Running", ("amd.com/X",)), True, id="other"),
        ],
    )
    def test_vmi(self, vmi, allowed):
        """Running (non-final) VMIs on the claim's node with its resource block the delete."""
        assert review_delete(NAME, SPEC, DEVICE, [vmi]).allowed is allowed

    def test_device_gone(self):
        """Without its PCIDevice nothing can be using the claim."""
        assert review_delete(
            NAME, SPEC, None, [VmiFacts("ns", "vm", NODE, "Running", (POOL,))]
        ).allowed


class TestReviewRequestedBy:
    """The record of who created a claim never changes."""

    def test_unchanged_is_allowed(self):
        """An update that keeps the record (or has none) is admitted."""
        assert review_requested_by("alice", "alice").allowed
        assert review_requested_by(None, None).allowed

    @pytest.mark.parametrize(("old", "new"), [("alice", "mallory"), ("alice", None), (None, "x")])
    def test_changed_is_refused(self, old, new):
        """Changing, removing or adding it after creation is refused, saying why."""
        verdict = review_requested_by(old, new)
        assert not verdict.allowed
        assert "cannot be changed" in verdict.message
