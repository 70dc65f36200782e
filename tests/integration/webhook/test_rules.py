"""The admission rules as pure functions: request and what was read in, verdict out.

Pure and fast (no API server); they live beside the end-to-end tests of the same rules.
"""

from __future__ import annotations

import pytest

from pcioperator.webhook.rules import (
    CreateRequest,
    DeviceFacts,
    RuleSettings,
    VmiFacts,
    review_create,
    review_delete,
    review_update,
    user_name_to_set,
)
from pcioperator.wire.claim import ClaimSpec

NODE = "titan"
ADDRESS = "0000:03:00.0"
NAME = "titan-000003000"
POOL = "intel.com/I350_GIGABIT_NETWORK_CONNECTION"
DEVICE = DeviceFacts(
    name=NAME,
    address=ADDRESS,
    node_name=NODE,
    resource_name=POOL,
    iommu_group="7",
    class_id="0200",
)
SPEC = ClaimSpec(address=ADDRESS, node_name=NODE, user_name="alice")


def create(**changes) -> CreateRequest:
    values = {"claim_name": NAME, "spec": SPEC, "user": "alice", "device": DEVICE} | changes
    return CreateRequest(**values)


class TestReviewCreate:
    """Which new claims are admitted, and the first reason a refused one gets."""

    @pytest.mark.parametrize(
        ("request_", "fragment"),
        [
            pytest.param(create(), None, id="valid"),
            pytest.param(create(user="bob"), 'userName "alice" is not the user', id="user"),
            pytest.param(create(may_claim=False), 'RBAC verb "claim"', id="rbac"),
            pytest.param(
                create(spec=ClaimSpec("nic0", NODE, "alice")), "is not a PCI address", id="addr"
            ),
            pytest.param(create(device=None), 'no PCIDevice "titan-000003000"', id="missing"),
            pytest.param(
                create(claim_name="nic", device=None), 'claim name "nic" must be', id="name"
            ),
            pytest.param(
                create(spec=ClaimSpec("0000:03:00.1", NODE, "alice")),
                'which is at "0000:03:00.0"',
                id="address-mismatch",
            ),
            pytest.param(
                create(spec=ClaimSpec(ADDRESS, "other", "alice")),
                'which is on node "titan"',
                id="node-mismatch",
            ),
            pytest.param(
                create(
                    device=DeviceFacts(
                        name=NAME,
                        address=ADDRESS,
                        node_name=NODE,
                        iommu_group="7",
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
                        name=NAME, address=ADDRESS, node_name=NODE, iommu_group="1", class_id="0604"
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
                            iommu_group="7",
                            class_id="0c03",
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
                            iommu_group="7",
                            class_id="0604",
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
        verdict = review_create(request_, RuleSettings())
        if fragment is None:
            assert verdict.allowed, verdict.message
        else:
            assert not verdict.allowed
            assert fragment in verdict.message

    def test_no_iommu_allowed_when_configured(self):
        """With allow_no_iommu a device without an IOMMU group is admitted."""
        request = create(device=DeviceFacts(name=NAME, address=ADDRESS, node_name=NODE))
        assert review_create(request, RuleSettings(allow_no_iommu=True)).allowed


class TestUserNameToSet:
    """The mutating webhook fills an empty userName and leaves a given one alone."""

    def test_empty_is_filled(self):
        """An empty userName becomes the requesting user."""
        assert user_name_to_set(ClaimSpec(ADDRESS, NODE), "bob") == "bob"

    def test_given_is_kept(self):
        """A given userName is not patched (the validating webhook judges it)."""
        assert user_name_to_set(SPEC, "bob") is None


class TestReviewUpdate:
    """The spec cannot change after creation."""

    def test_same_spec(self):
        """An update that keeps the spec is admitted."""
        assert review_update(SPEC, SPEC).allowed

    def test_changed_field_named(self):
        """A changed field is named with both values."""
        verdict = review_update(
            SPEC, ClaimSpec(ADDRESS, NODE, "alice", disable_resource_pooling=True)
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
