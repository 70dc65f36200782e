"""``pcidevices bind/release/status/restore`` on the fake kernel, through ``cli.main``."""

from __future__ import annotations

import pytest

from fakesys.hosts import FREE_NIC, GPU, GPU_AUDIO, MGMT_NIC, STATE, workstation
from pcicore.address import PciAddress
from pcicore.claim import BindDriver, SetOverride, Unbind
from pcicore.device import DriverName
from pcidevices.cli import main
from pcihost.binding import SysfsDriverControl

ROOTS = ["--sysfs", "/sys", "--proc", "/proc", "--state-file", str(STATE)]


class TestNodeAdminCli:
    """The node-admin CLI moves devices and records them, with one-line errors."""

    def test_bind_group_then_release_round_trips(self, fs, capsys):
        """``bind --group`` moves GPU and audio; ``release`` returns both; status shows it."""
        host = workstation(fs)
        assert main(["bind", GPU, "--group", *ROOTS]) == 0
        assert (host.driver(GPU), host.driver(GPU_AUDIO)) == ("vfio-pci", "vfio-pci")
        assert main(["status", *ROOTS]) == 0
        out = capsys.readouterr().out
        assert f"{GPU_AUDIO}\t0403\tvfio-pci\tsnd_hda_intel\tgroup (with {GPU})" in out
        assert main(["release", GPU, *ROOTS]) == 0
        assert (host.driver(GPU), host.driver(GPU_AUDIO)) == ("nouveau", "snd_hda_intel")

    def test_dry_run_prints_the_plan_and_changes_nothing(self, fs, capsys):
        """``--dry-run`` lists the writes per device and performs none."""
        host = workstation(fs)
        assert main(["bind", GPU, "--policy", "group", "--dry-run", *ROOTS]) == 0
        out = capsys.readouterr().out
        assert "unbind from nouveau" in out
        assert "set driver_override to vfio-pci" in out
        assert GPU_AUDIO in out
        assert host.kernel.writes == []
        assert not STATE.exists()

    def test_refused_device_is_one_line_on_stderr_and_nonzero(self, fs, capsys):
        """The management NIC: exit 1, one line naming the default route, no traceback."""
        host = workstation(fs)
        assert main(["bind", MGMT_NIC, *ROOTS]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert "default route" in err
        assert "Traceback" not in err
        assert host.driver(MGMT_NIC) == "e1000e"

    @pytest.mark.parametrize(
        "address",
        [
            pytest.param("../../../etc/passwd", id="path-traversal"),
            pytest.param("0000:zz:00.0", id="not-hex"),
            pytest.param("0000:03:00.0" + "0" * 200, id="overlong"),
            pytest.param("0000:03:00.0/../../x", id="suffix-path"),
        ],
    )
    def test_hostile_address_never_reaches_the_filesystem(self, fs, capsys, address):
        """A hostile address is rejected before any path is built: no write, no state file."""
        host = workstation(fs)
        assert main(["bind", address, *ROOTS]) == 1
        assert "invalid PCI address" in capsys.readouterr().err
        assert host.kernel.writes == []
        assert not STATE.exists()
        assert main(["release", address, *ROOTS]) == 1

    def test_restore_after_reboot_rebinds_recorded_claims(self, fs):
        """Claims recorded before a reboot are bound again by ``restore``."""
        host = workstation(fs)
        assert main(["bind", FREE_NIC, *ROOTS]) == 0
        # A reboot: the kernel binds igb again (override gone), the state file survives.
        control = SysfsDriverControl(host.modprobe)
        address = PciAddress.parse(FREE_NIC)
        control.apply(Unbind(address, DriverName("vfio-pci")))
        control.apply(SetOverride(address, None))
        control.apply(BindDriver(address, DriverName("igb")))
        assert host.driver(FREE_NIC) == "igb"
        assert main(["restore", *ROOTS]) == 0
        assert host.driver(FREE_NIC) == "vfio-pci"
