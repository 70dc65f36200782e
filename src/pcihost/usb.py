"""Reads a host's USB devices from sysfs, and hands their device nodes to VMs.

Layout (``drivers/usb/core``, ``Documentation/ABI/stable/sysfs-bus-usb``): every USB device and
every interface is an entry of ``<sysfs>/bus/usb/devices``, a link into ``devices/``:

- ``usb<N>``: the root hub of bus N (skipped: it is the host controller itself);
- ``<bus>-<port>[.<port>...]`` (``1-1``, ``1-1.2`` behind a hub): a device, with ``idVendor``,
  ``idProduct`` (4 hex digits), ``busnum``, ``devnum`` (decimal), ``bDeviceClass`` (2 hex
  digits) and, when the device reports them, ``manufacturer`` and ``product``;
- ``<device>:<config>.<interface>`` (``1-1:1.0``): an interface, with ``bInterfaceClass``.

The link resolves to ``devices/pci0000:00/0000:00:14.0/usb1/1-1``: the PCI function just above
the ``usb<N>`` component is the host controller (a controller that is not on PCI, like
``dummy_hcd``, has none). The device node is ``/dev/bus/usb/BBB/DDD``.

Entries are read once each; an entry that vanishes while it is read (unplugged) is skipped.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from pathlib import Path
from typing import Final

from pcicore.address import PciAddress
from pcicore.errors import InvalidPciAddressError, PciDevicesError, UsbIdsError
from pcicore.usb import UsbDevice, parse_device_path
from pcicore.usbids import UsbIds
from pcihost.paths import DEFAULT_DEV_ROOT, DEFAULT_SYSFS_ROOT, USB_IDS_LOCATIONS
from pcihost.sysfs import _read_link, _read_small

# A device entry: bus, then port numbers joined by '.', with no ':' (that is an interface).
_DEVICE_ENTRY: Final = re.compile(r"[0-9]+-[0-9]+(\.[0-9]+)*")
_INTERFACE_ENTRY: Final = re.compile(r"(?P<device>[0-9]+-[0-9]+(\.[0-9]+)*):[0-9]+\.[0-9]+")
_ROOT_HUB: Final = re.compile(r"usb[0-9]+")

QEMU_UID: Final = 107
"""The user (and group) virt-launcher runs QEMU as (KubeVirt's ``util.NonRootUID``)."""


def _hex(text: str | None) -> int | None:
    try:
        return None if text is None else int(text.strip(), 16)
    except ValueError:
        return None


def _decimal(text: str | None) -> int | None:
    try:
        return None if text is None else int(text.strip(), 10)
    except ValueError:
        return None


def _string(text: str | None) -> str | None:
    return None if text is None else (text.strip() or None)


def controller_of(target: str) -> PciAddress | None:
    """The PCI function just above the ``usb<N>`` component of a resolved device path."""
    parts = target.split("/")
    for index, part in enumerate(parts):
        if _ROOT_HUB.fullmatch(part) and index > 0:
            with contextlib.suppress(InvalidPciAddressError):
                return PciAddress.parse(parts[index - 1])
            return None
    return None


class SysfsUsbBus:
    """The USB devices below one sysfs root (``/sys`` by default)."""

    def __init__(self, sysfs: Path = DEFAULT_SYSFS_ROOT) -> None:
        """Read ``<sysfs>/bus/usb/devices``."""
        self.root = sysfs
        self._devices = os.fspath(sysfs / "bus" / "usb" / "devices")

    def devices(self) -> list[UsbDevice]:
        """Every USB device (root hubs and interfaces aside), by bus and device number.

        A host without USB (no ``bus/usb``) has none.
        """
        try:
            names = os.listdir(self._devices)  # noqa: PTH208 - str paths, as pcihost.sysfs
        except OSError as err:
            if err.errno in {errno.ENOENT, errno.ENOTDIR}:
                return []
            raise
        interfaces: dict[str, list[tuple[str, int]]] = {}
        for name in names:
            match = _INTERFACE_ENTRY.fullmatch(name)
            if match is not None:
                klass = _hex(_read_small(f"{self._devices}/{name}/bInterfaceClass"))
                if klass is not None:
                    interfaces.setdefault(match["device"], []).append((name, klass))
        found = []
        for name in names:
            if _DEVICE_ENTRY.fullmatch(name) is None:
                continue
            device = self._device(name, tuple(k for _, k in sorted(interfaces.get(name, []))))
            if device is not None:
                found.append(device)
        return sorted(found, key=lambda d: (d.bus, d.devnum))

    def _device(self, name: str, interface_classes: tuple[int, ...]) -> UsbDevice | None:
        path = f"{self._devices}/{name}"
        vendor = _hex(_read_small(f"{path}/idVendor"))
        product = _hex(_read_small(f"{path}/idProduct"))
        bus = _decimal(_read_small(f"{path}/busnum"))
        devnum = _decimal(_read_small(f"{path}/devnum"))
        if vendor is None or product is None or bus is None or devnum is None:
            return None  # unplugged while read, or not a device
        link = _read_link(path)
        return UsbDevice(
            port=name,
            bus=bus,
            devnum=devnum,
            vendor_id=vendor,
            product_id=product,
            device_class=_hex(_read_small(f"{path}/bDeviceClass")) or 0,
            interface_classes=interface_classes,
            product=_string(_read_small(f"{path}/product")),
            manufacturer=_string(_read_small(f"{path}/manufacturer")),
            controller=None if link is None else controller_of(link),
        )


class UsbDeviceNodeError(PciDevicesError):
    """A USB device node could not be handed to the VM's user."""


class HostUsbNodes:
    """USB device nodes below a ``/dev`` root: whether they exist, and giving them to QEMU.

    virt-launcher runs QEMU as an unprivileged user (``QEMU_UID``), which cannot open a
    ``/dev/bus/usb`` node owned by root; KubeVirt's own USB plugin changes the node's owner on
    Allocate, and so does this one.
    """

    def __init__(self, dev_root: Path = DEFAULT_DEV_ROOT, owner: int = QEMU_UID) -> None:
        """Find nodes below ``dev_root``; give them to user and group ``owner``."""
        self._dev = dev_root
        self._owner = owner

    def _path(self, device_path: str) -> Path | None:
        """The node below the ``/dev`` root, rebuilt from the parsed numbers (else ``None``)."""
        parsed = parse_device_path(device_path)
        if parsed is None:
            return None
        bus, devnum = parsed
        return self._dev / "bus" / "usb" / f"{bus:03d}" / f"{devnum:03d}"

    def exists(self, device_path: str) -> bool:
        """Whether the node is there (a device unplugged or renumbered has none)."""
        path = self._path(device_path)
        return path is not None and os.path.lexists(path)

    def hand_over(self, device_path: str) -> None:
        """Make QEMU's user the owner of the node (the link itself, never what it points to).

        Raises:
            UsbDeviceNodeError: the node is gone or its owner cannot be changed.
        """
        path = self._path(device_path)
        if path is None:
            raise UsbDeviceNodeError(
                f"{device_path!r} is not a USB device node /dev/bus/usb/BBB/DDD"
            )
        try:
            os.chown(path, self._owner, self._owner, follow_symlinks=False)
        except OSError as err:
            raise UsbDeviceNodeError(
                f"cannot give {path} to user {self._owner}: {err.strerror}; the device was "
                "unplugged, or the plugin lacks CAP_CHOWN (run the agent privileged)"
            ) from err


def load_usb_ids(path: Path | None = None) -> UsbIds:
    """Load ``path``, or the first ``usb.ids`` of the standard locations, or an empty database.

    USB names are a nicety: a node without ``usb.ids`` still publishes its devices, described
    as ``Unknown vvvv:pppp``.

    Raises:
        UsbIdsError: ``path`` (given explicitly) is missing, unreadable or not ``usb.ids``.
    """
    if path is not None:
        try:
            return UsbIds(path.read_bytes(), origin=str(path))
        except OSError as err:
            raise UsbIdsError(
                f"cannot read usb.ids file {path}: {err.strerror}; pass an existing, readable "
                "file with --usb-ids"
            ) from err
    for candidate in USB_IDS_LOCATIONS:
        try:
            return UsbIds(Path(candidate).read_bytes(), origin=candidate)
        except (OSError, UsbIdsError):
            continue
    return UsbIds.empty()
