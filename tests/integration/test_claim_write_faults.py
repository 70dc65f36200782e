"""Faults injected into the writes of a claim's life: each ends with nothing half-moved.

The fake kernel answers one write with an errno (once or always), or the claim state file
cannot be written. The tests assert on the host afterwards: the device's driver, its
``driver_override``, and the recorded claims.
"""

from __future__ import annotations

import errno

import pytest

from fakesys.hosts import FREE_NIC, STATE, workstation
from pcicore.address import PciAddress
from pcicore.claim import Reason
from pcicore.engine import ClaimRequest, until_settled
from pcicore.errors import ClaimStateError
from pcicore.ledger import Ledger

NIC = PciAddress.parse(FREE_NIC)


class TestOverrideFaults:
    """``driver_override`` refused or busy."""

    def test_override_refused_rolls_back_to_the_original_driver(self, fs):
        """EINVAL on ``driver_override``: the NIC goes back to igb, no override, no claim."""
        host = workstation(fs)
        host.kernel.fail(FREE_NIC, "override", errno.EINVAL, times=1)
        (outcome,) = host.engine().bind(ClaimRequest(NIC))
        assert not outcome.bound
        assert outcome.state.reason is Reason.ROLLED_BACK
        assert host.driver(FREE_NIC) == "igb"
        assert host.kernel.override_of(FREE_NIC) is None
        assert host.state.load() == Ledger()

    def test_override_busy_once_is_retried_until_bound(self, fs):
        """EBUSY once on ``driver_override``: retried after the backoff, then bound."""
        host = workstation(fs)
        host.kernel.fail(FREE_NIC, "override", errno.EBUSY, times=1)
        engine = host.engine()
        (waiting,) = engine.bind(ClaimRequest(NIC))
        assert waiting.retry_after == 0.5  # the engine never sleeps: it says when to look again
        (outcome,) = until_settled(lambda: engine.bind(ClaimRequest(NIC)), host.clock)
        assert outcome.bound
        assert host.driver(FREE_NIC) == "vfio-pci"
        assert host.clock.slept == [0.5]


class TestUnbindRace:
    """An unbind that races another change."""

    def test_unbind_answering_enodev_once_is_retried_until_bound(self, fs):
        """ENODEV once from ``driver/unbind`` is a race, not a refusal: the bind completes."""
        host = workstation(fs)
        host.kernel.fail(FREE_NIC, "unbind", errno.ENODEV, times=1)
        engine = host.engine()
        (outcome,) = until_settled(lambda: engine.bind(ClaimRequest(NIC)), host.clock)
        assert outcome.bound
        assert host.driver(FREE_NIC) == "vfio-pci"
        assert NIC in host.state.load().claims


class TestStateFileFaults:
    """The claim is recorded before anything moves; if it cannot be, nothing moves."""

    def test_unwritable_state_file_refuses_the_bind_before_any_kernel_write(self, fs):
        """A file where the state folder should be: ClaimStateError, and igb keeps the NIC."""
        host = workstation(fs)
        fs.create_file(STATE.parent)  # /var/lib/pcidevices is a file: no folder can be made
        with pytest.raises(ClaimStateError) as caught:
            host.engine().bind(ClaimRequest(NIC))
        assert str(STATE) in str(caught.value)
        assert str(caught.value).endswith("; run as root or pass a writable path with --state-file")
        assert host.kernel.writes == []
        assert host.driver(FREE_NIC) == "igb"
