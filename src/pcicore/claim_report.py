"""What the claim controller decides, as pure functions of what it read.

The controller (``pcioperator.controllers.claims``) reads this node's claims through
`pcicore.ports.ClaimStore`, runs the claim engine, and then asks these functions what to write:

- `parse_claim`: the device a claim names, or why the claim is invalid (the address and the
  claim-name rule, `claim_name_problem`, which the admission webhook applies too);
- `report_accepted`, `report_claim`, `report_invalid`: the status, the ``Ready`` condition and
  the Event (or none) for a claim, from the engine's outcome and the ledger;
- `with_finalizer`, `without_finalizer`, `may_release`: the finalizer decisions, which answer
  ``None`` when nothing needs to change (so an unchanged claim costs no request);
- `requeue_after`: when to look again.

Nothing here reads a clock or the cluster: the time comes in as text, the claims as values.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

import attrs

from pcicore.address import PciAddress
from pcicore.claim import ClaimPhase, Reason
from pcicore.cluster_claim import ClaimEvent, ClaimStatus, ClusterClaim
from pcicore.conditions import Condition, ConditionStatus, find_condition, set_condition
from pcicore.device import NodeName
from pcicore.engine import Outcome
from pcicore.errors import InvalidPciAddressError
from pcicore.ledger import Ledger
from pcicore.naming import object_name

FINALIZER: Final = "devices.harvesterhci.io/return-device"
"""Holds a deleted claim until its devices are back on their original drivers."""

READY: Final = "Ready"
"""The condition type that says where a claim stands."""

INVALID_SPEC: Final = "InvalidSpec"
"""Reason (and metrics phase) of a claim whose address or name is wrong."""

RELEASING: Final = "Releasing"
"""Metrics phase of a deleted claim whose devices are being returned."""

UNSYNCED_RETRY: Final = 0.5
"""Seconds before looking again when the cache of claims has not been filled yet."""

RETRY_UNSETTLED: Final = 15.0
"""Seconds before looking again at claims that are not settled (waiting for group members,
failed and rolled back): slow enough not to hammer a device, fast enough to feel live."""

RECHECK_SETTLED: Final = 120.0
"""Seconds between checks of a settled node, to repair devices unbound behind the agent's back."""


@attrs.frozen
class InvalidClaim:
    """A claim that cannot be acted on, and what its author must change.

    Attributes:
        message: What is wrong, with the value, and the fix.
    """

    message: str


@attrs.frozen
class Report:
    """What to write for one claim.

    Attributes:
        status: The claim's whole new status (its ``Ready`` condition set).
        changed: Whether ``status`` differs from what the claim shows (else write nothing).
        phase: The claim's phase for the agent's metrics.
        event: The Event to record, or ``None``.
    """

    status: ClaimStatus
    changed: bool
    phase: str
    event: ClaimEvent | None = None


# --- Reading a claim --------------------------------------------------------------------------


def claim_name_problem(
    claim_name: str, node: str, address: PciAddress, written_address: str | None = None
) -> str | None:
    """Why ``claim_name`` is wrong for a claim on ``address`` of ``node``, or ``None`` if right.

    A claim is named after its PCIDevice (``<node>-<address without ':' and '.'>``), so that
    RBAC ``resourceNames`` can say who may claim which device. ``written_address`` is the
    address as the user wrote it (shown in the message; the parsed one by default).
    """
    expected = object_name(NodeName(node), address)
    if claim_name == expected:
        return None
    shown = written_address if written_address is not None else str(address)
    return (
        f'claim name "{claim_name}" must be the PCIDevice\'s name "{expected}" '
        f"(<nodeName>-<address without ':' and '.'> for spec.nodeName \"{node}\" and "
        f'spec.address "{shown}"); name the claim "{expected}"'
    )


def parse_claim(claim: ClusterClaim) -> PciAddress | InvalidClaim:
    """The device ``claim`` names, or why it names none: an unparsable address, a wrong name."""
    try:
        address = PciAddress.parse(claim.address)
    except InvalidPciAddressError as err:
        return InvalidClaim(str(err))
    problem = claim_name_problem(claim.name, claim.node, address, claim.address)
    return address if problem is None else InvalidClaim(problem)


# --- Reporting --------------------------------------------------------------------------------


def _ready(
    claim: ClusterClaim, status: ConditionStatus, reason: str, message: str, now: str
) -> Condition:
    return Condition(READY, status, reason, message or reason, now, claim.generation)


def _with_condition(status: ClaimStatus, condition: Condition) -> ClaimStatus:
    return attrs.evolve(status, conditions=set_condition(status.conditions, condition))


def _event(claim: ClusterClaim, condition: Condition) -> ClaimEvent | None:
    """An Event when the ``Ready`` reason changed (a new attempt count alone is no news)."""
    previous = find_condition(claim.status.conditions, READY)
    if condition.reason == Reason.IN_PROGRESS.value:
        return None
    if previous is not None and previous.reason == condition.reason:
        return None
    return ClaimEvent(
        condition.reason, condition.message, warning=condition.reason != Reason.BOUND.value
    )


def report_invalid(claim: ClusterClaim, invalid: InvalidClaim, now: str) -> Report:
    """Ready False with reason ``InvalidSpec`` and the fix; passthrough off; no Event."""
    condition = _ready(claim, ConditionStatus.FALSE, INVALID_SPEC, invalid.message, now)
    status = _with_condition(attrs.evolve(claim.status, passthrough_enabled=False), condition)
    return Report(status, status != claim.status, INVALID_SPEC)


def report_accepted(claim: ClusterClaim, address: PciAddress, now: str) -> Report | None:
    """Ready False, ``InProgress``, for a claim the agent has not reported on yet.

    Written before the engine moves the device, so a claim shows at once that its node's
    agent took it; ``None`` once the claim has a ``Ready`` condition.
    """
    if find_condition(claim.status.conditions, READY) is not None:
        return None
    condition = _ready(
        claim,
        ConditionStatus.FALSE,
        Reason.IN_PROGRESS.value,
        f"the agent on node {claim.node} is moving {address} to vfio-pci",
        now,
    )
    status = _with_condition(claim.status, condition)
    return Report(status, changed=True, phase=ClaimPhase.PENDING.value)


def deciding_outcome(
    address: PciAddress, outcomes: Mapping[PciAddress, Outcome], ledger: Ledger
) -> Outcome | None:
    """The outcome a claim on ``address`` reports: a busy device of its group, else its own.

    A group claim is only as far as its slowest member: while any member waits for a busy
    device, the claim says so (``DeviceBusy``) rather than reporting its own device bound.
    """
    own = outcomes.get(address)
    if own is None:
        return None
    group = [address, *sorted(ledger.group_of(address) - {address})]
    waiting = next(
        (outcomes[a] for a in group if a in outcomes and outcomes[a].retry_after is not None),
        None,
    )
    return waiting or own


def report_claim(
    claim: ClusterClaim,
    address: PciAddress,
    outcomes: Mapping[PciAddress, Outcome],
    ledger: Ledger,
    now: str,
) -> Report:
    """Status, ``Ready`` condition and Event for a claim on ``address`` after the engine ran.

    ``passthroughEnabled`` and ``Ready`` are true only when the device is on ``vfio-pci``;
    the reason is the engine's (``DeviceBusy`` with the attempt count while a device is busy,
    ``InProgress`` while the engine has not reached the device, the refusal or failure
    otherwise). A device kept on ``vfio-pci`` although a refusal now applies (it was bound
    before the deny list changed) reports Ready True with the refusal as its reason.
    """
    outcome = deciding_outcome(address, outcomes, ledger)
    if outcome is None:
        reason, message, bound = (
            Reason.IN_PROGRESS.value,
            "waiting for the claim engine to act on this device",
            False,
        )
        phase = ClaimPhase.PENDING.value
    else:
        state = outcome.state
        reason, message, phase = state.reason.value, state.message, state.phase.value
        bound = outcome.bound and all(
            outcomes[a].bound for a in ledger.group_of(address) if a in outcomes
        )
    own = outcomes.get(address)
    original = ledger.originals.get(address)
    if original is None and own is not None:
        original = own.state.original_driver
    members = tuple(sorted(str(a) for a in ledger.group_of(address) if a != address))
    condition = _ready(
        claim, ConditionStatus.TRUE if bound else ConditionStatus.FALSE, reason, message, now
    )
    status = _with_condition(
        attrs.evolve(
            claim.status,
            kernel_driver_to_unbind=original or "",
            passthrough_enabled=bound,
            group_members=members,
        ),
        condition,
    )
    changed = status != claim.status
    return Report(status, changed, phase, _event(claim, condition) if changed else None)


def report_release(claim: ClusterClaim, outcome: Outcome | None, now: str) -> Report | None:
    """For a deleted claim whose device is not back yet: the reason, or ``None`` to write none.

    A return that fails (``ReturnFailed``) or waits for a busy device (``DeviceBusy``) is
    shown on the claim the finalizer holds, so whoever deleted it learns why it stays.
    """
    if outcome is None or outcome.returned:
        return None
    state = outcome.state
    condition = _ready(claim, ConditionStatus.FALSE, state.reason.value, state.message, now)
    status = _with_condition(
        attrs.evolve(claim.status, passthrough_enabled=outcome.bound), condition
    )
    changed = status != claim.status
    return Report(status, changed, RELEASING, _event(claim, condition) if changed else None)


def released_event(address: PciAddress) -> ClaimEvent:
    """The Event recorded when a deleted claim lets go: its device is back."""
    return ClaimEvent(
        Reason.RETURNED.value,
        f"{address} is back on its original driver; the claim is released",
        warning=False,
    )


# --- Finalizers -------------------------------------------------------------------------------


def with_finalizer(finalizers: tuple[str, ...]) -> tuple[str, ...] | None:
    """``finalizers`` with ours added, or ``None`` when it is already there (no patch)."""
    if FINALIZER in finalizers:
        return None
    return (*finalizers, FINALIZER)


def without_finalizer(finalizers: tuple[str, ...]) -> tuple[str, ...] | None:
    """``finalizers`` without ours, or ``None`` when it is not there (no patch)."""
    if FINALIZER not in finalizers:
        return None
    return tuple(f for f in finalizers if f != FINALIZER)


def may_release(claim: ClusterClaim, address: PciAddress, ledger: Ledger) -> bool:
    """Whether a deleted claim may go: none of its devices has an original driver recorded.

    The ledger keeps a device's original driver until the device is back on it, so a
    recorded original means the return has not succeeded (yet); the claim's group members
    (from its status) must be back too.
    """
    devices = {address}
    for member in claim.status.group_members:
        try:
            devices.add(PciAddress.parse(member))
        except InvalidPciAddressError:
            continue  # written by us; an unreadable entry names no device to wait for
    return not devices & set(ledger.originals)


# --- When to look again -----------------------------------------------------------------------


def requeue_after(outcomes: Iterable[Outcome], *, unsettled: bool) -> float:
    """Seconds until the claims should be reconciled again.

    A busy device asks to be looked at when its backoff ends (the engine does not wait for
    it); otherwise unsettled claims are retried after `RETRY_UNSETTLED` and a settled node is
    rechecked after `RECHECK_SETTLED`.
    """
    waits = [o.retry_after for o in outcomes if o.retry_after is not None]
    if waits:
        return max(0.0, min(RETRY_UNSETTLED, *waits))
    return RETRY_UNSETTLED if unsettled else RECHECK_SETTLED
