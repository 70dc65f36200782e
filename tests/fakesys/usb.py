"""Lays out USB devices in a sysfs tree (and their ``/dev/bus/usb`` nodes) as Linux does.

Layout (``drivers/usb/core/sysfs.c``, ``Documentation/ABI/stable/sysfs-bus-usb``):
- ``devices/<controller>/usb<N>/``: the root hub of bus N (``idVendor`` 1d6b, devnum 1), with
  its interface ``<N>-0:1.0``;
- ``.../usb<N>/<N>-<port>/`` (``1-1``), behind a hub ``.../1-1/1-1.2/``: a device with
  ``idVendor``/``idProduct`` (4 hex), ``busnum``/``devnum`` (decimal), ``bDeviceClass``
  (2 hex), ``devpath``, ``manufacturer``/``product`` when given, ``uevent``;
- ``.../<device>/<device>:1.<i>/``: its interfaces with ``bInterfaceClass``;
- ``bus/usb/devices/<name>`` links to each of them.

The controller is a PCI function of the `SysfsTree` (its directory) or a platform device.
"""

from __future__ import annotations

import os
from pathlib import Path

import attrs

from fakesys.tree import SysfsTree, _link, _write


@attrs.frozen
class FakeUsbDevice:
    """One USB device to lay out.

    Attributes:
        port: The kernel's name (``1-1``, ``1-1.2`` behind the hub at ``1-1``).
        devnum: Its device number on the bus.
        vendor: ``idVendor``.
        product: ``idProduct``.
        device_class: ``bDeviceClass``.
        interfaces: ``bInterfaceClass`` of each interface.
        product_string: The ``product`` attribute (``None``: the device reports none).
        manufacturer: The ``manufacturer`` attribute.
    """

    port: str
    devnum: int
    vendor: int
    product: int
    device_class: int = 0
    interfaces: tuple[int, ...] = ()
    product_string: str | None = None
    manufacturer: str | None = None

    @property
    def bus(self) -> int:
        """The bus number (the part of the port before ``-``)."""
        return int(self.port.split("-", 1)[0])


class UsbTree:
    """USB buses of a `SysfsTree`, and the ``/dev`` their device nodes live in."""

    def __init__(self, tree: SysfsTree, dev_root: Path) -> None:
        """Lay out buses below ``tree`` and nodes below ``dev_root``."""
        self.tree = tree
        self.dev_root = dev_root
        self._buses: dict[int, Path] = {}
        self._devices: dict[str, Path] = {}
        (tree.root / "bus" / "usb" / "devices").mkdir(parents=True, exist_ok=True)

    def _entry(self, name: str, path: Path) -> None:
        _link(self.tree.root / "bus" / "usb" / "devices" / name, path)

    def add_bus(self, bus: int, controller: str | None) -> UsbTree:
        """A root hub for ``bus`` under the PCI function ``controller`` (``None``: platform)."""
        parent = (
            self.tree.device_dir(controller)
            if controller is not None
            else self.tree.root / "devices" / "platform" / "dummy_hcd.0"
        )
        hub = parent / f"usb{bus}"
        attributes = {
            "idVendor": "1d6b",
            "idProduct": "0002",
            "busnum": str(bus),
            "devnum": "1",
            "bDeviceClass": "09",
            "product": "xHCI Host Controller",
        }
        for name, text in attributes.items():
            _write(hub / name, text + "\n")
        _write(hub / f"{bus}-0:1.0" / "bInterfaceClass", "09\n")
        self._entry(f"usb{bus}", hub)
        self._entry(f"{bus}-0:1.0", hub / f"{bus}-0:1.0")
        self._buses[bus] = hub
        self.node(bus, 1)
        return self

    def add(self, *devices: FakeUsbDevice) -> UsbTree:
        """Lay out ``devices`` (hubs before the devices behind them)."""
        for spec in devices:
            upstream = spec.port.rsplit(".", 1)[0] if "." in spec.port else None
            parent = self._devices[upstream] if upstream else self._buses[spec.bus]
            path = parent / spec.port
            attributes = {
                "idVendor": f"{spec.vendor:04x}",
                "idProduct": f"{spec.product:04x}",
                "busnum": str(spec.bus),
                "devnum": str(spec.devnum),
                "bDeviceClass": f"{spec.device_class:02x}",
                "devpath": spec.port.split("-", 1)[1],
                "uevent": (
                    f"MAJOR=189\nMINOR={(spec.bus - 1) * 128 + spec.devnum - 1}\n"
                    f"DEVNAME=bus/usb/{spec.bus:03d}/{spec.devnum:03d}\nDEVTYPE=usb_device\n"
                    f"DRIVER=usb\nPRODUCT={spec.vendor:x}/{spec.product:x}/100\n"
                    f"TYPE={spec.device_class}/0/0\nBUSNUM={spec.bus:03d}\n"
                    f"DEVNUM={spec.devnum:03d}\n"
                ),
            }
            if spec.product_string is not None:
                attributes["product"] = spec.product_string
            if spec.manufacturer is not None:
                attributes["manufacturer"] = spec.manufacturer
            for name, text in attributes.items():
                _write(path / name, text if text.endswith("\n") else text + "\n")
            for index, klass in enumerate(spec.interfaces):
                interface = f"{spec.port}:1.{index}"
                _write(path / interface / "bInterfaceClass", f"{klass:02x}\n")
                self._entry(interface, path / interface)
            self._entry(spec.port, path)
            self._devices[spec.port] = path
            self.node(spec.bus, spec.devnum)
        return self

    def node(self, bus: int, devnum: int) -> Path:
        """Make ``/dev/bus/usb/BBB/DDD`` (a plain file stands for the character device)."""
        path = self.dev_root / "bus" / "usb" / f"{bus:03d}" / f"{devnum:03d}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
        return path

    def unplug(self, port: str) -> None:
        """Remove a device as the kernel does: its entries, its directory, its node."""
        path = self._devices.pop(port)
        entries = self.tree.root / "bus" / "usb" / "devices"
        for name in os.listdir(entries):
            if name == port or name.startswith(f"{port}:"):
                (entries / name).unlink()
        bus = int((path / "busnum").read_text())
        devnum = int((path / "devnum").read_text())
        for sub in sorted(path.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            sub.rmdir() if sub.is_dir() and not sub.is_symlink() else sub.unlink()
        path.rmdir()
        (self.dev_root / "bus" / "usb" / f"{bus:03d}" / f"{devnum:03d}").unlink()
