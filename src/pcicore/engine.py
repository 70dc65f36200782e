"""The claim engine: drives devices to ``vfio-pci`` and back, and never strands one.

It is the service layer around the pure `pcicore.claim.ClaimMachine` and the policies in
`pcicore.policy`: it observes through a `DriverControl`, asks the machine for one action,
applies it, and observes again until the device settles. The node-admin CLI and the cluster
agent both drive it; the agent passes the claims it reads from the API to `reconcile`, which is
level-triggered and idempotent: with nothing to change it performs no write at all.

The engine never waits. When the kernel answers that a device is busy, the machine asks for a
backoff; the engine then stops driving that device and returns an `Outcome` whose
``retry_after`` says when to call again (reason ``DeviceBusy``, the attempt count in the
message). It remembers the device's state until then, so the next call resumes with the attempt
count where it stopped. The agent hands ``retry_after`` to its work queue; the one-shot CLI
waits with `until_settled`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping

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
    RefusalReason,
)
from pcicore.ledger import ClaimRecord, Ledger
from pcicore.policy import GroupPlan, GroupPolicy, plan_group
from pcicore.ports import Clock, DriverControl, HostFactsSource, LedgerStore, PciBus
from pcicore.protection import HostProtection, condition_reason
from pcicore.takeover import original_driver


@attrs.frozen(order=True)
class ClaimRequest:
    """A wish to have one device on ``vfio-pci``.

    Attributes:
        address: The device.
        policy: What to do with the rest of its IOMMU group.
        resource_name: The resourceName the device plugin will advertise it under.
        recorded_original: The original driver another controller recorded for the device
            (Harvester's claim ``status.kernelDriverToUnbind``): used when the device is
            already on ``vfio-pci`` and the ledger knows no original (`pcicore.takeover`).
    """

    address: PciAddress
    policy: GroupPolicy = attrs.field(default=GroupPolicy.STRICT, order=False)
    resource_name: str | None = attrs.field(default=None, order=False)
    recorded_original: str | None = attrs.field(default=None, order=False)


@attrs.frozen
class Outcome:
    """Where one device ended up, and why.

    Attributes:
        state: The claim's state (phase, reason, message, original driver): final, or
            ``Waiting`` with reason ``DeviceBusy`` while a busy device's backoff runs.
        driver: The driver the device is bound to now (``None``: unbound or gone).
        retry_after: Seconds until the engine should be called again for this device (its
            backoff), or ``None`` when nothing is pending.
    """

    state: ClaimState
    driver: DriverName | None
    retry_after: float | None = None

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
        held_elsewhere: Callable[[], Mapping[PciAddress, str]] = dict,
        machine: ClaimMachine | None = None,
        max_steps: int = 64,
    ) -> None:
        """Drive devices on ``bus`` through ``control``, recording in ``ledger``.

        ``held_elsewhere`` names the devices another path of this node holds on ``vfio-pci``
        (the DRA plugin's ResourceClaims), each with its holder: a bind that would move one of
        them is refused, as the DRA plugin refuses the devices this engine's claims hold.
        """
        self._bus = bus
        self._control = control
        self._host = host
        self._ledger = ledger
        self._clock = clock
        self._protection = protection or HostProtection()
        self._held_elsewhere = held_elsewhere
        self._machine = machine or ClaimMachine()
        self._max_steps = max_steps
        # Devices whose backoff runs: the goal asked for and the state reached, resumed by the
        # next `_drive` towards the same goal (lost on restart: the count starts over).
        self._in_flight: dict[PciAddress, tuple[Goal, ClaimState]] = {}

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
        and the claim is dropped; the outcome says why. If a device is busy, the outcomes end
        with its waiting one (``retry_after`` set) and nothing is rolled back: call `bind`
        again after that long to resume.

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
            driver = member.driver
            if member.address == request.address:  # taken over on vfio-pci: whose record?
                driver = (
                    original_driver(member.driver, claim_driver_to_unbind=request.recorded_original)
                    or driver
                )
            ledger = ledger.remember(member.address, driver)
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
        outcomes = []
        for member in group.members:
            outcome = self._drive(
                member.address, Goal.PASSTHROUGH, ledger.originals.get(member.address)
            )
            outcomes.append(outcome)
            if outcome.retry_after is not None:
                return outcomes  # busy: the caller comes back when the backoff ends
        if all(outcome.bound for outcome in outcomes):
            return outcomes
        return self._roll_back(request, outcomes)

    def release(self, address: PciAddress) -> list[Outcome]:
        """Drop the claim on ``address`` and return its devices to their original drivers.

        The devices a group claim pulled in are released with it. A return that waits for a
        busy device has ``retry_after`` set: call `release` again after that long.
        """
        ledger = self._ledger.load()
        # Returns of unclaimed devices still waiting for a busy device resume too (a group
        # member of this claim whose return had to wait when the claim was first released).
        pending = {
            a
            for a, (goal, _) in self._in_flight.items()
            if goal is Goal.HOST and a in ledger.originals and a not in ledger.claims
        }
        known = address in ledger.claims or address in ledger.originals
        if not known and not pending:
            return [
                _settled(
                    address,
                    Goal.HOST,
                    ClaimPhase.RETURNED,
                    Reason.RETURNED,
                    f"{address} is not claimed; nothing to release",
                )
            ]
        members = (ledger.group_of(address) if known else set()) | pending
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
        # One outcome per device: one already reported this run (a refusal that returned it,
        # a rollback still waiting) is not driven again as an orphan.
        reported = {outcome.address for outcome in outcomes}
        orphans = sorted(set(ledger.originals) - set(ledger.claims) - reported)
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
            return self._kept_bound(request, reason, str(err)) or self._refused(
                request, reason, str(err)
            )
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

    def _kept_bound(self, request: ClaimRequest, reason: Reason, refusal: str) -> list[Outcome]:
        """A claim refused now, whose devices were bound before: they stay until it is deleted.

        A refusal that arrives after the bind (the operator added a deny entry and restarted
        the agent) must not pull the device from under a VM that may be using it. The claim
        keeps its devices on ``vfio-pci`` and reports the refusal; once the claim is deleted
        they are returned as usual, and the refusal stops a new bind. Empty when the claim was
        not bound (nothing to keep).
        """
        ledger = self._ledger.load()
        if request.address not in ledger.claims:
            return []
        members = sorted(ledger.group_of(request.address))
        drivers = {}
        for member in members:
            seen = self._control.observe(member)
            if seen.device is None or not seen.device.is_bound_to_vfio:
                return []
            drivers[member] = seen.device.driver
        message = (
            f"{refusal}. {request.address} was bound before this refusal and stays on vfio-pci "
            "(a VM may be using it) until this claim is deleted; it will not be bound again"
        )
        return [
            Outcome(
                state=ClaimState(
                    address=member,
                    goal=Goal.PASSTHROUGH,
                    original_driver=ledger.originals.get(member),
                    phase=ClaimPhase.BOUND,
                    reason=reason,
                    message=message,
                ),
                driver=drivers[member],
            )
            for member in members
        ]

    def _refused(self, request: ClaimRequest, reason: Reason, refusal: str) -> list[Outcome]:
        """Drop a refused claim, return whatever it had moved; one outcome per device."""
        ledger = self._ledger.load()
        members = ledger.group_of(request.address)
        self._save(ledger.unclaim(members))
        outcomes = []
        for member in sorted(members):
            if member not in self._ledger.load().originals:
                if member == request.address:
                    outcomes.append(
                        _settled(member, Goal.PASSTHROUGH, ClaimPhase.FAILED, reason, refusal)
                    )
                continue
            returned = self._return(member)
            if member == request.address and returned.returned:
                returned = attrs.evolve(
                    returned,
                    state=attrs.evolve(
                        returned.state, phase=ClaimPhase.FAILED, reason=reason, message=refusal
                    ),
                )
            outcomes.append(returned)
        return outcomes

    def _group_plan(self, request: ClaimRequest, claimed: Collection[PciAddress]) -> GroupPlan:
        target = self._bus.device(request.address)
        if target is None:
            raise DeviceNotFoundError(request.address)
        devices = self._bus.devices()
        group = plan_group(target, devices, claimed, request.policy)
        facts = self._host.facts()
        self._protection.check_all(group.members, facts)
        held = self._held_elsewhere()
        for member in group.members:
            if member.address in held:
                raise ClaimRefusedError(
                    member.address,
                    RefusalReason.HELD_ELSEWHERE,
                    f"{member.address} is held on vfio-pci by {held[member.address]}; delete "
                    "the pod using it (its ResourceClaim is then released) and this claim "
                    "proceeds",
                )
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
                if not returned.returned:
                    final.append(returned)  # busy or failed: its own reason says why
                    continue
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
        """Step ``address`` towards ``goal`` until it settles or must wait for a busy device."""
        machine = self._machine
        resumed = self._in_flight.pop(address, None)
        if resumed is not None and resumed[0] is goal:
            state = resumed[1]
        else:
            state = machine.start(address, goal, original)
        for _ in range(self._max_steps):
            now = self._clock.now()
            step = machine.step(state, self._control.observe(address), now)
            state = step.state
            action = step.action
            if action is None:
                break
            if isinstance(action, Wait):
                if action.until > now:
                    self._in_flight[address] = (goal, state)
                    seen = self._control.observe(address)
                    return Outcome(
                        state=state,
                        driver=seen.device.driver if seen.device else None,
                        retry_after=action.until - now,
                    )
                continue  # a wait that is already over (the turn of a rollback)
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


def until_settled(
    attempt: Callable[[], list[Outcome]], clock: Clock, max_rounds: int = 64
) -> list[Outcome]:
    """Call ``attempt`` (an engine operation) again after each busy device's backoff.

    For one-shot callers such as the node-admin CLI, which have no work queue to come back
    through: they wait on ``clock`` between rounds. A controller must not use it; it requeues
    after the outcomes' ``retry_after`` instead.
    """
    outcomes = attempt()
    for _ in range(max_rounds):
        waits = [o.retry_after for o in outcomes if o.retry_after is not None]
        if not waits:
            break
        clock.sleep(min(waits))
        outcomes = attempt()
    return outcomes
