"""Which claims' devices the claim engine may move to vfio-pci (`pcicore.claim_binding`)."""

from __future__ import annotations

import pytest

from pcicore.claim_binding import ClaimBinding, claim_binding, moves_driver


class TestClaimBinding:
    """The skip-vfio-binding annotation, read as Harvester's Go code reads a boolean."""

    @pytest.mark.parametrize("value", ["true", "True", "TRUE", "1", "t", " true "])
    def test_true_values_leave_the_driver_alone(self, value):
        """A claim marked to skip vfio binding is bound by someone else: we never move it."""
        binding = claim_binding(value)
        assert binding is ClaimBinding.EXTERNAL
        assert not moves_driver(binding)

    @pytest.mark.parametrize("value", [None, "", "false", "no", "yes", "0"])
    def test_other_values_are_ours_to_bind(self, value):
        """No annotation, or any value that is not true, is an ordinary vfio-pci claim."""
        binding = claim_binding(value)
        assert binding is ClaimBinding.VFIO
        assert moves_driver(binding)
