"""The device model's own rules: class codes and node names."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pcicore.device import PciClass, parse_node_name
from pcicore.errors import InvalidNodeNameError


@given(st.integers(0, 0xFFFFFF))
def test_a_class_code_splits_into_its_three_bytes(code):
    """``0xCCSSPP``: base class, subclass and programming interface, each kept whole."""
    klass = PciClass.from_code(code)
    assert (klass.base << 16) | (klass.sub << 8) | klass.prog_if == code


@pytest.mark.parametrize(
    ("length", "valid"), [(253, True), (254, False)], ids=["longest", "one-too-long"]
)
def test_a_node_name_is_at_most_253_characters(length, valid):
    """A DNS subdomain (RFC 1123): 253 characters pass, 254 are refused naming the fix."""
    name = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * (length - 3 * 64)])
    assert len(name) == length
    if valid:
        assert parse_node_name(name) == name
    else:
        with pytest.raises(InvalidNodeNameError):
            parse_node_name(name)
