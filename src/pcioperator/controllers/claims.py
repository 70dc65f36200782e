"""Carries out this node's PCIDeviceClaims with the claim engine, and reports on them.

One key covers the node: a reconcile reads every claim for this node from the informer's cache,
hands the wanted ones to `ClaimEngine.reconcile` (which binds what is wanted and returns what is
no longer wanted, idempotently), then writes each claim's status only where it changed. A
finalizer holds a deleted claim until its device is back on its original driver.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Callable, Mapping

import attrs
import cattrs

from pcicore.address import PciAddress
from pcicore.claim import ClaimPhase, Reason
from pcicore.conditions import Condition, ConditionStatus, find_condition, set_condition
from pcicore.device import NodeName
from pcicore.engine import ClaimEngine, ClaimRequest, Outcome
from pcicore.errors import InvalidPciAddressError
from pcicore.naming import object_name
from pcicore.policy import GroupPolicy
from pcicore.ports import LedgerStore
from pcioperator.kube.api import PCIDEVICECLAIMS, JsonObject, KubeApi
from pcioperator.kube.errors import NotFoundError
from pcioperator.kube.events import EventRecorder
from pcioperator.kube.informer import Informer
from pcioperator.wire.claim import Claim, ClaimStatus, claim_from_object, status_to_wire

log = logging.getLogger(__name__)

FINALIZER = "devices.harvesterhci.io/return-device"
READY = "Ready"
INVALID_SPEC = "InvalidSpec"
RELEASING = "Releasing"
# How soon to look again at claims that are not settled (waiting for group members, or failed
# and rolled back): slow enough not to hammer a busy device, fast enough to feel live.
RETRY_UNSETTLED = 15.0
# A settled node is still checked now and then, to repair devices unbound behind our back.
RECHECK_SETTLED = 120.0


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@attrs.frozen
class _Parsed:
    claim: Claim
    address: PciAddress


class ClaimController:
    """Reconciles the claims of one node."""

    KEY = "claims"

    def __init__(
        self,
        *,
        node: str,
        api: KubeApi,
        informer: Informer,
        engine: ClaimEngine,
        ledger: LedgerStore,
        events: EventRecorder,
        resource_name_of: Callable[[PciAddress], str | None],
        on_host_changed: Callable[[], None],
        policy: GroupPolicy = GroupPolicy.STRICT,
        now: Callable[[], str] = _now,
    ) -> None:
        """Carry out the claims for ``node`` found in ``informer``'s cache."""
        self._node = node
        self._api = api
        self.informer = informer
        self._engine = engine
        self._ledger = ledger
        self._events = events
        self._resource_name_of = resource_name_of
        self._on_host_changed = on_host_changed
        self._policy = policy
        self._now = now
        self.phases: dict[str, str] = {}

    def reconcile(self, _key: str = KEY) -> float | None:
        """Make the host match this node's claims; write what changed; say when to look again."""
        if not self.informer.synced.is_set():
            return 0.5  # never act on a partial view: it would release every claimed device
        parsed = self._parse_all()
        wanted = [p for p in parsed if not p.claim.deleting]
        for item in wanted:
            self._ensure_finalizer(item.claim)
        requests = [
            ClaimRequest(item.address, self._policy, self._resource_name_of(item.address))
            for item in wanted
        ]
        outcomes = {outcome.address: outcome for outcome in self._engine.reconcile(requests)}
        ledger = self._ledger.load()
        unsettled = False
        for item in parsed:
            if item.claim.deleting:
                unsettled |= not self._finish_deletion(item, ledger.originals)
                continue
            outcome = outcomes.get(item.address)
            members = sorted(str(a) for a in ledger.group_of(item.address) if a != item.address)
            original = ledger.originals.get(item.address)
            if original is None and outcome is not None:
                original = outcome.state.original_driver
            self._report(item.claim, outcome, original or "", tuple(members))
            unsettled |= outcome is None or not outcome.bound
        self._on_host_changed()
        return RETRY_UNSETTLED if unsettled else RECHECK_SETTLED

    # --- reading ---------------------------------------------------------------------------

    def _parse_all(self) -> list[_Parsed]:
        parsed: list[_Parsed] = []
        self.phases = {}
        for obj in self.informer.objects():
            if (obj.get("spec") or {}).get("nodeName") != self._node:
                continue
            item = self._parse(obj)
            if item is not None:
                parsed.append(item)
        return parsed

    def _parse(self, obj: JsonObject) -> _Parsed | None:
        name = obj["metadata"]["name"]
        try:
            claim = claim_from_object(obj)
        except (cattrs.BaseValidationError, KeyError, TypeError, ValueError) as err:
            log.warning("claim %s has an unreadable spec: %s", name, err)
            return None
        try:
            address = PciAddress.parse(claim.spec.address)
        except InvalidPciAddressError as err:
            self._invalid(claim, str(err))
            return None
        expected = object_name(NodeName(self._node), address)
        if claim.name != expected:
            self._invalid(
                claim,
                f"claim name {claim.name!r} does not match its device: a claim on {address} on "
                f"node {self._node} must be named {expected!r}; delete it and create that one",
            )
            return None
        return _Parsed(claim, address)

    # --- writing ---------------------------------------------------------------------------

    def _invalid(self, claim: Claim, message: str) -> None:
        self.phases[claim.name] = INVALID_SPEC
        condition = Condition(
            READY, ConditionStatus.FALSE, INVALID_SPEC, message, self._now(), claim.generation
        )
        self._write_status(claim, attrs.evolve(claim.status, passthrough_enabled=False), condition)
        if claim.deleting and FINALIZER in claim.finalizers:
            self._remove_finalizer(claim)

    def _ensure_finalizer(self, claim: Claim) -> None:
        if FINALIZER in claim.finalizers:
            return
        self._api.patch(
            PCIDEVICECLAIMS,
            claim.name,
            {
                "metadata": {
                    "finalizers": [*claim.finalizers, FINALIZER],
                    # Finalizers are a list a merge patch replaces whole: guard against a
                    # concurrent change by another controller (409 -> read again, retry).
                    "resourceVersion": claim.resource_version,
                }
            },
        )

    def _remove_finalizer(self, claim: Claim) -> None:
        kept = [f for f in claim.finalizers if f != FINALIZER]
        with contextlib.suppress(NotFoundError):
            self._api.patch(
                PCIDEVICECLAIMS,
                claim.name,
                {"metadata": {"finalizers": kept, "resourceVersion": claim.resource_version}},
            )

    def _finish_deletion(self, item: _Parsed, originals: Mapping[PciAddress, object]) -> bool:
        """Let a deleted claim go once its device is back; return whether it is done."""
        self.phases[item.claim.name] = RELEASING
        if FINALIZER not in item.claim.finalizers:
            return True
        if item.address in originals:
            return False  # the engine could not return it yet; the outcome says why
        self._events.emit(
            PCIDEVICECLAIMS,
            item.claim.name,
            item.claim.uid,
            warning=False,
            reason="ReturnedToHost",
            message=f"{item.address} is back on its original driver; the claim is released",
        )
        self._remove_finalizer(item.claim)
        return True

    def _report(
        self, claim: Claim, outcome: Outcome | None, original: str, members: tuple[str, ...]
    ) -> None:
        if outcome is None:
            reason, message, bound = (
                Reason.IN_PROGRESS.value,
                "waiting for the claim engine to act on this device",
                False,
            )
            phase = ClaimPhase.PENDING.value
        else:
            state = outcome.state
            reason, message, bound = state.reason.value, state.message, outcome.bound
            phase = state.phase.value
        self.phases[claim.name] = phase
        condition = Condition(
            READY,
            ConditionStatus.TRUE if bound else ConditionStatus.FALSE,
            reason,
            message or reason,
            self._now(),
            claim.generation,
        )
        status = attrs.evolve(
            claim.status,
            kernel_driver_to_unbind=original,
            passthrough_enabled=bound,
            group_members=members,
        )
        previous = find_condition(claim.status.conditions, READY)
        if self._write_status(claim, status, condition) and (
            previous is None or previous.reason != reason
        ):
            self._events.emit(
                PCIDEVICECLAIMS,
                claim.name,
                claim.uid,
                warning=not bound and reason != Reason.IN_PROGRESS.value,
                reason=reason,
                message=message or reason,
            )

    def _write_status(self, claim: Claim, status: ClaimStatus, condition: Condition) -> bool:
        """Write ``status`` with ``condition`` if anything differs; return whether it did."""
        conditions = set_condition(status.conditions, condition)
        new = attrs.evolve(status, conditions=conditions)
        if new == claim.status:
            return False
        try:
            self._api.patch(
                PCIDEVICECLAIMS, claim.name, {"status": status_to_wire(new)}, subresource="status"
            )
        except NotFoundError:
            return False
        return True
