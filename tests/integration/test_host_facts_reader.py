"""`HostFactsReader` on the pyfakefs workstation: which devices the host uses, and why.

Each case adds to `fakesys.hosts.workstation` what a real host has (a bond under a bridge, a
global IPv6 address, a RAID or LVM stack, a /dev/mapper link) and checks the whole answer: a
device the host uses that is missed would be passed through and take the node offline, and one
wrongly reported would be refused for ever.
"""

from __future__ import annotations

import pytest
from pyfakefs.helpers import reset_ids, set_uid

from fakesys.hosts import BOOT_VGA, FREE_NIC, GPU, MGMT_NIC, NVME, PROC, SYS, workstation
from fakesys.tree import FakeDevice
from pcicore.address import PciAddress
from pcicore.hostfacts import HostFacts
from pcihost.hostfacts import HostFactsReader

SATA = "0000:00:17.0"
SATA_DEVICE = FakeDevice(SATA, 0x8086, 0xA352, 0x010601, driver="ahci", iommu_group=6)
XHCI = "0000:00:14.0"
XHCI_DEVICE = FakeDevice(XHCI, 0x8086, 0xA36D, 0x0C0330, driver="xhci_hcd", iommu_group=7)
NET = SYS / "class" / "net"
BLOCK = SYS / "class" / "block"
ROUTE = PROC / "net" / "route"
IF_INET6 = PROC / "net" / "if_inet6"
MOUNTS = PROC / "mounts"
ROUTE_HEADER = "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n"


def a(text: str) -> PciAddress:
    return PciAddress.parse(text)


def facts() -> HostFacts:
    return HostFactsReader(sysfs=SYS, proc=PROC).facts()


def routes(fs, *lines: str) -> None:
    """Replace the route table with ``lines`` (tab-separated, as the kernel prints them)."""
    fs.remove_object(str(ROUTE))
    fs.create_file(str(ROUTE), contents=ROUTE_HEADER + "".join(f"{line}\n" for line in lines))


def route(interface: str, destination: str, mask: str) -> str:
    return f"{interface}\t{destination}\t00000000\t0001\t0\t0\t0\t{mask}\t0\t0\t0"


def virtual(fs, name: str, master: str | None = None) -> None:
    """A virtual interface (bridge, bond): a directory with no device link."""
    fs.create_dir(str(NET / name))
    if master is not None:
        enslave(fs, name, master)


def enslave(fs, name: str, master: str) -> None:
    """``name``'s ``master`` link, as the kernel writes it (through devices/virtual/net)."""
    fs.create_symlink(str(NET / name / "master"), f"../../../virtual/net/{master}")


def mounts(fs, *lines: str) -> None:
    fs.remove_object(str(MOUNTS))
    fs.create_file(str(MOUNTS), contents="".join(f"{line}\n" for line in lines))


def sata_disk(fs, host) -> None:
    """The disk sda on the SATA controller, with partition sda1 (laid out as the kernel does)."""
    disk = host.tree.device_dir(SATA) / "ata1" / "host0" / "target0:0:0" / "0:0:0:0"
    block = disk / "block" / "sda"
    fs.create_dir(str(block / "sda1"))
    fs.create_symlink(str(block / "device"), "../..")
    fs.create_symlink(str(BLOCK / "sda"), str(block))
    fs.create_symlink(str(BLOCK / "sda1"), str(block / "sda1"))


def stacked(fs, name: str, *slaves: str) -> None:
    """A virtual block device (md, dm) made of ``slaves``."""
    real = SYS / "devices" / "virtual" / "block" / name
    fs.create_dir(str(real / "slaves"))
    for slave in slaves:
        fs.create_symlink(str(real / "slaves" / slave), str(BLOCK / slave))
    fs.create_symlink(str(BLOCK / name), str(real))


@pytest.fixture
def unprivileged():
    """Run the test body as an ordinary user, so that file modes are enforced."""
    set_uid(1000)
    yield
    reset_ids()


class TestNetwork:
    """NICs with the default route, with any route or global IPv6 address, and under masters."""

    def test_workstation_management_nic_carries_the_default_route_and_an_address(self, fs):
        """eno1 has the default route and its subnet's route; the free NIC has neither."""
        workstation(fs)
        found = facts()
        assert found.default_route_nics == {a(MGMT_NIC): "eno1"}
        assert found.addressed_nics == {a(MGMT_NIC): "eno1"}
        assert found.unreadable == {}

    def test_subnet_route_marks_a_nic_addressed_but_not_default(self, fs):
        """enp3s0 with only its subnet's route: addressed, not the default route's NIC."""
        workstation(fs)
        routes(
            fs,
            route("eno1", "00000000", "00000000"),
            route("enp3s0", "0002A8C0", "00FFFFFF"),
        )
        found = facts()
        assert found.default_route_nics == {a(MGMT_NIC): "eno1"}
        assert found.addressed_nics == {a(MGMT_NIC): "eno1", a(FREE_NIC): "enp3s0"}

    @pytest.mark.parametrize(
        ("destination", "mask"),
        [("00000000", "00FFFFFF"), ("0002A8C0", "00000000")],
        ids=["zero-destination-with-a-mask", "zero-mask-with-a-destination"],
    )
    def test_only_destination_and_mask_both_zero_is_the_default_route(self, fs, destination, mask):
        """A route with one of the two zero is a subnet route, not the default."""
        workstation(fs)
        routes(fs, route("enp3s0", destination, mask))
        found = facts()
        assert found.default_route_nics == {}
        assert found.addressed_nics == {a(FREE_NIC): "enp3s0"}

    def test_short_route_lines_are_skipped(self, fs):
        """A line needs the eight columns up to Mask (the kernel prints eleven); fewer: skipped."""
        workstation(fs)
        routes(
            fs,
            "enp3s0\t00000000\t00000000\t0001\t0\t0\t0",
            "eno1\t0001A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF",
        )
        assert facts().addressed_nics == {a(MGMT_NIC): "eno1"}

    def test_global_ipv6_address_marks_a_nic_addressed(self, fs):
        """Scope 00 (global) counts; link-local (20) and short lines do not."""
        workstation(fs)
        routes(fs)
        fs.create_file(
            str(IF_INET6),
            contents=(
                "20010db8000000000000000000000001 03 40 00 80 enp3s0\n"
                "fe800000000000000000000000000001 02 40 20 00 eno1\n"
                "20010db8000000000000000000000002 02 40 00\n"
            ),
        )
        found = facts()
        assert found.addressed_nics == {a(FREE_NIC): "enp3s0"}
        assert found.default_route_nics == {}
        assert found.unreadable == {}

    def test_unreadable_ipv6_table_is_named(self, fs, unprivileged):
        """if_inet6 may be absent (IPv6 off), but one that cannot be read is not "none"."""
        workstation(fs)
        fs.create_file(str(IF_INET6), contents="", st_mode=0o100000)
        assert facts().unreadable == {str(IF_INET6): "Permission denied"}

    def test_bond_under_a_bridge_and_a_nic_on_the_bridge_are_all_protected(self, fs):
        """br0 (default route) holds enp3s0 directly and bond0, which holds eno1.

        Both NICs carry the node's traffic; each is named with the interface above it.
        """
        workstation(fs)
        routes(fs, route("br0", "00000000", "00000000"))
        virtual(fs, "br0")
        virtual(fs, "bond0", master="br0")
        enslave(fs, "enp3s0", "br0")
        enslave(fs, "eno1", "bond0")
        found = facts()
        assert found.default_route_nics == {
            a(MGMT_NIC): "eno1 under br0",
            a(FREE_NIC): "enp3s0 under br0",
        }
        assert found.unreadable == {}

    def test_interface_enslaved_elsewhere_is_not_taken_along(self, fs):
        """eno1 under bond1, which carries no route: only br0's NIC is protected."""
        workstation(fs)
        routes(fs, route("br0", "00000000", "00000000"))
        virtual(fs, "br0")
        virtual(fs, "bond1")
        enslave(fs, "enp3s0", "br0")
        enslave(fs, "eno1", "bond1")
        assert facts().default_route_nics == {a(FREE_NIC): "enp3s0 under br0"}

    def test_master_that_is_a_file_reads_as_no_master(self, fs):
        """A ``master`` that is not a link (EINVAL from readlink) is no master and no error."""
        workstation(fs)
        fs.create_file(str(NET / "enp3s0" / "master"), contents="br0\n")
        found = facts()
        assert found.default_route_nics == {a(MGMT_NIC): "eno1"}
        assert found.unreadable == {}

    def test_master_link_that_cannot_be_read_is_named(self, fs, unprivileged):
        """An interface directory the agent may not search: its master is unknown, so said."""
        workstation(fs)
        fs.chmod(str(NET / "enp3s0"), 0o600, force_unix_mode=True)
        found = facts()
        assert found.unreadable[str(NET / "enp3s0" / "master")] == "Permission denied"

    def test_interface_list_that_cannot_be_read_is_named(self, fs, unprivileged):
        """Without the list of interfaces no master can be followed: named, not "none"."""
        workstation(fs)
        fs.chmod(str(NET), 0o000, force_unix_mode=True)
        assert facts().unreadable.get(str(NET)) == "Permission denied"

    def test_missing_interface_list_is_unreadable_not_empty(self, fs):
        """No /sys/class/net at all (sysfs not mounted as expected): named, not "no masters"."""
        workstation(fs)
        fs.remove_object(str(NET))
        assert facts().unreadable.get(str(NET)) == "No such file or directory"

    def test_usb_nic_protects_its_usb_host_controller(self, fs):
        """A USB NIC with the default route: the PCI function above it is its xHCI controller."""
        host = workstation(fs, extra=(XHCI_DEVICE,))
        usb = host.tree.device_dir(XHCI) / "usb1" / "1-1" / "1-1:1.0"
        fs.create_dir(str(usb))
        fs.create_dir(str(NET / "enx0"))
        fs.create_symlink(str(NET / "enx0" / "device"), str(usb))
        routes(fs, route("enx0", "00000000", "00000000"))
        assert facts().default_route_nics == {a(XHCI): "enx0"}

    def test_nic_that_is_not_on_pci_is_not_reported(self, fs):
        """A platform NIC (on a SoC) has no PCI function to protect: nothing, and no error."""
        workstation(fs)
        platform = SYS / "devices" / "platform" / "soc" / "30be0000.ethernet"
        fs.create_dir(str(platform))
        fs.create_dir(str(NET / "end0"))
        fs.create_symlink(str(NET / "end0" / "device"), str(platform))
        routes(fs, route("end0", "00000000", "00000000"))
        found = facts()
        assert found.default_route_nics == {}
        assert found.unreadable == {}

    @pytest.mark.parametrize("name", ["..", "."])
    def test_route_interface_named_like_a_directory_is_ignored(self, fs, name):
        """A route on ``..`` must not make the reader look outside /sys/class/net (or stop it)."""
        workstation(fs)
        routes(fs, route(name, "00000000", "00000000"), route("eno1", "0001A8C0", "00FFFFFF"))
        fs.create_symlink(str(SYS / "class" / "device"), str(NET / "enp3s0" / "device"))
        fs.create_symlink(str(NET / "device"), str(NET / "enp3s0" / "device"))
        found = facts()
        assert found.default_route_nics == {}
        assert found.addressed_nics == {a(MGMT_NIC): "eno1"}  # the lines after it still count


class TestDisks:
    """The controllers of mounted filesystems, through partitions, RAID and device mapper."""

    def test_root_partition_is_traced_to_its_nvme_controller(self, fs):
        """/dev/nvme0n1p2 on /: the partition's disk holds the device link."""
        workstation(fs)
        assert facts().mounted_disk_controllers == {a(NVME): "/dev/nvme0n1p2 on /"}

    def test_raid_over_two_controllers_protects_both(self, fs):
        """md0 over an NVMe and a SATA partition, mounted on /: both controllers."""
        host = workstation(fs, extra=(SATA_DEVICE,))
        sata_disk(fs, host)
        stacked(fs, "md0", "nvme0n1p2", "sda1")
        mounts(fs, "/dev/md0 / ext4 rw 0 0")
        assert facts().mounted_disk_controllers == {
            a(NVME): "/dev/md0 on /",
            a(SATA): "/dev/md0 on /",
        }

    def test_mapper_link_is_followed_to_the_stack_below(self, fs):
        """/dev/mapper/root -> ../dm-0, dm-0 over md0 over nvme0n1p2: the NVMe controller."""
        workstation(fs)
        stacked(fs, "md0", "nvme0n1p2")
        stacked(fs, "dm-0", "md0")
        fs.create_symlink("/dev/mapper/root", "../dm-0")
        fs.create_file("/dev/dm-0")
        mounts(fs, "/dev/mapper/root / xfs rw 0 0")
        assert facts().mounted_disk_controllers == {a(NVME): "/dev/mapper/root on /"}

    def test_name_without_a_link_is_looked_up_as_written(self, fs):
        """/dev/sda1 with no /dev entry in the fake: found by its own name."""
        host = workstation(fs, extra=(SATA_DEVICE,))
        sata_disk(fs, host)
        mounts(fs, "/dev/sda1 /data ext4 rw 0 0")
        assert facts().mounted_disk_controllers == {a(SATA): "/dev/sda1 on /data"}

    def test_mount_point_with_bytes_that_are_not_ascii_is_read(self, fs):
        """/proc/mounts shows a UTF-8 mount point: the controller is found, nothing fails."""
        workstation(fs)
        fs.remove_object(str(MOUNTS))
        fs.create_file(
            str(MOUNTS),
            contents="/dev/nvme0n1p2 /mnt/donn\xc3\xa9es ext4 rw 0 0\n".encode("latin-1"),
        )
        found = facts()
        assert list(found.mounted_disk_controllers) == [a(NVME)]
        assert found.mounted_disk_controllers[a(NVME)].startswith("/dev/nvme0n1p2 on /mnt/donn")
        assert found.unreadable == {}

    @pytest.mark.parametrize("source", ["/dev/..", "/dev/."])
    def test_mount_source_naming_a_directory_is_not_followed_out_of_class_block(self, fs, source):
        """``/dev/..`` names no block device: /sys/class/block/.. must not be searched."""
        host = workstation(fs)
        fs.create_symlink(str(SYS / "class" / "device"), str(host.tree.device_dir(NVME)))
        fs.create_symlink(str(BLOCK / "device"), str(host.tree.device_dir(NVME)))
        mounts(fs, f"{source} /mnt ext4 rw 0 0")
        assert facts().mounted_disk_controllers == {}

    def test_first_mount_of_a_controller_names_it(self, fs):
        """Two filesystems on one controller: the first mount line is the one shown."""
        workstation(fs)
        mounts(fs, "/dev/nvme0n1p2 / ext4 rw 0 0", "/dev/nvme0n1 /raw ext4 rw 0 0")
        assert facts().mounted_disk_controllers == {a(NVME): "/dev/nvme0n1p2 on /"}

    def test_non_device_sources_and_short_lines_are_skipped(self, fs):
        """proc, tmpfs, NFS and a one-column line name no controller; the next line counts.

        Two columns (source and mount point) are enough.
        """
        workstation(fs)
        mounts(
            fs,
            "proc /proc proc rw 0 0",
            "tmpfs /run tmpfs rw 0 0",
            "server:/export /mnt nfs rw 0 0",
            "/dev/nvme0n1p2",
            "/dev/nvme0n1p2 /boot",
        )
        found = facts()
        assert found.mounted_disk_controllers == {a(NVME): "/dev/nvme0n1p2 on /boot"}
        assert found.unreadable == {}

    def test_dev_link_to_no_block_device_falls_back_to_the_name_as_written(self, fs):
        """The agent's /dev links sda1 to a name sysfs does not know: sda1 itself is looked up."""
        host = workstation(fs, extra=(SATA_DEVICE,))
        sata_disk(fs, host)
        fs.create_symlink("/dev/sda1", "../sdz9")
        mounts(fs, "/dev/sda1 /data ext4 rw 0 0")
        assert facts().mounted_disk_controllers == {a(SATA): "/dev/sda1 on /data"}

    @pytest.mark.parametrize(("depth", "found"), [(8, True), (9, False)])
    def test_stacks_are_followed_eight_levels_deep(self, fs, depth, found):
        """dm-N over ... dm-1 over nvme0n1p2: followed to eight levels below the mount."""
        workstation(fs)
        below = "nvme0n1p2"
        for level in range(1, depth + 1):
            stacked(fs, f"dm-{level}", below)
            below = f"dm-{level}"
        mounts(fs, f"/dev/{below} / ext4 rw 0 0")
        expected = {a(NVME): f"/dev/{below} on /"} if found else {}
        assert facts().mounted_disk_controllers == expected

    def test_stack_member_list_that_cannot_be_read_is_named(self, fs, unprivileged):
        """md0's slaves directory forbidden: named, as the disk under it may be the root's."""
        workstation(fs)
        stacked(fs, "md0", "nvme0n1p2")
        mounts(fs, "/dev/md0 / ext4 rw 0 0")
        slaves = SYS / "devices" / "virtual" / "block" / "md0" / "slaves"
        fs.chmod(str(slaves), 0o000, force_unix_mode=True)
        assert facts().unreadable == {str(slaves): "Permission denied"}

    def test_disk_that_cannot_be_resolved_is_named(self, fs, unprivileged):
        """The NVMe disk's directory not searchable: the mounted partition's link is named."""
        host = workstation(fs)
        disk = host.tree.device_dir(NVME) / "nvme" / "nvme0" / "nvme0n1"
        fs.chmod(str(disk), 0o600, force_unix_mode=True)
        found = facts()
        assert found.unreadable == {str(BLOCK / "nvme0n1p2"): "Permission denied"}
        assert found.mounted_disk_controllers == {}


class TestConsole:
    """The GPU the firmware booted on, by ``boot_vga``."""

    def test_boot_vga_gpu_only(self, fs):
        """boot_vga 1 on the integrated GPU, 0 on the discrete one; others have none."""
        workstation(fs)
        found = facts()
        assert found.boot_vga == frozenset({a(BOOT_VGA)})
        assert found.unreadable == {}

    def test_entries_that_are_not_addresses_are_skipped(self, fs):
        """A stray entry in bus/pci/devices (sorted first) is no device, no error, no stop."""
        workstation(fs)
        fs.create_dir(str(SYS / "bus" / "pci" / "devices" / ".stray"))
        assert facts().boot_vga == frozenset({a(BOOT_VGA)})

    def test_boot_vga_that_cannot_be_read_is_named(self, fs, unprivileged):
        """The discrete GPU's boot_vga forbidden: it might be the console's, so said."""
        host = workstation(fs)
        path = host.tree.device_dir(GPU) / "boot_vga"
        fs.chmod(str(path), 0o000, force_unix_mode=True)
        found = facts()
        assert found.unreadable == {f"{SYS}/bus/pci/devices/{GPU}/boot_vga": "Permission denied"}
        assert found.boot_vga == frozenset({a(BOOT_VGA)})

    def test_device_list_that_cannot_be_read_is_named(self, fs, unprivileged):
        """bus/pci/devices forbidden: no console GPU can be known."""
        workstation(fs)
        devices = SYS / "bus" / "pci" / "devices"
        fs.chmod(str(devices), 0o000, force_unix_mode=True)
        assert facts().unreadable.get(str(devices)) == "Permission denied"
