"""Rules of the pci.ids database that hold for every database of its grammar.

Databases are generated line by line (vendors with devices and subsystems, classes with
subclasses and programming interfaces, comments, empty and blank lines in between, ids that
repeat), and every lookup is compared with a naive reference that walks the lines one by one.
"""

from __future__ import annotations

import re

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pcicore.errors import PciIdsError
from pcicore.pciids import PciIds

# No example database on disk, and no timing: a slow example is not a failure.
PROPERTY = settings(database=None, deadline=None, max_examples=100)

# Ids from a small range repeat often (the "first one counts" rule); the rest spread widely.
ID16 = st.integers(0, 3) | st.integers(0, 0xFFFF)
ID8 = st.integers(0, 3) | st.integers(0, 0xFF)
NAME = st.text(st.characters(codec="utf-8", exclude_characters="\n\r"), max_size=12)
# Lines that describe nothing: comments and empty lines end no block; a line of spaces (or a
# lone carriage return) is a top-level line and ends every open block.
NOISE = st.sampled_from([b"# a comment", b"#", b"", b"\t", b" ", b"\r"])


def _lines(entry: bytes, noise: list[bytes]) -> list[bytes]:
    return [entry, *noise]


@st.composite
def databases(draw: st.DrawFn) -> bytes:
    """A pci.ids text: vendors, then classes, with noise lines after any line."""

    def noise() -> list[bytes]:
        return draw(st.lists(NOISE, max_size=2))

    lines: list[bytes] = [*noise()]
    for vendor in draw(st.lists(ID16, min_size=1, max_size=6)):
        lines += _lines(b"%04x  %s" % (vendor, draw(NAME).encode()), noise())
        for device in draw(st.lists(ID16, max_size=5)):
            lines += _lines(b"\t%04x  %s" % (device, draw(NAME).encode()), noise())
            for sub in draw(st.lists(st.tuples(ID16, ID16), max_size=3)):
                lines += _lines(b"\t\t%04x %04x  %s" % (*sub, draw(NAME).encode()), noise())
    for base in draw(st.lists(ID8, max_size=4)):
        lines += _lines(b"C %02x  %s" % (base, draw(NAME).encode()), noise())
        for sub in draw(st.lists(ID8, max_size=4)):
            lines += _lines(b"\t%02x  %s" % (sub, draw(NAME).encode()), noise())
            for prog_if in draw(st.lists(ID8, max_size=3)):
                lines += _lines(b"\t\t%02x  %s" % (prog_if, draw(NAME).encode()), noise())
    return b"\n".join(lines) + draw(st.sampled_from([b"\n", b""]))


@attrs.define
class Reference:
    """Every name of a database, found by walking its lines one at a time.

    The rules: a line's level is its number of leading tabs; a comment or an empty line (after
    its tabs) belongs to no level; any other line closes every open block at its level or
    deeper. Where an id repeats under the same parent, the first line counts, and the blocks
    under later lines with that id are never consulted.
    """

    vendors: dict[tuple[int, ...], str] = attrs.field(factory=dict)
    devices: dict[tuple[int, ...], str] = attrs.field(factory=dict)
    subsystems: dict[tuple[int, ...], str] = attrs.field(factory=dict)
    classes: dict[tuple[int, ...], str] = attrs.field(factory=dict)
    subclasses: dict[tuple[int, ...], str] = attrs.field(factory=dict)
    prog_ifs: dict[tuple[int, ...], str] = attrs.field(factory=dict)

    @classmethod
    def parse(cls, text: bytes) -> Reference:
        ref = cls()
        # The open block at level 0 and at level 1, as ("vendor"|"class", key) or None when the
        # block is not the first one of its id (or the line was not a vendor or class).
        top: tuple[str, tuple[int, ...]] | None = None
        second: tuple[str, tuple[int, ...]] | None = None
        for line in text.split(b"\n"):
            rest = line.lstrip(b"\t")
            level = len(line) - len(rest)
            if not rest or rest.startswith(b"#"):
                continue
            name = rest.partition(b"  ")[2].decode("utf-8", "replace")
            if level == 0:
                top, second = ref._top_line(rest, name), None
            elif level == 1:
                second = ref._second_line(top, rest, name)
            elif level == 2:
                ref._third_line(second, rest, name)
        return ref

    def _top_line(self, line: bytes, name: str) -> tuple[str, tuple[int, ...]] | None:
        if vendor := re.fullmatch(rb"([0-9a-f]{4})  .*", line, re.DOTALL):
            key = (int(vendor.group(1), 16),)
            if key not in self.vendors:
                self.vendors[key] = name
                return ("vendor", key)
        elif klass := re.fullmatch(rb"C ([0-9a-f]{2})  .*", line, re.DOTALL):
            key = (int(klass.group(1), 16),)
            if key not in self.classes:
                self.classes[key] = name
                return ("class", key)
        return None

    def _second_line(
        self, top: tuple[str, tuple[int, ...]] | None, line: bytes, name: str
    ) -> tuple[str, tuple[int, ...]] | None:
        if top is None:
            return None
        kind, parent = top
        width = 4 if kind == "vendor" else 2
        child = re.fullmatch(rb"([0-9a-f]{%d})  .*" % width, line, re.DOTALL)
        if child is None:
            return None
        key = (*parent, int(child.group(1), 16))
        table = self.devices if kind == "vendor" else self.subclasses
        if key in table:
            return None
        table[key] = name
        return (kind, key)

    def _third_line(
        self, second: tuple[str, tuple[int, ...]] | None, line: bytes, name: str
    ) -> None:
        if second is None:
            return
        kind, parent = second
        pattern = rb"([0-9a-f]{4}) ([0-9a-f]{4})  .*" if kind == "vendor" else rb"([0-9a-f]{2})  .*"
        child = re.fullmatch(pattern, line, re.DOTALL)
        if child is None:
            return
        key = (*parent, *(int(group, 16) for group in child.groups()))
        table = self.subsystems if kind == "vendor" else self.prog_ifs
        table.setdefault(key, name)


def _ids_in(text: bytes, width: int) -> set[int]:
    return {int(found, 16) for found in re.findall(rb"[0-9a-f]{%d}" % width, text)}


class TestLookupsAgreeWithALineByLineReading:
    """Every lookup answers what a line-by-line reading of the same database answers."""

    @PROPERTY
    @given(databases(), st.lists(ID16, max_size=4))
    def test_vendors_and_devices(self, text, extra_ids):
        """Every vendor and every (vendor, device) pair, listed or not, has the reference name."""
        ids, ref = PciIds(text), Reference.parse(text)
        candidates = sorted(_ids_in(text, 4) | set(extra_ids))
        for vendor in candidates:
            assert ids.vendor(vendor) == ref.vendors.get((vendor,))
            for device in candidates:
                assert ids.device(vendor, device) == ref.devices.get((vendor, device))

    @PROPERTY
    @given(databases())
    def test_subsystems(self, text):
        """Every subsystem, asked under every device (its own or not), has the reference name."""
        ids, ref = PciIds(text), Reference.parse(text)
        devices = set(ref.devices) | {key[:2] for key in ref.subsystems}
        subsystems = {key[2:] for key in ref.subsystems} | {(0, 0)}
        for vendor, device in sorted(devices):
            for subvendor, subdevice in sorted(subsystems):
                expected = ref.subsystems.get((vendor, device, subvendor, subdevice))
                assert ids.subsystem(vendor, device, subvendor, subdevice) == expected

    @PROPERTY
    @given(databases())
    def test_classes(self, text):
        """Every class, subclass and programming interface, listed or not, has its reference."""
        ids, ref = PciIds(text), Reference.parse(text)
        candidates = sorted(_ids_in(text, 2) | {0xFF})
        for base in candidates:
            assert ids.class_name(base) == ref.classes.get((base,))
            for sub in candidates:
                assert ids.subclass_name(base, sub) == ref.subclasses.get((base, sub))
                for prog_if in candidates[:6]:
                    expected = ref.prog_ifs.get((base, sub, prog_if))
                    assert ids.prog_if_name(base, sub, prog_if) == expected

    @PROPERTY
    @given(databases(), st.data())
    def test_order_of_lookups_does_not_matter(self, text, data):
        """Names do not depend on which lookup built the indexes first."""
        ref = Reference.parse(text)
        pairs = sorted(ref.devices) or [(0, 0)]
        first = data.draw(st.sampled_from(pairs))
        ids = PciIds(text)
        assert ids.device(*first) == ref.devices.get(first)
        for vendor, device in pairs:
            assert ids.device(vendor, device) == ref.devices.get((vendor, device))
            assert ids.vendor(vendor) == ref.vendors.get((vendor,))


class TestValidationOfAnyDatabase:
    """Validation accepts the grammar and rejects the first line outside it."""

    @PROPERTY
    @given(databases())
    def test_every_database_of_the_grammar_is_accepted(self, text):
        """A database built from the file's line kinds loads and knows its first vendor."""
        ids = PciIds(text)
        first_vendor = re.search(rb"^([0-9a-f]{4})  ", text, re.MULTILINE)
        assert first_vendor is not None
        assert ids.vendor(int(first_vendor.group(1), 16)) is not None

    @PROPERTY
    @given(databases(), st.data(), st.sampled_from([b"\tzz  x", b"12345  x", b"C 1  x", b" x"]))
    def test_a_foreign_line_is_reported_with_its_number(self, text, data, foreign):
        """A line of no known kind, inserted anywhere, is named with its line number."""
        lines = text.split(b"\n")
        at = data.draw(st.integers(0, len(lines) - 1))
        lines.insert(at, foreign)
        with pytest.raises(PciIdsError, match=rf"line {at + 1} reads"):
            PciIds(b"\n".join(lines))
