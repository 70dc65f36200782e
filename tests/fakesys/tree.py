"""Writes a sysfs tree with the real kernel's layout from a list of device declarations.

Layout (as on a real host):
- ``devices/pci0000:00/<bridge>/<device>/``: attribute files of each function, nested under the
  bridges upstream of it;
- ``bus/pci/devices/<addr>`` -> the device directory; ``bus/pci/drivers/<name>/<addr>`` -> the
  device; the device's ``driver`` -> ``bus/pci/drivers/<name>``;
- ``kernel/iommu_groups/<N>/devices/<addr>`` -> the device; its ``iommu_group`` -> the group;
- ``physfn``/``virtfnN`` links between SR-IOV functions.

Works on any filesystem the ``os`` module reaches: a directory on disk or a pyfakefs tree.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import attrs


@attrs.frozen
class FakeDevice:
    """One PCI function to lay out.

    Attributes:
        address: ``dddd:bb:dd.f``.
        vendor: Vendor id.
        device: Device id.
        klass: 24-bit class code (``0x020000``).
        subsystem_vendor: Subsystem vendor id.
        subsystem_device: Subsystem device id.
        revision: Revision byte.
        driver: Bound driver name, or ``None``.
        iommu_group: IOMMU group number, or ``None`` (no IOMMU).
        numa_node: NUMA node (-1: none).
        parent: Address of the bridge directly upstream, or ``None`` (root bus).
        physfn: For a VF, the address of its PF.
        sriov_totalvfs: For a PF, how many VFs it supports.
        sriov_numvfs: For a PF, how many VFs are enabled.
        interface: The network interface the bound driver made (``net/<name>``), if any.
        vf_device: For a PF, the device id of the VFs `FakeKernel` creates (default: its own).
        vf_driver: For a PF, the driver its new VFs bind to at once (default: none).
    """

    address: str
    vendor: int = 0x8086
    device: int = 0x1533
    klass: int = 0x020000
    subsystem_vendor: int = 0
    subsystem_device: int = 0
    revision: int = 0
    driver: str | None = None
    iommu_group: int | None = None
    numa_node: int = -1
    parent: str | None = None
    physfn: str | None = None
    sriov_totalvfs: int | None = None
    sriov_numvfs: int | None = None
    interface: str | None = None
    vf_device: int | None = None
    vf_driver: str | None = None


def _link(path: Path, target: Path) -> None:
    """A relative symlink at ``path`` to ``target``, as sysfs makes them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(os.path.relpath(target, path.parent), path)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


class SysfsTree:
    """A sysfs tree under ``root``; `add` lays out devices, the rest reads and edits it."""

    def __init__(self, root: Path) -> None:
        """Lay out a tree below ``root`` (created if missing)."""
        self.root = root
        self.devices: dict[str, FakeDevice] = {}
        (root / "bus" / "pci" / "devices").mkdir(parents=True, exist_ok=True)
        (root / "bus" / "pci" / "drivers").mkdir(parents=True, exist_ok=True)
        (root / "kernel" / "iommu_groups").mkdir(parents=True, exist_ok=True)
        (root / "devices").mkdir(parents=True, exist_ok=True)

    def device_dir(self, address: str) -> Path:
        """The real directory of a device, nested below its upstream bridges."""
        chain = [address]
        spec = self.devices[address]
        while spec.parent is not None:
            chain.append(spec.parent)
            spec = self.devices[spec.parent]
        domain_bus = chain[-1][:7]
        path = self.root / "devices" / f"pci{domain_bus}"
        for hop in reversed(chain):
            path = path / hop
        return path

    def driver_dir(self, name: str) -> Path:
        """``bus/pci/drivers/<name>``, created with its control files on first use."""
        path = self.root / "bus" / "pci" / "drivers" / name
        if not path.exists():
            path.mkdir(parents=True)
            for control in ("bind", "unbind", "new_id", "remove_id"):
                (path / control).write_text("")
        return path

    def add(self, *devices: FakeDevice) -> SysfsTree:
        """Lay out ``devices`` (upstream bridges first) and return the tree."""
        for spec in devices:
            self.devices[spec.address] = spec
            self._lay_out(spec)
        return self

    def uevent(self, spec: FakeDevice) -> str:
        """The ``uevent`` text the kernel reports for ``spec`` (driver included when bound)."""
        lines = [f"DRIVER={spec.driver}"] if spec.driver else []
        lines += [
            f"PCI_CLASS={spec.klass:X}",
            f"PCI_ID={spec.vendor:04X}:{spec.device:04X}",
            f"PCI_SUBSYS_ID={spec.subsystem_vendor:04X}:{spec.subsystem_device:04X}",
            f"PCI_SLOT_NAME={spec.address}",
            f"MODALIAS={self.modalias(spec)}",
        ]
        return "\n".join(lines) + "\n"

    @staticmethod
    def modalias(spec: FakeDevice) -> str:
        """The device's ``modalias``, as drivers' id tables match it."""
        return (
            f"pci:v{spec.vendor:08X}d{spec.device:08X}sv{spec.subsystem_vendor:08X}"
            f"sd{spec.subsystem_device:08X}bc{spec.klass >> 16:02X}sc{(spec.klass >> 8) & 0xFF:02X}"
            f"i{spec.klass & 0xFF:02X}"
        )

    @staticmethod
    def config(spec: FakeDevice) -> bytes:
        """The first 64 bytes of config space, which ``lspci`` reads (this code never does)."""
        is_bridge = (spec.klass >> 8) == 0x0604
        header = bytearray(64)
        struct.pack_into("<HH", header, 0x00, spec.vendor, spec.device)
        header[0x08] = spec.revision
        header[0x09:0x0C] = spec.klass.to_bytes(3, "little")
        header[0x0E] = 0x01 if is_bridge else 0x00
        if not is_bridge:
            struct.pack_into("<HH", header, 0x2C, spec.subsystem_vendor, spec.subsystem_device)
        return bytes(header)

    def _lay_out(self, spec: FakeDevice) -> None:
        path = self.device_dir(spec.address)
        path.mkdir(parents=True, exist_ok=True)
        attributes = {
            "vendor": f"0x{spec.vendor:04x}",
            "device": f"0x{spec.device:04x}",
            "class": f"0x{spec.klass:06x}",
            "subsystem_vendor": f"0x{spec.subsystem_vendor:04x}",
            "subsystem_device": f"0x{spec.subsystem_device:04x}",
            "revision": f"0x{spec.revision:02x}",
            "numa_node": str(spec.numa_node),
            "modalias": self.modalias(spec),
            "uevent": self.uevent(spec),
            "driver_override": "(null)",
            "enable": "1",
        }
        if spec.sriov_totalvfs is not None:
            attributes["sriov_totalvfs"] = str(spec.sriov_totalvfs)
            attributes["sriov_numvfs"] = str(spec.sriov_numvfs or 0)
        for name, text in attributes.items():
            _write(path / name, text + ("" if text.endswith("\n") else "\n"))
        (path / "config").write_bytes(self.config(spec))
        _link(self.root / "bus" / "pci" / "devices" / spec.address, path)
        if spec.driver is not None:
            driver = self.driver_dir(spec.driver)
            _link(path / "driver", driver)
            _link(driver / spec.address, path)
        if spec.iommu_group is not None:
            group = self.root / "kernel" / "iommu_groups" / str(spec.iommu_group)
            (group / "devices").mkdir(parents=True, exist_ok=True)
            _link(group / "devices" / spec.address, path)
            _link(path / "iommu_group", group)
        if spec.interface is not None:
            net = path / "net" / spec.interface
            net.mkdir(parents=True, exist_ok=True)
            _link(net / "device", path)
            _link(self.root / "class" / "net" / spec.interface, net)
        if spec.physfn is not None:
            pf_path = self.device_dir(spec.physfn)
            _link(path / "physfn", pf_path)
            index = sum(1 for name in os.listdir(pf_path) if name.startswith("virtfn"))
            _link(pf_path / f"virtfn{index}", path)
