"""Changes to an on-disk `tree.SysfsTree` as the kernel would show them, for live-plugin tests.

The device plugin polls a real directory, so these edit files and links in place: rebinding a
driver moves the ``driver`` link and the ``DRIVER=`` line of ``uevent`` (which the sysfs reader
reads), hot-removal drops the device's entry from ``bus/pci/devices``, and a device that fell off
the bus reads vendor ``0xffff``. VFIO's ``/dev/vfio/<group>`` nodes live under a ``dev`` root.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import attrs

from fakesys.tree import SysfsTree, _link


def rebind(tree: SysfsTree, address: str, driver: str | None) -> None:
    """Move ``address`` to ``driver`` (``None``: unbind), updating links and ``uevent``."""
    spec = tree.devices[address]
    path = tree.device_dir(address)
    if spec.driver is not None:
        (path / "driver").unlink(missing_ok=True)
        (tree.driver_dir(spec.driver) / address).unlink(missing_ok=True)
    spec = attrs.evolve(spec, driver=driver)
    tree.devices[address] = spec
    if driver is not None:
        target = tree.driver_dir(driver)
        _link(path / "driver", target)
        _link(target / address, path)
    _replace(path / "uevent", tree.uevent(spec))


def remove(tree: SysfsTree, address: str) -> None:
    """Hot-remove ``address``: its bus entry and its directory go away."""
    (tree.root / "bus" / "pci" / "devices" / address).unlink()
    shutil.rmtree(tree.device_dir(address))


def read_all_ones(tree: SysfsTree, address: str) -> None:
    """Make ``address`` read vendor and device ``0xffff``, as a device gone from the bus does."""
    spec = attrs.evolve(tree.devices[address], vendor=0xFFFF, device=0xFFFF)
    path = tree.device_dir(address)
    _replace(path / "vendor", "0xffff\n")
    _replace(path / "device", "0xffff\n")
    _replace(path / "uevent", tree.uevent(spec))


def add_vfio_cdev(tree: SysfsTree, address: str, index: int) -> None:
    """Give ``address`` an iommufd character device ``vfio<index>`` (``vfio-dev/vfioN``)."""
    (tree.device_dir(address) / "vfio-dev" / f"vfio{index}").mkdir(parents=True)


def vfio_group_node(dev_root: Path, group: int, *, present: bool = True) -> None:
    """Create (or delete) ``<dev>/vfio/<group>`` (a plain file stands in for the node)."""
    node = dev_root / "vfio" / str(group)
    if present:
        node.parent.mkdir(parents=True, exist_ok=True)
        (dev_root / "vfio" / "vfio").touch()
        node.touch()
    else:
        node.unlink(missing_ok=True)


def _replace(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, so a concurrent reader never sees it half-written."""
    temporary = path.with_name(path.name + ".new")
    temporary.write_text(text)
    temporary.replace(path)
