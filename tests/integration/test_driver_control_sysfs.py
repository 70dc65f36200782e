"""The sysfs `DriverControl` adapter on a fake kernel: what it reports, and what it refuses.

Each test is named after the failure it prevents; the fake kernel (pyfakefs) answers writes as
Linux's driver core does, and the tests assert on the host's state and the adapter's answer.
"""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest
from pyfakefs.helpers import reset_ids, set_uid

from fakesys.hosts import FREE_NIC, PROC, SYS, workstation
from pcicore.address import PciAddress
from pcicore.claim import BindDriver, LoadModules, Probe, SetOverride, Unbind
from pcicore.device import DriverName
from pcicore.errors import DriverWriteError, ModuleLoadError
from pcihost.binding import Modprobe, SysfsDriverControl, SystemClock

NIC = PciAddress.parse(FREE_NIC)


def control(host) -> SysfsDriverControl:
    return SysfsDriverControl(host.modprobe, sysfs=SYS, proc=PROC)


class TestWriteErrors:
    """A refused write comes back as a `DriverWriteError` with the errno the machine decides on."""

    def test_unbind_of_a_device_whose_driver_already_left_reports_enodev(self, fs):
        """A vanished ``driver/unbind`` (ENOENT on open) is reported as ENODEV: a race, retried.

        ENOENT would be a permanent refusal, and the claim would roll back.
        """
        host = workstation(fs)
        host.kernel._detach(FREE_NIC)  # another agent unbound it a moment ago
        with pytest.raises(DriverWriteError) as caught:
            control(host).apply(Unbind(NIC, DriverName("igb")))
        assert caught.value.errno == errno.ENODEV
        assert host.driver(FREE_NIC) is None

    def test_kernel_errno_of_the_write_reaches_the_caller(self, fs):
        """EBUSY from the write itself is kept as EBUSY (the machine backs off on it)."""
        host = workstation(fs)
        host.kernel.fail(FREE_NIC, "unbind", errno.EBUSY)
        with pytest.raises(DriverWriteError) as caught:
            control(host).apply(Unbind(NIC, DriverName("igb")))
        assert caught.value.errno == errno.EBUSY
        assert "writing 0000:03:00.0" in str(caught.value)
        assert host.driver(FREE_NIC) == "igb"

    def test_a_refused_write_names_the_attribute_it_wrote(self, fs):
        """The error carries the sysfs attribute refused, so a report can say which write."""
        host = workstation(fs)
        host.kernel.fail(FREE_NIC, "bind", errno.ENODEV)
        host.kernel._detach(FREE_NIC)
        with pytest.raises(DriverWriteError) as caught:
            control(host).apply(BindDriver(NIC, DriverName("igb")))
        assert caught.value.path == f"{SYS}/bus/pci/drivers/igb/bind"

    def test_write_refused_without_an_errno_reports_eio(self, fs, monkeypatch):
        """An OSError without an errno reaches the machine as EIO, never as 0 (no rule knows 0)."""
        host = workstation(fs)

        def refuse(_fd, _data):
            raise OSError("refused")

        monkeypatch.setattr("pcihost.binding.os.write", refuse)
        with pytest.raises(DriverWriteError) as caught:
            control(host).apply(SetOverride(NIC, DriverName("vfio-pci")))
        assert caught.value.errno == errno.EIO

    def test_refused_clearing_of_the_override_says_an_empty_line_was_written(self, fs):
        """Clearing ``driver_override`` writes only a newline; the message says so, not ``''``.

        The error also carries the attribute written, for the caller's logs.
        """
        host = workstation(fs)
        host.kernel.fail(FREE_NIC, "override", errno.EBUSY)
        attribute = os.fspath(SYS / "bus" / "pci" / "devices" / FREE_NIC / "driver_override")
        with pytest.raises(DriverWriteError) as caught:
            control(host).apply(SetOverride(NIC, None))
        assert caught.value.path == attribute
        assert caught.value.strerror == (
            f"writing an empty line to {attribute} failed: Device or resource busy"
        )

    def test_attribute_that_may_not_be_opened_keeps_its_errno(self, fs):
        """EACCES on open (the agent runs unprivileged) stays EACCES: a refusal, not a race.

        Reported as ENODEV it would be retried as a device that changed under the write.
        """
        host = workstation(fs)
        attribute = os.fspath(SYS / "bus" / "pci" / "drivers_probe")
        fs.chmod(attribute, 0o200, force_unix_mode=True)
        set_uid(1000)
        try:
            with pytest.raises(DriverWriteError) as caught:
                control(host).apply(Probe(NIC))
        finally:
            reset_ids()
        assert caught.value.errno == errno.EACCES
        assert caught.value.path == attribute
        assert caught.value.strerror == f"cannot open {attribute}: Permission denied"


class TestDriverNamesAreNeverPaths:
    """A driver name from the state file or a claim never becomes a path outside sysfs."""

    @pytest.mark.parametrize(
        "name",
        ["../../../etc", "igb/../../x", "", "-rf", "a" * 65, "igb\nvfio-pci"],
        ids=["traversal", "embedded-slash", "empty", "leading-dash", "too-long", "newline"],
    )
    def test_bind_to_a_driver_name_that_is_a_path_is_refused_before_any_write(self, fs, name):
        """The adapter's own check: nothing is written and the error names the bad value."""
        host = workstation(fs)
        host.kernel._detach(FREE_NIC)
        with pytest.raises(DriverWriteError) as caught:
            control(host).apply(BindDriver(NIC, DriverName(name)))
        assert caught.value.errno == errno.EINVAL
        assert "invalid kernel driver name" in str(caught.value)
        assert caught.value.path == name  # the error names the refused value
        assert host.kernel.writes == []

    def test_override_to_a_driver_name_that_is_a_path_is_refused_before_any_write(self, fs):
        """``driver_override`` takes the same check (a newline would write a second command)."""
        host = workstation(fs)
        with pytest.raises(DriverWriteError):
            control(host).apply(SetOverride(NIC, DriverName("vfio-pci\nigb")))
        assert host.kernel.writes == []
        assert host.kernel.override_of(FREE_NIC) is None

    def test_ordinary_driver_names_bind(self, fs):
        """Names with ``_``, ``-`` and ``.`` (``snd_hda_intel``, ``vfio-pci``) are accepted."""
        host = workstation(fs)
        host.kernel._detach(FREE_NIC)
        control(host).apply(BindDriver(NIC, DriverName("igb")))
        assert host.driver(FREE_NIC) == "igb"


class TestObserve:
    """What the adapter reports about a device."""

    def test_unplugged_device_reads_as_gone_with_no_override(self, fs):
        """A device unplugged after its override was set: gone, and no override of nothing.

        The observation of a gone device is the same whatever was written to it before.
        """
        host = workstation(fs)
        driver_control = control(host)
        driver_control.apply(SetOverride(NIC, DriverName("vfio-pci")))
        host.kernel.unplug(FREE_NIC)
        seen = driver_control.observe(NIC)
        assert seen.device is None
        assert seen.override is None

    def test_device_without_a_readable_override_reads_as_having_none(self, fs):
        """No ``driver_override`` to read (removed under us, or a kernel without it): no override.

        Anything else would read as an override to some driver, and the claim would try to clear it.
        """
        host = workstation(fs)
        fs.remove(os.fspath(SYS / "bus" / "pci" / "devices" / FREE_NIC / "driver_override"))
        seen = control(host).observe(NIC)
        assert seen.device is not None
        assert seen.override is None

    def test_override_holding_bytes_that_are_not_ascii_reads_as_another_drivers(self, fs):
        """Another tool wrote bytes that are not ASCII to ``driver_override`` (the kernel lets it).

        The device still reads, with an override that is neither none nor vfio-pci, so a claim
        replaces it, instead of the observation failing.
        """
        host = workstation(fs)
        attribute = os.fspath(SYS / "bus" / "pci" / "devices" / FREE_NIC / "driver_override")
        fs.remove(attribute)
        fs.create_file(attribute, contents=b"vfio-pci\xc3\xa9\n")
        seen = control(host).observe(NIC)
        assert seen.override is not None
        assert seen.override.startswith("vfio-pci")
        assert seen.override != "vfio-pci"


class TestVfioReadiness:
    """Whether vfio-pci can take a device, from the driver's directory and the modules."""

    def test_vfio_not_ready_while_the_vfio_pci_driver_is_not_registered(self, fs):
        """``vfio_iommu_type1`` loaded but no ``drivers/vfio-pci``: not ready.

        A probe then would bind nothing; the machine loads vfio_pci first.
        """
        host = workstation(fs, loaded_modules=("vfio", "vfio_iommu_type1"))
        assert not (SYS / "bus" / "pci" / "drivers" / "vfio-pci").exists()
        assert not control(host).observe(NIC).modules_loaded

    def test_vfio_not_ready_without_the_iommu_backend(self, fs):
        """``drivers/vfio-pci`` present but ``vfio_iommu_type1`` neither loaded nor built in."""
        host = workstation(fs, loaded_modules=("vfio", "vfio_pci"))
        assert (SYS / "bus" / "pci" / "drivers" / "vfio-pci").is_dir()
        assert not control(host).observe(NIC).modules_loaded

    def test_vfio_ready_with_the_driver_and_the_backend(self, fs):
        """Both there: ready."""
        host = workstation(fs)
        assert control(host).observe(NIC).modules_loaded

    def test_built_in_module_is_not_loaded_again(self, fs):
        """A built-in module (in ``/sys/module``, not ``/proc/modules``) counts as present.

        No modprobe runs for it, which would fail: there is no module file to load.
        """
        host = workstation(fs, loaded_modules=("vfio", "vfio_pci"))
        (SYS / "module" / "vfio_iommu_type1").mkdir(parents=True)
        host.modprobe.missing = {"vfio_iommu_type1"}
        driver_control = control(host)
        assert driver_control.missing_modules(("vfio_pci", "vfio_iommu_type1")) == ()
        assert driver_control.observe(NIC).modules_loaded
        driver_control.apply(LoadModules())
        assert "vfio_iommu_type1" not in host.kernel.modules

    def test_modules_listed_in_a_real_proc_modules_file_count_as_loaded(self, tmp_path):
        """Read from a real filesystem (the fake one accepts calls the real ``os.read`` refuses).

        ``vfio_pci`` listed: present; ``vfio_iommu_type1`` neither listed nor built in: missing.
        """
        proc = tmp_path / "proc"
        proc.mkdir()
        (proc / "modules").write_text(
            "vfio_pci 16384 0 - Live 0x0000000000000000\n"
            "vfio 45056 1 vfio_pci, Live 0x0000000000000000\n"
        )
        driver_control = SysfsDriverControl(Modprobe(), sysfs=tmp_path / "sys", proc=proc)
        assert driver_control.missing_modules(("vfio_pci", "vfio_iommu_type1")) == (
            "vfio_iommu_type1",
        )

    def test_a_module_listed_past_the_first_64_kib_of_proc_modules_is_loaded(self, tmp_path):
        """A host with some 1,400 modules: ``vfio_iommu_type1`` starts at byte 65,536.

        So it is the first line after a first read of 64 KiB: a file read only that far, or
        read in pieces joined with anything between them, loses the module's name.
        """
        proc = tmp_path / "proc"
        proc.mkdir()
        line = "{} 16384 0 - Live 0x0000000000000000\n"
        names = [f"module_{n:04}" for n in range(1424)]
        names[0] += "x" * 32  # 1,424 lines of 46 bytes and 32 more: 65,536 bytes in all
        others = "".join(line.format(name) for name in names)
        (proc / "modules").write_text(others + line.format("vfio_iommu_type1"))
        assert len(others) == 65536
        driver_control = SysfsDriverControl(Modprobe(), sysfs=tmp_path / "sys", proc=proc)
        assert driver_control.missing_modules(("vfio_iommu_type1",)) == ()

    def test_module_neither_loaded_nor_built_in_is_missing(self, fs):
        """No ``/proc/modules`` line, no ``/sys/module`` folder: missing; LoadModules loads it."""
        host = workstation(fs, loaded_modules=("vfio",))
        driver_control = control(host)
        assert driver_control.missing_modules(("vfio_pci", "vfio_iommu_type1")) == (
            "vfio_pci",
            "vfio_iommu_type1",
        )
        driver_control.apply(LoadModules())
        assert {"vfio_pci", "vfio_iommu_type1"} <= host.kernel.modules
        assert driver_control.observe(NIC).modules_loaded


def fake_modprobe(folder: Path, script: str) -> str:
    path = folder / "modprobe"
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)
    return str(path)


class TestModprobe:
    """`Modprobe` runs the system's modprobe and turns every failure into an OSError."""

    def test_module_is_loaded_by_running_modprobe_with_its_name(self, tmp_path):
        """``modprobe vfio_pci`` is run with exactly the module's name."""
        log = tmp_path / "args"
        Modprobe(fake_modprobe(tmp_path, f'echo "$@" > {log}')).load("vfio_pci")
        assert log.read_text() == "vfio_pci\n"

    def test_failing_modprobe_raises_with_its_stderr(self, tmp_path):
        """A non-zero exit raises an OSError carrying modprobe's own words."""
        command = fake_modprobe(tmp_path, 'echo "FATAL: Module $1 not found" >&2; exit 1')
        with pytest.raises(OSError, match="FATAL") as caught:
            Modprobe(command).load("vfio_pci")
        assert caught.value.strerror == "FATAL: Module vfio_pci not found"  # text, trimmed
        assert caught.value.errno == errno.ENOENT

    def test_silent_failing_modprobe_names_the_command(self, tmp_path):
        """No stderr: the message names the command and module that failed."""
        command = fake_modprobe(tmp_path, "exit 1")
        with pytest.raises(OSError, match=r"modprobe vfio_pci failed"):
            Modprobe(command).load("vfio_pci")

    def test_missing_modprobe_raises_enoent_naming_it(self, tmp_path):
        """No modprobe on the host: ENOENT, naming the command."""
        missing = str(tmp_path / "no-such-modprobe")
        with pytest.raises(OSError, match="no-such-modprobe vfio_pci") as caught:
            Modprobe(missing).load("vfio_pci")
        assert caught.value.errno == errno.ENOENT

    def test_hanging_modprobe_is_cut_off(self, tmp_path, monkeypatch):
        """A modprobe that never returns is abandoned after the timeout, as an OSError."""
        seen: dict = {}

        def run(argv, **kw):
            seen.update(kw)
            raise subprocess.TimeoutExpired(argv, kw["timeout"])

        monkeypatch.setattr("pcihost.binding.subprocess.run", run)
        with pytest.raises(OSError, match="timed out"):
            Modprobe("modprobe", timeout=7.0).load("vfio_pci")
        assert seen["timeout"] == 7.0


class TestSystemClock:
    """The clock a real engine waits with."""

    def test_sleep_waits_and_now_never_goes_back(self):
        """A zero-second sleep returns, and monotonic time does not decrease across it."""
        clock = SystemClock()
        before = clock.now()
        clock.sleep(0.0)
        assert clock.now() >= before


class TestModuleLoadErrors:
    """A module that cannot be loaded is reported with its name, modprobe's words and the fix."""

    def test_missing_module_error_names_it_and_the_fix(self, fs):
        """The message a claim's condition shows when vfio_pci is not installed."""
        host = workstation(fs, loaded_modules=("vfio",))
        host.modprobe.missing = {"vfio_pci"}
        with pytest.raises(ModuleLoadError) as caught:
            control(host).apply(LoadModules())
        assert str(caught.value) == (
            "could not load kernel module vfio_pci: modprobe: FATAL: Module vfio_pci not found; "
            "install the kernel's vfio modules (linux-modules-extra on Ubuntu) and enable the IOMMU"
        )


class TestModprobeDefaults:
    """Without arguments, `Modprobe` runs ``modprobe`` from PATH with a 60 s limit."""

    def test_default_command_is_modprobe_from_path(self, tmp_path, monkeypatch):
        """The first ``modprobe`` on PATH is the one run."""
        log = tmp_path / "args"
        fake_modprobe(tmp_path, f'echo "$@" > {log}')
        monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
        Modprobe().load("vfio_iommu_type1")
        assert log.read_text() == "vfio_iommu_type1\n"

    def test_default_limit_is_a_minute(self, monkeypatch):
        """A module load may take long (firmware), but not for ever: 60 s."""
        seen: dict = {}

        def run(argv, **kw):
            seen.update(kw)
            raise subprocess.TimeoutExpired(argv, kw["timeout"])

        monkeypatch.setattr("pcihost.binding.subprocess.run", run)
        with pytest.raises(OSError, match="timed out"):
            Modprobe().load("vfio_pci")
        assert seen["timeout"] == 60.0
