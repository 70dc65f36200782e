"""PciAddress: parsing at the edge, normalising, and refusing everything else."""

import pytest

from pcicore.address import PciAddress
from pcicore.errors import InvalidPciAddressError


class TestParse:
    """PciAddress.parse."""

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            pytest.param("0000:00:1f.6", "0000:00:1f.6", id="canonical"),
            pytest.param("0000:00:1F.6", "0000:00:1f.6", id="upper-case-normalised"),
            pytest.param("00:1f.6", "0000:00:1f.6", id="short-form-domain-0"),
            pytest.param("ffff:ff:1f.7", "ffff:ff:1f.7", id="largest"),
            pytest.param("0001:3b:00.0", "0001:3b:00.0", id="non-zero-domain"),
        ],
    )
    def test_valid_addresses_normalise(self, text, expected):
        """A valid address in any accepted form prints in the kernel's canonical form."""
        assert str(PciAddress.parse(text)) == expected

    @pytest.mark.parametrize(
        "text",
        [
            pytest.param("", id="empty"),
            pytest.param("../../", id="path-traversal"),
            pytest.param("0000:00:1f.6/../../etc", id="suffix-traversal"),
            pytest.param("0000:zz:00.0", id="non-hex-bus"),
            pytest.param("0000:00:20.0", id="device-over-1f"),
            pytest.param("0000:00:1f.8", id="function-over-7"),
            pytest.param("00000:00:1f.6", id="domain-too-long"),
            pytest.param("0000:00:1f.6\n", id="trailing-newline"),
            pytest.param(" 0000:00:1f.6", id="leading-space"),
            pytest.param("0000:00:1f.6" * 100, id="overlong"),
            pytest.param("0000-00-1f-6", id="wrong-separators"),
            pytest.param("0000:00:1f", id="no-function"),
        ],
    )
    def test_invalid_addresses_raise_named_error(self, text):
        """Anything that is not an address raises InvalidPciAddressError."""
        with pytest.raises(InvalidPciAddressError):
            PciAddress.parse(text)

    def test_error_names_value_and_fix(self):
        """The error message quotes the bad value and says what an address looks like."""
        with pytest.raises(InvalidPciAddressError) as caught:
            PciAddress.parse("0000:zz:00.0")
        message = str(caught.value)
        assert "'0000:zz:00.0'" in message
        assert "dddd:bb:dd.f" in message

    def test_error_shortens_overlong_input(self):
        """A hostile overlong value is not echoed whole into logs."""
        with pytest.raises(InvalidPciAddressError) as caught:
            PciAddress.parse("a" * 10_000)
        assert len(str(caught.value)) < 300

    def test_error_is_a_value_error(self):
        """Callers that catch ValueError also catch a bad address."""
        with pytest.raises(ValueError, match="invalid PCI address"):
            PciAddress.parse("nope")


class TestForms:
    """The derived forms of an address."""

    def test_compact_form_drops_separators(self):
        """The compact form is used in object names."""
        assert PciAddress.parse("0000:00:1f.6").compact == "0000001f6"

    def test_functions_of_one_card_share_a_slot(self):
        """Functions of one card (GPU and its audio) share the slot."""
        assert PciAddress.parse("0000:02:00.0").slot == PciAddress.parse("0000:02:00.1").slot

    def test_addresses_sort_in_bus_order(self):
        """Sorting addresses gives the order lspci prints them in."""
        texts = ["0001:00:00.0", "0000:02:00.1", "0000:02:00.0", "0000:00:1f.6"]
        ordered = sorted(PciAddress.parse(text) for text in texts)
        assert [str(a) for a in ordered] == [
            "0000:00:1f.6",
            "0000:02:00.0",
            "0000:02:00.1",
            "0001:00:00.0",
        ]
