"""``--deny`` class prefixes match whatever case the operator typed them in.

``lspci -n`` prints class codes in lower case and documentation often in upper case (``0C03``);
both must deny the same devices. The command line lowers the prefix and the deny list lowers it
again when matching, so each layer is tested on its own: either alone going wrong would let a
denied USB controller be passed through.
"""

from __future__ import annotations

import pytest

from pcicore.address import PciAddress
from pcicore.device import PciClass, PciDevice
from pcicore.errors import PciDevicesError
from pcicore.protection import DenyList

USB = PciDevice(
    address=PciAddress.parse("0000:00:14.0"),
    vendor_id=0x8086,
    device_id=0xA36D,
    pci_class=PciClass(0x0C, 0x03, 0x30),
)


class TestDenyListMatchesAnyCase:
    """`DenyList.denies` on prefixes given in either case."""

    @pytest.mark.parametrize("prefix", ["0C", "0c", "0C03", "0c0330", "0C0330"])
    def test_upper_case_class_prefix_denies_the_device(self, prefix):
        """``0C`` denies a USB controller (class 0c0330) as ``0c`` does."""
        assert DenyList(classes=frozenset({prefix})).denies(USB)

    def test_other_class_prefix_does_not_deny_it(self):
        """``0D`` is another base class."""
        assert not DenyList(classes=frozenset({"0D"})).denies(USB)


class TestDenyArgument:
    """`DenyList.parse` on the ``--deny`` values."""

    def test_upper_case_class_prefix_is_kept_in_lower_case(self):
        """``--deny 0C`` is stored as ``0c``, the form the kernel prints."""
        assert DenyList.parse(["0C"]).classes == frozenset({"0c"})
        assert DenyList.parse(["0C"]).denies(USB)

    def test_address_and_class_prefix_together(self):
        """Addresses and prefixes go to their own sets."""
        deny = DenyList.parse(["0000:00:14.0", "0106"])
        assert deny.addresses == frozenset({USB.address})
        assert deny.classes == frozenset({"0106"})

    def test_full_six_digit_class_code_is_taken(self):
        """The longest prefix: class, subclass and programming interface (``0c0330``)."""
        assert DenyList.parse(["0c0330"]).denies(USB)

    @pytest.mark.parametrize("entry", ["0G", "", "0c03301", "usb"])
    def test_entry_that_is_neither_is_refused_naming_it(self, entry):
        """A value that is neither an address nor a hex prefix of at most 6 digits is refused."""
        with pytest.raises(PciDevicesError) as caught:
            DenyList.parse([entry])
        assert repr(entry) in str(caught.value)
