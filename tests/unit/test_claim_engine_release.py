"""`ClaimEngine.release` on an in-memory host: what it returns, and what it leaves alone."""

from __future__ import annotations

import errno

from fakeclaims import AUDIO, GPU, NIC, OTHER_NIC, FakeHost, a, device
from fakeclaims import two_nics_and_a_gpu as host
from pcicore.claim import ClaimPhase, Reason
from pcicore.device import DriverName
from pcicore.engine import ClaimRequest
from pcicore.errors import ClaimRefusedError
from pcicore.ledger import ClaimRecord, Ledger
from pcicore.policy import GroupPolicy


def test_releasing_a_device_never_claimed_says_so_and_touches_nothing():
    """One settled outcome for that address, 'not claimed'; no write, other claims kept."""
    fake = host()
    engine = fake.engine()
    engine.bind(ClaimRequest(a(OTHER_NIC)))
    writes = list(fake.writes)
    ledger = fake.ledger
    (outcome,) = engine.release(a(NIC))
    assert outcome.address == a(NIC)
    assert (outcome.state.phase, outcome.state.reason) == (ClaimPhase.RETURNED, Reason.RETURNED)
    assert "not claimed" in outcome.state.message
    assert fake.writes == writes
    assert fake.ledger == ledger
    assert fake.driver(OTHER_NIC) == "vfio-pci"


def test_device_whose_claim_is_gone_but_original_is_recorded_is_returned():
    """A return that failed after its claim was dropped (only the original is left) is retried.

    Forgetting such a device would leave it on vfio-pci with nothing recording where it
    belongs.
    """
    fake = host()
    fake.ledger = Ledger(originals={a(NIC): DriverName("igb")})
    fake._set(a(NIC), DriverName("vfio-pci"))
    (outcome,) = fake.engine().release(a(NIC))
    assert outcome.state.phase is ClaimPhase.RETURNED
    assert fake.driver(NIC) == "igb"
    assert fake.ledger == Ledger()


def test_releasing_a_group_claim_returns_every_member_and_nothing_else():
    """GPU claimed with its audio function: both go back, the other claim stays bound."""
    fake = host()
    engine = fake.engine()
    engine.bind(ClaimRequest(a(GPU), GroupPolicy.GROUP))
    engine.bind(ClaimRequest(a(NIC)))
    outcomes = engine.release(a(GPU))
    assert {o.address for o in outcomes} == {a(GPU), a(AUDIO)}
    assert (fake.driver(GPU), fake.driver(AUDIO)) == ("nouveau", "snd_hda_intel")
    assert fake.driver(NIC) == "vfio-pci"
    assert fake.ledger.claims.keys() == {a(NIC)}
    assert fake.ledger.claims[a(NIC)] == ClaimRecord(a(NIC))


def test_strict_plan_waits_for_an_unclaimed_group_mate_and_not_for_a_claimed_one():
    """Strict policy: the GPU's plan waits for its audio function until that is claimed too."""
    engine = host().engine()
    alone = engine.plan(ClaimRequest(a(GPU))).group
    assert [d.address for d in alone.waiting_for] == [a(AUDIO)]
    together = engine.plan(ClaimRequest(a(GPU)), also_claimed=[a(AUDIO)]).group
    assert together.ready


def test_no_iommu_refusal_says_how_to_turn_the_iommu_on():
    """The one-line refusal names the firmware setting, the kernel parameter and the reboot."""
    fake = FakeHost(device(NIC, "igb", None))
    try:
        fake.engine().bind(ClaimRequest(a(NIC)))
    except ClaimRefusedError as err:
        message = str(err)
    else:
        raise AssertionError("a device without an IOMMU group was not refused")
    for words in ("VT-d or AMD-Vi", "intel_iommu=on or amd_iommu=on", "reboot the node"):
        assert words in message
    assert "\n" not in message


def test_group_rollback_says_which_member_failed_on_each_returned_one():
    """GROUP claim, the audio function refuses vfio-pci: the GPU goes back as RolledBack."""
    fake = host()
    fake.fail(AUDIO, "bind", errno.EINVAL, times=2)  # drivers_probe, then vfio-pci/bind
    outcomes = {o.address: o for o in fake.engine().bind(ClaimRequest(a(GPU), GroupPolicy.GROUP))}
    assert outcomes.keys() == {a(GPU), a(AUDIO)}
    gpu = outcomes[a(GPU)].state
    assert (gpu.phase, gpu.reason) == (ClaimPhase.RETURNED, Reason.ROLLED_BACK)
    assert f"rolled back because {a(AUDIO)} failed" in gpu.message
    assert "rolled back because" not in outcomes[a(AUDIO)].state.message  # its own failure
    assert (fake.driver(GPU), fake.driver(AUDIO)) == ("nouveau", "snd_hda_intel")
    assert fake.ledger == Ledger()


def test_group_rollback_whose_return_fails_keeps_the_original_and_reports_every_member():
    """The GPU's own driver refuses it back during the rollback: not forgotten, not hidden."""
    fake = host()
    fake.fail(GPU, "bind", 0)  # the probe onto vfio-pci succeeds ...
    fake.fail(GPU, "bind", errno.EINVAL, times=8)  # ... the return to nouveau does not
    fake.fail(AUDIO, "bind", errno.EINVAL, times=2)  # drivers_probe, then vfio-pci/bind
    outcomes = {o.address: o for o in fake.engine().bind(ClaimRequest(a(GPU), GroupPolicy.GROUP))}
    assert outcomes.keys() == {a(GPU), a(AUDIO)}
    assert not outcomes[a(GPU)].returned
    assert outcomes[a(GPU)].state.reason is not Reason.ROLLED_BACK
    assert fake.driver(GPU) is None  # off vfio-pci, refused by nouveau: the manual fix
    assert fake.ledger.originals.get(a(GPU)) == DriverName("nouveau")
    assert fake.ledger.claims == {}


def test_claim_without_a_recorded_original_is_dropped_and_its_device_left_where_it_is():
    """A claim record with no original driver (taken over, record lost): nothing is written.

    Guessing a driver would move a device a VM may use; the outcome says where it was left.
    """
    fake = FakeHost(device(NIC, "vfio-pci", 5))
    fake.ledger = Ledger(claims={a(NIC): ClaimRecord(a(NIC))})
    (outcome,) = fake.engine().release(a(NIC))
    state = outcome.state
    assert (state.phase, state.reason) == (ClaimPhase.RETURNED, Reason.RETURNED)
    assert state.message == f"no original driver recorded for {a(NIC)}; left on vfio-pci"
    assert state.original_driver == "vfio-pci"
    assert fake.writes == []
    assert fake.driver(NIC) == "vfio-pci"
    assert fake.ledger == Ledger()


def test_a_failed_return_says_it_is_the_return_that_failed():
    """EINVAL from igb on the way back: ReturnFailed (not BindFailed), the original kept."""
    fake = host()
    engine = fake.engine()
    engine.bind(ClaimRequest(a(NIC)))
    fake.fail(NIC, "bind", errno.EINVAL, times=2)  # drivers_probe, then igb/bind
    (returned,) = engine.release(a(NIC))
    assert (returned.state.phase, returned.state.reason) == (
        ClaimPhase.FAILED,
        Reason.RETURN_FAILED,
    )
    assert fake.ledger.originals == {a(NIC): DriverName("igb")}  # kept for the manual fix


def test_reconcile_binds_a_strict_group_whose_members_are_all_wanted_in_one_pass():
    """GPU and audio both claimed (strict): one reconcile counts each as claimed for the other."""
    fake = host()
    outcomes = fake.engine().reconcile([ClaimRequest(a(GPU)), ClaimRequest(a(AUDIO))])
    assert {o.address for o in outcomes if o.bound} == {a(GPU), a(AUDIO)}
    assert (fake.driver(GPU), fake.driver(AUDIO)) == ("vfio-pci", "vfio-pci")


def test_reconcile_of_a_vanished_device_reports_it_by_address():
    """A wanted device that is not on the bus: DeviceVanished for that address, with the why."""
    fake = host()
    gone = "0000:09:00.0"
    (outcome,) = fake.engine().reconcile([ClaimRequest(a(gone))])
    state = outcome.state
    assert (outcome.address, state.phase, state.reason) == (
        a(gone),
        ClaimPhase.FAILED,
        Reason.DEVICE_VANISHED,
    )
    assert gone in state.message
    assert fake.writes == []
