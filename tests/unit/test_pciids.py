"""The pci.ids database: lookups inside the right block, and refusing files that are not one."""

import pytest

from pcicore.errors import PciIdsError
from pcicore.pciids import PciIds

SAMPLE = b"""#
# Sample of the pci.ids format
#
1000  Broadcom / LSI
\t0001  53c810
\t\t1000 1000  LSI53C810AE PCI to SCSI I/O Processor
# a comment inside a vendor block
\t0002  53c820
8086  Intel Corporation
\t0001  Not the Broadcom device
\t1521  I350 Gigabit Network Connection
\t\t8086 0001  Ethernet Server Adapter I350-T4
\t\t1000 0001  Subsystem of another vendor
\t1533  I210 Gigabit Network Connection
10de  NVIDIA Corporation
\t2235  GA102GL [A40]
ffff  Illegal Vendor ID

# List of known device classes, subclasses and programming interfaces
C 01  Mass storage controller
\t08  Non-Volatile memory controller
\t\t02  NVM Express
\t80  Mass storage controller
C 02  Network controller
\t00  Ethernet controller
C ff  Unassigned class
"""


@pytest.fixture
def ids():
    return PciIds(SAMPLE)


class TestLookups:
    """Name lookups."""

    @pytest.mark.parametrize(
        ("vendor", "expected"),
        [
            pytest.param(0x1000, "Broadcom / LSI", id="first-vendor"),
            pytest.param(0x8086, "Intel Corporation", id="middle-vendor"),
            pytest.param(0xFFFF, "Illegal Vendor ID", id="last-vendor"),
            pytest.param(0x1234, None, id="unknown"),
        ],
    )
    def test_vendor(self, ids, vendor, expected):
        """Vendors are found by id."""
        assert ids.vendor(vendor) == expected

    def test_device_is_looked_up_under_its_vendor(self, ids):
        """A device id is found only in its own vendor's block."""
        assert ids.device(0x8086, 0x0001) == "Not the Broadcom device"
        assert ids.device(0x1000, 0x0001) == "53c810"

    def test_device_after_comment_in_block(self, ids):
        """A comment inside a vendor block does not end the block."""
        assert ids.device(0x1000, 0x0002) == "53c820"

    def test_device_of_another_vendor_is_not_found(self, ids):
        """A device id that only exists under a later vendor is unknown here."""
        assert ids.device(0x1000, 0x1521) is None

    def test_device_of_unknown_vendor(self, ids):
        """No vendor, no device."""
        assert ids.device(0x1234, 0x0001) is None

    def test_brackets_are_kept(self, ids):
        """Names are returned verbatim."""
        assert ids.device(0x10DE, 0x2235) == "GA102GL [A40]"

    def test_subsystem(self, ids):
        """A subsystem is found under its device, by subvendor and subdevice."""
        assert ids.subsystem(0x8086, 0x1521, 0x8086, 0x0001) == "Ethernet Server Adapter I350-T4"
        assert ids.subsystem(0x8086, 0x1521, 0x1000, 0x0001) == "Subsystem of another vendor"

    def test_subsystem_of_another_device_is_not_found(self, ids):
        """A subsystem listed under one device is unknown under the next."""
        assert ids.subsystem(0x8086, 0x1533, 0x8086, 0x0001) is None

    def test_classes(self, ids):
        """Classes, subclasses and programming interfaces are found in their blocks."""
        assert ids.class_name(0x02) == "Network controller"
        assert ids.subclass_name(0x02, 0x00) == "Ethernet controller"
        assert ids.subclass_name(0x01, 0x80) == "Mass storage controller"
        assert ids.prog_if_name(0x01, 0x08, 0x02) == "NVM Express"

    def test_subclass_of_another_class_is_not_found(self, ids):
        """Subclass 80 exists under class 01, not under class 02."""
        assert ids.subclass_name(0x02, 0x80) is None

    def test_unknown_class(self, ids):
        """An unknown class has no name."""
        assert ids.class_name(0x12) is None
        assert ids.subclass_name(0xFF, 0xFF) is None

    def test_class_ids_do_not_match_vendor_lines(self, ids):
        """Class 10 is not confused with any vendor line starting with 10."""
        assert ids.class_name(0x10) is None

    def test_a_subsystem_is_not_found_under_the_same_device_id_of_a_later_vendor(self):
        """The device line is looked for in its vendor's block only, not in the next one."""
        ids = PciIds(
            b"1000  Broadcom\n\t0002  53c820\n"
            b"8086  Intel Corporation\n\t1521  I350\n\t\t8086 0001  I350-T4\n"
        )
        assert ids.subsystem(0x1000, 0x1521, 0x8086, 0x0001) is None
        assert ids.subsystem(0x8086, 0x1521, 0x8086, 0x0001) == "I350-T4"

    def test_the_first_of_two_listings_counts_for_subsystems_too(self):
        """A device or subsystem listed twice: the first line and its block count."""
        ids = PciIds(
            b"8086  Intel Corporation\n"
            b"\t1521  I350\n\t\t8086 0001  first board\n\t\t8086 0001  second board\n"
            b"\t1521  I350 again\n\t\t8086 0002  under the repeat\n"
        )
        assert ids.subsystem(0x8086, 0x1521, 0x8086, 0x0001) == "first board"
        assert ids.subsystem(0x8086, 0x1521, 0x8086, 0x0002) is None

    def test_programming_interfaces_with_hex_letters(self):
        """Ids are lower-case hex in the file: a prog-if with letters is found as written."""
        ids = PciIds(
            b"8086  Intel\nC 0c  Serial bus controller\n\t03  USB controller\n"
            b"\t\t30  XHCI\n\t\tfe  USB Device\n"
        )
        assert ids.prog_if_name(0x0C, 0x03, 0xFE) == "USB Device"
        assert ids.prog_if_name(0x0C, 0x03, 0x30) == "XHCI"

    def test_a_file_with_crlf_line_ends_gives_names_without_the_carriage_return(self):
        """A file saved with Windows line ends: names end before the carriage return."""
        ids = PciIds(b"8086  Intel Corporation\r\n\t1521  I350\r\n\t\t8086 0001  T4\r\n")
        assert ids.vendor(0x8086) == "Intel Corporation"
        assert ids.device(0x8086, 0x1521) == "I350"
        assert ids.subsystem(0x8086, 0x1521, 0x8086, 0x0001) == "T4"

    def test_empty_database_knows_nothing(self):
        """The empty database answers None for real ids."""
        empty = PciIds.empty()
        assert empty.vendor(0x8086) is None
        assert empty.subclass_name(0x02, 0x00) is None


class TestValidation:
    """Refusing files that are not pci.ids."""

    def test_malformed_line_is_reported_with_its_number(self):
        """A line of no known kind is named with its line number."""
        data = SAMPLE.replace(b"\t1533  I210", b"\t15 33 I210")
        with pytest.raises(PciIdsError, match=r"line 14 reads '\\t15 33 I210"):
            PciIds(data, origin="/tmp/pci.ids")

    def test_error_names_the_file_and_the_fix(self):
        """The message names the file and says how to fix it."""
        with pytest.raises(PciIdsError, match=r"/etc/passwd is not a pci.ids database.*--pci-ids"):
            PciIds(b"root:x:0:0:root:/root:/bin/bash\n", origin="/etc/passwd")

    def test_file_without_vendors_is_refused(self):
        """A file of comments only is not a database; unnamed, it is called pci.ids."""
        with pytest.raises(PciIdsError) as error:
            PciIds(b"# nothing here\n\n")
        assert str(error.value) == (
            "pci.ids lists no vendors; pass a valid file with --pci-ids "
            "or reinstall the pci.ids package"
        )

    def test_a_bad_line_is_shown_in_full_up_to_60_characters_undecodable_bytes_replaced(self):
        """The message quotes the line (at most 60 characters), even when it is not UTF-8."""
        bad = b"\xff" + b"z" * 80
        with pytest.raises(PciIdsError) as error:
            PciIds(b"8086  Intel\n" + bad + b"\n")
        shown = "\ufffd" + "z" * 59
        assert str(error.value) == (
            f"pci.ids is not a pci.ids database: line 2 reads {shown!r}; "
            "pass a valid file with --pci-ids or reinstall the pci.ids package"
        )

    def test_undecodable_names_are_read_with_replacement_characters(self):
        """A name that is not UTF-8 (an old Latin-1 edit) still reads, and a trailing X stays."""
        ids = PciIds(b"8086  Soci\xe9t\xe9 X\r\n\t1521  Radeon X\n")
        assert ids.vendor(0x8086) == "Soci\ufffdt\ufffd X"
        assert ids.device(0x8086, 0x1521) == "Radeon X"

    def test_binary_data_is_refused(self):
        """Binary data is refused."""
        with pytest.raises(PciIdsError):
            PciIds(b"\x7fELF\x02\x01\x01\x00" * 10)
