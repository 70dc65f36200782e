"""What `ClaimEngine` reports and leaves behind on the paths its other tests pass by.

A rollback that starts at once, a drive that runs out of steps, a device unplugged mid-call,
a return still pending when another claim is released, a refusal of a claim that was bound:
each outcome must name the right device, goal and driver, and the host and ledger must be left
as the outcome says. On the in-memory `FakeHost`; assertions are on state, not on calls.
"""

from __future__ import annotations

import errno

import pytest

from fakeclaims import AUDIO, GPU, NIC, FakeHost, a, device
from fakeclaims import two_nics_and_a_gpu as host
from pcicore.claim import ClaimPhase, Goal, Probe, Reason, SetOverride, Unbind
from pcicore.device import DriverName
from pcicore.engine import ClaimRequest, until_settled
from pcicore.errors import ClaimRefusedError, RefusalReason
from pcicore.ledger import ClaimRecord, Ledger
from pcicore.policy import GroupPolicy
from pcicore.protection import DenyList, HostProtection


def denying(*addresses: str) -> HostProtection:
    return HostProtection(DenyList(addresses=frozenset(a(x) for x in addresses)))


class TestBindOutcomes:
    """`bind` and `plan`: the device, goal and driver each outcome names."""

    def test_bound_device_reports_vfio_pci_as_its_driver(self):
        """The outcome's driver is what the device is on after the bind, not left empty."""
        fake = host()
        (outcome,) = fake.engine().bind(ClaimRequest(a(NIC)))
        assert outcome.bound
        assert outcome.driver == "vfio-pci"
        assert outcome.state.goal is Goal.PASSTHROUGH

    def test_plan_names_the_device_in_each_write(self):
        """The dry-run plan writes to the claimed device's own files, in order."""
        fake = host()
        plan = fake.engine().plan(ClaimRequest(a(NIC)))
        assert plan.actions == (
            (
                a(NIC),
                (
                    Unbind(a(NIC), DriverName("igb")),
                    SetOverride(a(NIC), DriverName("vfio-pci")),
                    Probe(a(NIC)),
                ),
            ),
        )
        assert fake.writes == []

    def test_group_waiting_for_a_mate_is_a_passthrough_outcome(self):
        """Strict claim on the GPU alone: Waiting, GroupIncomplete, towards vfio-pci."""
        (outcome,) = host().engine().bind(ClaimRequest(a(GPU)))
        assert (outcome.address, outcome.state.phase, outcome.state.reason) == (
            a(GPU),
            ClaimPhase.WAITING,
            Reason.GROUP_INCOMPLETE,
        )
        assert outcome.state.goal is Goal.PASSTHROUGH

    def test_driver_bound_now_wins_over_the_original_another_controller_recorded(self):
        """NIC on igb, Harvester's claim says e1000e: igb is recorded and the NIC goes back to it.

        The recorded original only matters for a device already on vfio-pci (taken over).
        """
        fake = host()
        engine = fake.engine()
        engine.bind(ClaimRequest(a(NIC), recorded_original="e1000e"))
        assert fake.ledger.originals == {a(NIC): DriverName("igb")}
        engine.release(a(NIC))
        assert fake.driver(NIC) == "igb"

    def test_busy_device_reports_the_driver_it_is_still_on(self):
        """Unbind answers EBUSY: the waiting outcome says the NIC is still on igb."""
        fake = host()
        fake.fail(NIC, "unbind", errno.EBUSY)
        (outcome,) = fake.engine().bind(ClaimRequest(a(NIC)))
        assert outcome.retry_after is not None
        assert outcome.driver == "igb"
        assert fake.driver(NIC) == "igb"

    def test_device_unplugged_as_its_backoff_starts_is_reported_without_a_driver(self):
        """The NIC is busy, then gone before the engine looks again: no crash, no driver."""

        class UnplugsOnThirdLook(FakeHost):
            looks = 0

            def observe(self, address):
                self.looks += 1
                if self.looks == 3:  # the look after the EBUSY answer's Wait
                    self.unplug(NIC)
                return super().observe(address)

        fake = UnplugsOnThirdLook(device(NIC, "igb", 5))
        fake.fail(NIC, "unbind", errno.EBUSY)
        (outcome,) = fake.engine().bind(ClaimRequest(a(NIC)))
        assert outcome.retry_after is not None
        assert outcome.driver is None


class TestHeldElsewhere:
    """A device the DRA plugin holds on vfio-pci is refused, naming the holder and the way out."""

    def test_bind_of_a_group_whose_member_is_held_names_that_member(self):
        """GPU claimed as a group, its audio function held: refused for the audio function."""
        fake = host()
        engine = fake.engine(held_elsewhere={a(AUDIO): "ResourceClaim vms/audio (DRA)"})
        with pytest.raises(ClaimRefusedError) as caught:
            engine.bind(ClaimRequest(a(GPU), GroupPolicy.GROUP))
        assert caught.value.address == a(AUDIO)
        assert caught.value.reason is RefusalReason.HELD_ELSEWHERE
        assert str(caught.value) == (
            f"{AUDIO} is held on vfio-pci by ResourceClaim vms/audio (DRA); delete the pod "
            "using it (its ResourceClaim is then released) and this claim proceeds"
        )
        assert fake.writes == []
        assert fake.ledger == Ledger()


class TestReconcileOutcomes:
    """`reconcile`: one settled outcome per wanted device."""

    def test_strict_group_wanted_whole_reports_no_member_as_waiting(self):
        """GPU and audio wanted in one pass: no outcome says the GPU waits for its mate.

        The agent writes each claim's status from its outcomes; a GroupIncomplete outcome for
        a GPU whose audio function is claimed in the same pass would be a false report.
        """
        fake = host()
        outcomes = fake.engine().reconcile([ClaimRequest(a(GPU)), ClaimRequest(a(AUDIO))])
        assert {o.address for o in outcomes} == {a(GPU), a(AUDIO)}
        assert all(o.bound for o in outcomes)

    def test_vanished_wanted_device_is_a_failed_passthrough(self):
        """A wanted device not on the bus: Failed, DeviceVanished, towards vfio-pci."""
        gone = "0000:09:00.0"
        (outcome,) = host().engine().reconcile([ClaimRequest(a(gone))])
        assert (outcome.state.reason, outcome.state.goal) == (
            Reason.DEVICE_VANISHED,
            Goal.PASSTHROUGH,
        )


class TestRollbackWithoutWaiting:
    """A rollback needs no backoff: one `bind` call takes the device back."""

    def test_driver_that_accepts_the_bind_but_does_not_drive_is_rolled_back_in_the_same_call(self):
        """vfio-pci takes the NIC's bind without driving it: back on igb before bind returns.

        Stopping at the rollback's turn would leave the NIC unbound, its override on vfio-pci,
        until someone called again.
        """
        fake = host()
        fake.does_not_drive(NIC, "vfio-pci")
        (outcome,) = fake.engine().bind(ClaimRequest(a(NIC)))
        assert outcome.retry_after is None
        assert (outcome.state.phase, outcome.state.reason) == (
            ClaimPhase.RETURNED,
            Reason.ROLLED_BACK,
        )
        assert "accepted the bind but does not drive it" in outcome.state.message
        assert fake.driver(NIC) == "igb"
        assert fake.overrides.get(a(NIC)) is None
        assert fake.ledger == Ledger()


class TestStepLimit:
    """A device that does not settle within ``max_steps`` fails, saying so, in either direction."""

    def test_bind_that_runs_out_of_steps_fails_as_a_bind(self):
        """Two steps (unbind, override) are not enough: BindFailed, naming the limit."""
        fake = host()
        (outcome,) = fake.engine(max_steps=2).bind(ClaimRequest(a(NIC)))
        state = outcome.state
        assert (outcome.address, state.phase, state.reason) == (
            a(NIC),
            ClaimPhase.FAILED,
            Reason.BIND_FAILED,
        )
        assert state.message.startswith(f"{NIC} did not settle after 2 steps: ")
        assert state.original_driver == "igb"
        assert outcome.driver is None  # unbound when the steps ran out
        assert fake.ledger.originals == {a(NIC): DriverName("igb")}  # kept to return it

    def test_return_that_runs_out_of_steps_fails_as_a_return(self):
        """One step (the unbind from vfio-pci) is not enough: ReturnFailed, naming the limit."""
        fake = host()
        fake.engine().bind(ClaimRequest(a(NIC)))
        (outcome,) = fake.engine(max_steps=1).release(a(NIC))
        state = outcome.state
        assert (state.phase, state.reason, state.goal) == (
            ClaimPhase.FAILED,
            Reason.RETURN_FAILED,
            Goal.HOST,
        )
        assert state.message.startswith(f"{NIC} did not settle after 1 steps: ")
        assert fake.ledger.originals == {a(NIC): DriverName("igb")}

    def test_one_shot_caller_stops_after_64_rounds_of_a_device_that_stays_busy(self):
        """`until_settled` does not wait for ever: 64 backoffs, then the waiting outcome."""
        fake = host()
        fake.fail(NIC, "unbind", errno.EBUSY, times=1000)
        engine = fake.engine(max_attempts=1000)
        (outcome,) = until_settled(lambda: engine.bind(ClaimRequest(a(NIC))), fake)
        assert outcome.state.phase is ClaimPhase.WAITING
        assert len(fake.slept) == 64
        assert fake.driver(NIC) == "igb"


class TestReleaseOutcomes:
    """`release` of unplugged, unrecorded and unclaimed devices."""

    def test_release_of_a_never_claimed_device_is_a_return(self):
        """The 'not claimed' outcome is towards the host."""
        (outcome,) = host().engine().release(a(NIC))
        assert outcome.state.goal is Goal.HOST
        assert outcome.address == a(NIC)

    def test_claimed_device_unplugged_before_its_release_is_returned_as_vanished(self):
        """Nothing to bind back: Returned, DeviceVanished, no driver; its records dropped."""
        fake = host()
        engine = fake.engine()
        engine.bind(ClaimRequest(a(NIC)))
        fake.unplug(NIC)
        (outcome,) = engine.release(a(NIC))
        assert (outcome.state.phase, outcome.state.reason) == (
            ClaimPhase.RETURNED,
            Reason.DEVICE_VANISHED,
        )
        assert outcome.driver is None
        assert fake.ledger == Ledger()

    def test_unplugged_device_with_no_recorded_original_is_left_on_no_driver(self):
        """Claim record only, device gone: the outcome says so instead of failing."""
        fake = host()
        fake.unplug(NIC)
        fake.ledger = Ledger(claims={a(NIC): ClaimRecord(a(NIC))})
        (outcome,) = fake.engine().release(a(NIC))
        state = outcome.state
        assert state.message == f"no original driver recorded for {a(NIC)}; left on no driver"
        assert (outcome.address, state.goal, outcome.driver) == (a(NIC), Goal.HOST, None)
        assert fake.ledger == Ledger()

    def test_device_with_no_recorded_original_reports_the_driver_it_was_left_on(self):
        """Taken over on vfio-pci with no original: the outcome names vfio-pci as its driver."""
        fake = FakeHost(device(NIC, "vfio-pci", 5))
        fake.ledger = Ledger(claims={a(NIC): ClaimRecord(a(NIC))})
        (outcome,) = fake.engine().release(a(NIC))
        assert (outcome.address, outcome.state.goal, outcome.driver) == (
            a(NIC),
            Goal.HOST,
            "vfio-pci",
        )


class TestPendingReturns:
    """Returns that waited on a busy device resume on the next `release`, and only those."""

    @staticmethod
    def gpu_return_waiting(fake: FakeHost):
        """Group claim on the GPU released while the GPU is busy: its return waits."""
        engine = fake.engine()
        engine.bind(ClaimRequest(a(GPU), GroupPolicy.GROUP))
        fake.fail(GPU, "unbind", errno.EBUSY)
        outcomes = {o.address: o for o in engine.release(a(GPU))}
        assert outcomes[a(GPU)].retry_after is not None
        assert fake.driver(AUDIO) == "snd_hda_intel"
        return engine

    def test_claim_made_again_while_its_return_waits_is_not_dropped_by_another_release(self):
        """GPU claimed again (waiting for its audio function): releasing the NIC leaves it.

        The GPU's old return is still pending, but the GPU is claimed now: releasing another
        device must neither drop that claim nor take the GPU back to nouveau.
        """
        fake = host()
        engine = self.gpu_return_waiting(fake)
        (waiting,) = engine.bind(ClaimRequest(a(GPU)))  # strict: waits for the audio function
        assert waiting.state.reason is Reason.GROUP_INCOMPLETE
        engine.bind(ClaimRequest(a(NIC)))
        outcomes = engine.release(a(NIC))
        assert [o.address for o in outcomes] == [a(NIC)]
        assert a(GPU) in fake.ledger.claims
        assert fake.driver(GPU) == "vfio-pci"
        assert fake.driver(NIC) == "igb"

    def test_release_of_an_unclaimed_device_resumes_the_pending_return_only(self):
        """Releasing the never-claimed NIC finishes the GPU's return; no outcome for the NIC."""
        fake = host()
        engine = self.gpu_return_waiting(fake)
        fake.time += 1.0  # the GPU's backoff is over
        outcomes = engine.release(a(NIC))
        assert [o.address for o in outcomes] == [a(GPU)]
        assert outcomes[0].returned
        assert fake.driver(GPU) == "nouveau"
        assert fake.ledger == Ledger()


class TestRefusedClaims:
    """A claim refused on reconcile: kept if it was bound, otherwise dropped and reported."""

    def test_bound_claim_refused_later_reports_its_device_as_still_on_vfio_pci(self):
        """NIC bound, then denied: Bound, DenyListed, driver vfio-pci, original igb, the why."""
        fake = host()
        fake.engine().bind(ClaimRequest(a(NIC)))
        (outcome,) = fake.engine(protection=denying(NIC)).reconcile([ClaimRequest(a(NIC))])
        state = outcome.state
        assert (state.phase, state.reason, state.goal) == (
            ClaimPhase.BOUND,
            Reason.DENY_LISTED,
            Goal.PASSTHROUGH,
        )
        assert outcome.driver == "vfio-pci"
        assert state.original_driver == "igb"
        assert state.message.startswith(f"refusing {a(NIC)}: it is on this node's deny list")
        assert "a VM may be using it" in state.message
        assert state.message.endswith("until this claim is deleted; it will not be bound again")
        assert fake.driver(NIC) == "vfio-pci"

    def test_new_claim_refused_is_a_failed_passthrough(self):
        """A denied NIC never bound: Failed, DenyListed, towards vfio-pci, nothing written."""
        fake = host()
        (outcome,) = fake.engine(protection=denying(NIC)).reconcile([ClaimRequest(a(NIC))])
        state = outcome.state
        assert (state.phase, state.reason, state.goal) == (
            ClaimPhase.FAILED,
            Reason.DENY_LISTED,
            Goal.PASSTHROUGH,
        )
        assert fake.writes == []

    @staticmethod
    def audio_group_claim(fake: FakeHost, originals: dict[str, str]) -> None:
        """A group claim rooted at the audio function that pulled in the GPU (sorted first)."""
        fake.ledger = Ledger(
            claims={
                a(AUDIO): ClaimRecord(a(AUDIO), GroupPolicy.GROUP),
                a(GPU): ClaimRecord(a(GPU), GroupPolicy.GROUP, claimed_with=a(AUDIO)),
            },
            originals={a(k): DriverName(v) for k, v in originals.items()},
        )

    def test_refused_group_claim_returns_its_mate_as_returned_and_fails_its_own_device(self):
        """GPU half-moved to vfio-pci, audio function denied: GPU Returned, audio Failed."""
        fake = host()
        self.audio_group_claim(fake, {GPU: "nouveau", AUDIO: "snd_hda_intel"})
        fake._set(a(GPU), DriverName("vfio-pci"))
        outcomes = {
            o.address: o
            for o in fake.engine(protection=denying(AUDIO)).reconcile(
                [ClaimRequest(a(AUDIO), GroupPolicy.GROUP)]
            )
        }
        gpu, audio = outcomes[a(GPU)].state, outcomes[a(AUDIO)].state
        assert (gpu.phase, gpu.reason) == (ClaimPhase.RETURNED, Reason.RETURNED)
        assert (audio.phase, audio.reason) == (ClaimPhase.FAILED, Reason.DENY_LISTED)
        assert audio.message.startswith(f"refusing {a(AUDIO)}: it is on this node's deny list")
        assert (fake.driver(GPU), fake.driver(AUDIO)) == ("nouveau", "snd_hda_intel")
        assert fake.ledger == Ledger()

    def test_refused_group_claim_whose_mate_waits_to_go_back_reports_that_mate_once(self):
        """GPU's return busy (EBUSY from nouveau): one waiting outcome for it, not a second.

        Its original stays recorded with no claim, so it looks like an orphan to the same run;
        driving it again as one would give the device two outcomes in one reconcile.
        """
        fake = host()
        self.audio_group_claim(fake, {GPU: "nouveau", AUDIO: "snd_hda_intel"})
        fake._set(a(GPU), DriverName("vfio-pci"))
        fake.fail(GPU, "bind", errno.EBUSY)
        outcomes = fake.engine(protection=denying(AUDIO)).reconcile(
            [ClaimRequest(a(AUDIO), GroupPolicy.GROUP)]
        )
        assert [(o.address, o.state.phase, o.state.reason) for o in outcomes] == [
            (a(GPU), ClaimPhase.WAITING, Reason.DEVICE_BUSY),
            (a(AUDIO), ClaimPhase.FAILED, Reason.DENY_LISTED),
        ]
        assert fake.driver(GPU) is None
        assert fake.ledger == Ledger(originals={a(GPU): DriverName("nouveau")})

    def test_refused_group_claim_reports_its_device_when_a_mate_has_no_original(self):
        """The GPU has no recorded original: it is skipped, and the audio function still fails."""
        fake = host()
        self.audio_group_claim(fake, {AUDIO: "snd_hda_intel"})
        outcomes = fake.engine(protection=denying(AUDIO)).reconcile(
            [ClaimRequest(a(AUDIO), GroupPolicy.GROUP)]
        )
        assert [(o.address, o.state.reason) for o in outcomes] == [(a(AUDIO), Reason.DENY_LISTED)]
        assert fake.ledger.claims == {}
