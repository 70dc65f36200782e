"""`UsbIds` lookups on the file's awkward parts: repeated vendors, CRLF, bad bytes, hex classes.

A wrong lookup puts another product's name on a USBDevice, and a crash on one bad byte takes
the agent's USB scan down; both are checked here on small files.
"""

from __future__ import annotations

import pytest

from pcicore.errors import UsbIdsError
from pcicore.usbids import UsbIds


def test_a_product_is_looked_up_under_its_own_vendor_only():
    """1666 is listed under 1000 only: 0951 does not know it, 1000 does."""
    ids = UsbIds(b"0951  Kingston\n\t1111  Stick\n1000  Speed Tech\n\t1666  Hub\n")
    assert ids.product(0x0951, 0x1666) is None
    assert ids.product(0x1000, 0x1666) == "Hub"
    assert ids.product(0x0951, 0x1111) == "Stick"


def test_a_repeated_vendor_keeps_its_first_entry_and_the_vendors_after_it():
    """0951 listed twice: the first entry counts, and 1000 after it is still found."""
    ids = UsbIds(b"0951  Kingston\n\t1111  Stick\n0951  Again\n1000  Speed Tech\n\t2222  Hub\n")
    assert ids.vendor(0x0951) == "Kingston"
    assert ids.vendor(0x1000) == "Speed Tech"
    assert ids.product(0x1000, 0x2222) == "Hub"


def test_crlf_line_ends_are_not_part_of_names():
    """A file saved with CRLF: names end without the carriage return (and a final X is kept)."""
    ids = UsbIds(b"067b  Prolific\r\n\t2303  PL2303X\r\n")
    assert ids.vendor(0x067B) == "Prolific"
    assert ids.product(0x067B, 0x2303) == "PL2303X"


def test_bytes_that_are_not_utf8_are_replaced_not_fatal():
    """A Latin-1 byte in a name: the replacement character, no error."""
    ids = UsbIds(b"0951  Kingst\xf6n\n")
    assert ids.vendor(0x0951) == "Kingst\ufffdn"


def test_class_ids_are_hex():
    """``C e0`` is class 0xe0 (Wireless), ``C 10`` class 0x10."""
    ids = UsbIds(b"0951  Kingston\nC 10  Audio/Video\nC e0  Wireless\n")
    assert ids.class_name(0xE0) == "Wireless"
    assert ids.class_name(0x10) == "Audio/Video"


def test_a_file_without_vendors_is_refused_with_the_fix():
    """Not a usb.ids file: the message names it and says what to do."""
    with pytest.raises(UsbIdsError) as caught:
        UsbIds(b"# only a comment\n")
    assert str(caught.value) == (
        "usb.ids lists no USB vendors; pass a valid file with --usb-ids or reinstall the usb.ids "
        "package"
    )
