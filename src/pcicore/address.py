"""PCI function addresses: parsed once at the edge, trusted afterwards.

A ``PciAddress`` is the only way a device name reaches a filesystem path, so every text that
claims to be an address (a claim's spec, a CLI argument, a directory entry) goes through
``PciAddress.parse`` first.
"""

from __future__ import annotations

import re
from typing import Final

import attrs

from pcicore.errors import InvalidPciAddressError

# Domain is 16 bits, bus 8 bits, device 5 bits (0-1f), function 3 bits (0-7).
_ADDRESS: Final = re.compile(
    r"(?:(?P<domain>[0-9a-fA-F]{4}):)?(?P<bus>[0-9a-fA-F]{2}):"
    r"(?P<device>[01][0-9a-fA-F])\.(?P<function>[0-7])"
)


@attrs.frozen(order=False)
class PciAddress:
    """The address of one PCI function.

    Attributes:
        domain: PCI segment (0-0xffff).
        bus: Bus number (0-0xff).
        device: Device (slot) number (0-0x1f).
        function: Function number (0-7).
    """

    domain: int
    bus: int
    device: int
    function: int

    @classmethod
    def parse(cls, text: str) -> PciAddress:
        """Parse ``dddd:bb:dd.f`` (or ``bb:dd.f``, domain 0), any hex case.

        Raises:
            InvalidPciAddressError: ``text`` is anything else, including surrounding text,
                path separators or out-of-range numbers.
        """
        match = _ADDRESS.fullmatch(text) if len(text) <= 12 else None  # noqa: PLR2004 - longest form
        if match is None:
            raise InvalidPciAddressError(text)
        domain, bus, device, function = match.groups()
        return cls(int(domain, 16) if domain else 0, int(bus, 16), int(device, 16), int(function))

    def __str__(self) -> str:
        """Return the canonical kernel form, ``dddd:bb:dd.f`` in lower case."""
        # printf-style: half the cost of an f-string with format specs, and scan prints
        # thousands of addresses.
        return "%04x:%02x:%02x.%x" % (self.domain, self.bus, self.device, self.function)  # noqa: UP031

    @property
    def sort_key(self) -> int:
        """One integer that orders addresses as the bus does (domain, bus, device, function)."""
        return (self.domain << 16) | (self.bus << 8) | (self.device << 3) | self.function

    # Hand-written ordering: attrs' generated comparisons build tuples per call, which
    # dominated sorting thousands of addresses in a scan.
    def __lt__(self, other: PciAddress) -> bool:
        """Bus order."""
        return self.sort_key < other.sort_key

    def __le__(self, other: PciAddress) -> bool:
        """Bus order."""
        return self.sort_key <= other.sort_key

    def __gt__(self, other: PciAddress) -> bool:
        """Bus order."""
        return self.sort_key > other.sort_key

    def __ge__(self, other: PciAddress) -> bool:
        """Bus order."""
        return self.sort_key >= other.sort_key

    @property
    def slot(self) -> tuple[int, int, int]:
        """The physical slot (domain, bus, device): functions of one card share it."""
        return (self.domain, self.bus, self.device)

    @property
    def compact(self) -> str:
        """The address without ``:`` and ``.``, as used in object names (``0000001f6``)."""
        return "%04x%02x%02x%x" % (self.domain, self.bus, self.device, self.function)  # noqa: UP031
