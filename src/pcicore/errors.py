"""Every error the domain raises, each saying what was wrong and what to do about it.

Adapters translate their own failures (``OSError`` with an errno, API and gRPC errors) into
these, chaining the original as ``__cause__``.
"""


class PciDevicesError(Exception):
    """Base of every error raised on purpose by pcidevices."""


class InvalidPciAddressError(PciDevicesError, ValueError):
    """A text that should name a PCI function (``dddd:bb:dd.f``) does not.

    Raised before the text is used for anything, so that no path is ever built from it.
    """

    _SHOWN_MAX = 64

    def __init__(self, text: str) -> None:
        """Describe ``text``, shortened if long (it may be hostile input)."""
        shown = text if len(text) <= self._SHOWN_MAX else text[: self._SHOWN_MAX - 3] + "..."
        super().__init__(
            f"invalid PCI address {shown!r}: expected dddd:bb:dd.f (for example 0000:00:1f.6) "
            "or bb:dd.f; copy the address from `pcidevices scan` or `lspci -D`"
        )
        self.text = text


class PciIdsError(PciDevicesError):
    """The ``pci.ids`` database could not be found, read or parsed."""


class SysfsError(PciDevicesError):
    """The sysfs tree given to an adapter is missing or is not a sysfs tree."""


class DeviceNotFoundError(PciDevicesError, LookupError):
    """No PCI device exists at the given address on this host."""

    def __init__(self, address: object) -> None:
        """Name the missing ``address``."""
        super().__init__(
            f"no PCI device at {address} on this host; list the devices with `pcidevices scan`"
        )
        self.address = address
