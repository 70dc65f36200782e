"""Every field of the claim reports: the generation, the time, the phase, the Event's words.

`test_claim_report.py` checks the decisions; these check the fields the agent writes that no
decision test reads (a stale ``observedGeneration`` or a missing phase is what a user or a
dashboard sees), and the cases where the original driver comes from the outcome, not the ledger.
"""

from __future__ import annotations

import attrs

from fakeclaims import NODE, a, claim
from pcicore.claim import ClaimPhase, ClaimState, Goal, Reason
from pcicore.claim_report import (
    INVALID_SPEC,
    READY,
    RELEASING,
    InvalidClaim,
    claim_name_problem,
    may_release,
    parse_claim,
    released_event,
    report_accepted,
    report_claim,
    report_invalid,
    report_release,
)
from pcicore.cluster_claim import ClaimStatus
from pcicore.conditions import ConditionStatus, find_condition
from pcicore.device import DriverName
from pcicore.engine import Outcome
from pcicore.ledger import ClaimRecord, Ledger
from pcicore.policy import GroupPolicy

NIC = "0000:03:00.0"
GPU = "0000:01:00.0"
AUDIO = "0000:01:00.1"
T0 = "2026-01-01T00:00:00Z"
T1 = "2026-01-01T00:01:00Z"


def outcome(address: str, phase: ClaimPhase, reason: Reason, original: str = "igb") -> Outcome:
    state = ClaimState(a(address), Goal.PASSTHROUGH, DriverName(original), phase, reason, "why")
    driver = DriverName("vfio-pci") if phase is ClaimPhase.BOUND else None
    return Outcome(state, driver)


def bound(address: str, original: str = "igb") -> Outcome:
    return outcome(address, ClaimPhase.BOUND, Reason.BOUND, original)


def ready(status: ClaimStatus):
    return find_condition(status.conditions, READY)


def generation_5(address: str = NIC):
    return attrs.evolve(claim(address), generation=5)


class TestNames:
    """The misnamed-claim message quotes the address as the claim wrote it, else the parsed one."""

    def test_parsed_address_is_shown_when_none_was_written(self):
        """No written form given: the kernel's form of the address."""
        problem = claim_name_problem("nic", NODE, a(NIC))
        assert problem is not None
        assert f'spec.address "{NIC}"' in problem

    def test_claim_shows_its_own_short_address(self):
        """A claim with ``03:00.0`` and a wrong name: the message quotes ``03:00.0``."""
        parsed = parse_claim(attrs.evolve(claim(NIC, name="nic"), address="03:00.0"))
        assert isinstance(parsed, InvalidClaim)
        assert 'spec.address "03:00.0"' in parsed.message


class TestReportFields:
    """The generation, time, phase and Event words of each report."""

    def test_bound_report_records_generation_time_phase_and_event_words(self):
        """Ready answers generation 5 at T0; phase Bound; the Event says what Ready says."""
        ledger = Ledger(claims={a(NIC): ClaimRecord(a(NIC))}, originals={a(NIC): "igb"})
        report = report_claim(generation_5(), a(NIC), {a(NIC): bound(NIC)}, ledger, T0)
        condition = ready(report.status)
        assert (condition.observed_generation, condition.last_transition_time) == (5, T0)
        assert report.phase == ClaimPhase.BOUND.value
        assert report.event is not None
        assert report.event.message == condition.message

    def test_claim_the_engine_did_not_reach_is_pending_and_says_so(self):
        """No outcome: Pending, InProgress, 'waiting for the claim engine', no original known."""
        report = report_claim(claim(NIC), a(NIC), {}, Ledger(), T0)
        assert report.phase == ClaimPhase.PENDING.value
        assert ready(report.status).message == "waiting for the claim engine to act on this device"
        assert report.status.kernel_driver_to_unbind == ""

    def test_group_with_a_failed_member_is_not_ready_although_its_own_device_is_bound(self):
        """GPU bound, its audio function failed: passthrough off, Ready False."""
        ledger = Ledger(
            claims={
                a(GPU): ClaimRecord(a(GPU), GroupPolicy.GROUP),
                a(AUDIO): ClaimRecord(a(AUDIO), GroupPolicy.GROUP, claimed_with=a(GPU)),
            }
        )
        outcomes = {
            a(GPU): bound(GPU, "nouveau"),
            a(AUDIO): outcome(AUDIO, ClaimPhase.FAILED, Reason.BIND_FAILED, "snd_hda_intel"),
        }
        report = report_claim(claim(GPU), a(GPU), outcomes, ledger, T0)
        assert not report.status.passthrough_enabled
        assert ready(report.status).status is ConditionStatus.FALSE

    def test_original_driver_comes_from_the_outcome_when_the_ledger_has_none(self):
        """The ledger forgot it (returned meanwhile): the outcome's original is written."""
        report = report_claim(claim(NIC), a(NIC), {a(NIC): bound(NIC, "igb")}, Ledger(), T0)
        assert report.status.kernel_driver_to_unbind == "igb"

    def test_ledger_original_wins_over_the_outcome(self):
        """Both known: the ledger's record is the one written."""
        ledger = Ledger(claims={a(NIC): ClaimRecord(a(NIC))}, originals={a(NIC): "ixgbe"})
        report = report_claim(claim(NIC), a(NIC), {a(NIC): bound(NIC, "igb")}, ledger, T0)
        assert report.status.kernel_driver_to_unbind == "ixgbe"

    def test_invalid_claim_report_fields(self):
        """Ready False at T0, passthrough turned off, phase InvalidSpec."""
        was_on = attrs.evolve(generation_5(), status=ClaimStatus(passthrough_enabled=True))
        report = report_invalid(was_on, InvalidClaim("fix it"), T0)
        condition = ready(report.status)
        assert (condition.status, condition.last_transition_time) == (ConditionStatus.FALSE, T0)
        assert condition.observed_generation == 5
        assert report.status.passthrough_enabled is False
        assert report.phase == INVALID_SPEC

    def test_accepted_claim_report_fields(self):
        """The node and the address named, at T0, phase Pending."""
        report = report_accepted(claim(NIC), a(NIC), T0)
        assert report is not None
        condition = ready(report.status)
        assert condition.message == f"the agent on node {NODE} is moving {NIC} to vfio-pci"
        assert condition.last_transition_time == T0
        assert report.phase == ClaimPhase.PENDING.value


class TestRelease:
    """A deleted claim whose device is not back, and the Event once it is."""

    def test_failed_return_report_fields(self):
        """Ready False with the failure's words at T0, passthrough off, Releasing, an Event."""
        was_on = attrs.evolve(claim(NIC), status=ClaimStatus(passthrough_enabled=True))
        failed = Outcome(
            ClaimState(
                a(NIC),
                Goal.HOST,
                DriverName("igb"),
                ClaimPhase.FAILED,
                Reason.RETURN_FAILED,
                "could not return it",
            ),
            None,
        )
        report = report_release(was_on, failed, T0)
        assert report is not None
        condition = ready(report.status)
        assert (condition.status, condition.message, condition.last_transition_time) == (
            ConditionStatus.FALSE,
            "could not return it",
            T0,
        )
        assert report.status.passthrough_enabled is False
        assert (report.changed, report.phase) == (True, RELEASING)
        assert report.event is not None
        assert report.event.message == "could not return it"

    def test_released_event_words(self):
        """Returned, the address back on its driver, not a warning."""
        event = released_event(a(NIC))
        assert event.message == f"{NIC} is back on its original driver; the claim is released"
        assert event.warning is False

    def test_unreadable_group_member_does_not_hide_the_next_one(self):
        """Members 'garbage' then the audio function, still recorded: the claim may not go."""
        deleted = attrs.evolve(claim(GPU), status=ClaimStatus(group_members=("garbage", AUDIO)))
        ledger = Ledger(originals={a(AUDIO): DriverName("snd_hda_intel")})
        assert not may_release(deleted, a(GPU), ledger)
