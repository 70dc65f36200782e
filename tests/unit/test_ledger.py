"""The ledger's groups: which claimed devices one claim made (`pcicore.ledger`)."""

from __future__ import annotations

from fakeclaims import a
from pcicore.ledger import ClaimRecord, Ledger
from pcicore.policy import GroupPolicy

GPU = a("0000:01:00.0")
AUDIO = a("0000:01:00.1")
NIC = a("0000:03:00.0")


def gpu_group_and_a_nic() -> Ledger:
    """The GPU claimed with policy group (pulling its audio function in), and a NIC alone."""
    return (
        Ledger()
        .claim(ClaimRecord(GPU, GroupPolicy.GROUP))
        .claim(ClaimRecord(AUDIO, GroupPolicy.GROUP, claimed_with=GPU))
        .claim(ClaimRecord(NIC))
    )


class TestGroupOf:
    """`Ledger.group_of`: the devices released, refused or rolled back together."""

    def test_from_the_claimed_device_the_group_is_it_and_what_it_pulled_in(self):
        """The GPU's group holds its audio function, not the NIC claimed on its own."""
        assert gpu_group_and_a_nic().group_of(GPU) == {GPU, AUDIO}

    def test_from_a_pulled_in_member_the_group_is_the_whole_claim(self):
        """Asked for the audio function, the group is the GPU's claim too, not the audio alone."""
        assert gpu_group_and_a_nic().group_of(AUDIO) == {GPU, AUDIO}

    def test_an_unclaimed_device_is_a_group_of_itself(self):
        """A device with no claim is its own group, whatever else is claimed."""
        other = a("0000:04:00.0")
        assert gpu_group_and_a_nic().group_of(other) == {other}
