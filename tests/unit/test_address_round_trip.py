"""PciAddress for every input: printing and parsing agree, and nothing else gets through.

Property tests (hypothesis): the table tests in ``test_address.py`` pin chosen cases; these
check the rules over every address and arbitrary text, so a parser that accepts a path or drops
a digit cannot hide between the chosen cases.
"""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from pcicore.address import PciAddress
from pcicore.errors import InvalidPciAddressError

addresses = st.builds(
    PciAddress,
    domain=st.integers(0, 0xFFFF),
    bus=st.integers(0, 0xFF),
    device=st.integers(0, 0x1F),
    function=st.integers(0, 7),
)

_CANONICAL = re.compile(r"[0-9a-f]{4}:[0-9a-f]{2}:[0-1][0-9a-f]\.[0-7]")


class TestAddressRoundTrip:
    """Every address prints in the kernel's form and parses back to itself."""

    @given(addresses)
    def test_printed_address_parses_back_to_the_same_address(self, address):
        """parse(str(a)) == a: no field is lost or changed by printing."""
        assert PciAddress.parse(str(address)) == address

    @given(addresses)
    def test_printed_address_is_the_kernel_canonical_form(self, address):
        """str(a) is ``dddd:bb:dd.f`` in lower case, as sysfs names the device directory."""
        assert _CANONICAL.fullmatch(str(address))

    @given(addresses)
    def test_upper_case_and_short_forms_parse_to_the_same_address(self, address):
        """``lspci`` prints upper case or omits domain 0: both name the same function."""
        assert PciAddress.parse(str(address).upper()) == address
        if address.domain == 0:
            assert PciAddress.parse(str(address)[5:]) == address

    @given(addresses, addresses)
    def test_sort_key_orders_as_the_fields_do(self, one, other):
        """Bus order is (domain, bus, device, function) order, never a collision."""
        fields = (one.domain, one.bus, one.device, one.function)
        others = (other.domain, other.bus, other.device, other.function)
        assert (one < other) == (fields < others)
        assert (one <= other) == (fields <= others)
        assert (one > other) == (fields > others)
        assert (one >= other) == (fields >= others)
        assert (one.sort_key == other.sort_key) == (one == other)

    @given(addresses)
    def test_compact_form_keeps_every_digit(self, address):
        """The object-name form is the canonical form without ``:`` and ``.``."""
        assert address.compact == str(address).replace(":", "").replace(".", "")


class TestAddressRefusals:
    """Any text that is not an address is refused with the named error, never a crash."""

    @given(st.text(max_size=40))
    def test_arbitrary_text_parses_to_its_canonical_form_or_is_refused(self, text):
        """An address prints back as the text (case, domain 0 aside); anything else is refused.

        The refusal is `InvalidPciAddressError` carrying the text; no other exception escapes.
        """
        try:
            address = PciAddress.parse(text)
        except InvalidPciAddressError as err:
            refused = err
        else:
            assert str(address) in {text.lower(), f"0000:{text.lower()}"}
            return
        assert refused.text == text

    @given(addresses, st.sampled_from(["/", "\n", " ", "/..", "\0", "0"]))
    def test_address_with_anything_appended_is_refused(self, address, suffix):
        """No trailing text, newline or path component is ever accepted (no path from it)."""
        try:
            PciAddress.parse(str(address) + suffix)
        except InvalidPciAddressError:
            return
        raise AssertionError(f"{str(address) + suffix!r} was accepted")
