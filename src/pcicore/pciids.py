"""Names of vendors, devices, subsystems and classes from the ``pci.ids`` database.

The database is about 1.3 MB of text and a scan needs a few (or a few thousand) names from it.
It is never parsed line by line in Python. Loading is one read of the file plus one
regular-expression pass that both rejects a file that is not ``pci.ids`` and indexes the
top-level lines (vendors and classes: where each name is and where its block ends); the first
device lookup under a vendor indexes that vendor's block in one ``findall``. Every later lookup
is a dictionary lookup, so the total cost is bounded by one pass over the file, however many
distinct ids a host has.

Format (from the file's own header): ``vendor  name``; ``<TAB>device  name``;
``<TAB><TAB>subvendor subdevice  name``; ``C class  name``; ``<TAB>subclass  name``;
``<TAB><TAB>prog-if  name``; ``#`` comments; ids in lower-case hex; two spaces before a name.
A block (a vendor's devices, a device's subsystems) ends at the next line that is indented
less; comments and empty lines do not end it. Where an id is listed twice, the first one counts.
"""

from __future__ import annotations

import re
from typing import Final

from pcicore.errors import PciIdsError

# One pass both indexes the file's top level and checks every line. It finds every top-level
# line: a vendor line (its id in group 1), a class line (group 2), a line of spaces or a lone
# carriage return (group 3: valid, and like any top-level line it ends the block above it), and
# every line that none of the file's line kinds describes (no group). Comments, empty lines and
# indented lines are valid and not found. Anchored on b"\n" rather than ^ with MULTILINE: about
# three times faster on the real file.
_TOP_LEVEL_OR_BAD_LINE: Final = re.compile(
    rb"\n(?:([0-9a-f]{4})  |C ([0-9a-f]{2})  |([ \r])[ \t\r]*(?=\n|$)"
    rb"|(?!\t\t[0-9a-f]{2}(?:[0-9a-f]{2} [0-9a-f]{4})?  |\t[0-9a-f]{2}(?:[0-9a-f]{2})?  "
    rb"|#|[ \t\r]*(?:\n|$)))[^\n]*"
)
# The devices of a vendor block, as (id, name) pairs.
_DEVICE_LINE: Final = re.compile(rb"\n\t([0-9a-f]{4})  ([^\n]*)")
# The subclasses of a class block, as (id, name) pairs.
_SUBCLASS_LINE: Final = re.compile(rb"\n\t([0-9a-f]{2})  ([^\n]*)")
# Where a second-level block (device or subclass) ends: the next line indented once or less.
_SECOND_LEVEL_LINE: Final = re.compile(rb"\n(?:\t[^\t#\n]|[^\t#\n])")


# A top-level line (vendor or class) and the block of lines under it, as offsets into the data:
# where the line's name starts, where the line ends (the block's first byte), and where the block
# ends (the next top-level line, or the end of the data). A plain tuple: the index makes one per
# vendor and class, a few thousand, on the start-up path of a scan.
_Block = tuple[int, int, int]
_NAME_START, _NAME_END, _END = 0, 1, 2


class PciIds:
    """A ``pci.ids`` database, indexed on demand.

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
        # The top-level index: vendors and classes by their lower-case hex id.
        self._vendors, self._classes = self._index_top_level(origin)
        if not self._vendors:
            raise PciIdsError(
                f"{origin} lists no vendors; pass a valid file with --pci-ids "
                "or reinstall the pci.ids package"
            )
        self._devices: dict[bytes, dict[bytes, bytes]] = {}
        self._subclasses: dict[bytes, dict[bytes, bytes]] = {}
        # Names already answered (a scan asks for each vendor and device more than once).
        self._vendor_names: dict[int, str | None] = {}
        self._device_names: dict[tuple[int, int], str | None] = {}

    @classmethod
    def empty(cls) -> PciIds:
        """A database that knows no names (every lookup answers ``None``)."""
        return cls(b"ffff  Illegal Vendor ID\n", origin="empty database")

    def _index_top_level(self, origin: str) -> tuple[dict[bytes, _Block], dict[bytes, _Block]]:
        """Index every vendor and class line, checking every line on the way.

        Raises:
            PciIdsError: a line is not of the file's grammar.
        """
        data = self._data
        vendors: dict[bytes, _Block] = {}
        classes: dict[bytes, _Block] = {}
        # The block of a vendor or class line ends where the next one starts.
        opened: tuple[dict[bytes, _Block], bytes, int, int] | None = None
        for line in _TOP_LEVEL_OR_BAD_LINE.finditer(data):
            vendor, klass, blank = line.group(1, 2, 3)
            if vendor is None and klass is None and blank is None:
                line_number = data.count(b"\n", 0, line.start()) + 1
                shown = line.group()[1:].decode("utf-8", "replace")[:60]
                raise PciIdsError(
                    f"{origin} is not a pci.ids database: line {line_number} reads {shown!r}; "
                    "pass a valid file with --pci-ids or reinstall the pci.ids package"
                )
            if opened is not None:
                table, key, name_start, name_end = opened
                table.setdefault(key, (name_start, name_end, line.start()))
                opened = None
            if vendor is not None:
                opened = (vendors, vendor, line.end(1) + 2, line.end())
            elif klass is not None:
                opened = (classes, klass, line.end(2) + 2, line.end())
        if opened is not None:
            table, key, name_start, name_end = opened
            table.setdefault(key, (name_start, name_end, len(data)))
        return vendors, classes

    def _children(
        self,
        tables: dict[bytes, dict[bytes, bytes]],
        pattern: re.Pattern[bytes],
        key: bytes,
        block: _Block,
    ) -> dict[bytes, bytes]:
        """The (id → name) lines directly under ``block``, indexed on first use in one pass."""
        children = tables.get(key)
        if children is None:
            # reversed(): the first of two lines with the same id is the one kept.
            found = pattern.findall(self._data, block[_NAME_END], block[_END])
            children = tables[key] = dict(reversed(found))
        return children

    def _vendor_block(self, vendor_id: int) -> _Block | None:
        return self._vendors.get(b"%04x" % vendor_id)

    def _class_block(self, base: int) -> _Block | None:
        return self._classes.get(b"%02x" % base)

    def _name(self, start: int, end: int) -> str:
        return _decode(self._data[start:end])

    def _grandchild(self, parent_line: bytes, block: _Block, child_line: bytes) -> str | None:
        """The name of ``child_line`` in the block under ``parent_line`` within ``block``."""
        data = self._data
        _, block_start, block_end = block
        parent = data.find(parent_line, block_start, block_end)
        if parent < 0:
            return None
        parent_end = data.find(b"\n", parent + 1, block_end)
        if parent_end < 0:
            return None
        match = _SECOND_LEVEL_LINE.search(data, parent_end, block_end)
        end = block_end if match is None else match.start()
        at = data.find(child_line, parent_end, end)
        if at < 0:
            return None
        name_start = at + len(child_line)
        name_end = data.find(b"\n", name_start, end)
        return self._name(name_start, end if name_end < 0 else name_end)

    def vendor(self, vendor_id: int) -> str | None:
        """The vendor's name (``Intel Corporation``)."""
        # Asked, not tried: on a host with many kinds most first lookups miss, and a raised
        # KeyError costs several dictionary lookups.
        if vendor_id in self._vendor_names:
            return self._vendor_names[vendor_id]
        block = self._vendor_block(vendor_id)
        name = None if block is None else self._name(block[_NAME_START], block[_NAME_END])
        self._vendor_names[vendor_id] = name
        return name

    def device(self, vendor_id: int, device_id: int) -> str | None:
        """The device's name under its vendor."""
        if (vendor_id, device_id) in self._device_names:
            return self._device_names[vendor_id, device_id]
        key = b"%04x" % vendor_id
        block = self._vendors.get(key)
        name = None
        if block is not None:
            found = self._children(self._devices, _DEVICE_LINE, key, block).get(b"%04x" % device_id)
            name = None if found is None else _decode(found)
        self._device_names[vendor_id, device_id] = name
        return name

    def subsystem(
        self, vendor_id: int, device_id: int, subvendor_id: int, subdevice_id: int
    ) -> str | None:
        """The name of a subsystem (a board built around the device)."""
        block = self._vendor_block(vendor_id)
        if block is None:
            return None
        return self._grandchild(
            b"\n\t%04x  " % device_id, block, b"\n\t\t%04x %04x  " % (subvendor_id, subdevice_id)
        )

    def class_name(self, base: int) -> str | None:
        """The name of a base class (``Network controller``)."""
        block = self._class_block(base)
        return None if block is None else self._name(block[_NAME_START], block[_NAME_END])

    def subclass_name(self, base: int, sub: int) -> str | None:
        """The name of a subclass (``Ethernet controller``)."""
        key = b"%02x" % base
        block = self._classes.get(key)
        if block is None:
            return None
        name = self._children(self._subclasses, _SUBCLASS_LINE, key, block).get(b"%02x" % sub)
        return None if name is None else _decode(name)

    def prog_if_name(self, base: int, sub: int, prog_if: int) -> str | None:
        """The name of a programming interface (``NVM Express``)."""
        block = self._class_block(base)
        if block is None:
            return None
        return self._grandchild(b"\n\t%02x  " % sub, block, b"\n\t\t%02x  " % prog_if)


def _decode(name: bytes) -> str:
    return name.decode("utf-8", "replace").rstrip("\r")
