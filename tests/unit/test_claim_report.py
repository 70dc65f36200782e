"""The claim controller's decisions, as pure functions: reports, finalizers, requeue, names."""

from __future__ import annotations

import attrs
import pytest

from fakeclaims import NODE, a, claim
from pcicore.claim import ClaimPhase, ClaimState, Goal, Reason
from pcicore.claim_report import (
    FINALIZER,
    READY,
    RECHECK_SETTLED,
    RETRY_UNSETTLED,
    InvalidClaim,
    claim_name_problem,
    may_release,
    parse_claim,
    report_accepted,
    report_claim,
    report_invalid,
    report_release,
    requeue_after,
    with_finalizer,
    without_finalizer,
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


def outcome(
    address: str,
    phase: ClaimPhase,
    reason: Reason,
    message: str = "",
    retry_after: float | None = None,
) -> Outcome:
    state = ClaimState(
        a(address), Goal.PASSTHROUGH, DriverName("igb"), phase, reason, message or reason.value
    )
    driver = DriverName("vfio-pci") if phase is ClaimPhase.BOUND else None
    return Outcome(state, driver, retry_after)


BOUND = outcome(NIC, ClaimPhase.BOUND, Reason.BOUND, f"{NIC} is bound to vfio-pci")
BUSY_1 = outcome(
    NIC, ClaimPhase.WAITING, Reason.DEVICE_BUSY, f"{NIC} is busy (EBUSY); retry 1 of 3 in 0.5s", 0.5
)
BUSY_2 = outcome(
    NIC, ClaimPhase.WAITING, Reason.DEVICE_BUSY, f"{NIC} is busy (EBUSY); retry 2 of 3 in 1.0s", 1.0
)
LEDGER = Ledger(claims={a(NIC): ClaimRecord(a(NIC))}, originals={a(NIC): DriverName("igb")})


def ready(status: ClaimStatus):
    return find_condition(status.conditions, READY)


class TestParseClaim:
    """A claim names a device only through a parsed address and the naming rule."""

    def test_well_formed_claim_names_its_device(self):
        """The address parses and the name is the PCIDevice's: the claim names that device."""
        assert parse_claim(claim(NIC)) == a(NIC)

    def test_unparsable_address_is_invalid_and_never_reaches_a_path(self):
        """A hostile address gives the parser's message, not a path join."""
        parsed = parse_claim(attrs.evolve(claim(NIC), address="../../../etc"))
        assert isinstance(parsed, InvalidClaim)
        assert "invalid PCI address '../../../etc'" in parsed.message

    def test_claim_named_after_another_device_is_invalid_and_names_the_right_name(self):
        """RBAC resourceNames rely on the name: a wrong one is refused with the expected name."""
        parsed = parse_claim(claim(NIC, name="titan-000001000"))
        assert isinstance(parsed, InvalidClaim)
        assert 'name the claim "titan-000003000"' in parsed.message

    def test_claim_name_rule_accepts_the_pcidevice_name(self):
        """The name ``<node>-<address without : and .>`` is right."""
        assert claim_name_problem("titan-000003000", NODE, a(NIC)) is None


class TestReports:
    """Outcome and ledger give the status, the Ready condition and the Event."""

    def test_new_claim_shows_in_progress_before_the_engine_acts(self):
        """A claim without Ready gets InProgress at once; one that has Ready gets nothing."""
        accepted = report_accepted(claim(NIC), a(NIC), T0)
        assert accepted is not None
        condition = ready(accepted.status)
        assert (condition.status, condition.reason) == (ConditionStatus.FALSE, "InProgress")
        assert accepted.event is None
        assert report_accepted(attrs.evolve(claim(NIC), status=accepted.status), a(NIC), T1) is None

    def test_bound_device_reports_ready_with_original_driver_and_a_normal_event(self):
        """Bound: Ready True, passthroughEnabled, kernelDriverToUnbind igb, Event BoundToVfio."""
        report = report_claim(claim(NIC), a(NIC), {a(NIC): BOUND}, LEDGER, T0)
        assert report.changed
        assert report.status.passthrough_enabled
        assert report.status.kernel_driver_to_unbind == "igb"
        assert ready(report.status).status is ConditionStatus.TRUE
        assert report.event is not None
        assert (report.event.reason, report.event.warning) == ("BoundToVfio", False)

    def test_unchanged_claim_needs_no_write_and_no_event(self):
        """Reporting the same outcome on the written status: nothing to write, no Event."""
        first = report_claim(claim(NIC), a(NIC), {a(NIC): BOUND}, LEDGER, T0)
        again = report_claim(
            attrs.evolve(claim(NIC), status=first.status), a(NIC), {a(NIC): BOUND}, LEDGER, T1
        )
        assert not again.changed
        assert again.event is None
        assert ready(again.status).last_transition_time == T0

    def test_busy_device_reports_device_busy_with_its_attempt_and_one_warning(self):
        """DeviceBusy counts attempts in the message; the second attempt rewrites, no new Event."""
        first = report_claim(claim(NIC), a(NIC), {a(NIC): BUSY_1}, LEDGER, T0)
        assert not first.status.passthrough_enabled
        assert ready(first.status).reason == "DeviceBusy"
        assert "retry 1 of 3" in ready(first.status).message
        assert first.event is not None
        assert first.event.warning
        second = report_claim(
            attrs.evolve(claim(NIC), status=first.status), a(NIC), {a(NIC): BUSY_2}, LEDGER, T1
        )
        assert second.changed
        assert "retry 2 of 3" in ready(second.status).message
        assert second.event is None

    def test_group_claim_reports_a_busy_member_not_its_own_bound_device(self):
        """The GPU is bound but its audio function is busy: the claim is DeviceBusy, not Ready."""
        ledger = Ledger(
            claims={
                a(GPU): ClaimRecord(a(GPU), GroupPolicy.GROUP),
                a(AUDIO): ClaimRecord(a(AUDIO), GroupPolicy.GROUP, claimed_with=a(GPU)),
            },
            originals={a(GPU): DriverName("nouveau"), a(AUDIO): DriverName("snd_hda_intel")},
        )
        outcomes = {
            a(GPU): outcome(GPU, ClaimPhase.BOUND, Reason.BOUND),
            a(AUDIO): outcome(AUDIO, ClaimPhase.WAITING, Reason.DEVICE_BUSY, f"{AUDIO} busy", 2.0),
        }
        report = report_claim(claim(GPU), a(GPU), outcomes, ledger, T0)
        assert ready(report.status).reason == "DeviceBusy"
        assert AUDIO in ready(report.status).message
        assert not report.status.passthrough_enabled
        assert report.status.group_members == (AUDIO,)

    def test_device_kept_bound_after_a_refusal_is_ready_and_names_the_refusal(self):
        """Bound, then deny-listed: Ready True, passthroughEnabled, reason DenyListed, a Warning."""
        kept = outcome(NIC, ClaimPhase.BOUND, Reason.DENY_LISTED, "denied; stays on vfio-pci")
        report = report_claim(claim(NIC), a(NIC), {a(NIC): kept}, LEDGER, T0)
        assert report.status.passthrough_enabled
        assert (ready(report.status).status, ready(report.status).reason) == (
            ConditionStatus.TRUE,
            "DenyListed",
        )
        assert report.event is not None
        assert report.event.warning

    def test_claim_the_engine_did_not_reach_is_in_progress(self):
        """No outcome for the device: InProgress, passthrough off."""
        report = report_claim(claim(NIC), a(NIC), {}, LEDGER, T0)
        assert ready(report.status).reason == "InProgress"
        assert not report.status.passthrough_enabled

    def test_invalid_claim_reports_the_fix_and_turns_passthrough_off(self):
        """InvalidSpec carries the message; no Event."""
        report = report_invalid(claim(NIC), InvalidClaim("name it x"), T0)
        assert (ready(report.status).reason, ready(report.status).message) == (
            "InvalidSpec",
            "name it x",
        )
        assert report.event is None

    def test_failed_return_is_shown_on_the_deleted_claim(self):
        """A deleted claim whose device did not come back shows ReturnFailed."""
        failed = attrs.evolve(
            BOUND,
            state=attrs.evolve(
                BOUND.state, phase=ClaimPhase.FAILED, reason=Reason.RETURN_FAILED, message="x"
            ),
        )
        report = report_release(attrs.evolve(claim(NIC), deleting=True), failed, T0)
        assert report is not None
        assert ready(report.status).reason == "ReturnFailed"
        returned = outcome(NIC, ClaimPhase.RETURNED, Reason.RETURNED)
        assert report_release(claim(NIC), returned, T0) is None


class TestFinalizers:
    """Finalizer changes are computed, and "already so" means no patch."""

    def test_finalizer_is_added_after_the_others(self):
        """Other controllers' finalizers are kept, ours appended."""
        assert with_finalizer(("other/x",)) == ("other/x", FINALIZER)

    def test_finalizer_already_present_needs_no_patch(self):
        """Present: ``None``, so a reconcile of a held claim makes no request."""
        assert with_finalizer(("other/x", FINALIZER)) is None

    def test_finalizer_removal_keeps_the_others(self):
        """Removing ours leaves another controller's in place."""
        assert without_finalizer(("other/x", FINALIZER)) == ("other/x",)

    def test_finalizer_already_absent_needs_no_patch(self):
        """Absent: ``None``."""
        assert without_finalizer(("other/x",)) is None

    @pytest.mark.parametrize(
        ("originals", "expected"),
        [
            pytest.param({}, True, id="all-back"),
            pytest.param({NIC: "igb"}, False, id="device-not-back"),
            pytest.param({AUDIO: "snd_hda_intel"}, False, id="group-member-not-back"),
        ],
    )
    def test_deleted_claim_is_released_only_once_every_device_is_back(self, originals, expected):
        """A recorded original driver (of the device or a group member) holds the claim."""
        deleted = attrs.evolve(
            claim(NIC), deleting=True, status=ClaimStatus(group_members=(AUDIO,))
        )
        ledger = Ledger(originals={a(k): DriverName(v) for k, v in originals.items()})
        assert may_release(deleted, a(NIC), ledger) is expected


class TestRequeue:
    """When to look again."""

    def test_busy_device_is_looked_at_when_its_backoff_ends(self):
        """The shortest backoff wins."""
        assert requeue_after([BUSY_2, BUSY_1, BOUND], unsettled=True) == 0.5

    def test_long_backoff_is_capped_by_the_unsettled_retry(self):
        """A backoff longer than the unsettled retry does not delay the next look."""
        long_wait = attrs.evolve(BUSY_1, retry_after=600.0)
        assert requeue_after([long_wait], unsettled=True) == RETRY_UNSETTLED

    @pytest.mark.parametrize(
        ("unsettled", "expected"),
        [
            pytest.param(True, RETRY_UNSETTLED, id="unsettled"),
            pytest.param(False, RECHECK_SETTLED, id="settled"),
        ],
    )
    def test_without_busy_devices_the_node_is_rechecked(self, unsettled, expected):
        """Unsettled claims come back sooner than a settled node."""
        assert requeue_after([BOUND], unsettled=unsettled) == expected
