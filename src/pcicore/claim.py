"""The claim state machine: which single step moves a device towards ``vfio-pci`` or back.

Pure: `ClaimMachine.step` takes the claim's state, what the host shows now and the time, and
returns the next state with the one action to perform (or none, when settled). The caller
performs the action through a `pcicore.ports.DriverControl`, observes again and steps again;
a failed write goes to `ClaimMachine.failed`. Because every decision is made from what is
observed, not from what was done before, a process that crashed at any point converges to the
same end state when it starts again from `ClaimMachine.start`.

Passthrough follows the kernel's per-device path (the sysfs ABI of ``/sys/bus/pci``, see
Documentation/ABI/testing/sysfs-bus-pci in the kernel tree): unbind from the current
driver, set ``driver_override`` to ``vfio-pci``, write the address to ``drivers_probe``, and if
the probe did not bind, write it to ``vfio-pci/bind`` so the kernel's errno says why. Return
clears the override and binds the original driver through its ``bind`` file. A passthrough that
cannot finish is rolled back: the goal turns to returning the device to its original driver.
"""

from __future__ import annotations

import enum
import errno
from typing import Final

import attrs

from pcicore.address import PciAddress
from pcicore.backoff import Backoff
from pcicore.device import VFIO_DRIVER, DriverName, PciDevice

VFIO_MODULES: Final = ("vfio_pci", "vfio_iommu_type1")
"""Kernel modules passthrough needs, as ``/proc/modules`` names them."""


class Goal(enum.Enum):
    """Where a claim wants the device."""

    PASSTHROUGH = "Passthrough"
    """On ``vfio-pci``, ready for a VM."""
    HOST = "Host"
    """Back on the driver it had before any claim (or unbound, if it had none)."""


class ClaimPhase(enum.Enum):
    """The step a claim is at; the terminal phases are `BOUND`, `RETURNED` and `FAILED`."""

    PENDING = "Pending"
    LOADING_MODULES = "LoadingModules"
    UNBINDING = "Unbinding"
    OVERRIDING = "Overriding"
    PROBING = "Probing"
    BINDING = "Binding"
    WAITING = "Waiting"
    BOUND = "Bound"
    RETURNED = "Returned"
    FAILED = "Failed"

    @property
    def settled(self) -> bool:
        """Whether nothing more will happen without a new goal."""
        return self in {ClaimPhase.BOUND, ClaimPhase.RETURNED, ClaimPhase.FAILED}


class Reason(enum.Enum):
    """Why a claim is where it is: the ``reason`` of its condition."""

    IN_PROGRESS = "InProgress"
    BOUND = "BoundToVfio"
    RETURNED = "ReturnedToHost"
    ROLLED_BACK = "RolledBack"
    DEVICE_BUSY = "DeviceBusy"
    DEVICE_VANISHED = "DeviceVanished"
    MODULES_MISSING = "VfioModulesMissing"
    BIND_FAILED = "BindFailed"
    RETURN_FAILED = "ReturnFailed"
    GROUP_INCOMPLETE = "IommuGroupIncomplete"
    NO_IOMMU = "NoIommu"
    HOST_DEPENDS_ON_DEVICE = "HostDependsOnDevice"
    HOST_FACTS_UNREADABLE = "HostFactsUnreadable"
    DENY_LISTED = "DenyListed"
    HELD_ELSEWHERE = "HeldByResourceClaim"


# --- Actions: one write each --------------------------------------------------------------


@attrs.frozen
class LoadModules:
    """Load the kernel modules passthrough needs.

    Attributes:
        modules: Module names (``vfio_pci``, ``vfio_iommu_type1``).
    """

    modules: tuple[str, ...] = VFIO_MODULES


@attrs.frozen
class Unbind:
    """Write the address to ``<dev>/driver/unbind``.

    Attributes:
        address: The device.
        driver: The driver it is expected to leave (for messages and checks).
    """

    address: PciAddress
    driver: DriverName


@attrs.frozen
class SetOverride:
    """Write ``<dev>/driver_override``.

    Attributes:
        address: The device.
        driver: The only driver allowed to bind it, or ``None`` to clear the override.
    """

    address: PciAddress
    driver: DriverName | None


@attrs.frozen
class Probe:
    """Write the address to ``/sys/bus/pci/drivers_probe``: the kernel picks a driver.

    Attributes:
        address: The device.
    """

    address: PciAddress


@attrs.frozen
class BindDriver:
    """Write the address to ``/sys/bus/pci/drivers/<driver>/bind``.

    Attributes:
        address: The device.
        driver: The driver to bind it to.
    """

    address: PciAddress
    driver: DriverName


@attrs.frozen
class Wait:
    """Do nothing until ``until`` (backoff after a busy device).

    Attributes:
        until: Monotonic time to step again at.
    """

    until: float


Action = LoadModules | Unbind | SetOverride | Probe | BindDriver | Wait
"""One thing the engine does to the host between two observations."""


@attrs.frozen
class Observation:
    """What the host shows about one device right now.

    Attributes:
        device: The device, or ``None`` when it is gone (hot-unplugged, vendor ``0xffff``).
        override: The device's ``driver_override``, or ``None`` when unset.
        modules_loaded: Whether ``vfio-pci`` and ``vfio_iommu_type1`` are available.
    """

    device: PciDevice | None
    override: DriverName | None = None
    modules_loaded: bool = True


@attrs.frozen
class ClaimState:
    """Where one device's claim stands.

    Attributes:
        address: The device.
        goal: Where the device should end up.
        original_driver: The driver it had before any claim (``None``: it had none).
        phase: The step reached.
        reason: Why it is there.
        message: The reason in words, with what to do next.
        attempts: Failed attempts at the current goal.
        retry_at: When a backoff ends, if one is running.
        rolled_back: Whether the goal turned to `Goal.HOST` because passthrough failed.
    """

    address: PciAddress
    goal: Goal
    original_driver: DriverName | None
    phase: ClaimPhase = ClaimPhase.PENDING
    reason: Reason = Reason.IN_PROGRESS
    message: str = ""
    attempts: int = 0
    retry_at: float | None = None
    rolled_back: bool = False


@attrs.frozen
class Step:
    """The machine's answer: the next state and the action to perform (``None``: settled).

    Attributes:
        state: The new state.
        action: What to do now, or ``None`` when the state is settled.
    """

    state: ClaimState
    action: Action | None


BUSY_DEVICE_BACKOFF: Final = Backoff(base=0.5, cap=8.0, factor=2.0, max_attempts=5)
"""How a busy device is retried: 0.5 s, 1 s, 2 s, 4 s, then the claim rolls back."""


class ClaimMachine:
    """Decides, one action at a time, how a device reaches its claim's goal."""

    def __init__(self, backoff: Backoff = BUSY_DEVICE_BACKOFF) -> None:
        """Retry busy devices according to ``backoff`` (which must give up at some point).

        Raises:
            ValueError: ``backoff`` retries for ever: a busy device must roll back eventually.
        """
        if backoff.max_attempts is None:
            raise ValueError("a claim's backoff needs max_attempts: a busy device must roll back")
        self.backoff = backoff
        self._max_attempts = backoff.max_attempts

    @staticmethod
    def start(address: PciAddress, goal: Goal, original_driver: DriverName | None) -> ClaimState:
        """The state of a claim that has done nothing yet (also the state after a crash)."""
        return ClaimState(address=address, goal=goal, original_driver=original_driver)

    def step(self, state: ClaimState, seen: Observation, now: float) -> Step:
        """The next state and action, from ``state`` and what the host shows ``now``."""
        if state.phase is ClaimPhase.FAILED:
            return Step(state, None)
        device = seen.device
        if device is None:
            return self._vanished(state)
        if state.retry_at is not None and now < state.retry_at:
            return Step(attrs.evolve(state, phase=ClaimPhase.WAITING), Wait(state.retry_at))
        state = attrs.evolve(state, retry_at=None)
        if state.goal is Goal.PASSTHROUGH:
            return self._towards_vfio(state, device, seen, now)
        return self._towards_host(state, device, seen, now)

    def failed(self, state: ClaimState, error_number: int, detail: str, now: float) -> Step:
        """The next state after the kernel refused the last action with ``error_number``.

        A busy device is retried after a growing delay, up to ``backoff.max_attempts``; any
        other refusal, or running out of attempts, rolls a passthrough back to the original
        driver, and fails a return.
        """
        # ENODEV also answers a write that raced with another change (unbinding a driver that
        # already let go): retry; if the device really is gone, the next observation says so.
        temporary = error_number in {errno.EBUSY, errno.EAGAIN, errno.ENODEV, errno.ENXIO}
        return self._no_progress(state, detail, now, temporary=temporary)

    # --- internals ---------------------------------------------------------------------

    def _vanished(self, state: ClaimState) -> Step:
        message = (
            f"PCI device {state.address} is gone (hot-unplugged or reads vendor 0xffff); "
            "check the hardware, then claim it again"
        )
        if state.goal is Goal.HOST:
            return Step(
                attrs.evolve(
                    state,
                    phase=ClaimPhase.RETURNED,
                    reason=Reason.DEVICE_VANISHED,
                    message=message,
                ),
                None,
            )
        return self._fail(state, Reason.DEVICE_VANISHED, message)

    @staticmethod
    def _fail(state: ClaimState, reason: Reason, message: str) -> Step:
        return Step(
            attrs.evolve(state, phase=ClaimPhase.FAILED, reason=reason, message=message), None
        )

    def _no_progress(self, state: ClaimState, detail: str, now: float, *, temporary: bool) -> Step:
        """The last action did not move the device: back off, roll back or fail."""
        attempts = state.attempts + 1
        if temporary and not self.backoff.gives_up(attempts):
            until = now + self.backoff.delay(attempts)
            waiting = attrs.evolve(
                state,
                phase=ClaimPhase.WAITING,
                reason=Reason.DEVICE_BUSY,
                message=(
                    f"{state.address} is busy ({detail}); retry {attempts} of "
                    f"{self._max_attempts - 1} in {until - now:.1f}s"
                ),
                attempts=attempts,
                retry_at=until,
            )
            return Step(waiting, Wait(until))
        if state.goal is Goal.PASSTHROUGH:
            rolled = attrs.evolve(
                state,
                goal=Goal.HOST,
                phase=ClaimPhase.PENDING,
                reason=Reason.BIND_FAILED,
                message=(
                    f"could not bind {state.address} to vfio-pci after {attempts} attempt(s): "
                    f"{detail}; returning it to {state.original_driver or 'no driver'}. Stop "
                    "whatever uses the device (or check dmesg), then claim it again"
                ),
                attempts=0,
                rolled_back=True,
            )
            return Step(rolled, Wait(now))
        return self._fail(
            state,
            Reason.RETURN_FAILED,
            f"could not return {state.address} to {state.original_driver or 'no driver'}: "
            f"{detail}; bind it by hand (echo {state.address} > "
            f"/sys/bus/pci/drivers/{state.original_driver}/bind) or reboot",
        )

    def _towards_vfio(  # noqa: PLR0911 - a decision table: one return per row
        self, state: ClaimState, device: PciDevice, seen: Observation, now: float
    ) -> Step:
        address = state.address
        if device.driver == VFIO_DRIVER:
            return Step(
                attrs.evolve(
                    state,
                    phase=ClaimPhase.BOUND,
                    reason=Reason.BOUND,
                    message=f"{address} is bound to vfio-pci",
                    attempts=0,
                ),
                None,
            )
        if not seen.modules_loaded:
            if state.phase is ClaimPhase.LOADING_MODULES:
                return self._fail(
                    state,
                    Reason.MODULES_MISSING,
                    "vfio-pci is not available after loading vfio_pci and vfio_iommu_type1; "
                    "install the kernel's vfio modules or enable the IOMMU (intel_iommu=on / "
                    "amd_iommu=on)",
                )
            return self._go(state, ClaimPhase.LOADING_MODULES, LoadModules())
        if device.driver is not None:
            if state.phase is ClaimPhase.UNBINDING:
                return self._no_progress(
                    state, f"still bound to {device.driver} after unbind", now, temporary=True
                )
            return self._go(state, ClaimPhase.UNBINDING, Unbind(address, device.driver))
        if seen.override != VFIO_DRIVER:
            if state.phase is ClaimPhase.OVERRIDING:
                return self._no_progress(
                    state, "driver_override did not take vfio-pci", now, temporary=False
                )
            return self._go(state, ClaimPhase.OVERRIDING, SetOverride(address, VFIO_DRIVER))
        if state.phase is ClaimPhase.PROBING:
            # drivers_probe reports no probe error; the driver's own bind file does.
            return self._go(state, ClaimPhase.BINDING, BindDriver(address, VFIO_DRIVER))
        if state.phase is ClaimPhase.BINDING:
            return self._no_progress(
                state, "vfio-pci accepted the bind but does not drive it", now, temporary=False
            )
        return self._go(state, ClaimPhase.PROBING, Probe(address))

    def _towards_host(  # noqa: PLR0911 - a decision table: one return per row
        self, state: ClaimState, device: PciDevice, seen: Observation, now: float
    ) -> Step:
        address = state.address
        original = state.original_driver
        if device.driver == original and seen.override in {None, original}:
            return self._returned(state)
        if device.driver is not None and device.driver != original:
            if state.phase is ClaimPhase.UNBINDING:
                return self._no_progress(
                    state, f"still bound to {device.driver} after unbind", now, temporary=True
                )
            return self._go(state, ClaimPhase.UNBINDING, Unbind(address, device.driver))
        if seen.override is not None and seen.override != original:
            if state.phase is ClaimPhase.OVERRIDING:
                return self._no_progress(
                    state, "driver_override could not be cleared", now, temporary=False
                )
            return self._go(state, ClaimPhase.OVERRIDING, SetOverride(address, None))
        if original is None:  # unbound and no override: already where it started
            return self._returned(state)
        if state.phase is ClaimPhase.BINDING:
            return self._no_progress(
                state, f"{original} accepted the bind but does not drive it", now, temporary=False
            )
        return self._go(state, ClaimPhase.BINDING, BindDriver(address, original))

    @staticmethod
    def _returned(state: ClaimState) -> Step:
        original = state.original_driver or "no driver"
        return Step(
            attrs.evolve(
                state,
                phase=ClaimPhase.RETURNED,
                reason=Reason.ROLLED_BACK if state.rolled_back else Reason.RETURNED,
                message=state.message
                if state.rolled_back
                else f"{state.address} is back on {original}",
                attempts=0,
            ),
            None,
        )

    @staticmethod
    def _go(state: ClaimState, phase: ClaimPhase, action: Action | None) -> Step:
        return Step(attrs.evolve(state, phase=phase), action)


def expected(seen: Observation, action: Action) -> Observation:  # noqa: PLR0911 - one per kind
    """What the host should show after ``action`` succeeds (used to print a plan)."""
    device = seen.device
    if device is None:
        return seen
    match action:
        case LoadModules():
            return attrs.evolve(seen, modules_loaded=True)
        case Unbind():
            return attrs.evolve(seen, device=attrs.evolve(device, driver=None))
        case SetOverride(driver=driver):
            return attrs.evolve(seen, override=driver)
        case Probe():
            return attrs.evolve(seen, device=attrs.evolve(device, driver=seen.override))
        case BindDriver(driver=driver):
            return attrs.evolve(seen, device=attrs.evolve(device, driver=driver))
        case Wait():
            return seen


def planned_actions(
    machine: ClaimMachine, state: ClaimState, seen: Observation, limit: int = 16
) -> tuple[Action, ...]:
    """The actions that take ``state`` to its goal if every one succeeds."""
    actions: list[Action] = []
    for _ in range(limit):
        step = machine.step(state, seen, 0.0)
        if step.action is None:
            break
        actions.append(step.action)
        state, seen = step.state, expected(seen, step.action)
    return tuple(actions)
