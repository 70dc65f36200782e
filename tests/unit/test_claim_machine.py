"""The pure claim state machine: one transition per row, with ids."""

from __future__ import annotations

import errno

import attrs
import pytest

from pcicore.address import PciAddress
from pcicore.backoff import Backoff
from pcicore.claim import (
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
    expected,
)
from pcicore.device import DriverName, PciClass, PciDevice

ADDRESS = PciAddress.parse("0000:03:00.0")
IGB = DriverName("igb")
VFIO = DriverName("vfio-pci")
NOW = 100.0


def _seen(driver: str | None, override: str | None = None, *, modules: bool = True) -> Observation:
    device = PciDevice(
        address=ADDRESS,
        vendor_id=0x8086,
        device_id=0x1533,
        pci_class=PciClass(0x02, 0x00),
        driver=DriverName(driver) if driver else None,
    )
    return Observation(
        device=device,
        override=DriverName(override) if override else None,
        modules_loaded=modules,
    )


def _state(
    goal: Goal = Goal.PASSTHROUGH, phase: ClaimPhase = ClaimPhase.PENDING, **kw
) -> ClaimState:
    return attrs.evolve(ClaimMachine.start(ADDRESS, goal, IGB), phase=phase, **kw)


GONE = Observation(device=None)

STEPS = [
    # (state, observation, expected phase, expected action)
    pytest.param(
        _state(),
        _seen("igb"),
        ClaimPhase.UNBINDING,
        Unbind(ADDRESS, IGB),
        id="bound-to-original→unbind",
    ),
    pytest.param(
        _state(),
        _seen("igb", modules=False),
        ClaimPhase.LOADING_MODULES,
        LoadModules(),
        id="modules-missing→load",
    ),
    pytest.param(
        _state(phase=ClaimPhase.LOADING_MODULES),
        _seen("igb", modules=False),
        ClaimPhase.FAILED,
        None,
        id="modules-still-missing→fail",
    ),
    pytest.param(
        _state(),
        _seen(None),
        ClaimPhase.OVERRIDING,
        SetOverride(ADDRESS, VFIO),
        id="unbound→override",
    ),
    pytest.param(
        _state(), _seen(None, "vfio-pci"), ClaimPhase.PROBING, Probe(ADDRESS), id="overridden→probe"
    ),
    pytest.param(
        _state(phase=ClaimPhase.PROBING),
        _seen(None, "vfio-pci"),
        ClaimPhase.BINDING,
        BindDriver(ADDRESS, VFIO),
        id="probe-did-not-bind→bind-file",
    ),
    pytest.param(
        _state(), _seen("vfio-pci", "vfio-pci"), ClaimPhase.BOUND, None, id="on-vfio→bound"
    ),
    pytest.param(_state(), GONE, ClaimPhase.FAILED, None, id="vanished→fail"),
    pytest.param(
        _state(Goal.HOST),
        _seen("vfio-pci", "vfio-pci"),
        ClaimPhase.UNBINDING,
        Unbind(ADDRESS, VFIO),
        id="return:on-vfio→unbind",
    ),
    pytest.param(
        _state(Goal.HOST),
        _seen(None, "vfio-pci"),
        ClaimPhase.OVERRIDING,
        SetOverride(ADDRESS, None),
        id="return:override-set→clear",
    ),
    pytest.param(
        _state(Goal.HOST),
        _seen(None),
        ClaimPhase.BINDING,
        BindDriver(ADDRESS, IGB),
        id="return:unbound→bind-original",
    ),
    pytest.param(
        _state(Goal.HOST), _seen("igb"), ClaimPhase.RETURNED, None, id="return:on-original→returned"
    ),
    pytest.param(
        _state(Goal.HOST), GONE, ClaimPhase.RETURNED, None, id="return:vanished→nothing-to-return"
    ),
    pytest.param(
        _state(retry_at=NOW + 1),
        _seen("igb"),
        ClaimPhase.WAITING,
        Wait(NOW + 1),
        id="backoff-running→wait",
    ),
    pytest.param(
        _state(phase=ClaimPhase.FAILED),
        _seen("igb"),
        ClaimPhase.FAILED,
        None,
        id="failed-is-sticky",
    ),
]


class TestClaimMachineStep:
    """`ClaimMachine.step` decides the next single write from what is observed."""

    @pytest.mark.parametrize(("state", "seen", "phase", "action"), STEPS)
    def test_transition(self, state, seen, phase, action):
        """Each row: the state and observation lead to this phase and action."""
        step = ClaimMachine().step(state, seen, NOW)
        assert step.state.phase is phase
        assert step.action == action


class TestClaimMachineFailures:
    """`ClaimMachine.failed` backs off on busy devices, then rolls back or fails."""

    def test_busy_write_backs_off_with_growing_delay(self):
        """EBUSY on attempt 2 waits base * factor."""
        machine = ClaimMachine(Backoff(base=0.5, cap=8.0, factor=2.0, max_attempts=5))
        step = machine.failed(_state(attempts=1), errno.EBUSY, "busy", NOW)
        assert step.state.reason is Reason.DEVICE_BUSY
        assert step.action == Wait(NOW + 1.0)

    def test_busy_attempts_exhausted_rolls_passthrough_back(self):
        """The last allowed EBUSY turns the goal to the original driver, with the reason."""
        machine = ClaimMachine(Backoff(max_attempts=3))
        step = machine.failed(_state(attempts=2), errno.EBUSY, "busy", NOW)
        assert step.state.goal is Goal.HOST
        assert step.state.rolled_back
        assert step.state.reason is Reason.BIND_FAILED
        assert "returning it to igb" in step.state.message

    def test_permanent_error_rolls_back_at_once(self):
        """EINVAL will not change on retry: roll back on the first one."""
        step = ClaimMachine().failed(_state(), errno.EINVAL, "invalid", NOW)
        assert step.state.goal is Goal.HOST

    def test_failure_while_returning_fails_with_the_manual_fix(self):
        """A return that cannot finish says how to bind the driver by hand."""
        step = ClaimMachine().failed(_state(Goal.HOST), errno.EINVAL, "invalid", NOW)
        assert step.state.phase is ClaimPhase.FAILED
        assert step.state.reason is Reason.RETURN_FAILED
        assert "/sys/bus/pci/drivers/igb/bind" in step.state.message

    def test_rolled_back_return_reports_rolled_back(self):
        """After a rollback, reaching the original driver reports RolledBack, not Returned."""
        state = _state(Goal.HOST, rolled_back=True, message="why")
        step = ClaimMachine().step(state, _seen("igb"), NOW)
        assert step.state.reason is Reason.ROLLED_BACK
        assert step.state.message == "why"


class TestConvergence:
    """Whatever step a crash interrupted, starting over from the observation converges."""

    @pytest.mark.parametrize(
        "seen",
        [
            pytest.param(_seen("igb"), id="before-anything"),
            pytest.param(_seen(None), id="after-unbind"),
            pytest.param(_seen(None, "vfio-pci"), id="after-override"),
            pytest.param(_seen("vfio-pci", "vfio-pci"), id="after-probe"),
        ],
    )
    def test_passthrough_from_any_crash_point_ends_bound(self, seen):
        """Stepping from a fresh start, with each write taking effect, ends on vfio-pci."""
        machine = ClaimMachine()
        state = machine.start(ADDRESS, Goal.PASSTHROUGH, IGB)
        for _ in range(8):
            step = machine.step(state, seen, NOW)
            state = step.state
            if step.action is None:
                break
            seen = expected(seen, step.action)
        assert state.phase is ClaimPhase.BOUND
        assert seen.device.driver == VFIO
