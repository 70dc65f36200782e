"""Names of vendors, devices, subsystems and classes from the ``pci.ids`` database.

The database is about 1.3 MB of text and every scan needs a handful of names from it, so it is
not parsed into dictionaries up front: lookups search the raw bytes (C-speed ``bytes.find``)
inside the right block and cache what they found. Loading is one read of the file plus one
regular-expression pass that rejects a file that is not ``pci.ids``.

Format (from the file's own header): ``vendor  name``; ``<TAB>device  name``;
``<TAB><TAB>subvendor subdevice  name``; ``C class  name``; ``<TAB>subclass  name``;
``<TAB><TAB>prog-if  name``; ``#`` comments; ids in lower-case hex; two spaces before a name.
"""

from __future__ import annotations

import re
from typing import Final

from pcicore.errors import PciIdsError

STANDARD_LOCATIONS: Final = (
    "/usr/share/misc/pci.ids",
    "/usr/share/hwdata/pci.ids",
    "/usr/share/pci.ids",
    "/usr/local/share/pci.ids",
    "/usr/local/share/hwdata/pci.ids",
)
"""Where distributions install ``pci.ids``, in the order they are tried."""

# A line that none of the file's line kinds describes (blank and whitespace-only lines occur).
# Anchored on b"\n" rather than ^ with MULTILINE: about three times faster on the real file.
_BAD_LINE: Final = re.compile(
    rb"\n(?!\t\t[0-9a-f]{2}(?:[0-9a-f]{2} [0-9a-f]{4})?  |\t[0-9a-f]{2}(?:[0-9a-f]{2})?  "
    rb"|[0-9a-f]{4}  |#|C [0-9a-f]{2}  |[ \t\r]*(?:\n|$))[^\n]*"
)
_VENDOR_LINE: Final = re.compile(rb"^[0-9a-f]{4}  ", re.MULTILINE)
# Where a top-level block (vendor or class) ends: the next line that is not indented.
_TOP_LEVEL_LINE: Final = re.compile(rb"\n[^\t#\n]")
# Where a second-level block (device or subclass) ends: the next line indented once or less.
_SECOND_LEVEL_LINE: Final = re.compile(rb"\n(?:\t[^\t#\n]|[^\t#\n])")


class PciIds:
    """A parsed-on-demand ``pci.ids`` database.

    Construct it from the file's bytes (an adapter reads the file); names are ``None`` where the
    database does not know the id.
    """

    def __init__(self, data: bytes, *, origin: str = "pci.ids") -> None:
        """Check that ``data`` is a ``pci.ids`` database and keep it for lookups.

        Raises:
            PciIdsError: ``data`` has a line that is not of the file's grammar, or no vendor.
        """
        # A leading newline lets every line, the first included, be found as b"\n<line>".
        self._data = b"\n" + data
        bad = _BAD_LINE.search(self._data)
        if bad is not None:
            line_number = self._data.count(b"\n", 0, bad.start()) + 1
            shown = bad.group()[1:].decode("utf-8", "replace")[:60]
            raise PciIdsError(
                f"{origin} is not a pci.ids database: line {line_number} reads {shown!r}; "
                "pass a valid file with --pci-ids or reinstall the pci.ids package"
            )
        if _VENDOR_LINE.search(data) is None:
            raise PciIdsError(
                f"{origin} lists no vendors; pass a valid file with --pci-ids "
                "or reinstall the pci.ids package"
            )
        self._vendors: dict[int, tuple[int, int] | None] = {}
        self._devices: dict[tuple[int, int], tuple[int, int] | None] = {}
        self._classes: dict[int, tuple[int, int] | None] = {}
        self._subclasses: dict[tuple[int, int], tuple[int, int] | None] = {}

    @classmethod
    def empty(cls) -> PciIds:
        """A database that knows no names (every lookup answers ``None``)."""
        return cls(b"ffff  Illegal Vendor ID\n", origin="empty database")

    def _line(self, key: bytes, start: int, end: int) -> tuple[int, int] | None:
        """Find ``key`` at a line start within [start, end); return (name start, line end)."""
        at = self._data.find(key, start, end)
        if at < 0:
            return None
        name_start = at + len(key)
        line_end = self._data.find(b"\n", name_start)
        return (name_start, len(self._data) if line_end < 0 else line_end)

    def _name(self, span: tuple[int, int] | None) -> str | None:
        if span is None:
            return None
        return self._data[span[0] : span[1]].decode("utf-8", "replace").rstrip("\r")

    def _block_end(self, pattern: re.Pattern[bytes], start: int) -> int:
        match = pattern.search(self._data, start)
        return len(self._data) if match is None else match.start()

    def _vendor_span(self, vendor_id: int) -> tuple[int, int] | None:
        if vendor_id not in self._vendors:
            self._vendors[vendor_id] = self._line(b"\n%04x  " % vendor_id, 0, len(self._data))
        return self._vendors[vendor_id]

    def _device_span(self, vendor_id: int, device_id: int) -> tuple[int, int] | None:
        key = (vendor_id, device_id)
        if key not in self._devices:
            vendor = self._vendor_span(vendor_id)
            span = None
            if vendor is not None:
                end = self._block_end(_TOP_LEVEL_LINE, vendor[1])
                span = self._line(b"\n\t%04x  " % device_id, vendor[1], end)
            self._devices[key] = span
        return self._devices[key]

    def _class_span(self, base: int) -> tuple[int, int] | None:
        if base not in self._classes:
            self._classes[base] = self._line(b"\nC %02x  " % base, 0, len(self._data))
        return self._classes[base]

    def _subclass_span(self, base: int, sub: int) -> tuple[int, int] | None:
        key = (base, sub)
        if key not in self._subclasses:
            klass = self._class_span(base)
            span = None
            if klass is not None:
                end = self._block_end(_TOP_LEVEL_LINE, klass[1])
                span = self._line(b"\n\t%02x  " % sub, klass[1], end)
            self._subclasses[key] = span
        return self._subclasses[key]

    def vendor(self, vendor_id: int) -> str | None:
        """The vendor's name (``Intel Corporation``)."""
        return self._name(self._vendor_span(vendor_id))

    def device(self, vendor_id: int, device_id: int) -> str | None:
        """The device's name under its vendor."""
        return self._name(self._device_span(vendor_id, device_id))

    def subsystem(
        self, vendor_id: int, device_id: int, subvendor_id: int, subdevice_id: int
    ) -> str | None:
        """The name of a subsystem (a board built around the device)."""
        device = self._device_span(vendor_id, device_id)
        if device is None:
            return None
        end = self._block_end(_SECOND_LEVEL_LINE, device[1])
        return self._name(
            self._line(b"\n\t\t%04x %04x  " % (subvendor_id, subdevice_id), device[1], end)
        )

    def class_name(self, base: int) -> str | None:
        """The name of a base class (``Network controller``)."""
        return self._name(self._class_span(base))

    def subclass_name(self, base: int, sub: int) -> str | None:
        """The name of a subclass (``Ethernet controller``)."""
        return self._name(self._subclass_span(base, sub))

    def prog_if_name(self, base: int, sub: int, prog_if: int) -> str | None:
        """The name of a programming interface (``NVM Express``)."""
        subclass = self._subclass_span(base, sub)
        if subclass is None:
            return None
        end = self._block_end(_SECOND_LEVEL_LINE, subclass[1])
        return self._name(self._line(b"\n\t\t%02x  " % prog_if, subclass[1], end))
