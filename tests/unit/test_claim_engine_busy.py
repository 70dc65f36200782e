"""The claim engine on an in-memory host: busy devices never block it, and nothing is lost."""

from __future__ import annotations

import errno

from fakeclaims import FakeHost, a, device
from pcicore.claim import ClaimPhase, Reason
from pcicore.device import DriverName
from pcicore.engine import ClaimRequest, until_settled
from pcicore.ledger import Ledger
from pcicore.policy import GroupPolicy

NIC = "0000:03:00.0"
GPU = "0000:01:00.0"
AUDIO = "0000:01:00.1"


def host() -> FakeHost:
    return FakeHost(
        device(NIC, "igb", 5),
        device(GPU, "nouveau", 1, 0x030000),
        device(AUDIO, "snd_hda_intel", 1, 0x040300),
    )


class TestBusyDevices:
    """A busy device gives a time to come back; the engine itself never sleeps."""

    def test_engine_returns_at_once_with_the_backoff_of_a_busy_device(self):
        """Unbind answers EBUSY: Waiting, DeviceBusy, retry_after 0.5 s, and no sleep."""
        fake = host()
        fake.fail(NIC, "unbind", errno.EBUSY)
        (outcome,) = fake.engine().bind(ClaimRequest(a(NIC)))
        assert (outcome.state.phase, outcome.state.reason) == (
            ClaimPhase.WAITING,
            Reason.DEVICE_BUSY,
        )
        assert outcome.retry_after == 0.5
        assert "retry 1 of 3" in outcome.state.message
        assert fake.slept == []
        assert fake.driver(NIC) == "igb"  # not half-moved: still on its driver
        assert fake.ledger.claims.keys() == {a(NIC)}  # recorded, so a restart resumes it

    def test_one_shot_caller_waits_the_backoffs_then_gets_the_bound_device(self):
        """`until_settled` sleeps 0.5 s then 1 s on the clock port, and the bind completes."""
        fake = host()
        fake.fail(NIC, "unbind", errno.EBUSY, times=2)
        engine = fake.engine()
        (outcome,) = until_settled(lambda: engine.bind(ClaimRequest(a(NIC))), fake)
        assert outcome.bound
        assert fake.slept == [0.5, 1.0]

    def test_busy_device_that_never_frees_is_rolled_back_after_the_last_attempt(self):
        """Four EBUSY answers to unbind: the claim is dropped and the NIC stays on igb."""
        fake = host()
        fake.fail(NIC, "unbind", errno.EBUSY, times=10)
        engine = fake.engine(max_attempts=4)
        (outcome,) = until_settled(lambda: engine.bind(ClaimRequest(a(NIC))), fake)
        assert not outcome.bound
        assert outcome.retry_after is None
        assert fake.driver(NIC) == "igb"
        assert fake.ledger == Ledger()
        assert fake.slept == [0.5, 1.0, 2.0]

    def test_group_member_busy_on_release_is_returned_by_the_next_release(self):
        """The audio function is busy leaving vfio-pci: a second release returns it too.

        The claim is already gone from the ledger after the first release; without resuming
        the waiting return, the audio function would stay on vfio-pci with no claim.
        """
        fake = host()
        engine = fake.engine()
        engine.bind(ClaimRequest(a(GPU), GroupPolicy.GROUP))
        fake.fail(AUDIO, "unbind", errno.EBUSY)
        first = engine.release(a(GPU))
        assert [o.retry_after for o in first] == [None, 0.5]
        assert fake.ledger.originals == {a(AUDIO): DriverName("snd_hda_intel")}
        fake.time += 0.5
        second = engine.release(a(GPU))
        assert all(o.returned for o in second)
        assert (fake.driver(GPU), fake.driver(AUDIO)) == ("nouveau", "snd_hda_intel")
        assert fake.ledger == Ledger()
