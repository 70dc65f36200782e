"""The claim engine: drives devices to ``vfio-pci`` and back, and never strands one.

It is the service layer around the pure `pcicore.claim.ClaimMachine` and the policies in
`pcicore.policy`: it observes through a `DriverControl`, asks the machine for one action,
applies it, and observes again until the device settles. The node-admin CLI and the cluster
agent both drive it; the agent passes the claims it reads from the API to `reconcile`, which is
level-triggered and idempotent: with nothing to change it performs no write at all.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

import attrs

from pcicore.address import PciAddress
from pcicore.claim import (
    Action,
    ClaimMachine,
    ClaimPhase,
    ClaimState,
    Goal,
    Reason,
    Wait,
    planned_actions,
)
from pcicore.device import DriverName
from pcicore.errors import (
    ClaimRefusedError,
    DeviceNotFoundError,
    DriverWriteError,
    ModuleLoadError,
)
from pcicore.ledger import ClaimRecord, Ledger
from pcicore.policy import GroupPlan, GroupPolicy, plan_group
from pcicore.ports import Clock, DriverControl, HostFactsSource, LedgerStore, PciBus
from pcicore.protection import HostProtection, condition_reason


@attrs.frozen(order=True)
class ClaimRequest:
    """A wish to have one device on ``vfio-pci``.

    Attributes:
        address: The device.
        policy: What to do with the rest of its IOMMU group.
        resource_name: The resourceName the device plugin will advertise it under.
    """

    address: PciAddress
    policy: GroupPolicy = attrs.field(default=GroupPolicy.STRICT, order=False)
    resource_name: str | None = attrs.field(default=None, order=False)


@attrs.frozen
class Outcome:
    """Where one device ended up, and why.

    Attributes:
        state: The claim's final state (phase, reason, message, original driver).
        driver: The driver the device is bound to now (``None``: unbound or gone).
    """

    state: ClaimState
    driver: DriverName | None

    @property
    def address(self) -> PciAddress:
        """The device."""
        return self.state.address

    @property
    def bound(self) -> bool:
        """Whether the device is on ``vfio-pci`` as claimed."""
        return self.state.phase is ClaimPhase.BOUND

    @property
    def returned(self) -> bool:
        """Whether the device is back where it started."""
        return (
            self.state.phase is ClaimPhase.RETURNED and self.state.reason is not Reason.ROLLED_BACK
        )


@attrs.frozen
class BindPlan:
    """What a bind would do (``--dry-run``).

    Attributes:
        group: Which devices move and which the claim waits for.
        actions: Per moved device, the writes that take it to ``vfio-pci``.
    """

    group: GroupPlan
    actions: tuple[tuple[PciAddress, tuple[Action, ...]], ...]


def _settled(
    address: PciAddress, goal: Goal, phase: ClaimPhase, reason: Reason, message: str
) -> Outcome:
    state = ClaimState(
        address=address,
        goal=goal,
        original_driver=None,
        phase=phase,
        reason=reason,
        message=message,
    )
    return Outcome(state=state, driver=None)


class ClaimEngine:
    """Moves claimed devices (and their IOMMU groups) to ``vfio-pci`` and back."""

    def __init__(
        self,
        bus: PciBus,
        control: DriverControl,
        host: HostFactsSource,
        ledger: LedgerStore,
        clock: Clock,
        *,
        protection: HostProtection | None = None,
        machine: ClaimMachine | None = None,
        max_steps: int = 64,
    ) -> None:
        """Drive devices on ``bus`` through ``control``, recording in ``ledger``."""
        self._bus = bus
        self._control = control
        self._host = host
        self._ledger = ledger
        self._clock = clock
        self._protection = protection or HostProtection()
        self._machine = machine or ClaimMachine()
        self._max_steps = max_steps

    # --- the public operations ---------------------------------------------------------

    def plan(self, request: ClaimRequest, also_claimed: Collection[PciAddress] = ()) -> BindPlan:
        """What binding ``request`` would do, without doing it.

        Raises:
            DeviceNotFoundError: no device at the address.
            ClaimRefusedError: the host depends on a device that would move, it is denied, or
                it has no IOMMU group.
        """
        ledger = self._ledger.load()
        group = self._group_plan(request, {*ledger.claims, *also_claimed})
        actions = []
        for member in group.members:
            original = ledger.originals.get(member.address, member.driver)
            state = self._machine.start(member.address, Goal.PASSTHROUGH, original)
            actions.append(
                (
                    member.address,
                    planned_actions(self._machine, state, self._control.observe(member.address)),
                )
            )
        return BindPlan(group=group, actions=tuple(actions))

    def bind(
        self, request: ClaimRequest, also_claimed: Collection[PciAddress] = ()
    ) -> list[Outcome]:
        """Claim one device and move it (with its group, per policy) to ``vfio-pci``.

        The claim and each device's original driver are recorded before anything moves. If a
        device cannot be bound, every device this bind moved goes back to its original driver
        and the claim is dropped; the outcome says why.

        Raises:
            DeviceNotFoundError: no device at the address.
            ClaimRefusedError: see `plan`.
        """
        group = self._group_plan(request, {*self._ledger.load().claims, *also_claimed})
        ledger = self._ledger.load().claim(
            ClaimRecord(request.address, request.policy, request.resource_name)
        )
        if request.policy is GroupPolicy.GROUP:
            for member in group.members[1:]:
                if member.address not in ledger.claims:
                    ledger = ledger.claim(
                        ClaimRecord(member.address, request.policy, claimed_with=request.address)
                    )
        for member in group.members:
            ledger = ledger.remember(member.address, member.driver)
        self._save(ledger)
        if not group.ready:
            return [
                _settled(
                    request.address,
                    Goal.PASSTHROUGH,
                    ClaimPhase.WAITING,
                    Reason.GROUP_INCOMPLETE,
                    group.waiting_message(),
                )
            ]
        outcomes = [
            self._drive(member.address, Goal.PASSTHROUGH, ledger.originals.get(member.address))
            for member in group.members
        ]
        if all(outcome.bound for outcome in outcomes):
            return outcomes
        return self._roll_back(request, outcomes)

    def release(self, address: PciAddress) -> list[Outcome]:
        """Drop the claim on ``address`` and return its devices to their original drivers.

        The devices a group claim pulled in are released with it.
        """
        ledger = self._ledger.load()
        if address not in ledger.claims and address not in ledger.originals:
            return [
                _settled(
                    address,
                    Goal.HOST,
                    ClaimPhase.RETURNED,
                    Reason.RETURNED,
                    f"{address} is not claimed; nothing to release",
                )
            ]
        members = ledger.group_of(address)
        self._save(ledger.unclaim(members))
        return [self._return(member) for member in sorted(members)]

    def reconcile(self, requests: Iterable[ClaimRequest] | None = None) -> list[Outcome]:
        """Make the host match the claims, level-triggered.

        ``requests`` are the claims wanted now (the agent passes those in the cluster); with
        ``None`` the claims recorded in the ledger are used (after a reboot). Wanted devices are
        bound; devices with a recorded original driver that no claim wants any more are
        returned. Running it again with nothing changed writes nothing.
        """
        ledger = self._ledger.load()
        if requests is None:
            wanted = sorted(
                ClaimRequest(r.address, r.policy, r.resource_name)
                for r in ledger.claims.values()
                if r.claimed_with is None
            )
        else:
            wanted = sorted(requests)
            kept = {r.address for r in wanted}
            stale = {a for a, r in ledger.claims.items() if r.root not in kept}
            if stale:
                self._save(ledger.unclaim(stale))
        addresses = {r.address for r in wanted}
        outcomes: list[Outcome] = []
        for request in wanted:
            outcomes.extend(self._bind_reporting(request, addresses))
        ledger = self._ledger.load()
        orphans = sorted(set(ledger.originals) - set(ledger.claims))
        outcomes.extend(self._return(address) for address in orphans)
        return outcomes

    # --- internals -----------------------------------------------------------------------

    def _bind_reporting(
        self, request: ClaimRequest, addresses: Collection[PciAddress]
    ) -> list[Outcome]:
        try:
            return self.bind(request, addresses)
        except ClaimRefusedError as err:
            reason = condition_reason(err.reason)
            self._save(self._ledger.load().unclaim({request.address}))
            return [
                _settled(request.address, Goal.PASSTHROUGH, ClaimPhase.FAILED, reason, str(err))
            ]
        except DeviceNotFoundError as err:
            return [
                _settled(
                    request.address,
                    Goal.PASSTHROUGH,
                    ClaimPhase.FAILED,
                    Reason.DEVICE_VANISHED,
                    str(err),
                )
            ]

    def _group_plan(self, request: ClaimRequest, claimed: Collection[PciAddress]) -> GroupPlan:
        target = self._bus.device(request.address)
        if target is None:
            raise DeviceNotFoundError(request.address)
        devices = self._bus.devices()
        group = plan_group(target, devices, claimed, request.policy)
        facts = self._host.facts()
        self._protection.check_all(group.members, facts)
        return group

    def _roll_back(self, request: ClaimRequest, outcomes: list[Outcome]) -> list[Outcome]:
        """Return every device of a failed bind and drop its claims."""
        ledger = self._ledger.load()
        members = ledger.group_of(request.address) | {o.address for o in outcomes}
        self._save(ledger.unclaim(members))
        final = []
        for outcome in outcomes:
            if outcome.bound:
                returned = self._return(outcome.address)
                cause = next(o for o in outcomes if not o.bound)
                final.append(
                    attrs.evolve(
                        returned,
                        state=attrs.evolve(
                            returned.state,
                            reason=Reason.ROLLED_BACK,
                            message=(
                                f"rolled back because {cause.address} failed: {cause.state.message}"
                            ),
                        ),
                    )
                )
            else:
                if outcome.state.phase is ClaimPhase.RETURNED:
                    self._save(self._ledger.load().forget(outcome.address))
                final.append(outcome)
        return final

    def _return(self, address: PciAddress) -> Outcome:
        ledger = self._ledger.load()
        if address not in ledger.originals:
            seen = self._control.observe(address)
            driver = seen.device.driver if seen.device else None
            return Outcome(
                state=ClaimState(
                    address=address,
                    goal=Goal.HOST,
                    original_driver=driver,
                    phase=ClaimPhase.RETURNED,
                    reason=Reason.RETURNED,
                    message=(
                        f"no original driver recorded for {address}; "
                        f"left on {driver or 'no driver'}"
                    ),
                ),
                driver=driver,
            )
        outcome = self._drive(address, Goal.HOST, ledger.originals[address])
        if outcome.state.phase is ClaimPhase.RETURNED:
            self._save(self._ledger.load().forget(address))
        return outcome

    def _drive(self, address: PciAddress, goal: Goal, original: DriverName | None) -> Outcome:
        machine = self._machine
        state = machine.start(address, goal, original)
        for _ in range(self._max_steps):
            step = machine.step(state, self._control.observe(address), self._clock.now())
            state = step.state
            action = step.action
            if action is None:
                break
            if isinstance(action, Wait):
                self._clock.sleep(max(0.0, action.until - self._clock.now()))
                continue
            try:
                self._control.apply(action)
            except DriverWriteError as err:
                state = machine.failed(state, err.errno or 0, str(err), self._clock.now()).state
            except ModuleLoadError:
                continue  # the next observation shows the modules missing; the machine fails
        else:
            state = attrs.evolve(
                state,
                phase=ClaimPhase.FAILED,
                reason=Reason.RETURN_FAILED if goal is Goal.HOST else Reason.BIND_FAILED,
                message=f"{address} did not settle after {self._max_steps} steps: {state.message}",
            )
        seen = self._control.observe(address)
        return Outcome(state=state, driver=seen.device.driver if seen.device else None)

    def _save(self, ledger: Ledger) -> None:
        if ledger != self._ledger.load():
            self._ledger.save(ledger)
