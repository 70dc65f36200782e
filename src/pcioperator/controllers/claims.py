"""Carries out this node's PCIDeviceClaims with the claim engine, and reports on them.

A thin adapter: it reads the node's claims through a `pcicore.ports.ClaimStore`, asks the
decisions in `pcicore.claim_report` what each claim means, hands the wanted ones to
`ClaimEngine.reconcile` (which binds what is wanted and returns what is no longer wanted,
idempotently, and never waits for a busy device), then writes through the store only what
changed and records Events through a `pcicore.ports.ClaimEvents`. One key covers the node; the
returned delay tells the work queue when to look again (at the end of a busy device's backoff).
A finalizer holds a deleted claim until its devices are back on their original drivers; then
it goes, and with it the finalizer of Harvester's controller on claims that controller made
(`pcicore.takeover.finalizers_after_release`), so they finish deleting. A claim on a device
already on ``vfio-pci`` passes the original driver its status records (Harvester's
``kernelDriverToUnbind``) to the engine, which returns the device to it on release.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping

import attrs

from pcicore.address import PciAddress
from pcicore.claim_binding import moves_driver
from pcicore.claim_report import (
    FINALIZER,
    INVALID_SPEC,
    RELEASING,
    UNSYNCED_RETRY,
    InvalidClaim,
    Report,
    may_release,
    parse_claim,
    released_event,
    report_accepted,
    report_claim,
    report_invalid,
    report_release,
    requeue_after,
    with_finalizer,
)
from pcicore.cluster_claim import ClusterClaim
from pcicore.engine import ClaimEngine, ClaimRequest, Outcome
from pcicore.ledger import Ledger
from pcicore.policy import GroupPolicy
from pcicore.ports import ClaimEvents, ClaimStore, LedgerStore
from pcicore.takeover import finalizers_after_release
from pcihost.wirefields import format_timestamp


def _now() -> str:
    return format_timestamp(dt.datetime.now(dt.UTC))


class ClaimController:
    """Reconciles the claims of one node."""

    KEY = "claims"

    def __init__(
        self,
        *,
        store: ClaimStore,
        events: ClaimEvents,
        engine: ClaimEngine,
        ledger: LedgerStore,
        resource_name_of: Callable[[PciAddress], str | None],
        on_host_changed: Callable[[], None],
        policy: GroupPolicy = GroupPolicy.STRICT,
        now: Callable[[], str] = _now,
    ) -> None:
        """Carry out the claims ``store`` holds with ``engine``, recording in ``ledger``."""
        self._store = store
        self._events = events
        self._engine = engine
        self._ledger = ledger
        self._resource_name_of = resource_name_of
        self._on_host_changed = on_host_changed
        self._policy = policy
        self._now = now
        self.phases: dict[str, str] = {}

    def reconcile(self, _key: str = KEY) -> float | None:
        """Make the host match this node's claims; write what changed; say when to look again."""
        if not self._store.synced():
            return UNSYNCED_RETRY  # never act on a partial view: it would release every device
        self.phases = {}
        valid: list[tuple[ClusterClaim, PciAddress]] = []
        for claim in self._store.claims():
            if not moves_driver(claim.binding):
                continue  # another component binds its device (a vGPU): not ours to touch
            parsed = parse_claim(claim)
            if isinstance(parsed, InvalidClaim):
                self._invalid(claim, parsed)
            else:
                valid.append((claim, parsed))
        valid = [(self._accept(claim, address), address) for claim, address in valid]
        requests = [
            ClaimRequest(
                address,
                self._policy,
                self._resource_name_of(address),
                recorded_original=claim.status.kernel_driver_to_unbind or None,
            )
            for claim, address in valid
            if not claim.deleting
        ]
        outcomes = self._engine.reconcile(requests)
        by_address = {outcome.address: outcome for outcome in outcomes}
        ledger = self._ledger.load()
        unsettled = False
        for claim, address in valid:
            if claim.deleting:
                unsettled |= not self._finish_deletion(claim, address, ledger, by_address)
                continue
            report = report_claim(claim, address, by_address, ledger, self._now())
            self._apply(claim, report)
            outcome = by_address.get(address)
            unsettled |= outcome is None or not outcome.bound
        self._on_host_changed()
        return requeue_after(outcomes, unsettled=unsettled)

    def _accept(self, claim: ClusterClaim, address: PciAddress) -> ClusterClaim:
        """Hold a live claim with the finalizer and show it taken; the claim as now written."""
        if claim.deleting:
            return claim
        finalizers = with_finalizer(claim.finalizers)
        if finalizers is not None:
            self._store.set_finalizers(claim, finalizers)
        accepted = report_accepted(claim, address, self._now())
        if accepted is None:
            return claim
        self._apply(claim, accepted)
        return attrs.evolve(claim, status=accepted.status)

    def _invalid(self, claim: ClusterClaim, invalid: InvalidClaim) -> None:
        self._apply(claim, report_invalid(claim, invalid, self._now()))
        self.phases[claim.name] = INVALID_SPEC
        finalizers = (
            finalizers_after_release(claim.finalizers, FINALIZER) if claim.deleting else None
        )
        if finalizers is not None:
            self._store.set_finalizers(claim, finalizers)

    def _finish_deletion(
        self,
        claim: ClusterClaim,
        address: PciAddress,
        ledger: Ledger,
        by_address: Mapping[PciAddress, Outcome],
    ) -> bool:
        """Let a deleted claim go once its devices are back; return whether it is done."""
        self.phases[claim.name] = RELEASING
        finalizers = finalizers_after_release(claim.finalizers, FINALIZER)
        if finalizers is None:
            return True
        if not may_release(claim, address, ledger):
            report = report_release(claim, by_address.get(address), self._now())
            if report is not None:
                self._apply(claim, report)
                self.phases[claim.name] = RELEASING
            return False
        # Let go first, then say so: a failed write is retried, and must not repeat the Event.
        self._store.set_finalizers(claim, finalizers)
        self._events.emit(claim, released_event(address))
        return True

    def _apply(self, claim: ClusterClaim, report: Report) -> None:
        self.phases[claim.name] = report.phase
        if report.changed:
            self._store.write_status(claim, report.status)
        if report.event is not None:
            self._events.emit(claim, report.event)
