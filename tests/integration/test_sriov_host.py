"""Writing ``sriov_numvfs`` through the real adapter on a fake kernel that answers as Linux does.

Each test asserts on the host's resulting state: the VFs the PCI bus reader finds, their
``physfn``/``virtfn`` links and IOMMU groups, and the count the PF reports.
"""

from __future__ import annotations

import errno
import os

import pytest
from pyfakefs.helpers import reset_ids, set_uid

from fakesys.hosts import FREE_NIC, SYS, workstation
from fakesys.tree import FakeDevice
from pcicore.address import PciAddress
from pcicore.engine import ClaimRequest
from pcicore.errors import SriovWriteError
from pcicore.policy import GroupPolicy
from pcicore.sriov import plan_num_vfs, vfs_of
from pcihost.sriov import SysfsSriovControl
from pcihost.sysfs import SysfsPciBus

PF = "0000:06:00.0"
SRIOV_NIC = FakeDevice(
    PF,
    0x8086,
    0x10FB,
    0x020000,
    driver="ixgbe",
    iommu_group=6,
    sriov_totalvfs=4,
    interface="enp6s0",
    vf_device=0x10ED,
    vf_driver="ixgbevf",
)


def _a(text: str) -> PciAddress:
    return PciAddress.parse(text)


@pytest.fixture
def host(fs):
    """The workstation with an SR-IOV NIC (4 VFs at most) on ixgbe."""
    return workstation(fs, extra=(SRIOV_NIC,))


def _vfs(bus: SysfsPciBus) -> list[tuple[str, int | None, str | None]]:
    return [
        (str(d.address), d.iommu_group, d.driver) for d in bus.devices() if d.sriov.physfn == _a(PF)
    ]


class TestInterfaces:
    """SysfsSriovControl.interfaces."""

    def test_reads_the_pfs_network_interface(self, host):
        """The PF's net/ entry is its interface; a device without one is left out."""
        control = SysfsSriovControl(SYS)
        assert control.interfaces([_a(PF), _a(FREE_NIC)]) == {_a(PF): "enp6s0"}

    def test_a_device_without_an_interface_does_not_hide_the_next_one(self, host):
        """Asked first for a device with no net/ entry, the PF after it is still found."""
        control = SysfsSriovControl(SYS)
        assert control.interfaces([_a(FREE_NIC), _a(PF)]) == {_a(PF): "enp6s0"}


class TestWriteNumVfs:
    """SysfsSriovControl.write_num_vfs against the fake kernel."""

    def test_two_vfs_appear_with_links_and_groups_of_their_own(self, host):
        """Writing 2 creates two VFs on the VF driver, each in a new IOMMU group."""
        SysfsSriovControl(SYS).write_num_vfs(_a(PF), 2)
        bus = SysfsPciBus(SYS)
        assert _vfs(bus) == [("0000:06:10.0", 7, "ixgbevf"), ("0000:06:10.1", 8, "ixgbevf")]
        pf = bus.device(_a(PF))
        assert pf is not None
        assert pf.sriov.num_vfs == 2
        pf_dir = host.tree.device_dir(PF)
        assert sorted(n for n in os.listdir(pf_dir) if n.startswith("virtfn")) == [
            "virtfn0",
            "virtfn1",
        ]

    def test_non_zero_over_non_zero_is_busy_and_changes_nothing(self, host):
        """The kernel answers EBUSY; the two VFs stay and the PF still reports 2."""
        control = SysfsSriovControl(SYS)
        control.write_num_vfs(_a(PF), 2)
        with pytest.raises(SriovWriteError, match="write 0 first") as caught:
            control.write_num_vfs(_a(PF), 3)
        assert caught.value.errno == errno.EBUSY
        bus = SysfsPciBus(SYS)
        assert len(_vfs(bus)) == 2
        pf = bus.device(_a(PF))
        assert pf is not None
        assert pf.sriov.num_vfs == 2

    def test_above_total_is_out_of_range(self, host):
        """Five VFs on a PF of four: ERANGE, with the fix, and no VF created."""
        with pytest.raises(SriovWriteError, match="sriov_totalvfs") as caught:
            SysfsSriovControl(SYS).write_num_vfs(_a(PF), 5)
        assert caught.value.errno == errno.ERANGE
        assert _vfs(SysfsPciBus(SYS)) == []

    def test_a_pf_without_driver_cannot_configure_vfs(self, host):
        """With the PF unbound the kernel answers ENOENT: bind its driver first."""
        (host.tree.device_dir(PF) / "driver" / "unbind").write_text(f"{PF}\n")
        assert host.driver(PF) is None
        with pytest.raises(SriovWriteError, match="bind its network driver") as caught:
            SysfsSriovControl(SYS).write_num_vfs(_a(PF), 1)
        assert caught.value.errno == errno.ENOENT

    def test_zero_removes_every_vf_and_its_links(self, host):
        """After 2 then 0 the bus has no VF, no virtfn link and no VF IOMMU group."""
        control = SysfsSriovControl(SYS)
        control.write_num_vfs(_a(PF), 2)
        control.write_num_vfs(_a(PF), 0)
        assert _vfs(SysfsPciBus(SYS)) == []
        pf_dir = host.tree.device_dir(PF)
        assert not [n for n in os.listdir(pf_dir) if n.startswith("virtfn")]
        groups = os.listdir(SYS / "kernel" / "iommu_groups")
        assert "7" not in groups
        assert "8" not in groups

    def test_open_failures_carry_the_device_count_errno_and_the_right_advice(self, host, fs):
        """No sriov_numvfs: not a PF; a directory there (EISDIR): the general advice."""
        path = f"{SYS}/bus/pci/devices/{FREE_NIC}/sriov_numvfs"
        with pytest.raises(SriovWriteError) as caught:
            SysfsSriovControl(SYS).write_num_vfs(_a(FREE_NIC), 1)
        error = caught.value
        assert (error.address, error.count, error.errno) == (_a(FREE_NIC), 1, errno.ENOENT)
        assert str(error) == (
            f"[Errno 2] cannot open {path}: No such file or directory; the device is not an "
            "SR-IOV PF or left the bus"
        )
        fs.create_dir(str(host.tree.device_dir(FREE_NIC) / "sriov_numvfs"))
        with pytest.raises(SriovWriteError) as caught:
            SysfsSriovControl(SYS).write_num_vfs(_a(FREE_NIC), 1)
        assert caught.value.errno == errno.EISDIR
        assert str(caught.value).endswith("; check the device and the kernel log")

    def test_open_refused_for_permissions_says_to_run_privileged(self, host, fs):
        """EACCES on open: the advice for permissions, not the general one."""
        fs.chmod(str(host.tree.device_dir(PF) / "sriov_numvfs"), 0o444, force_unix_mode=True)
        set_uid(1000)
        try:
            with pytest.raises(SriovWriteError) as caught:
                SysfsSriovControl(SYS).write_num_vfs(_a(PF), 1)
        finally:
            reset_ids()
        assert caught.value.errno == errno.EACCES
        assert str(caught.value).endswith(
            "; the agent may not write sysfs; run it privileged with /sys mounted writable"
        )

    def test_a_refused_write_carries_the_device_and_count(self, host):
        """EBUSY on write: the error names the PF and the count asked for."""
        control = SysfsSriovControl(SYS)
        control.write_num_vfs(_a(PF), 2)
        with pytest.raises(SriovWriteError) as caught:
            control.write_num_vfs(_a(PF), 3)
        assert (caught.value.address, caught.value.count) == (_a(PF), 3)

    def test_a_device_without_sriov_is_named_in_the_error(self, host):
        """A function with no sriov_numvfs: the open fails, naming the device."""
        with pytest.raises(SriovWriteError, match="not an SR-IOV PF"):
            SysfsSriovControl(SYS).write_num_vfs(_a(FREE_NIC), 1)


class TestPlanOnTheHost:
    """The pure plan carried out by the adapter."""

    def test_a_change_of_count_goes_through_zero_and_succeeds(self, host):
        """2 → 3 is planned as 0 then 3; carried out, the bus shows three VFs."""
        control = SysfsSriovControl(SYS)
        control.write_num_vfs(_a(PF), 2)
        bus = SysfsPciBus(SYS)
        plan = plan_num_vfs(bus.device(_a(PF)), 3, vfs=vfs_of(_a(PF), bus.devices()))
        assert plan.writes == (0, 3)
        for count in plan.writes:
            control.write_num_vfs(_a(PF), count)
        assert [a for a, _, _ in _vfs(SysfsPciBus(SYS))] == [
            "0000:06:10.0",
            "0000:06:10.1",
            "0000:06:10.2",
        ]

    def test_a_vf_is_claimed_to_vfio_like_any_device(self, host):
        """A VF moves to vfio-pci alone (its own group) and its /dev/vfio node appears."""
        SysfsSriovControl(SYS).write_num_vfs(_a(PF), 2)
        outcomes = host.engine().bind(ClaimRequest(_a("0000:06:10.1"), GroupPolicy.GROUP))
        assert [o.bound for o in outcomes] == [True]
        assert host.driver("0000:06:10.1") == "vfio-pci"
        assert host.driver("0000:06:10.0") == "ixgbevf"
        assert 8 in host.kernel.vfio_groups()


class TestFakeKernelSriov:
    """The fake kernel's sriov_numvfs answers as Linux's does (other tests rely on it)."""

    def test_text_that_is_not_a_count_is_invalid(self, host):
        """Writing "two" fails with EINVAL and the PF still reads 0."""
        path = host.tree.device_dir(PF) / "sriov_numvfs"
        fd = os.open(path, os.O_WRONLY)
        try:
            with pytest.raises(OSError, match="Invalid argument") as caught:
                os.write(fd, b"two\n")
        finally:
            os.close(fd)
        assert caught.value.errno == errno.EINVAL
        assert path.read_text() == "0\n"

    def test_writing_the_current_count_changes_nothing(self, host):
        """2 over 2 is accepted without removing or re-creating the VFs."""
        control = SysfsSriovControl(SYS)
        control.write_num_vfs(_a(PF), 2)
        before = os.stat(host.tree.device_dir("0000:06:10.0")).st_ino
        control.write_num_vfs(_a(PF), 2)
        assert os.stat(host.tree.device_dir("0000:06:10.0")).st_ino == before
        assert host.kernel.vfs_of(PF) == ["0000:06:10.0", "0000:06:10.1"]
