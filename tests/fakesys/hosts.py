"""A whole fake host for claim tests: PCI bus, live kernel, network, mounts and console.

`workstation` lays out a host with the cases that hurt users of the Go original: a GPU with its
HDMI audio function in one IOMMU group behind a root port, the management NIC carrying the
default route, the NVMe controller of the root filesystem, the boot console's GPU, and a free
NIC that may be claimed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import attrs

from fakesys.kernel import FakeDriver, FakeKernel, FakeModprobe
from fakesys.tree import FakeDevice, SysfsTree
from pcicore.address import PciAddress
from pcicore.backoff import Backoff
from pcicore.claim import ClaimMachine
from pcicore.engine import ClaimEngine
from pcicore.protection import HostProtection
from pcihost.binding import SysfsDriverControl
from pcihost.hostfacts import HostFactsReader
from pcihost.statefile import ClaimStateFile
from pcihost.sysfs import SysfsPciBus

SYS = Path("/sys")
PROC = Path("/proc")
STATE = Path("/var/lib/pcidevices/claims.json")

ROOT_PORT = "0000:00:01.0"
GPU = "0000:01:00.0"
GPU_AUDIO = "0000:01:00.1"
MGMT_NIC = "0000:00:1f.6"
NVME = "0000:02:00.0"
BOOT_VGA = "0000:00:02.0"
FREE_NIC = "0000:03:00.0"
NO_IOMMU_NIC = "0000:04:00.0"

DEVICES = (
    FakeDevice("0000:00:00.0", 0x8086, 0x3E30, 0x060000, iommu_group=0),
    FakeDevice(ROOT_PORT, 0x8086, 0x1901, 0x060400, driver="pcieport", iommu_group=1),
    FakeDevice(GPU, 0x10DE, 0x2204, 0x030000, driver="nouveau", iommu_group=1, parent=ROOT_PORT),
    FakeDevice(
        GPU_AUDIO, 0x10DE, 0x1AEF, 0x040300, driver="snd_hda_intel", iommu_group=1, parent=ROOT_PORT
    ),
    FakeDevice(BOOT_VGA, 0x8086, 0x3E92, 0x030000, driver="i915", iommu_group=2),
    FakeDevice(MGMT_NIC, 0x8086, 0x15BB, 0x020000, driver="e1000e", iommu_group=3),
    FakeDevice(NVME, 0x144D, 0xA808, 0x010802, driver="nvme", iommu_group=4),
    FakeDevice(FREE_NIC, 0x8086, 0x1533, 0x020000, driver="igb", iommu_group=5),
)


class FakeClock:
    """A `pcicore.ports.Clock` whose sleeps only advance it, and which remembers them."""

    def __init__(self) -> None:
        """Start at time 1000."""
        self.time = 1000.0
        self.slept: list[float] = []

    def now(self) -> float:
        """The fake time."""
        return self.time

    def sleep(self, seconds: float) -> None:
        """Advance the fake time."""
        self.slept.append(seconds)
        self.time += seconds


@attrs.define
class Host:
    """A fake host and the real adapters wired to it."""

    fs: Any
    tree: SysfsTree
    kernel: FakeKernel
    modprobe: FakeModprobe
    clock: FakeClock
    state: ClaimStateFile

    def engine(
        self,
        *,
        protection: HostProtection | None = None,
        max_attempts: int = 4,
    ) -> ClaimEngine:
        """A claim engine using the real sysfs, host-facts and state-file adapters."""
        return ClaimEngine(
            SysfsPciBus(SYS),
            SysfsDriverControl(self.modprobe, sysfs=SYS, proc=PROC),
            HostFactsReader(sysfs=SYS, proc=PROC),
            self.state,
            self.clock,
            protection=protection,
            machine=ClaimMachine(Backoff(base=0.5, cap=8.0, max_attempts=max_attempts)),
        )

    def driver(self, address: str) -> str | None:
        """The driver the device's ``driver`` link names."""
        return self.kernel.driver_of(address)

    def address(self, text: str) -> PciAddress:
        """Parse ``text``."""
        return PciAddress.parse(text)


def workstation(
    fs: Any,
    *,
    extra: tuple[FakeDevice, ...] = (),
    drivers: tuple[FakeDriver, ...] = (),
    loaded_modules: tuple[str, ...] = ("vfio", "vfio_pci", "vfio_iommu_type1"),
) -> Host:
    """The workstation described in the module docstring, live on ``fs``."""
    tree = SysfsTree(SYS).add(*DEVICES, *extra)
    kernel = FakeKernel(fs, tree, drivers, proc=PROC, loaded_modules=loaded_modules)
    # Network: eno1 (the management NIC) has the default route and the node's subnet.
    fs.create_file(
        "/proc/net/route",
        contents=(
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
            "eno1\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n"
            "eno1\t0001A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n"
        ),
    )
    net = SYS / "class" / "net"
    for name, address in (("eno1", MGMT_NIC), ("enp3s0", FREE_NIC)):
        (net / name).mkdir(parents=True, exist_ok=True)
        (net / name / "device").symlink_to(tree.device_dir(address))
    # Disks: the root filesystem is on the NVMe drive's second partition.
    nvme_disk = tree.device_dir(NVME) / "nvme" / "nvme0" / "nvme0n1"
    (nvme_disk / "nvme0n1p2").mkdir(parents=True)
    (nvme_disk / "device").symlink_to(os.path.relpath(nvme_disk.parent, nvme_disk))
    block = SYS / "class" / "block"
    block.mkdir(parents=True)
    (block / "nvme0n1").symlink_to(nvme_disk)
    (block / "nvme0n1p2").symlink_to(nvme_disk / "nvme0n1p2")
    fs.create_file(
        "/proc/mounts",
        contents="/dev/nvme0n1p2 / ext4 rw,relatime 0 0\nproc /proc proc rw 0 0\n",
    )
    # Console: the integrated GPU is the one the firmware booted on.
    (tree.device_dir(BOOT_VGA) / "boot_vga").write_text("1\n")
    (tree.device_dir(GPU) / "boot_vga").write_text("0\n")
    return Host(
        fs=fs,
        tree=tree,
        kernel=kernel,
        modprobe=FakeModprobe(kernel),
        clock=FakeClock(),
        state=ClaimStateFile(STATE),
    )
