"""SysfsPciBus reads devices from a sysfs tree laid out as the kernel lays it out (pyfakefs)."""

import itertools
from pathlib import Path

import pytest

from fakesys import FakeDevice, SysfsTree
from pcicore.address import PciAddress
from pcicore.errors import SysfsError
from pcihost.sysfs import SysfsPciBus

ROOT = Path("/sys")


@pytest.fixture
def tree(fs):
    return SysfsTree(ROOT)


def read(address: str):
    return SysfsPciBus(ROOT).device(PciAddress.parse(address))


class TestDeviceAttributes:
    """What is read for one device."""

    def test_ids_class_revision_and_subsystem(self, tree):
        """Ids, class code, revision and subsystem ids come through exactly."""
        tree.add(
            FakeDevice(
                "0000:02:00.0",
                vendor=0x10DE,
                device=0x2235,
                klass=0x030002,
                revision=0xA1,
                subsystem_vendor=0x10DE,
                subsystem_device=0x145A,
            )
        )
        device = read("0000:02:00.0")
        assert (device.vendor_id, device.device_id) == (0x10DE, 0x2235)
        assert (device.pci_class.base, device.pci_class.sub, device.pci_class.prog_if) == (3, 0, 2)
        assert device.revision == 0xA1
        assert (device.subsystem_vendor_id, device.subsystem_device_id) == (0x10DE, 0x145A)

    def test_ids_of_decimal_digits_only_are_still_hex(self, tree):
        """Intel's 8086 and Dell's 1028 have no hex letter: read as decimal they would be wrong.

        Every id, the subsystem's included, is hex in the kernel's uevent (``%04X``).
        """
        tree.add(
            FakeDevice(
                "0000:02:00.0",
                vendor=0x8086,
                device=0x1521,
                klass=0x020000,
                subsystem_vendor=0x1028,
                subsystem_device=0x1F60,
                driver="igb",
            )
        )
        device = read("0000:02:00.0")
        assert (device.vendor_id, device.device_id) == (0x8086, 0x1521)
        assert (device.subsystem_vendor_id, device.subsystem_device_id) == (0x1028, 0x1F60)

    def test_driver_iommu_group_and_numa(self, tree):
        """The bound driver, IOMMU group and NUMA node are read from their links and files."""
        tree.add(FakeDevice("0000:00:1f.6", driver="e1000e", iommu_group=7, numa_node=1))
        device = read("0000:00:1f.6")
        assert device.driver == "e1000e"
        assert device.iommu_group == 7
        assert device.numa_node == 1

    def test_unbound_device_without_iommu_and_numa(self, tree):
        """No driver, no IOMMU group and NUMA -1 read as None."""
        tree.add(FakeDevice("0000:03:00.0", driver=None, iommu_group=None, numa_node=-1))
        device = read("0000:03:00.0")
        assert device.driver is None
        assert device.iommu_group is None
        assert device.numa_node is None

    def test_device_behind_bridges_knows_parent_and_root_port(self, tree):
        """A device nested under bridges reports its parent bridge and its root port."""
        tree.add(
            FakeDevice("0000:00:1c.0", klass=0x060400),
            FakeDevice("0000:01:00.0", klass=0x060400, parent="0000:00:1c.0"),
            FakeDevice("0000:02:00.0", parent="0000:01:00.0"),
        )
        device = read("0000:02:00.0")
        assert device.parent == PciAddress.parse("0000:01:00.0")
        assert device.root_port == PciAddress.parse("0000:00:1c.0")
        assert read("0000:00:1c.0").parent is None
        bridge = read("0000:01:00.0")  # directly under the root port: a chain of two
        assert bridge.parent == bridge.root_port == PciAddress.parse("0000:00:1c.0")
        unread = SysfsPciBus(ROOT, topology=False).devices()
        assert [(d.parent, d.root_port) for d in unread] == [(None, None)] * 3

    def test_an_iommu_group_that_is_not_a_link_reads_as_none(self, tree, fs):
        """readlink() answers EINVAL for a plain file: no group, not an error."""
        tree.add(FakeDevice("0000:03:00.0", iommu_group=5))
        group = tree.device_dir("0000:03:00.0") / "iommu_group"
        fs.remove_object(str(group))
        fs.create_file(str(group))
        assert read("0000:03:00.0").iommu_group is None

    def test_a_root_without_a_bus_reads_no_device_and_says_what_to_pass(self, fs):
        """device() answers None; check() names the root and the option."""
        fs.create_dir("/empty")
        bus = SysfsPciBus(Path("/empty"))
        assert bus.device(PciAddress.parse("0000:00:1f.6")) is None
        with pytest.raises(SysfsError) as error:
            bus.check()
        assert str(error.value) == (
            "/empty is not a sysfs tree with a PCI bus (no /empty/bus/pci/devices); "
            "pass the sysfs mount point with --sysfs (default /sys)"
        )

    def test_sriov_physical_and_virtual_functions(self, tree):
        """A PF reports its VF counts; a VF reports its PF."""
        tree.add(
            FakeDevice("0000:04:00.0", device=0x1521, sriov_totalvfs=7, sriov_numvfs=2),
            FakeDevice("0000:04:10.0", device=0x1520, physfn="0000:04:00.0"),
        )
        pf = read("0000:04:00.0")
        vf = read("0000:04:10.0")
        assert (pf.sriov.total_vfs, pf.sriov.num_vfs, pf.sriov.physfn) == (7, 2, None)
        assert vf.sriov.physfn == PciAddress.parse("0000:04:00.0")

    def test_counts_and_nodes_of_two_digits_are_decimal(self, tree):
        """64 VFs, 12 enabled, NUMA node 12 (a large host): read in base 10."""
        tree.add(
            FakeDevice(
                "0000:04:00.0", device=0x1521, sriov_totalvfs=64, sriov_numvfs=12, numa_node=12
            )
        )
        device = read("0000:04:00.0")
        assert (device.sriov.total_vfs, device.sriov.num_vfs, device.numa_node) == (64, 12, 12)

    def test_ids_from_attribute_files_when_uevent_lacks_them(self, tree):
        """A uevent without PCI_ID falls back to the vendor/device/class files."""
        tree.add(FakeDevice("0000:05:00.0", vendor=0x15B3, device=0x101D, klass=0x020000))
        uevent = tree.device_dir("0000:05:00.0") / "uevent"
        uevent.write_text("PCI_SLOT_NAME=0000:05:00.0\n")
        device = read("0000:05:00.0")
        assert (device.vendor_id, device.device_id, device.pci_class.class_id) == (
            0x15B3,
            0x101D,
            "0200",
        )


class TestWholeBus:
    """`devices()` reads the bus in one pass; it must agree with reading each device alone."""

    def test_the_whole_bus_reads_as_each_device_alone(self, tree):
        """Bridges, a PF with its VFs (learnt from the PF's links), a GPU, a bare function."""
        tree.add(
            FakeDevice("0000:00:1c.0", klass=0x060400, driver="pcieport"),
            FakeDevice(
                "0000:04:00.0",
                device=0x1521,
                driver="igb",
                parent="0000:00:1c.0",
                sriov_totalvfs=7,
                sriov_numvfs=2,
            ),
            FakeDevice("0000:04:10.0", device=0x1520, driver="igbvf", physfn="0000:04:00.0"),
            FakeDevice("0000:04:10.4", device=0x1520, physfn="0000:04:00.0"),
            FakeDevice("0000:65:00.0", vendor=0x10DE, klass=0x030000, numa_node=1),
            FakeDevice("0000:66:00.0", iommu_group=None, numa_node=-1),
        )
        bus = SysfsPciBus(ROOT)
        whole = list(bus.devices())
        assert whole == [bus.device(address) for address in bus.addresses()]
        physfns = {str(d.address): str(d.sriov.physfn) for d in whole if d.sriov.physfn}
        assert physfns == {"0000:04:10.0": "0000:04:00.0", "0000:04:10.4": "0000:04:00.0"}

    def test_a_virtfn_link_to_no_address_is_skipped_not_the_end(self, tree, fs):
        """A link whose target is not an address tells nothing; the next one is still read."""
        tree.add(
            FakeDevice("0000:04:00.0", device=0x1521, sriov_totalvfs=7, sriov_numvfs=2),
            FakeDevice("0000:04:10.0", device=0x1520, physfn="0000:04:00.0"),
            FakeDevice("0000:04:10.4", device=0x1520, physfn="0000:04:00.0"),
        )
        virtfn0 = tree.device_dir("0000:04:00.0") / "virtfn0"
        fs.remove_object(str(virtfn0))
        fs.create_symlink(str(virtfn0), "../not-an-address")
        devices = {str(d.address): d for d in SysfsPciBus(ROOT).devices()}
        assert str(devices["0000:04:10.4"].sriov.physfn) == "0000:04:00.0"

    def test_a_vf_whose_link_from_the_pf_is_gone_is_read_without_its_pf(self, tree, fs):
        """The PF says two VFs but links one: the other keeps its PF, no error, no guess.

        The kernel removes VFs from the first, so ``virtfn0`` goes before ``virtfn1``.
        """
        tree.add(
            FakeDevice("0000:04:00.0", device=0x1521, sriov_totalvfs=7, sriov_numvfs=2),
            FakeDevice("0000:04:10.0", device=0x1520, physfn="0000:04:00.0"),
            FakeDevice("0000:04:10.4", device=0x1520, physfn="0000:04:00.0"),
        )
        fs.remove_object(str(tree.device_dir("0000:04:00.0") / "virtfn0"))
        devices = {str(d.address): d for d in SysfsPciBus(ROOT).devices()}
        assert devices["0000:04:10.0"].sriov.physfn is None
        assert str(devices["0000:04:10.4"].sriov.physfn) == "0000:04:00.0"
        assert devices["0000:04:00.0"].sriov.num_vfs == 2


class TestUeventLayouts:
    """The kernel's uevent is read in one match; any other layout must read the same device."""

    @pytest.mark.parametrize("driver", ["mlx5_core", None], ids=["bound", "unbound"])
    def test_every_order_of_the_lines_reads_the_same_device(self, tree, driver):
        """All orders of the lines (720 with a driver, 120 without), against the kernel's."""
        spec = FakeDevice(
            "0000:05:00.0",
            vendor=0x15B3,
            device=0x101D,
            klass=0x020000,
            subsystem_vendor=0x15B3,
            subsystem_device=0x0047,
            driver=driver,
        )
        tree.add(spec)
        kernel_order = read("0000:05:00.0")
        assert (kernel_order.driver, kernel_order.subsystem_device_id) == (driver, 0x0047)
        uevent = tree.device_dir("0000:05:00.0") / "uevent"
        lines = tree.uevent(spec).splitlines()
        for order in itertools.permutations(lines):
            uevent.write_text("\n".join(order) + "\n")
            assert read("0000:05:00.0") == kernel_order, order

    def test_ids_from_uevent_lines_in_another_order_without_the_id_files(self, tree, fs):
        """Another order is read line by line: every id from the uevent, none from the files.

        With the files gone, a wrong key or base (the ids hold hex letters) reads nothing.
        """
        spec = FakeDevice(
            "0000:05:00.0",
            vendor=0x15B3,
            device=0x101D,
            klass=0x02AB01,
            subsystem_vendor=0x1A2B,
            subsystem_device=0x00CD,
            driver="mlx5_core",
        )
        tree.add(spec)
        directory = tree.device_dir("0000:05:00.0")
        for name in ("vendor", "device", "subsystem_vendor", "subsystem_device", "class"):
            fs.remove_object(str(directory / name))
        lines = tree.uevent(spec).splitlines()
        # Reversed, with a line whose value holds "=" (as OF_* lines on device-tree hosts may).
        (directory / "uevent").write_text("\n".join(["OF_NAME=a=b", *reversed(lines)]) + "\n")
        device = read("0000:05:00.0")
        assert device is not None
        assert (device.vendor_id, device.device_id) == (0x15B3, 0x101D)
        assert (device.subsystem_vendor_id, device.subsystem_device_id) == (0x1A2B, 0x00CD)
        assert (device.pci_class.base, device.pci_class.sub, device.pci_class.prog_if) == (
            0x02,
            0xAB,
            0x01,
        )
        assert device.driver == "mlx5_core"

    def test_uevent_lines_without_a_subsystem_read_subsystem_0(self, tree):
        """No PCI_SUBSYS_ID line (an older kernel): subsystem ids 0, the rest from the lines."""
        tree.add(FakeDevice("0000:05:00.0", vendor=0x15B3, device=0x101D, subsystem_vendor=7))
        (tree.device_dir("0000:05:00.0") / "uevent").write_text(
            "PCI_ID=15B3:101D\nPCI_CLASS=20000\n"
        )
        device = read("0000:05:00.0")
        assert (device.vendor_id, device.subsystem_vendor_id, device.subsystem_device_id) == (
            0x15B3,
            0,
            0,
        )

    def test_ids_from_the_files_subsystem_included(self, tree, fs):
        """A uevent without ids: every id from its file; a missing subsystem file reads 0."""
        spec = FakeDevice(
            "0000:05:00.0",
            vendor=0x15B3,
            device=0x101D,
            klass=0x020000,
            subsystem_vendor=0x1A2B,
            subsystem_device=0x00CD,
        )
        tree.add(spec)
        directory = tree.device_dir("0000:05:00.0")
        (directory / "uevent").write_text("PCI_SLOT_NAME=0000:05:00.0\n")
        device = read("0000:05:00.0")
        assert (device.subsystem_vendor_id, device.subsystem_device_id) == (0x1A2B, 0x00CD)
        fs.remove_object(str(directory / "subsystem_vendor"))
        fs.remove_object(str(directory / "subsystem_device"))
        device = read("0000:05:00.0")
        assert (device.vendor_id, device.subsystem_vendor_id, device.subsystem_device_id) == (
            0x15B3,
            0,
            0,
        )

    @pytest.mark.parametrize("missing", ["vendor", "device", "class"])
    def test_a_device_without_an_essential_id_is_not_read(self, tree, fs, missing):
        """Vendor, device and class are each needed (subsystem ids are not)."""
        tree.add(FakeDevice("0000:05:00.0", vendor=0x15B3, device=0x101D))
        directory = tree.device_dir("0000:05:00.0")
        (directory / "uevent").write_text("PCI_SLOT_NAME=0000:05:00.0\n")
        fs.remove_object(str(directory / missing))
        assert read("0000:05:00.0") is None

    @pytest.mark.parametrize("layout", ["kernel", "reordered"])
    def test_a_driver_name_that_is_not_ascii_reads_with_replacement_characters(self, tree, layout):
        """Bytes the kernel would not write in a uevent do not stop the scan of the device."""
        spec = FakeDevice("0000:05:00.0", vendor=0x15B3, device=0x101D, driver="mlx5_core")
        tree.add(spec)
        lines = tree.uevent(spec).encode().replace(b"mlx5_core", b"mlx5_c\xc3\xb6re").splitlines()
        if layout == "reordered":
            lines.reverse()
        (tree.device_dir("0000:05:00.0") / "uevent").write_bytes(b"\n".join(lines) + b"\n")
        device = read("0000:05:00.0")
        assert (device.vendor_id, device.device_id) == (0x15B3, 0x101D)
        assert device.driver == "mlx5_c\ufffd\ufffdre"

    def test_a_kernel_layout_with_bad_ids_falls_back_to_the_id_files(self, tree):
        """Ids that are not hex in an otherwise kernel-shaped uevent: the files are read."""
        spec = FakeDevice("0000:05:00.0", vendor=0x15B3, device=0x101D, driver="mlx5_core")
        tree.add(spec)
        uevent = tree.device_dir("0000:05:00.0") / "uevent"
        uevent.write_text(tree.uevent(spec).replace("PCI_ID=15B3", "PCI_ID=XXXX"))
        device = read("0000:05:00.0")
        assert (device.vendor_id, device.device_id, device.driver) == (0x15B3, 0x101D, "mlx5_core")


class TestVanishedDevices:
    """Devices that disappear while being read."""

    def test_removed_directory_reads_as_absent(self, tree, fs):
        """A device whose directory is gone is None and left out of the listing."""
        tree.add(FakeDevice("0000:00:01.0"), FakeDevice("0000:00:02.0"))
        fs.remove_object(str(tree.device_dir("0000:00:02.0") / "uevent"))
        assert read("0000:00:02.0") is None
        addresses = [str(d.address) for d in SysfsPciBus(ROOT).devices()]
        assert addresses == ["0000:00:01.0"]

    def test_all_ones_vendor_reads_as_absent(self, tree):
        """A surprise-removed device reads vendor 0xffff and is treated as gone."""
        tree.add(FakeDevice("0000:00:02.0", vendor=0xFFFF, device=0xFFFF))
        assert read("0000:00:02.0") is None


class TestListing:
    """Listing the bus."""

    def test_devices_are_sorted_by_address(self, tree):
        """Devices come in bus order whatever the directory order."""
        tree.add(FakeDevice("0000:80:00.0"), FakeDevice("0000:00:02.0"), FakeDevice("0000:00:01.0"))
        addresses = [str(d.address) for d in SysfsPciBus(ROOT).devices()]
        assert addresses == ["0000:00:01.0", "0000:00:02.0", "0000:80:00.0"]

    def test_entries_that_are_not_addresses_are_ignored(self, tree, fs):
        """Names in bus/pci/devices that are not addresses are skipped, never followed."""
        tree.add(FakeDevice("0000:00:01.0"))
        fs.create_symlink("/sys/bus/pci/devices/..evil", "/etc")
        fs.create_file("/sys/bus/pci/devices/not-a-device")
        addresses = [str(d.address) for d in SysfsPciBus(ROOT).devices()]
        assert addresses == ["0000:00:01.0"]

    def test_missing_root_is_a_clear_error(self, fs):
        """A root without bus/pci/devices names the path and the --sysfs option."""
        with pytest.raises(SysfsError, match=r"/nowhere is not a sysfs tree.*--sysfs"):
            SysfsPciBus(Path("/nowhere")).devices()
