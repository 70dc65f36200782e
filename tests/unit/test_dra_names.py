"""DRA device names: DNS labels, one per PCI address, and back again."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pcicore.address import PciAddress
from pcicore.dra import address_of, device_name
from pcicore.errors import InvalidDraDeviceNameError

DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")

addresses = st.builds(
    PciAddress,
    domain=st.integers(0, 0xFFFF),
    bus=st.integers(0, 0xFF),
    device=st.integers(0, 0x1F),
    function=st.integers(0, 7),
)


def test_name_of_a_function():
    """The address, with ':' and '.' as '-', behind a 'pci-' prefix."""
    assert device_name(PciAddress.parse("0000:3b:1f.7")) == "pci-0000-3b-1f-7"


@given(addresses)
def test_every_name_is_a_dns_label_and_maps_back(address):
    """For every address: the name is a DNS label and `address_of` returns the address."""
    name = device_name(address)
    assert DNS_LABEL.fullmatch(name)
    assert address_of(name) == address


@pytest.mark.parametrize(
    "name", ["gpu-0", "pci-0000-03-00", "pci-0000-03-20-0", "pci-0000-03-00-8", "PCI-0000-03-00-0"]
)
def test_names_of_others_are_refused_naming_the_text(name):
    """A name we never publish is an error that quotes it."""
    with pytest.raises(InvalidDraDeviceNameError, match=re.escape(repr(name))):
        address_of(name)
