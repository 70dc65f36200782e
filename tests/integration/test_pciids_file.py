"""Finding and reading the pci.ids file: each failure names the file and the fix (pyfakefs)."""

import errno
import os
from pathlib import Path

import pytest
from pyfakefs.helpers import reset_ids, set_uid

from pcicore.errors import PciIdsError
from pcihost.paths import PCI_IDS_LOCATIONS
from pcihost.pciids_file import load_pci_ids

GOOD = b"8086  Intel Corporation\n\t1521  I350 Gigabit Network Connection\n"


class TestGivenPath:
    """``--pci-ids PATH``: that file, named in every error."""

    def test_a_given_file_is_read_and_named_in_its_errors(self, fs):
        fs.create_file("/etc/my.ids", contents=GOOD)
        assert load_pci_ids(Path("/etc/my.ids")).device(0x8086, 0x1521) == (
            "I350 Gigabit Network Connection"
        )
        fs.create_file("/etc/bad.ids", contents=b"8086  Intel\nnot a line\n")
        with pytest.raises(PciIdsError) as error:
            load_pci_ids(Path("/etc/bad.ids"))
        assert str(error.value).startswith("/etc/bad.ids is not a pci.ids database: line 2")

    def test_a_missing_given_file_says_what_to_pass(self, fs):
        with pytest.raises(PciIdsError) as error:
            load_pci_ids(Path("/etc/missing.ids"))
        assert str(error.value) == (
            "cannot read pci.ids file /etc/missing.ids: No such file or directory; pass an "
            "existing, readable file with --pci-ids"
        )


class TestStandardLocations:
    """No path given: the distributions' locations, in order."""

    def test_the_first_location_that_exists_is_read_and_named(self, fs):
        fs.create_file(PCI_IDS_LOCATIONS[1], contents=b"8086  Intel\n\t1521  I350\n")
        fs.create_file(PCI_IDS_LOCATIONS[2], contents=GOOD)
        assert load_pci_ids().device(0x8086, 0x1521) == "I350"
        fs.create_file(PCI_IDS_LOCATIONS[0], contents=b"8086  Intel\nnot a line\n")
        with pytest.raises(PciIdsError) as error:
            load_pci_ids()
        assert str(error.value).startswith(f"{PCI_IDS_LOCATIONS[0]} is not a pci.ids database")

    def test_an_unreadable_location_is_an_error_naming_it_not_a_skip(self, fs):
        fs.create_file(PCI_IDS_LOCATIONS[0], contents=GOOD)
        fs.create_file(PCI_IDS_LOCATIONS[1], contents=GOOD)
        os.chmod(PCI_IDS_LOCATIONS[0], 0)
        set_uid(1000)  # an ordinary user, for whom file modes hold
        try:
            with pytest.raises(PciIdsError) as error:
                load_pci_ids()
        finally:
            reset_ids()
        assert str(error.value) == (
            f"cannot read {PCI_IDS_LOCATIONS[0]}: {os.strerror(errno.EACCES)}; fix its "
            "permissions or pass another file with --pci-ids"
        )

    def test_none_found_lists_where_it_looked_and_the_package(self, fs):
        with pytest.raises(PciIdsError) as error:
            load_pci_ids()
        assert str(error.value) == (
            f"no pci.ids database found (looked in {', '.join(PCI_IDS_LOCATIONS)}); install it "
            "(Debian/Ubuntu: apt-get install pci.ids) or pass --pci-ids PATH"
        )
