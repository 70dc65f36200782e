"""The claim machine settles from any state, whatever the kernel answers, within a bound.

Where it settles agrees with the host.

Property tests (hypothesis). A small in-memory host keeps the device's driver, its
``driver_override`` and whether the vfio modules are loaded; each write either takes effect as
the kernel's would, fails with an errno drawn by hypothesis, is accepted without effect (a
probe that binds nothing, an unbind some other agent undoes), or the device is unplugged. The
machine is stepped as `pcicore.engine.ClaimEngine` steps it. A machine that loops, forgets to
count a failure or reports Bound while the device is elsewhere fails these tests.
"""

from __future__ import annotations

import errno

import attrs
from hypothesis import example, given
from hypothesis import strategies as st

from pcicore.address import PciAddress
from pcicore.backoff import Backoff
from pcicore.claim import (
    BUSY_DEVICE_BACKOFF,
    Action,
    BindDriver,
    ClaimMachine,
    ClaimPhase,
    ClaimState,
    Goal,
    LoadModules,
    Observation,
    Probe,
    Reason,
    SetOverride,
    Unbind,
    Wait,
)
from pcicore.device import VFIO_DRIVER, DriverName, PciClass, PciDevice

ADDRESS = PciAddress.parse("0000:03:00.0")
DRIVERS = [None, DriverName("igb"), VFIO_DRIVER, DriverName("e1000e")]
ERRNOS = [
    errno.EBUSY,
    errno.EAGAIN,
    errno.ENODEV,
    errno.ENXIO,
    errno.EINVAL,
    errno.EIO,
    errno.EPERM,
    errno.ENOENT,
    errno.EEXIST,
]
SUCCEEDS = "ok"
NO_EFFECT = "accepted, nothing changed"
UNPLUGGED = "device unplugged"
outcomes = st.one_of(
    st.just(SUCCEEDS), st.just(NO_EFFECT), st.just(UNPLUGGED), st.sampled_from(ERRNOS)
)


@attrs.define
class InMemoryHost:
    """One device as the kernel's driver core keeps it; writes follow the kernel's rules."""

    driver: DriverName | None
    override: DriverName | None
    modules_loaded: bool
    native: DriverName  # the driver whose id table matches the device
    present: bool = True

    def observe(self) -> Observation:
        device = (
            PciDevice(
                address=ADDRESS,
                vendor_id=0x8086,
                device_id=0x1533,
                pci_class=PciClass(0x02, 0x00),
                driver=self.driver,
            )
            if self.present
            else None
        )
        return Observation(
            device=device, override=self.override, modules_loaded=self.modules_loaded
        )

    def apply(self, action: Action) -> None:
        """What the kernel does on a successful write."""
        match action:
            case LoadModules():
                self.modules_loaded = True
            case Unbind():
                self.driver = None
            case SetOverride(driver=driver):
                self.override = driver
            case Probe():
                if self.driver is None:
                    self.driver = self.override or self.native
            case BindDriver(driver=driver):
                if self.driver is None and self.override in {None, driver}:
                    self.driver = driver


@attrs.frozen
class Run:
    """Where a run ended."""

    state: ClaimState
    steps: int
    settled: bool


def drive(  # noqa: PLR0917 - the run's inputs, named at each call
    machine: ClaimMachine,
    state: ClaimState,
    host: InMemoryHost,
    answers: list,
    limit: int,
    then: object = SUCCEEDS,
) -> Run:
    """Step as the engine does; each write takes the next answer, then ``then`` for ever."""
    now = 0.0
    answers = list(answers)
    for steps in range(1, limit + 1):
        step = machine.step(state, host.observe(), now)
        state = step.state
        action = step.action
        if action is None:
            return Run(state, steps, settled=True)
        if isinstance(action, Wait):
            now = max(now, action.until)
            continue
        answer = answers.pop(0) if answers else then
        if answer == SUCCEEDS:
            host.apply(action)
        elif answer == UNPLUGGED:
            host.present = False
        elif answer != NO_EFFECT:
            state = machine.failed(state, answer, f"errno {answer}", now).state
    return Run(state, limit, settled=False)


def bound(backoff: Backoff) -> int:
    """Steps enough for the longest run: every attempt at passthrough, then at return.

    One attempt at passthrough is at most five writes (load modules, unbind, override, probe,
    bind) and one wait; a return at most three writes (unbind, override, bind) and one wait.
    Each goal gets ``max_attempts`` attempts, and a settled step ends the run.
    """
    assert backoff.max_attempts is not None
    return backoff.max_attempts * (6 + 4) + 2


starting_states = st.builds(
    ClaimState,
    address=st.just(ADDRESS),
    goal=st.sampled_from(Goal),
    original_driver=st.sampled_from([None, DriverName("igb")]),
    phase=st.sampled_from([p for p in ClaimPhase if p is not ClaimPhase.FAILED]),
    reason=st.just(Reason.IN_PROGRESS),
    attempts=st.integers(0, 4),
    retry_at=st.one_of(st.none(), st.floats(0, 10)),
    rolled_back=st.booleans(),
)
hosts = st.builds(
    InMemoryHost,
    driver=st.sampled_from(DRIVERS),
    override=st.sampled_from(DRIVERS),
    modules_loaded=st.booleans(),
    native=st.sampled_from([DriverName("igb"), DriverName("e1000e")]),
)


def busy_backoff(max_attempts: int) -> Backoff:
    """The busy-device backoff (0.5 s, doubling, at most 8 s) with ``max_attempts`` tries."""
    return attrs.evolve(BUSY_DEVICE_BACKOFF, max_attempts=max_attempts)


FRESH_PASSTHROUGH = ClaimMachine.start(ADDRESS, Goal.PASSTHROUGH, DriverName("igb"))
FRESH_RETURN = ClaimMachine.start(ADDRESS, Goal.HOST, DriverName("igb"))
ON_IGB = InMemoryHost(DriverName("igb"), None, modules_loaded=True, native=DriverName("igb"))
ON_VFIO = InMemoryHost(VFIO_DRIVER, VFIO_DRIVER, modules_loaded=True, native=DriverName("igb"))


class TestClaimMachineConverges:
    """From any state and host, under any sequence of kernel answers, the machine settles."""

    @given(starting_states, hosts, st.lists(outcomes, max_size=60), outcomes, st.integers(1, 6))
    # The hardest kernels, tried on every run whatever the search draws: busy for ever, a
    # write that never takes effect, a refusal, on the way to vfio-pci and on the way back.
    @example(FRESH_PASSTHROUGH, ON_IGB, [], errno.EBUSY, 5)
    @example(FRESH_PASSTHROUGH, ON_IGB, [], NO_EFFECT, 5)
    @example(FRESH_PASSTHROUGH, ON_IGB, [], errno.EINVAL, 5)
    @example(FRESH_RETURN, ON_VFIO, [], errno.EBUSY, 5)
    @example(FRESH_RETURN, ON_VFIO, [], NO_EFFECT, 5)
    def test_claim_settles_within_the_bound_whatever_the_kernel_answers(
        self, state, host, answers, then, max_attempts
    ):
        """No errno sequence makes the machine loop: it settles within the bound.

        Not even a kernel that gives the same answer for ever after.
        """
        host = attrs.evolve(host)  # a copy: explicit examples are shared between runs
        backoff = busy_backoff(max_attempts)
        state = attrs.evolve(state, attempts=min(state.attempts, max_attempts - 1))
        run = drive(ClaimMachine(backoff), state, host, answers, bound(backoff), then)
        assert run.settled, f"not settled after {run.steps} steps: {run.state}"
        assert run.state.phase.settled

    @given(starting_states, hosts, st.lists(outcomes, max_size=60), outcomes)
    def test_settled_phase_agrees_with_the_host(self, state, host, answers, then):
        """Bound means on vfio-pci; Returned means back on the original driver (or gone)."""
        backoff = busy_backoff(3)
        state = attrs.evolve(state, attempts=min(state.attempts, 2))
        run = drive(ClaimMachine(backoff), state, host, answers, bound(backoff), then)
        seen = host.observe()
        if run.state.phase is ClaimPhase.BOUND:
            assert seen.device is not None
            assert seen.device.driver == VFIO_DRIVER
        if run.state.phase is ClaimPhase.RETURNED and seen.device is not None:
            assert seen.device.driver == run.state.original_driver
            assert seen.override in {None, run.state.original_driver}

    @given(st.sampled_from(Goal), hosts, st.sampled_from([None, DriverName("igb")]))
    def test_fresh_claim_with_a_kernel_that_always_succeeds_reaches_its_goal(
        self, goal, host, original
    ):
        """Without faults, a passthrough ends Bound and a return ends Returned (no rollback)."""
        machine = ClaimMachine()
        if goal is Goal.HOST and original is not None:
            host.native = original  # the original driver is one that can drive the device
        run = drive(machine, machine.start(ADDRESS, goal, original), host, [], 32)
        assert run.settled
        expected = ClaimPhase.BOUND if goal is Goal.PASSTHROUGH else ClaimPhase.RETURNED
        assert run.state.phase is expected, run.state
        assert not run.state.rolled_back
