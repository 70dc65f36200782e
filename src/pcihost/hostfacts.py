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

Both roots are parameters; missing files mean "nothing depends on it", as on a minimal host.
"""

# Host files are read with os on str paths, as in pcihost.sysfs.
# ruff: noqa: PTH110, PTH112, PTH114, PTH115, PTH119, PTH120, PTH208

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from pcicore.address import PciAddress
from pcicore.errors import InvalidPciAddressError
from pcicore.hostfacts import HostFacts
from pcihost.paths import DEFAULT_PROC_ROOT, DEFAULT_SYSFS_ROOT

_GLOBAL_SCOPE: Final = "00"
_MAX_DEPTH: Final = 8


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as file:  # noqa: PTH123 - str path
            return file.read()
    except OSError:
        return ""


def _last_pci_address(path: str) -> PciAddress | None:
    """The last PCI address among the components of ``path`` (the device's own function)."""
    found = None
    for part in path.split("/"):
        try:
            found = PciAddress.parse(part)
        except InvalidPciAddressError:
            continue
    return found


class HostFactsReader:
    """Reads what the host depends on from ``/proc`` and ``/sys``."""

    def __init__(self, *, sysfs: Path = DEFAULT_SYSFS_ROOT, proc: Path = DEFAULT_PROC_ROOT) -> None:
        """Read ``sysfs`` and ``proc`` (``/sys`` and ``/proc`` on a real host)."""
        self._sys = os.fspath(sysfs)
        self._proc = os.fspath(proc)

    def facts(self) -> HostFacts:
        """The NICs, disk controllers and console GPU the host uses now."""
        default, addressed = self._interfaces()
        return HostFacts(
            default_route_nics=self._nics(default),
            addressed_nics=self._nics(addressed),
            mounted_disk_controllers=self._disk_controllers(),
            boot_vga=self._boot_vga(),
        )

    # --- network ---------------------------------------------------------------------------

    def _interfaces(self) -> tuple[set[str], set[str]]:
        default: set[str] = set()
        addressed: set[str] = set()
        for line in _read(f"{self._proc}/net/route").splitlines()[1:]:
            fields = line.split()
            if len(fields) < 8:  # noqa: PLR2004 - Iface Destination Gateway Flags ... Mask
                continue
            addressed.add(fields[0])
            if fields[1] == "00000000" and fields[7] == "00000000":
                default.add(fields[0])
        for line in _read(f"{self._proc}/net/if_inet6").splitlines():
            fields = line.split()
            if len(fields) >= 6 and fields[3] == _GLOBAL_SCOPE:  # noqa: PLR2004 - six columns
                addressed.add(fields[5])
        return default, addressed

    def _lowers(self, interface: str) -> set[str]:
        """``interface`` and every interface enslaved to it, recursively (bond, bridge)."""
        found = {interface}
        net = f"{self._sys}/class/net"
        for _ in range(_MAX_DEPTH):
            more = set()
            for name in _listdir(net):
                master = f"{net}/{name}/master"
                if os.path.islink(master) and os.readlink(master).rsplit("/", 1)[-1] in found:
                    more.add(name)
            if more <= found:
                break
            found |= more
        return found

    def _nics(self, interfaces: set[str]) -> dict[PciAddress, str]:
        nics: dict[PciAddress, str] = {}
        for interface in sorted(interfaces):
            if "/" in interface or interface in {".", ".."}:
                continue
            for lower in sorted(self._lowers(interface)):
                device = f"{self._sys}/class/net/{lower}/device"
                if not os.path.exists(device):
                    continue
                address = _last_pci_address(os.path.realpath(device))
                if address is not None:
                    shown = lower if lower == interface else f"{lower} under {interface}"
                    nics.setdefault(address, shown)
        return nics

    # --- disks -----------------------------------------------------------------------------

    def _disk_controllers(self) -> dict[PciAddress, str]:
        controllers: dict[PciAddress, str] = {}
        for line in _read(f"{self._proc}/mounts").splitlines():
            fields = line.split()
            if len(fields) < 2 or not fields[0].startswith("/dev/"):  # noqa: PLR2004 - src dst
                continue
            name = os.path.basename(os.path.realpath(fields[0])) or fields[0].rsplit("/", 1)[-1]
            if not os.path.exists(f"{self._sys}/class/block/{name}"):
                name = fields[0].rsplit("/", 1)[-1]
            for address in self._controllers_of(name, 0):
                controllers.setdefault(address, f"{fields[0]} on {fields[1]}")
        return controllers

    def _controllers_of(self, name: str, depth: int) -> set[PciAddress]:
        if depth > _MAX_DEPTH or "/" in name or name in {"", ".", ".."}:
            return set()
        block = os.path.realpath(f"{self._sys}/class/block/{name}")
        if not os.path.isdir(block):
            return set()
        found: set[PciAddress] = set()
        for candidate in (block, os.path.dirname(block)):  # a partition: its disk holds device
            device = f"{candidate}/device"
            if os.path.exists(device):
                address = _last_pci_address(os.path.realpath(device))
                if address is not None:
                    found.add(address)
                break
        for slave in _listdir(f"{block}/slaves"):
            found |= self._controllers_of(slave, depth + 1)
        return found

    # --- console ---------------------------------------------------------------------------

    def _boot_vga(self) -> frozenset[PciAddress]:
        found = set()
        devices = f"{self._sys}/bus/pci/devices"
        for name in _listdir(devices):
            try:
                address = PciAddress.parse(name)
            except InvalidPciAddressError:
                continue
            if _read(f"{devices}/{address}/boot_vga").strip() == "1":
                found.add(address)
        return frozenset(found)


def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []
