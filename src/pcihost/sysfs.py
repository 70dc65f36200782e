"""Reads a host's PCI bus from sysfs: the `pcicore.ports.PciBus` adapter.

The sysfs root is a parameter (``/sys`` by default), so the same code reads the real host, a
pyfakefs tree in tests, a tree on disk in benchmarks, or a guest kernel's ``/sys`` under QEMU.

Per device it reads ``uevent`` (ids, class and driver in one read, and unlike ``config`` it never
wakes a suspended device), ``revision`` and ``numa_node``, and resolves the ``iommu_group``,
``physfn`` and bus links. Files are read with ``os.open``/``os.read``: a scan reads thousands of
tiny files and the buffered ``open()`` costs several times more per file.
"""

from __future__ import annotations

import errno
import functools
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import attrs

from pcicore.address import PciAddress
from pcicore.device import DriverName, IommuGroup, PciClass, PciDevice, SriovInfo
from pcicore.errors import InvalidPciAddressError, SysfsError
from pcihost.paths import DEFAULT_SYSFS_ROOT

# Errors that mean "this attribute (or the whole device) is not there": ENOENT for a missing
# file, ENODEV/ENXIO when the device was hot-removed while we read it.
_ABSENT: Final = frozenset({errno.ENOENT, errno.ENODEV, errno.ENXIO, errno.ENOTDIR})
_VANISHED_VENDOR: Final = 0xFFFF
# What a device's uevent (or id files) tell: driver, vendor, device, subsystem vendor and
# device, class code.
_Ids = tuple[str | None, int, int, int, int, int]
_NO_SRIOV: Final = SriovInfo()


def _read_bytes(name: str, dir_fd: int | None = None) -> bytes | None:
    """The bytes of a small sysfs attribute, or ``None`` if it is absent."""
    try:
        fd = os.open(name, os.O_RDONLY, dir_fd=dir_fd)
    except OSError as err:
        if err.errno in _ABSENT:
            return None
        raise
    try:
        return os.read(fd, 4096)
    except OSError as err:
        if err.errno in _ABSENT:
            return None
        raise
    finally:
        os.close(fd)


def _read_small(name: str, dir_fd: int | None = None) -> str | None:
    """The text of a small sysfs attribute, or ``None`` if it is absent."""
    data = _read_bytes(name, dir_fd)
    return None if data is None else data.decode("ascii", "replace")


def _read_int(name: str, dir_fd: int, base: int) -> int | None:
    """A number attribute (``0x0a``, ``-1``), or ``None`` if it is absent or not a number."""
    data = _read_bytes(name, dir_fd)
    if data is None:
        return None
    try:
        return int(data, base)  # int() takes the bytes and ignores the surrounding whitespace
    except ValueError:
        return None


def _read_link(name: str, dir_fd: int | None = None) -> str | None:
    try:
        return os.readlink(name, dir_fd=dir_fd)
    except OSError as err:
        if err.errno in _ABSENT or err.errno == errno.EINVAL:
            return None
        raise


_ADDRESS_IN_LINK: Final = re.compile(r"[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]")


def _upstream(link: str | None) -> tuple[PciAddress | None, PciAddress | None]:
    """Parent bridge and root port, from a link like ``…/pci0000:00/0000:00:1c.0/0000:02:00.0``."""
    if link is None:
        return (None, None)
    chain = _ADDRESS_IN_LINK.findall(link)
    if len(chain) < 2:  # noqa: PLR2004 - the device itself and at least one upstream function
        return (None, None)
    return (PciAddress.parse(chain[-2]), PciAddress.parse(chain[0]))


@functools.cache
def _pci_class(code: int) -> PciClass:
    """One shared value per class code (a host has few)."""
    return PciClass.from_code(code)


def _sort_key(entry: tuple[PciAddress, str]) -> int:
    return entry[0].sort_key


# The whole of a PCI function's uevent as the kernel writes it on a host without a device tree:
# the driver core's ``DRIVER`` line (when a driver is bound), then ``pci_uevent``'s five lines.
# One match reads every field a scan needs; any other text (another order, other lines) falls
# back to reading the lines one by one.
_UEVENT: Final = re.compile(
    rb"(?:DRIVER=([^\n]*)\n)?PCI_CLASS=([^\n]*)\nPCI_ID=([^:\n]*):([^\n]*)\n"
    rb"PCI_SUBSYS_ID=([^:\n]*):([^\n]*)\nPCI_SLOT_NAME=[^\n]*\nMODALIAS=[^\n]*\n"
)


class SysfsPciBus:
    """The PCI bus of the host whose sysfs is mounted at ``root``."""

    def __init__(self, root: Path = DEFAULT_SYSFS_ROOT, *, topology: bool = True) -> None:
        """Read the bus below ``root`` (``/sys`` on a real host).

        With ``topology=False`` the upstream bridges (``parent``, ``root_port``) are not read
        (left ``None``): one link less per device, for callers that never use them (scan).
        """
        self.root = root
        self._devices_dir = os.fspath(root / "bus" / "pci" / "devices")
        self._topology = topology

    def check(self) -> None:
        """Fail early, with the fix, if ``root`` is not a sysfs tree with a PCI bus.

        Raises:
            SysfsError: ``root/bus/pci/devices`` is not a readable directory.
        """
        if not os.path.isdir(self._devices_dir):
            raise SysfsError(
                f"{self.root} is not a sysfs tree with a PCI bus (no {self._devices_dir}); "
                "pass the sysfs mount point with --sysfs (default /sys)"
            )

    def addresses(self) -> list[PciAddress]:
        """The addresses of every function listed on the bus, sorted; other names are ignored."""
        return [address for address, _ in self._listed()]

    def _listed(self) -> list[tuple[PciAddress, str]]:
        """Every function listed on the bus with its directory name, in address order."""
        self.check()
        found: list[tuple[PciAddress, str]] = []
        parse = PciAddress.parse
        for name in os.listdir(self._devices_dir):
            try:
                found.append((parse(name), name))
            except InvalidPciAddressError:
                continue  # not a device entry; never joined into a path
        found.sort(key=_sort_key)
        return found

    def devices(self) -> Sequence[PciDevice]:
        """Every function present now, in address order; vanished ones are left out."""
        listed = self._listed()
        bus_fd = os.open(self._devices_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            read = self._read_device
            # The listed name, which parsed as an address, is the path: the kernel's own text.
            found = [
                device
                for address, name in listed
                if (device := read(address, bus_fd, name + "/", physfn=False)) is not None
            ]
            return _with_physical_functions(found, bus_fd)
        finally:
            os.close(bus_fd)

    def device(self, address: PciAddress) -> PciDevice | None:
        """The function at ``address`` now, or ``None`` if it is absent or vanished."""
        try:
            bus_fd = os.open(self._devices_dir, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as err:
            if err.errno in _ABSENT:
                return None
            raise
        try:
            return self._read_device(address, bus_fd, f"{address}/")
        finally:
            os.close(bus_fd)

    def _read_device(
        self, address: PciAddress, bus_fd: int, at: str, *, physfn: bool = True
    ) -> PciDevice | None:
        """Read one device; attribute paths are ``at + name`` relative to the bus directory.

        Relative to an open ``bus/pci/devices``, each attribute costs one short path walk and
        no per-device directory handle. With ``physfn=False`` a virtual function's ``physfn``
        link is not looked for (the caller learns it from the physical function).
        """
        uevent = _read_bytes(at + "uevent", bus_fd)
        if uevent is None:
            return None
        ids = self._uevent_ids(uevent) or self._ids(bus_fd, at, uevent.decode("ascii", "replace"))
        if ids is None:
            return None
        driver, vendor_id, device_id, subsystem_vendor_id, subsystem_device_id, class_code = ids
        if vendor_id == _VANISHED_VENDOR:
            return None
        group_link = _read_link(at + "iommu_group", bus_fd)
        parent, root_port = _upstream(_read_link(str(address), bus_fd) if self._topology else None)
        # Positional, in the fields' order: passing the thirteen by keyword cost about 5,900
        # more instructions per device (callgrind), a twelfth of reading it.
        return PciDevice(
            address,
            vendor_id,
            device_id,
            _pci_class(class_code),
            subsystem_vendor_id,
            subsystem_device_id,
            _read_int(at + "revision", bus_fd, 16) or 0,  # revision
            DriverName(driver) if driver else None,
            IommuGroup(int(group_link.rsplit("/", 1)[-1])) if group_link is not None else None,
            self._numa_node(bus_fd, at),
            self._sriov(bus_fd, at, physfn=physfn),
            parent,
            root_port,
        )

    @staticmethod
    def _uevent_ids(uevent: bytes) -> _Ids | None:
        """Driver, ids and class code from a ``uevent`` in the kernel's layout, else ``None``."""
        match = _UEVENT.fullmatch(uevent)
        if match is None:
            return None
        driver, klass, vendor, device, subvendor, subdevice = match.groups()
        try:
            return (
                driver.decode("ascii", "replace") if driver else None,
                int(vendor, 16),
                int(device, 16),
                int(subvendor, 16),
                int(subdevice, 16),
                int(klass, 16),
            )
        except ValueError:
            return None

    @staticmethod
    def _ids(dir_fd: int, at: str, uevent: str) -> _Ids | None:
        """Driver, ids and class code from ``uevent``'s lines in any order, or the id files."""
        fields = dict(line.split("=", 1) for line in uevent.splitlines() if "=" in line)
        driver = fields.get("DRIVER") or None
        try:
            vendor, device = fields["PCI_ID"].split(":")
            subvendor, subdevice = fields.get("PCI_SUBSYS_ID", "0:0").split(":")
            return (
                driver,
                int(vendor, 16),
                int(device, 16),
                int(subvendor, 16),
                int(subdevice, 16),
                int(fields["PCI_CLASS"], 16),
            )
        except (KeyError, ValueError):
            pass
        values = [
            _read_int(at + name, dir_fd, 16)
            for name in ("vendor", "device", "subsystem_vendor", "subsystem_device", "class")
        ]
        if values[0] is None or values[1] is None or values[4] is None:
            return None
        return (driver, values[0], values[1], values[2] or 0, values[3] or 0, values[4])

    @staticmethod
    def _numa_node(dir_fd: int, at: str) -> int | None:
        node = _read_int(at + "numa_node", dir_fd, 10)
        return None if node is None or node < 0 else node

    @staticmethod
    def _sriov(dir_fd: int, at: str, *, physfn: bool) -> SriovInfo:
        # Most devices have neither attribute: ask with access(), which answers "no" without
        # the cost of an exception, before reading.
        if not physfn or not os.access(
            at + "physfn", os.F_OK, dir_fd=dir_fd, follow_symlinks=False
        ):
            physfn_link = None
        else:
            physfn_link = _read_link(at + "physfn", dir_fd)
        if physfn_link is not None:
            try:
                return SriovInfo(physfn=PciAddress.parse(physfn_link.rsplit("/", 1)[-1]))
            except InvalidPciAddressError:
                return _NO_SRIOV
        if not os.access(at + "sriov_totalvfs", os.F_OK, dir_fd=dir_fd):
            return _NO_SRIOV
        total = _read_int(at + "sriov_totalvfs", dir_fd, 10)
        if total is None:
            return _NO_SRIOV
        return SriovInfo(total_vfs=total, num_vfs=_read_int(at + "sriov_numvfs", dir_fd, 10))


def _with_physical_functions(devices: list[PciDevice], bus_fd: int) -> list[PciDevice]:
    """``devices`` with each virtual function's ``physfn``, read from its physical function.

    The kernel links both ways: a VF's ``physfn`` to its PF, and the PF's ``virtfn0`` …
    ``virtfn<numvfs - 1>`` to its VFs. Reading the PFs' links costs one ``readlink`` per VF,
    where asking every function for a ``physfn`` cost one system call per function.
    """
    physfn_of: dict[PciAddress, PciAddress] = {}
    for device in devices:
        if not device.sriov.num_vfs:
            continue
        for index in range(device.sriov.num_vfs):
            link = _read_link(f"{device.address}/virtfn{index}", bus_fd)
            if link is None:
                continue  # going away (the kernel removes VFs from the first): the rest stay
            try:
                physfn_of[PciAddress.parse(link.rsplit("/", 1)[-1])] = device.address
            except InvalidPciAddressError:
                continue
    if not physfn_of:
        return devices
    return [
        device
        if (pf := physfn_of.get(device.address)) is None
        else attrs.evolve(device, sriov=SriovInfo(physfn=pf))
        for device in devices
    ]
