"""The wire form of a ResourceClaim as the DRA plugin reads it (pcioperator.wire.resourceclaim)."""

from __future__ import annotations

import pytest

from pcicore.dra import DRIVER_NAME
from pcicore.dra_prepare import AllocationResult, InvalidClaimReferenceError
from pcicore.errors import DraPrepareError
from pcioperator.wire.resourceclaim import claim_allocation


def claim(**status) -> dict:
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {
            "name": "vm-gpu",
            "namespace": "vms",
            "uid": "5c1e0a7e-1d2b-4c3d-9e8f-0a1b2c3d4e5f",
            "annotations": {"resource.kubernetes.io/pod-claim-name": "gpu"},
        },
        "spec": {"devices": {"requests": [{"name": "gpu"}]}},
        "status": status,
    }


class TestClaimAllocation:
    """metadata and status.allocation in, a ClaimAllocation out; anything else refused."""

    def test_an_allocated_claim_reads_every_result(self):
        """Results of every driver are read; adminAccess is kept; the pod's name for it too."""
        found = claim_allocation(
            claim(
                allocation={
                    "devices": {
                        "results": [
                            {"request": "gpu", "driver": DRIVER_NAME, "pool": "n1",
                             "device": "pci-0000-01-00-0"},
                            {"request": "gpu", "driver": "x.example.com", "pool": "p",
                             "device": "d", "adminAccess": True},
                        ]
                    }
                }
            )
        )  # fmt: skip
        assert str(found.ref) == "vms/vm-gpu"
        assert found.ref.uid == "5c1e0a7e-1d2b-4c3d-9e8f-0a1b2c3d4e5f"
        assert found.pod_claim_name == "gpu"
        assert found.results == (
            AllocationResult("gpu", DRIVER_NAME, "n1", "pci-0000-01-00-0"),
            AllocationResult("gpu", "x.example.com", "p", "d", admin_access=True),
        )

    def test_no_allocation_reads_as_none(self):
        """A claim the scheduler has not allocated: results None."""
        assert claim_allocation(claim()).results is None

    def test_a_result_missing_a_field_is_refused_naming_it(self):
        """The field's path is in the message."""
        bad = claim(allocation={"devices": {"results": [{"request": "gpu", "driver": "d"}]}})
        with pytest.raises(DraPrepareError, match=r"results\[0\]\.pool"):
            claim_allocation(bad)

    def test_a_hostile_uid_is_refused(self):
        """The uid becomes a file name: checked on the way in."""
        bad = claim()
        bad["metadata"]["uid"] = "../x"
        with pytest.raises(InvalidClaimReferenceError):
            claim_allocation(bad)
