"""Which kernel answers the claim machine retries, and how many tries each goal gets.

Each test is named after the failure it prevents: a device handed back to the host (or left
half-moved) because a passing race was taken for a permanent refusal, or a return that fails
at once because the passthrough used up its attempts.
"""

from __future__ import annotations

import errno
import re

import attrs
import pytest

from pcicore.address import PciAddress
from pcicore.backoff import Backoff
from pcicore.claim import (
    BUSY_DEVICE_BACKOFF,
    BindDriver,
    ClaimMachine,
    ClaimPhase,
    ClaimState,
    Goal,
    Observation,
    Reason,
    Unbind,
    Wait,
)
from pcicore.device import DriverName, PciClass, PciDevice


def busy_backoff(max_attempts: int) -> Backoff:
    """The busy-device backoff (0.5 s, doubling, at most 8 s) with ``max_attempts`` tries."""
    return attrs.evolve(BUSY_DEVICE_BACKOFF, max_attempts=max_attempts)


ADDRESS = PciAddress.parse("0000:03:00.0")
IGB = DriverName("igb")
NOW = 100.0


def _seen(driver: str | None, override: str | None = None) -> Observation:
    device = PciDevice(
        address=ADDRESS,
        vendor_id=0x8086,
        device_id=0x1533,
        pci_class=PciClass(0x02, 0x00),
        driver=DriverName(driver) if driver else None,
    )
    return Observation(device=device, override=DriverName(override) if override else None)


def _state(goal: Goal = Goal.PASSTHROUGH, **kw) -> ClaimState:
    return attrs.evolve(ClaimMachine.start(ADDRESS, goal, IGB), **kw)


class TestRacingWritesAreRetried:
    """Answers that mean "the device changed under the write" are retried, not final."""

    @pytest.mark.parametrize(
        "error",
        [
            pytest.param(errno.ENODEV, id="ENODEV"),
            pytest.param(errno.ENXIO, id="ENXIO"),
            pytest.param(errno.EBUSY, id="EBUSY"),
            pytest.param(errno.EAGAIN, id="EAGAIN"),
        ],
    )
    @pytest.mark.parametrize("goal", list(Goal), ids=lambda g: g.value)
    def test_write_racing_another_change_is_retried_not_rolled_back(self, error, goal):
        """A write that raced (ENODEV: the driver had let go already) backs off, keeping its goal.

        The next observation decides; rolling back at once would undo a claim for nothing.
        """
        step = ClaimMachine(busy_backoff(5)).failed(_state(goal), error, "raced", NOW)
        assert step.state.goal is goal
        assert step.state.phase is ClaimPhase.WAITING
        assert step.state.reason is Reason.DEVICE_BUSY
        assert step.state.attempts == 1
        assert step.action == Wait(NOW + 0.5)

    @pytest.mark.parametrize(
        "error", [errno.EINVAL, errno.EIO, errno.EPERM, errno.ENOENT], ids=errno.errorcode.get
    )
    def test_refusal_that_will_not_change_is_not_retried(self, error):
        """EINVAL, EIO, EPERM, ENOENT roll a passthrough back on the first answer."""
        step = ClaimMachine(busy_backoff(5)).failed(_state(), error, "refused", NOW)
        assert step.state.goal is Goal.HOST
        assert step.state.rolled_back


class TestStillBoundAfterUnbind:
    """A driver that is still there after its unbind was written is a busy device."""

    @pytest.mark.parametrize("goal", list(Goal), ids=lambda g: g.value)
    def test_driver_still_bound_after_unbind_is_retried_as_busy(self, goal):
        """A driver that holds on for a moment (a slow remove) is waited for.

        Taking it for a permanent refusal would end the claim at once.
        """
        machine = ClaimMachine(busy_backoff(5))
        state = _state(goal, phase=ClaimPhase.UNBINDING)
        step = machine.step(state, _seen("e1000e"), NOW)
        assert step.state.goal is goal
        assert step.state.phase is ClaimPhase.WAITING
        assert step.state.reason is Reason.DEVICE_BUSY
        assert "still bound to e1000e after unbind" in step.state.message

    def test_driver_still_bound_after_every_retry_rolls_back(self):
        """The retries are bounded: the last one rolls the passthrough back."""
        machine = ClaimMachine(busy_backoff(3))
        state = _state(phase=ClaimPhase.UNBINDING, attempts=2)
        step = machine.step(state, _seen("igb"), NOW)
        assert step.state.goal is Goal.HOST
        assert step.state.reason is Reason.BIND_FAILED


class TestBackoffMustEnd:
    """A machine whose busy devices would be retried for ever."""

    def test_backoff_without_a_last_attempt_is_refused_saying_why(self):
        """The whole message: a busy device must roll back at some point."""
        message = "a claim's backoff needs max_attempts: a busy device must roll back"
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            ClaimMachine(attrs.evolve(BUSY_DEVICE_BACKOFF, max_attempts=None))


class TestBackoffEnds:
    """What a claim shows once its backoff has run out."""

    def test_claim_resumed_after_its_backoff_shows_no_backoff_running(self):
        """``retry_at`` is cleared once the wait is over: a backoff shows only while one runs.

        A stale time would tell whoever reads the state that the claim is still waiting.
        """
        machine = ClaimMachine(busy_backoff(5))
        waited = machine.failed(_state(phase=ClaimPhase.UNBINDING), errno.EBUSY, "busy", NOW)
        resumed = machine.step(waited.state, _seen("igb"), waited.action.until)
        assert resumed.action == Unbind(ADDRESS, IGB)
        assert resumed.state.retry_at is None


class TestRollbackGetsItsOwnAttempts:
    """Turning a failed passthrough into a return starts the attempt count again."""

    def test_rollback_resets_the_attempt_count(self):
        """The rolled-back state starts at zero attempts."""
        machine = ClaimMachine(busy_backoff(3))
        step = machine.failed(_state(attempts=2), errno.EBUSY, "busy", NOW)
        assert step.state.goal is Goal.HOST
        assert step.state.attempts == 0

    def test_return_after_a_busy_rollback_still_retries_a_busy_bind(self):
        """A passthrough that used up its tries on EBUSY leaves the return all of its own.

        Otherwise one EBUSY on the original driver's bind fails the return and leaves the
        device on no driver at all.
        """
        machine = ClaimMachine(busy_backoff(3))
        rolled = machine.failed(_state(attempts=2), errno.EBUSY, "busy", NOW).state
        binding = machine.step(rolled, _seen(None), NOW)
        assert binding.action == BindDriver(ADDRESS, IGB)
        step = machine.failed(binding.state, errno.EBUSY, "busy", NOW)
        assert step.state.phase is ClaimPhase.WAITING
        assert step.state.goal is Goal.HOST

    def test_settling_resets_the_attempt_count(self):
        """Bound after two busy answers: the next change of goal starts with every try."""
        machine = ClaimMachine(busy_backoff(3))
        step = machine.step(_state(attempts=2), _seen("vfio-pci"), NOW)
        assert step.state.phase is ClaimPhase.BOUND
        assert step.state.attempts == 0

    def test_unbind_after_rollback_names_the_driver_it_leaves(self):
        """The rolled-back return unbinds vfio-pci first (the device is never left there)."""
        machine = ClaimMachine(busy_backoff(2))
        rolled = machine.failed(_state(attempts=1), errno.EBUSY, "busy", NOW).state
        step = machine.step(rolled, _seen("vfio-pci", "vfio-pci"), NOW)
        assert step.action == Unbind(ADDRESS, DriverName("vfio-pci"))


class TestWhatTheStatusSays:
    """The messages a claim's condition shows while it retries or rolls back."""

    def test_busy_message_counts_retries_and_the_wait(self):
        """'retry 2 of 4 in 1.0s': the user sees how many tries are left and when the next is."""
        machine = ClaimMachine(busy_backoff(5))
        step = machine.failed(_state(attempts=1), errno.EBUSY, "EBUSY from bind", NOW)
        assert step.state.message == (
            "0000:03:00.0 is busy (EBUSY from bind); retry 2 of 4 in 1.0s"
        )

    def test_rollback_of_a_device_that_had_no_driver_says_so(self):
        """A device with no original driver goes back to 'no driver', and the message says it."""
        machine = ClaimMachine(busy_backoff(1))
        state = attrs.evolve(ClaimMachine.start(ADDRESS, Goal.PASSTHROUGH, None))
        step = machine.failed(state, errno.EINVAL, "invalid", NOW)
        assert "returning it to no driver." in step.state.message

    def test_rollback_from_the_bind_step_starts_the_return_from_the_beginning(self):
        """The rolled-back claim is Pending, so its first step binds the original driver.

        Keeping the Binding phase would read as "the original driver's bind did nothing" and
        fail the return before it was tried.
        """
        machine = ClaimMachine(busy_backoff(5))
        state = _state(phase=ClaimPhase.BINDING)
        rolled = machine.failed(state, errno.EINVAL, "invalid", NOW).state
        assert rolled.phase is ClaimPhase.PENDING
        step = machine.step(rolled, _seen(None), NOW)
        assert step.action == BindDriver(ADDRESS, IGB)

    def test_rollback_message_says_what_failed_where_it_goes_and_what_to_do(self):
        """The whole message of a rolled-back claim, as its condition shows it."""
        machine = ClaimMachine(busy_backoff(5))
        step = machine.failed(_state(), errno.EINVAL, "EINVAL from bind", NOW)
        assert step.state.message == (
            "could not bind 0000:03:00.0 to vfio-pci after 1 attempt(s): EINVAL from bind; "
            "returning it to igb. Stop whatever uses the device (or check dmesg), then claim "
            "it again"
        )

    def test_failed_return_message_names_the_driver_and_the_manual_fix(self):
        """The whole message of a return that cannot finish."""
        step = ClaimMachine().failed(_state(Goal.HOST), errno.EINVAL, "EINVAL from bind", NOW)
        assert step.state.message == (
            "could not return 0000:03:00.0 to igb: EINVAL from bind; bind it by hand (echo "
            "0000:03:00.0 > /sys/bus/pci/drivers/igb/bind) or reboot"
        )

    def test_failed_return_of_a_driverless_device_says_no_driver(self):
        """A device that had no driver: 'to no driver', not 'to None'."""
        state = ClaimMachine.start(ADDRESS, Goal.HOST, None)
        step = ClaimMachine().failed(state, errno.EINVAL, "EINVAL", NOW)
        assert step.state.message.startswith("could not return 0000:03:00.0 to no driver: ")

    @pytest.mark.parametrize(
        ("original", "message"),
        [
            pytest.param(IGB, "0000:03:00.0 is back on igb", id="igb"),
            pytest.param(None, "0000:03:00.0 is back on no driver", id="no-driver"),
        ],
    )
    def test_returned_message_names_where_the_device_is(self, original, message):
        """Returned says on which driver the device is now."""
        state = ClaimMachine.start(ADDRESS, Goal.HOST, original)
        step = ClaimMachine().step(state, _seen(original), NOW)
        assert step.state.phase is ClaimPhase.RETURNED
        assert step.state.message == message


class TestReturnSteps:
    """Steps of a return that the happy path does not reach."""

    def test_override_that_will_not_clear_fails_the_return_at_once(self):
        """``driver_override`` still set after clearing it: a refusal, not a busy device.

        The return fails with the manual fix instead of retrying a write that took no effect.
        """
        machine = ClaimMachine(busy_backoff(5))
        state = _state(Goal.HOST, phase=ClaimPhase.OVERRIDING)
        step = machine.step(state, _seen(None, "vfio-pci"), NOW)
        assert step.state.phase is ClaimPhase.FAILED
        assert step.state.reason is Reason.RETURN_FAILED
        assert step.state.message.startswith(
            "could not return 0000:03:00.0 to igb: driver_override could not be cleared; "
        )

    def test_returned_claim_starts_with_every_attempt_again(self):
        """Back on its driver after two busy answers: the count is reset for the next claim."""
        state = _state(Goal.HOST, phase=ClaimPhase.BINDING, attempts=2)
        step = ClaimMachine().step(state, _seen("igb"), NOW)
        assert step.state.phase is ClaimPhase.RETURNED
        assert step.state.attempts == 0

    def test_original_driver_that_accepts_the_bind_but_does_not_drive_fails_the_return(self):
        """The bind was written, no errno, and the device is still unbound: a refusal."""
        machine = ClaimMachine(busy_backoff(5))
        state = _state(Goal.HOST, phase=ClaimPhase.BINDING)
        step = machine.step(state, _seen(None), NOW)
        assert step.state.phase is ClaimPhase.FAILED
        assert step.state.message.startswith(
            "could not return 0000:03:00.0 to igb: igb accepted the bind but does not drive it; "
        )


class TestPassthroughSteps:
    """Writes towards vfio-pci that the kernel accepted without moving the device."""

    def test_override_that_vfio_pci_does_not_take_rolls_back_at_once(self):
        """``driver_override`` still not vfio-pci after writing it: a refusal, not a busy device.

        Retrying a write that took no effect only delays the rollback; the message says which
        write did nothing.
        """
        machine = ClaimMachine(busy_backoff(5))
        step = machine.step(_state(phase=ClaimPhase.OVERRIDING), _seen(None), NOW)
        assert step.state.goal is Goal.HOST
        assert step.state.reason is Reason.BIND_FAILED
        assert step.action == Wait(NOW)
        assert step.state.message == (
            "could not bind 0000:03:00.0 to vfio-pci after 1 attempt(s): driver_override did "
            "not take vfio-pci; returning it to igb. Stop whatever uses the device (or check "
            "dmesg), then claim it again"
        )

    def test_vfio_pci_that_accepts_the_bind_but_does_not_drive_rolls_back_at_once(self):
        """The bind was written, no errno, and the device is still unbound: roll back, say why."""
        machine = ClaimMachine(busy_backoff(5))
        state = _state(phase=ClaimPhase.BINDING)
        step = machine.step(state, _seen(None, "vfio-pci"), NOW)
        assert step.state.goal is Goal.HOST
        assert step.state.reason is Reason.BIND_FAILED
        assert step.state.message == (
            "could not bind 0000:03:00.0 to vfio-pci after 1 attempt(s): vfio-pci accepted the "
            "bind but does not drive it; returning it to igb. Stop whatever uses the device (or "
            "check dmesg), then claim it again"
        )


class TestSettledMessages:
    """What Bound and a missing module say."""

    def test_bound_claim_says_so_whatever_it_said_before(self):
        """After a busy spell, Bound replaces both the reason and the message."""
        state = _state(phase=ClaimPhase.PROBING, reason=Reason.DEVICE_BUSY, message="busy")
        step = ClaimMachine().step(state, _seen("vfio-pci", "vfio-pci"), NOW)
        assert step.state.reason is Reason.BOUND
        assert step.state.message == "0000:03:00.0 is bound to vfio-pci"

    def test_modules_still_missing_after_loading_names_the_fix(self):
        """The whole message when vfio-pci does not appear after the modules were loaded."""
        state = _state(phase=ClaimPhase.LOADING_MODULES)
        seen = attrs.evolve(_seen("igb"), modules_loaded=False)
        step = ClaimMachine().step(state, seen, NOW)
        assert step.state.message == (
            "vfio-pci is not available after loading vfio_pci and vfio_iommu_type1; install the "
            "kernel's vfio modules or enable the IOMMU (intel_iommu=on / amd_iommu=on)"
        )
