"""The DRA plugin killed in the middle of a prepare, then started again, on the fake kernel.

The process is "killed" by an exception no handler catches, raised in place of the k-th sysfs
write (or of the CDI spec write), for every k of a GPU + HDMI audio group prepare. Whatever k,
the next start leaves no device half-moved: either the claim is prepared (both functions on
vfio-pci, spec written) or rolled back (both back on their drivers, no override, no record, no
file).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from dra_fakes import FakeResourceClaims, ref, result
from dra_node import CDI, dra_settings, make_preparer
from fakesys.hosts import GPU, GPU_AUDIO, PROC, SYS, workstation
from pcicore.dra_prepare import DraCheckpoint, PreparePhase
from pcicore.ledger import Ledger
from pcicore.policy import GroupPolicy
from pcihost.binding import SysfsDriverControl
from pcihost.statefile import ClaimStateFile

SETTINGS = dra_settings(Path("/srv/dra"))
SPEC = CDI / "pci.devices.harvesterhci.io-vfio_uid-1.json"
# unbind, driver_override, drivers_probe for each of the two functions
WRITES_OF_A_GROUP_PREPARE = 6


class Killed(BaseException):
    """The plugin process dies here."""


class DyingControl:
    """Sysfs driver control that dies at its ``at``-th write."""

    def __init__(self, real: SysfsDriverControl, at: int) -> None:
        self.real = real
        self.at = at
        self.count = 0

    def observe(self, address):
        return self.real.observe(address)

    def apply(self, action):
        self.count += 1
        if self.count == self.at:
            raise Killed
        self.real.apply(action)


def claims_for_the_gpu() -> FakeResourceClaims:
    claims = FakeResourceClaims()
    claims.allocate(ref("vm-gpu"), result(GPU, "gpu"))
    return claims


def settled(host) -> str:
    """'prepared' or 'returned', asserting that it is one of them wholly."""
    drivers = (host.driver(GPU), host.driver(GPU_AUDIO))
    checkpoint = make_preparer(host, SETTINGS, None)._checkpoint.load()
    if drivers == ("vfio-pci", "vfio-pci"):
        assert checkpoint.claims["uid-1"].phase is PreparePhase.PREPARED
        assert SPEC.exists()
        return "prepared"
    assert drivers == ("nouveau", "snd_hda_intel")
    assert host.kernel.override_of(GPU) is None
    assert host.kernel.override_of(GPU_AUDIO) is None
    assert checkpoint == DraCheckpoint()
    assert not SPEC.exists()
    return "returned"


class TestKilledMidPrepare:
    """A start after a kill at any write finishes nothing half-way."""

    @pytest.mark.parametrize("at", range(1, 13))
    def test_a_kill_at_any_sysfs_write_leaves_no_half_moved_device(self, fs, at):
        """Killed at write ``at``: the next start rolls back; the kubelet's retry prepares."""
        host = workstation(fs)
        claims = claims_for_the_gpu()
        real = SysfsDriverControl(host.modprobe, sysfs=SYS, proc=PROC)
        dying = make_preparer(
            host, SETTINGS, claims, policy=GroupPolicy.GROUP, control=DyingControl(real, at)
        )
        with contextlib.suppress(Killed):
            dying.prepare(ref("vm-gpu"))
        killed = at <= WRITES_OF_A_GROUP_PREPARE
        restarted = make_preparer(host, SETTINGS, claims, policy=GroupPolicy.GROUP)
        assert restarted.start() == []
        # Killed before its answer, the prepare is rolled back; past its last write, it is done.
        assert settled(host) == ("returned" if killed else "prepared")
        if killed:
            assert ClaimStateFile(SETTINGS.ledger).load() == Ledger()
        restarted.prepare(ref("vm-gpu"))  # the kubelet asks again
        assert settled(host) == "prepared"

    def test_a_kill_while_writing_the_spec_rolls_the_group_back(self, fs):
        """Both functions were on vfio-pci, the spec not yet written: returned on start."""
        host = workstation(fs)
        claims = claims_for_the_gpu()
        dying = make_preparer(host, SETTINGS, claims, policy=GroupPolicy.GROUP)

        def die(_files):
            raise Killed

        dying._files.write = die
        with pytest.raises(Killed):
            dying.prepare(ref("vm-gpu"))
        assert host.driver(GPU) == "vfio-pci"
        make_preparer(host, SETTINGS, claims, policy=GroupPolicy.GROUP).start()
        assert settled(host) == "returned"

    def test_a_kill_in_unprepare_is_finished_by_the_kubelets_retry(self, fs):
        """Killed while returning: start returns the devices, the retry drops the record."""
        host = workstation(fs)
        claims = claims_for_the_gpu()
        make_preparer(host, SETTINGS, claims, policy=GroupPolicy.GROUP).prepare(ref("vm-gpu"))
        real = SysfsDriverControl(host.modprobe, sysfs=SYS, proc=PROC)
        dying = make_preparer(
            host, SETTINGS, claims, policy=GroupPolicy.GROUP, control=DyingControl(real, 2)
        )
        with pytest.raises(Killed):
            dying.unprepare(ref("vm-gpu"))
        restarted = make_preparer(host, SETTINGS, claims, policy=GroupPolicy.GROUP)
        restarted.start()
        assert (host.driver(GPU), host.driver(GPU_AUDIO)) == ("nouveau", "snd_hda_intel")
        restarted.unprepare(ref("vm-gpu"))
        assert settled(host) == "returned"
