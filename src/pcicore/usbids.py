"""Names of USB vendors, products and device classes from the ``usb.ids`` database.

``usb.ids`` (Debian package ``usb.ids``, ``/usr/share/misc/usb.ids``) starts like ``pci.ids``:
``vendor  name`` lines, each followed by ``<TAB>product  name`` lines; then other tables
(``C class  name`` with subclasses, ``AT``, ``HID``, ``R``, ``L``, ...), which are ignored here
except the device classes. Ids are lower-case hex, two spaces before a name, ``#`` comments.
Where an id is listed twice, the first one counts (as ``lsusb`` reads it).

The file (~700 kB) is indexed once, lazily, with two regular-expression passes over the bytes:
the vendor lines with the offset of their block, then a vendor's block on its first lookup.
"""

from __future__ import annotations

import re
from typing import Final

from pcicore.errors import UsbIdsError

# A vendor line and where its block of products begins (the end of the line).
_VENDOR_LINE: Final = re.compile(rb"\n([0-9a-f]{4})  ([^\n]*)")
# Any top-level line: where a vendor's block ends.
_TOP_LEVEL: Final = re.compile(rb"\n[^\t#\n]")
_PRODUCT_LINE: Final = re.compile(rb"\n\t([0-9a-f]{4})  ([^\n]*)")
_CLASS_LINE: Final = re.compile(rb"\nC ([0-9a-f]{2})  ([^\n]*)")


class UsbIds:
    """A ``usb.ids`` database; names are ``None`` where it does not know the id."""

    def __init__(self, data: bytes, *, origin: str = "usb.ids") -> None:
        """Keep ``data`` for lookups.

        Raises:
            UsbIdsError: ``data`` lists no vendor (not a ``usb.ids`` file).
        """
        self._data = b"\n" + data
        if _VENDOR_LINE.search(self._data) is None:
            raise UsbIdsError(
                f"{origin} lists no USB vendors; pass a valid file with --usb-ids "
                "or reinstall the usb.ids package"
            )
        self._vendors: dict[int, tuple[str, int, int]] | None = None
        self._products: dict[int, dict[int, str]] = {}
        self._classes: dict[int, str] | None = None

    @classmethod
    def empty(cls) -> UsbIds:
        """A database that knows no names."""
        return cls(b"ffff  (none)\n", origin="empty database")

    def _vendor_index(self) -> dict[int, tuple[str, int, int]]:
        """Each vendor's name and the byte range of its product lines."""
        if self._vendors is None:
            found: dict[int, tuple[str, int, int]] = {}
            data = self._data
            for line in _VENDOR_LINE.finditer(data):
                vendor = int(line.group(1), 16)
                if vendor in found:
                    continue
                end = _TOP_LEVEL.search(data, line.end())
                found[vendor] = (
                    _decode(line.group(2)),
                    line.end(),
                    len(data) if end is None else end.start(),
                )
            self._vendors = found
        return self._vendors

    def vendor(self, vendor_id: int) -> str | None:
        """The vendor's name (``Kingston Technology``)."""
        entry = self._vendor_index().get(vendor_id)
        return None if entry is None else entry[0]

    def product(self, vendor_id: int, product_id: int) -> str | None:
        """The product's name under its vendor."""
        products = self._products.get(vendor_id)
        if products is None:
            entry = self._vendor_index().get(vendor_id)
            products = {}
            if entry is not None:
                for line in _PRODUCT_LINE.finditer(self._data, entry[1], entry[2]):
                    products.setdefault(int(line.group(1), 16), _decode(line.group(2)))
            self._products[vendor_id] = products
        return products.get(product_id)

    def class_name(self, class_id: int) -> str | None:
        """The name of a USB device or interface class (``Mass Storage``)."""
        if self._classes is None:
            classes: dict[int, str] = {}
            for line in _CLASS_LINE.finditer(self._data):
                classes.setdefault(int(line.group(1), 16), _decode(line.group(2)))
            self._classes = classes
        return self._classes.get(class_id)


def _decode(name: bytes) -> str:
    return name.decode("utf-8", "replace").rstrip("\r")
