"""Finds the PCI functions this host depends on: the `pcicore.ports.HostFactsSource` adapter.

- NICs: ``/proc/net/route`` names the interfaces with the default route (destination and
  mask 0) and those with any route (a configured address gives its subnet a route);
  ``/proc/net/if_inet6`` adds interfaces with a global IPv6 address. An interface enslaved to
  a bridge or bond (``/sys/class/net/<if>/master``) inherits what its master carries, and its
  PCI function is the last PCI address in the path ``/sys/class/net/<if>/device`` resolves to.
- Disks: every ``/dev/...`` source in ``/proc/mounts`` is traced through
  ``/sys/class/block/<name>`` (a partition's parent, a dm/md device's ``slaves``) to the PCI
  controller in its ``device`` path.
- Console: ``boot_vga`` reads 1 on the GPU the firmware initialised.

Both roots are parameters. The host fails closed: an input that cannot be read (``/proc/net/route``
or ``/proc/mounts`` missing or forbidden, a sysfs directory that cannot be listed) is named in
`HostFacts.unreadable`, and the policy then refuses every claim. Only what the kernel leaves out
on purpose reads as "nothing": ``/proc/net/if_inet6`` without IPv6, a ``boot_vga`` file on a
device that is not a display controller, a ``master`` link on an interface that has none.

Each file and link is read once, with the answer taken from the error: the kernel changes sysfs
while we read it, so a "does it exist?" check followed by a read could see two different hosts.
"""

# Host files are read with os on str paths, as in pcihost.sysfs.
# ruff: noqa: PTH115, PTH119, PTH120, PTH208

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Final

from pcicore.address import PciAddress
from pcicore.errors import InvalidPciAddressError
from pcicore.hostfacts import HostFacts
from pcihost.paths import DEFAULT_PROC_ROOT, DEFAULT_SYSFS_ROOT

_GLOBAL_SCOPE: Final = "00"
_MAX_DEPTH: Final = 8
# Errors that mean "not there": the answer "nothing depends on it" where absence is normal.
_ABSENT: Final = frozenset({errno.ENOENT, errno.ENOTDIR, errno.ENODEV, errno.ENXIO})


def _last_pci_address(path: str) -> PciAddress | None:
    """The last PCI address among the components of ``path`` (the device's own function)."""
    found = None
    for part in path.split("/"):
        try:
            found = PciAddress.parse(part)
        except InvalidPciAddressError:
            continue
    return found


def _why(err: OSError) -> str:
    return err.strerror or type(err).__name__


class _Reading:
    """One gathering of facts: reads, and remembers every input that could not be read."""

    def __init__(self) -> None:
        self.unreadable: dict[str, str] = {}

    def text(self, path: str, *, absent_is_empty: bool = False) -> str:
        """The text of ``path``; "" (and ``path`` noted as unreadable) if it cannot be read.

        With ``absent_is_empty`` a missing file is an answer ("") rather than unreadable.
        """
        try:
            with open(path, encoding="ascii", errors="replace") as file:  # noqa: PTH123 - str path
                return file.read()
        except OSError as err:
            if not (absent_is_empty and err.errno in _ABSENT):
                self.unreadable[path] = _why(err)
            return ""

    def names(self, path: str, *, absent_is_empty: bool = False) -> list[str]:
        """The sorted entries of the directory ``path``, as `text` reads a file."""
        try:
            return sorted(os.listdir(path))
        except OSError as err:
            if not (absent_is_empty and err.errno in _ABSENT):
                self.unreadable[path] = _why(err)
            return []

    def link(self, path: str) -> str | None:
        """Where the symlink ``path`` points, or ``None`` if there is none (or it is a file)."""
        try:
            return os.readlink(path)
        except OSError as err:
            if err.errno not in _ABSENT and err.errno != errno.EINVAL:
                self.unreadable[path] = _why(err)
            return None

    def resolved(self, path: str) -> str | None:
        """``path`` with every symlink resolved, or ``None`` if it (or a link in it) is absent."""
        try:
            return os.path.realpath(path, strict=True)
        except OSError as err:
            if err.errno not in _ABSENT:
                self.unreadable[path] = _why(err)
            return None


class HostFactsReader:
    """Reads what the host depends on from ``/proc`` and ``/sys``."""

    def __init__(self, *, sysfs: Path = DEFAULT_SYSFS_ROOT, proc: Path = DEFAULT_PROC_ROOT) -> None:
        """Read ``sysfs`` and ``proc`` (``/sys`` and ``/proc`` on a real host)."""
        self._sys = os.fspath(sysfs)
        self._proc = os.fspath(proc)

    def facts(self) -> HostFacts:
        """The NICs, disk controllers and console GPU the host uses now, and what was unread."""
        reading = _Reading()
        default, addressed = self._interfaces(reading)
        return HostFacts(
            default_route_nics=self._nics(reading, default),
            addressed_nics=self._nics(reading, addressed),
            mounted_disk_controllers=self._disk_controllers(reading),
            boot_vga=self._boot_vga(reading),
            unreadable=reading.unreadable,
        )

    # --- network ---------------------------------------------------------------------------

    def _interfaces(self, reading: _Reading) -> tuple[set[str], set[str]]:
        default: set[str] = set()
        addressed: set[str] = set()
        for line in reading.text(f"{self._proc}/net/route").splitlines()[1:]:
            fields = line.split()
            if len(fields) < 8:  # noqa: PLR2004 - Iface Destination Gateway Flags ... Mask
                continue
            addressed.add(fields[0])
            if fields[1] == "00000000" and fields[7] == "00000000":
                default.add(fields[0])
        # The kernel has no if_inet6 when IPv6 is disabled (ipv6.disable=1): no IPv6 address.
        inet6 = reading.text(f"{self._proc}/net/if_inet6", absent_is_empty=True)
        for line in inet6.splitlines():
            fields = line.split()
            if len(fields) >= 6 and fields[3] == _GLOBAL_SCOPE:  # noqa: PLR2004 - six columns
                addressed.add(fields[5])
        return default, addressed

    def _lowers(self, reading: _Reading, interface: str) -> set[str]:
        """``interface`` and every interface enslaved to it, recursively (bond, bridge)."""
        found = {interface}
        net = f"{self._sys}/class/net"
        for _ in range(_MAX_DEPTH):
            more = set()
            for name in reading.names(net):
                master = reading.link(f"{net}/{name}/master")
                if master is not None and master.rsplit("/", 1)[-1] in found:
                    more.add(name)
            if more <= found:
                break
            found |= more
        return found

    def _nics(self, reading: _Reading, interfaces: set[str]) -> dict[PciAddress, str]:
        nics: dict[PciAddress, str] = {}
        for interface in sorted(interfaces):
            if "/" in interface or interface in {".", ".."}:
                continue
            for lower in sorted(self._lowers(reading, interface)):
                # A virtual interface (lo, a bridge, a bond) has no device link.
                device = reading.resolved(f"{self._sys}/class/net/{lower}/device")
                address = None if device is None else _last_pci_address(device)
                if address is not None:
                    shown = lower if lower == interface else f"{lower} under {interface}"
                    nics.setdefault(address, shown)
        return nics

    # --- disks -----------------------------------------------------------------------------

    def _disk_controllers(self, reading: _Reading) -> dict[PciAddress, str]:
        controllers: dict[PciAddress, str] = {}
        for line in reading.text(f"{self._proc}/mounts").splitlines():
            fields = line.split()
            if len(fields) < 2 or not fields[0].startswith("/dev/"):  # noqa: PLR2004 - src dst
                continue
            written = fields[0].rsplit("/", 1)[-1]
            resolved = os.path.basename(os.path.realpath(fields[0])) or written
            for name in dict.fromkeys((resolved, written)):  # the /dev link's target first
                found = self._controllers_of(reading, name, 0)
                if found is not None:
                    for address in found:
                        controllers.setdefault(address, f"{fields[0]} on {fields[1]}")
                    break
        return controllers

    def _controllers_of(self, reading: _Reading, name: str, depth: int) -> set[PciAddress] | None:
        """The PCI controllers under block device ``name``, or ``None`` if there is no such one."""
        if depth > _MAX_DEPTH or "/" in name or name in {"", ".", ".."}:
            return None
        block = reading.resolved(f"{self._sys}/class/block/{name}")
        if block is None:
            return None
        found: set[PciAddress] = set()
        for candidate in (block, os.path.dirname(block)):  # a partition: its disk holds device
            device = reading.resolved(f"{candidate}/device")
            if device is not None:
                address = _last_pci_address(device)
                if address is not None:
                    found.add(address)
                break
        for slave in reading.names(f"{block}/slaves", absent_is_empty=True):
            found |= self._controllers_of(reading, slave, depth + 1) or set()
        return found

    # --- console ---------------------------------------------------------------------------

    def _boot_vga(self, reading: _Reading) -> frozenset[PciAddress]:
        found = set()
        devices = f"{self._sys}/bus/pci/devices"
        for name in reading.names(devices):
            try:
                address = PciAddress.parse(name)
            except InvalidPciAddressError:
                continue
            # Only display controllers have boot_vga; a device may also vanish as we read.
            text = reading.text(f"{devices}/{address}/boot_vga", absent_is_empty=True)
            if text.strip() == "1":
                found.add(address)
        return frozenset(found)
