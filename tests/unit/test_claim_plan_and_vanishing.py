"""The dry-run plan of a claim, and what a device that vanishes mid-claim ends as.

`expected` and `planned_actions` print ``pcidevices bind --dry-run``: a wrong plan tells an
operator the bind would do something else than it will. A device that disappears while it is
being returned is already off the host's hands (returned), while one that disappears on its way
to vfio-pci is a failed claim; both must say so.
"""

from __future__ import annotations

import attrs
import pytest

from pcicore.address import PciAddress
from pcicore.claim import (
    BindDriver,
    ClaimMachine,
    ClaimPhase,
    Goal,
    LoadModules,
    Observation,
    Probe,
    Reason,
    SetOverride,
    Unbind,
    Wait,
    expected,
    planned_actions,
)
from pcicore.device import VFIO_DRIVER, DriverName, PciClass, PciDevice

ADDRESS = PciAddress.parse("0000:03:00.0")
IGB = DriverName("igb")


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


class TestExpected:
    """What the host shows after each action succeeds."""

    @pytest.mark.parametrize(
        ("before", "action", "after"),
        [
            pytest.param(_seen("igb", modules=False), LoadModules(), _seen("igb"), id="load"),
            pytest.param(_seen("igb"), Unbind(ADDRESS, IGB), _seen(None), id="unbind"),
            pytest.param(
                _seen(None),
                SetOverride(ADDRESS, VFIO_DRIVER),
                _seen(None, "vfio-pci"),
                id="override",
            ),
            pytest.param(
                _seen(None, "vfio-pci"), Probe(ADDRESS), _seen("vfio-pci", "vfio-pci"), id="probe"
            ),
            pytest.param(_seen(None), BindDriver(ADDRESS, IGB), _seen("igb"), id="bind-original"),
            pytest.param(_seen("igb"), Wait(5.0), _seen("igb"), id="wait-changes-nothing"),
        ],
    )
    def test_each_action_changes_what_it_writes_and_nothing_else(self, before, action, after):
        """One row per action kind."""
        assert expected(before, action) == after

    def test_gone_device_stays_gone(self):
        """No action brings back a device that is not there."""
        gone = Observation(device=None)
        assert expected(gone, Unbind(ADDRESS, IGB)) == gone


class TestPlannedActions:
    """`planned_actions` lists the writes of a bind that meets no refusal."""

    def test_plan_from_the_original_driver_without_modules_lists_every_write(self):
        """Load, unbind, override, probe: the dry run shows the whole path, in order."""
        machine = ClaimMachine()
        state = machine.start(ADDRESS, Goal.PASSTHROUGH, IGB)
        assert planned_actions(machine, state, _seen("igb", modules=False)) == (
            LoadModules(),
            Unbind(ADDRESS, IGB),
            SetOverride(ADDRESS, VFIO_DRIVER),
            Probe(ADDRESS),
        )

    def test_plan_of_a_device_already_on_vfio_is_empty(self):
        """Nothing to do, nothing shown."""
        machine = ClaimMachine()
        state = machine.start(ADDRESS, Goal.PASSTHROUGH, IGB)
        assert planned_actions(machine, state, _seen("vfio-pci", "vfio-pci")) == ()

    def test_plan_of_a_return_binds_the_original_driver(self):
        """Back from vfio-pci: unbind, clear the override, bind igb."""
        machine = ClaimMachine()
        state = machine.start(ADDRESS, Goal.HOST, IGB)
        assert planned_actions(machine, state, _seen("vfio-pci", "vfio-pci")) == (
            Unbind(ADDRESS, VFIO_DRIVER),
            SetOverride(ADDRESS, None),
            BindDriver(ADDRESS, IGB),
        )

    def test_plan_stops_at_the_limit(self):
        """A limit shorter than the path cuts the list there."""
        machine = ClaimMachine()
        state = machine.start(ADDRESS, Goal.PASSTHROUGH, IGB)
        assert planned_actions(machine, state, _seen("igb"), limit=2) == (
            Unbind(ADDRESS, IGB),
            SetOverride(ADDRESS, VFIO_DRIVER),
        )


class TestVanishedDevice:
    """A device that leaves the bus mid-claim."""

    def test_device_gone_while_being_returned_counts_as_returned_and_says_why(self):
        """The host has nothing left to give back: Returned, reason DeviceVanished, with the fix."""
        machine = ClaimMachine()
        state = attrs.evolve(machine.start(ADDRESS, Goal.HOST, IGB), phase=ClaimPhase.BINDING)
        step = machine.step(state, Observation(device=None), 0.0)
        assert step.action is None
        assert step.state.phase is ClaimPhase.RETURNED
        assert step.state.reason is Reason.DEVICE_VANISHED
        assert step.state.message == (
            "PCI device 0000:03:00.0 is gone (hot-unplugged or reads vendor 0xffff); "
            "check the hardware, then claim it again"
        )

    def test_device_gone_on_its_way_to_vfio_fails_the_claim_and_says_why(self):
        """The claim cannot be met: Failed, reason DeviceVanished, with the fix."""
        machine = ClaimMachine()
        state = machine.start(ADDRESS, Goal.PASSTHROUGH, IGB)
        step = machine.step(state, Observation(device=None), 0.0)
        assert step.action is None
        assert step.state.phase is ClaimPhase.FAILED
        assert step.state.reason is Reason.DEVICE_VANISHED
        assert "0000:03:00.0 is gone" in step.state.message
