"""SysfsUsbBus and HostUsbNodes on a USB tree laid out as Linux lays it out (pyfakefs)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fakesys import FakeDevice, SysfsTree
from fakesys.usb import FakeUsbDevice, UsbTree
from pcicore.address import PciAddress
from pcicore.device import NodeName
from pcicore.errors import UsbIdsError
from pcicore.usb import usb_statuses
from pcicore.usbids import UsbIds
from pcihost.usb import HostUsbNodes, SysfsUsbBus, UsbDeviceNodeError, load_usb_ids

SYS = Path("/sys")
DEV = Path("/dev")
XHCI = "0000:00:04.0"
STICK = FakeUsbDevice("1-1", 2, 0x0951, 0x1666, 0x00, (0x08,), "DataTraveler 3.0", "Kingston")
HUB = FakeUsbDevice("1-2", 3, 0x0409, 0x55AA, 0x09, (0x09,))
KEYBOARD = FakeUsbDevice("1-2.1", 4, 0x0627, 0x0001, 0x00, (0x03,), "QEMU USB Keyboard")


@pytest.fixture(scope="module")
def system_usb_ids() -> UsbIds:
    """The machine's usb.ids, read before pyfakefs hides the real files (scripts/setup)."""
    ids = load_usb_ids()
    if ids.vendor(0x0951) is None:
        pytest.skip("no usb.ids on this machine: run scripts/setup")
    return ids


@pytest.fixture
def usb(fs):
    tree = SysfsTree(SYS).add(FakeDevice(XHCI, 0x1B36, 0x000D, 0x0C0330, driver="xhci_hcd"))
    return UsbTree(tree, DEV).add_bus(1, XHCI).add(STICK, HUB, KEYBOARD)


class TestSysfsUsbBus:
    """What the reader finds."""

    def test_devices_hubs_included_root_hub_and_interfaces_skipped(self, usb):
        """Every device, the hub too, by bus and number; no root hub, no interface entry."""
        found = SysfsUsbBus(SYS).devices()
        assert [(d.port, d.bus, d.devnum) for d in found] == [
            ("1-1", 1, 2),
            ("1-2", 1, 3),
            ("1-2.1", 1, 4),
        ]

    def test_attributes_of_a_device(self, usb):
        """Ids, class, interface classes, own strings and the PCI controller are read."""
        stick = SysfsUsbBus(SYS).devices()[0]
        assert (stick.vendor_id, stick.product_id, stick.device_class) == (0x0951, 0x1666, 0)
        assert stick.interface_classes == (0x08,)
        assert (stick.product, stick.manufacturer) == ("DataTraveler 3.0", "Kingston")
        assert stick.controller == PciAddress.parse(XHCI)
        assert stick.device_path == "/dev/bus/usb/001/002"

    def test_device_behind_a_hub_has_the_same_controller(self, usb):
        """A device two links deep still finds the PCI function above ``usb1``."""
        keyboard = SysfsUsbBus(SYS).devices()[2]
        assert keyboard.controller == PciAddress.parse(XHCI)
        assert keyboard.product == "QEMU USB Keyboard"
        assert keyboard.manufacturer is None

    def test_platform_controller_has_no_pci_address(self, fs):
        """A bus on a controller that is not a PCI function gives no pciAddress."""
        UsbTree(SysfsTree(SYS), DEV).add_bus(3, None).add(FakeUsbDevice("3-1", 2, 1, 2))
        assert SysfsUsbBus(SYS).devices()[0].controller is None

    def test_unplugged_device_is_gone(self, usb):
        """After an unplug the device is no longer listed."""
        usb.unplug("1-1")
        assert [d.port for d in SysfsUsbBus(SYS).devices()] == ["1-2", "1-2.1"]

    def test_host_without_usb_has_no_devices(self, fs):
        """No ``bus/usb`` (no USB controller, or the module not loaded): an empty list."""
        SysfsTree(SYS)
        assert SysfsUsbBus(SYS).devices() == []

    def test_statuses_with_the_real_usb_ids(self, system_usb_ids, usb):
        """The objects' statuses, named from the system's usb.ids, as Harvester writes them."""
        statuses = usb_statuses(NodeName("node1"), SysfsUsbBus(SYS).devices(), system_usb_ids)
        stick = statuses["node1-0951-1666-001002"]
        assert stick.description == (
            "DataTraveler 100 G3/G4/SE9 G2/50 Kyson (Kingston Technology) [DataTraveler 3.0]"
        )
        assert stick.class_type == "Mass Storage"
        assert stick.resource_name == "kubevirt.io/node1-0951-1666-001002"
        assert stick.pci_address == XHCI
        assert statuses["node1-0409-55aa-001003"].class_type == "Hub"


class TestHostUsbNodes:
    """The device nodes the plugin checks and hands over."""

    def test_exists_follows_the_node(self, usb):
        """A node is there while the device is; gone after an unplug."""
        nodes = HostUsbNodes(DEV, owner=os.getuid())
        assert nodes.exists("/dev/bus/usb/001/002")
        usb.unplug("1-1")
        assert not nodes.exists("/dev/bus/usb/001/002")

    def test_hand_over_changes_the_owner(self, usb):
        """The node belongs to the configured user afterwards."""
        HostUsbNodes(DEV, owner=4242).hand_over("/dev/bus/usb/001/002")
        assert os.stat("/dev/bus/usb/001/002").st_uid == 4242

    def test_hand_over_of_a_gone_node_names_it(self, usb):
        """A vanished node is a one-line error naming the path and the likely cause."""
        usb.unplug("1-1")
        with pytest.raises(UsbDeviceNodeError, match=r"/dev/bus/usb/001/002.*unplugged"):
            HostUsbNodes(DEV, owner=4242).hand_over("/dev/bus/usb/001/002")


class TestLoadUsbIds:
    """Finding the database."""

    def test_missing_everywhere_gives_an_empty_database(self, fs):
        """A node without usb.ids still works: names are unknown."""
        assert load_usb_ids().vendor(0x0951) is None

    def test_explicit_missing_file_is_an_error(self, fs):
        """A path given on purpose must exist: the error names it."""
        with pytest.raises(UsbIdsError, match=r"/nowhere/usb\.ids"):
            load_usb_ids(Path("/nowhere/usb.ids"))

    def test_found_in_a_standard_location(self, fs):
        """The first standard location that holds a database is read."""
        fs.create_file("/usr/share/hwdata/usb.ids", contents="0951  Kingston Technology\n")
        assert load_usb_ids().vendor(0x0951) == "Kingston Technology"


class TestEdges:
    """Partly read devices, two-digit numbers, the hub's class, symlinked nodes, error words."""

    @pytest.mark.parametrize("attribute", ["idVendor", "idProduct", "busnum", "devnum"])
    def test_device_missing_an_attribute_is_skipped_not_fatal(self, usb, attribute, fs):
        """Unplugged while read (one attribute already gone): the device is left out."""
        fs.remove(f"{SYS}/bus/usb/devices/1-1/{attribute}")
        assert [d.port for d in SysfsUsbBus(SYS).devices()] == ["1-2", "1-2.1"]

    def test_device_numbers_are_decimal(self, usb):
        """Device number 10 is 10 (the node is .../010)."""
        usb.add(FakeUsbDevice("1-3", 10, 0x0951, 0x1666))
        (added,) = [d for d in SysfsUsbBus(SYS).devices() if d.port == "1-3"]
        assert added.devnum == 10
        assert added.device_path == "/dev/bus/usb/001/010"

    def test_hub_class_is_read(self, usb):
        """BDeviceClass 09: the hub says it is a hub."""
        hub = SysfsUsbBus(SYS).devices()[1]
        assert hub.device_class == 0x09

    def test_hand_over_of_a_symlink_changes_the_link_not_its_target(self, usb, fs):
        """A node that is a link to another file: only the link is given away."""
        target = fs.create_file("/etc/secret")
        os.chown("/etc/secret", 0, 0)
        fs.create_symlink("/dev/bus/usb/001/009", "/etc/secret")
        HostUsbNodes(DEV, owner=4242).hand_over("/dev/bus/usb/001/009")
        assert os.stat("/etc/secret").st_uid == 0
        assert os.lstat("/dev/bus/usb/001/009").st_uid == 4242
        assert target.st_uid == 0

    def test_hand_over_words(self, usb):
        """A path that is no device node, and a gone node: each says what is wrong."""
        nodes = HostUsbNodes(DEV, owner=4242)
        with pytest.raises(UsbDeviceNodeError) as caught:
            nodes.hand_over("/etc/passwd")
        assert str(caught.value) == "'/etc/passwd' is not a USB device node /dev/bus/usb/BBB/DDD"
        usb.unplug("1-1")
        with pytest.raises(UsbDeviceNodeError) as caught:
            nodes.hand_over("/dev/bus/usb/001/002")
        assert str(caught.value).endswith(
            "; the device was unplugged, or the plugin lacks CAP_CHOWN (run the agent privileged)"
        )

    def test_explicit_file_errors_name_it_and_the_fix(self, fs):
        """A given usb.ids that is not one, or missing: named, with what to pass instead."""
        fs.create_file("/etc/usb.ids", contents="# nothing\n")
        with pytest.raises(UsbIdsError) as caught:
            load_usb_ids(Path("/etc/usb.ids"))
        assert str(caught.value).startswith("/etc/usb.ids lists no USB vendors")
        with pytest.raises(UsbIdsError) as caught:
            load_usb_ids(Path("/nowhere/usb.ids"))
        assert str(caught.value).endswith("; pass an existing, readable file with --usb-ids")

    def test_device_entry_that_is_not_a_link_has_no_controller(self, usb, fs):
        """A bus/usb/devices entry that is a plain directory: listed, with no PCI controller."""
        for name, text in (
            ("idVendor", "0951"),
            ("idProduct", "1666"),
            ("busnum", "1"),
            ("devnum", "9"),
        ):
            fs.create_file(f"{SYS}/bus/usb/devices/1-9/{name}", contents=f"{text}\n")
        (plain,) = [d for d in SysfsUsbBus(SYS).devices() if d.port == "1-9"]
        assert plain.controller is None
