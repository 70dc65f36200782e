"""Times `pcidevices scan -o json` against `lspci -D -nnk` on the same generated sysfs tree.

Usage: python benchmarks/scan_vs_lspci.py [--devices 4096] [--runs 15]

Writes a tree of N devices (bridges, GPUs with audio functions, NICs with SR-IOV VFs, NVMe,
unknown ids; some unbound, some without IOMMU group, NUMA -1/0/1) to a temporary directory, then
runs both commands alternately as whole processes (start-up included) and prints the median wall
time of each and the median of the per-round ratios. Target: ratio <= 1.0 at 4096 devices.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fakesys import FakeDevice, SysfsTree

KINDS = (
    # vendor, device, class, driver
    (0x10DE, 0x2235, 0x030000, "nvidia"),
    (0x10DE, 0x1AEF, 0x040300, "snd_hda_intel"),
    (0x8086, 0x1521, 0x020000, "igb"),
    (0x8086, 0x1520, 0x020000, "igbvf"),
    (0x144D, 0xA808, 0x010802, "nvme"),
    (0x15B3, 0x101D, 0x020000, None),
    (0x1234, 0x5678, 0x120000, None),
    (0x8086, 0xFFFE, 0xEE0000, "vfio-pci"),
)


def build_tree(root: Path, count: int) -> None:
    """Lay out ``count`` functions: 4 root ports per domain-bus, 8 functions behind each."""
    tree = SysfsTree(root)
    made = 0
    bus = 1
    while made < count:
        port = f"0000:00:{(bus % 0x20):02x}.{bus // 0x20 % 8}"
        if port not in tree.devices:
            tree.add(FakeDevice(port, device=0xA110, klass=0x060400, driver="pcieport"))
            made += 1
        for function in range(8):
            if made >= count:
                break
            vendor, device, klass, driver = KINDS[(bus + function) % len(KINDS)]
            tree.add(
                FakeDevice(
                    f"0000:{bus:02x}:00.{function}"
                    if bus < 0x100
                    else f"0001:{bus - 0xFF:02x}:00.{function}",
                    vendor=vendor,
                    device=device,
                    klass=klass,
                    driver=driver,
                    iommu_group=None if bus % 7 == 0 else bus,
                    numa_node=(bus % 3) - 1,
                    revision=function,
                    subsystem_vendor=vendor,
                    subsystem_device=device,
                    parent=port,
                )
            )
            made += 1
        bus += 1


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=4096)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    lspci = shutil.which("lspci")
    pcidevices = shutil.which("pcidevices") or str(Path(sys.executable).parent / "pcidevices")
    if lspci is None:
        sys.exit("lspci is not installed: apt-get install pciutils")
    with tempfile.TemporaryDirectory(prefix="pcidevices-bench-") as tmp:
        root = Path(tmp)
        build_tree(root, args.devices)
        ours_argv = [pcidevices, "scan", "--sysfs", str(root), "--node", "bench", "-o", "json"]
        theirs_argv = [lspci, "-D", "-nnk", "-A", "linux-sysfs", "-O", f"sysfs.path={root}/bus/pci"]
        timed(ours_argv)  # warm the page cache for both
        timed(theirs_argv)
        ours, theirs, ratios = [], [], []
        for _ in range(args.runs):
            a = timed(ours_argv)
            b = timed(theirs_argv)
            ours.append(a)
            theirs.append(b)
            ratios.append(a / b)
    print(f"devices: {args.devices}, runs: {args.runs}")
    print(f"pcidevices scan -o json: median {statistics.median(ours) * 1000:.1f} ms")
    print(f"lspci -D -nnk:           median {statistics.median(theirs) * 1000:.1f} ms")
    print(f"median ratio (scan / lspci): {statistics.median(ratios):.2f}x (target <= 1.00x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
