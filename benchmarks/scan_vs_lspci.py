"""Times `pcidevices scan -o json` against `lspci -D -nnk` on the same generated sysfs trees.

Usage: python benchmarks/scan_vs_lspci.py [--devices 4096] [--runs 15] [--pci-ids PATH]
                                           [--baseline-src DIR] [--python PATH]

Writes two trees of N functions each to a temporary directory:

- ``kinds``: bridges, GPUs with audio functions, NICs with SR-IOV VFs, NVMe, unknown ids (a few
  kinds of device repeated, as on most hosts); some unbound, some without IOMMU group, NUMA
  -1/0/1;
- ``distinct``: every function a different vendor:device pair drawn from the installed
  ``pci.ids`` (80 % known pairs, 10 % unknown vendors, 10 % unknown devices of known vendors),
  so every name lookup is a new one.

It then runs both commands alternately as whole processes (start-up included), a round being
one run of each command on each tree, and prints per tree the median wall time and the median
CPU time (user + system of the child, from ``os.wait4``) of each command and the medians of
the per-round ratios. Target: CPU ratio <= 0.7 on both trees at 4096 devices (1.0 the floor).

``--baseline-src DIR`` adds a third command to every round: ``python -m pcidevices scan`` on the
sources in ``DIR`` (another checkout's ``src``, e.g. from ``git worktree add /tmp/old <rev>``),
so a change is measured against what it changed in the same run.

``--python PATH`` adds another: the same scan, same sources and same dependencies, under the
interpreter ``PATH``. The figures above are the development ``.venv``'s interpreter; a node runs
the image's (``scripts/image``: Debian bookworm's ``python3``, built with profile-guided
optimisation), which on a Debian bookworm host is ``/usr/bin/python3.11``.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fakesys import FakeDevice, SysfsTree

# vendor, device, class, driver
Kind = tuple[int, int, int, str | None]
# The ids of a tree's function: (index among all functions, bus, function number or None for
# the bus's root port) -> Kind.
KindOf = Callable[[int, int, int | None], Kind]

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


DRIVERS = ("nvme", "igb", "ixgbe", "mlx5_core", "nvidia", "snd_hda_intel", "xhci_hcd", None)
CLASSES = (0x010802, 0x020000, 0x030000, 0x040300, 0x0C0330, 0x060400, 0x120000, 0xEE0000)
PCI_IDS_LOCATIONS = ("/usr/share/misc/pci.ids", "/usr/share/hwdata/pci.ids")


def repeated_kinds(_index: int, bus: int, function: int | None) -> Kind:
    """The ``kinds`` tree: one kind of root port, the eight kinds above behind them."""
    if function is None:
        return (0x8086, 0xA110, 0x060400, "pcieport")
    return KINDS[(bus + function) % len(KINDS)]


def read_pci_ids(path: Path) -> dict[int, set[int]]:
    """Every vendor of ``path`` with the device ids listed under it (a plain line reading)."""
    listed: dict[int, set[int]] = {}
    devices: set[int] | None = None
    for line in path.read_bytes().split(b"\n"):
        if line[:1] not in {b"\t", b"#", b""}:
            head = line[:6]
            devices = None
            if len(head) == 6 and head.endswith(b"  ") and not head.startswith(b"C "):
                devices = listed.setdefault(int(head[:4], 16), set())
        elif devices is not None and line[:1] == b"\t" and line[1:2] != b"\t":
            devices.add(int(line[1:5], 16))
    return listed


def distinct_kinds(listed: dict[int, set[int]], count: int, seed: int) -> KindOf:
    """The ``distinct`` tree: ``count`` different vendor:device pairs, 10 % + 10 % unknown."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible tree, not a secret
    known = sorted((vendor, device) for vendor, devices in listed.items() for device in devices)
    vendors = sorted(vendor for vendor, devices in listed.items() if devices)
    unknown = count // 10
    pairs = set(rng.sample(known, count - 2 * unknown))
    while len(pairs) < count - unknown:  # unknown devices of known vendors
        vendor = rng.choice(vendors)
        device = rng.randrange(0x10000)
        if device not in listed[vendor]:
            pairs.add((vendor, device))
    while len(pairs) < count:  # unknown vendors
        vendor = rng.randrange(0x10000)
        if vendor not in listed:
            pairs.add((vendor, rng.randrange(0x10000)))
    order = sorted(pairs)
    rng.shuffle(order)

    def kind_of(index: int, _bus: int, function: int | None) -> Kind:
        vendor, device = order[index]
        if function is None:
            return (vendor, device, 0x060400, "pcieport")
        return (vendor, device, CLASSES[index % len(CLASSES)], DRIVERS[index % len(DRIVERS)])

    return kind_of


def build_tree(root: Path, count: int, kind_of: KindOf) -> None:
    """Lay out ``count`` functions: root ports, 8 functions behind each; ids from ``kind_of``."""
    tree = SysfsTree(root)
    made = 0
    bus = 1
    while made < count:
        port = f"0000:00:{(bus % 0x20):02x}.{bus // 0x20 % 8}"
        if port not in tree.devices:
            vendor, device, klass, driver = kind_of(made, bus, None)
            tree.add(FakeDevice(port, vendor=vendor, device=device, klass=klass, driver=driver))
            made += 1
        for function in range(8):
            if made >= count:
                break
            vendor, device, klass, driver = kind_of(made, bus, function)
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


def timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """Run ``argv`` to completion; return its wall time and its CPU time (user + system)."""
    start = time.perf_counter()
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        sys.exit(f"{argv[0]} exited with {child.returncode}: {' '.join(argv)}")
    return wall, usage.ru_utime + usage.ru_stime


def count_listed(argv: list[str], env: dict[str, str] | None = None) -> int:
    """How many objects ``pcidevices scan -o json`` prints (a check that it read the tree)."""
    out = subprocess.run(argv, check=True, capture_output=True, text=True, env=env).stdout
    return len(json.loads(out)["items"])


def rounds(runs: int) -> Iterator[bool]:
    """Whether ours runs first in each round: alternating, so neither always runs cold."""
    for index in range(runs):
        yield index % 2 == 0


Command = tuple[list[str], dict[str, str] | None]  # argv, environment (None: ours)


def check_and_warm(tree: str, commands: dict[str, Command], devices: int) -> None:
    """Run each command once: every scan must list the whole tree; the page cache is warmed."""
    for who, (argv, env) in commands.items():
        if who == "theirs":
            timed(argv, env)
            continue
        listed = count_listed(argv, env)
        if listed != devices:
            sys.exit(f"{tree}: {who} listed {listed} devices, expected {devices}")


def sample(
    commands: dict[str, dict[str, Command]], runs: int
) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """``runs`` rounds of every command on every tree, the order reversed every other round."""
    samples: dict[str, dict[str, list[tuple[float, float]]]] = {
        tree: {who: [] for who in by_who} for tree, by_who in commands.items()
    }
    for ours_first in rounds(runs):
        for tree, by_who in commands.items():
            order = list(by_who) if ours_first else list(reversed(by_who))
            for who in order:
                samples[tree][who].append(timed(*by_who[who]))
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=4096)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--pci-ids", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--baseline-src", type=Path, default=None, metavar="DIR")
    parser.add_argument("--python", type=Path, default=None, metavar="PATH")
    args = parser.parse_args()
    lspci = shutil.which("lspci")
    pcidevices = shutil.which("pcidevices") or str(Path(sys.executable).parent / "pcidevices")
    if lspci is None:
        sys.exit("lspci is not installed: apt-get install pciutils")
    if args.python is not None and not os.access(args.python, os.X_OK):
        sys.exit(f"--python {args.python}: not an executable file; pass an interpreter's path")
    pci_ids = args.pci_ids or next((Path(p) for p in PCI_IDS_LOCATIONS if Path(p).is_file()), None)
    if pci_ids is None:
        sys.exit("no pci.ids found: apt-get install pci.ids, or pass --pci-ids")
    # As scripts/setup does: where writing .pyc at run time is off (PYTHONDONTWRITEBYTECODE), a
    # source changed since the last set-up would be compiled again in every timed run.
    import pcicore  # noqa: PLC0415 - only to find the installed sources

    compileall.compile_dir(Path(pcicore.__file__).parent.parent, quiet=1)
    baseline_env = None
    if args.baseline_src is not None:
        compileall.compile_dir(args.baseline_src, quiet=1)
        baseline_env = dict(os.environ, PYTHONPATH=str(args.baseline_src.resolve()))
    # The other interpreter reads our sources and this environment's dependencies (attrs is
    # pure Python, and both are CPython 3.11: the byte-compiled files serve both).
    source_dir = Path(pcicore.__file__).parent.parent
    other_env = dict(
        os.environ, PYTHONPATH=f"{source_dir}{os.pathsep}{sysconfig.get_path('purelib')}"
    )
    trees = {
        "kinds": repeated_kinds,
        "distinct": distinct_kinds(read_pci_ids(pci_ids), args.devices, args.seed),
    }
    with tempfile.TemporaryDirectory(prefix="pcidevices-bench-") as tmp:
        commands = {}
        for name, kind_of in trees.items():
            root = Path(tmp) / name
            build_tree(root, args.devices, kind_of)
            scan = ["scan", "--sysfs", str(root), "--node", "bench", "-o", "json"]
            scan += ["--pci-ids", str(pci_ids)]
            theirs = [lspci, "-D", "-nnk", "-A", "linux-sysfs", "-O", f"sysfs.path={root}/bus/pci"]
            commands[name] = {"ours": ([pcidevices, *scan], None), "theirs": (theirs, None)}
            if baseline_env is not None:
                baseline = [sys.executable, "-m", "pcidevices", *scan]
                commands[name]["baseline"] = (baseline, baseline_env)
            if args.python is not None:
                other = [str(args.python), "-m", "pcidevices", *scan]
                commands[name]["other"] = (other, other_env)
            check_and_warm(name, commands[name], args.devices)
        samples = sample(commands, args.runs)
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"devices: {args.devices} per tree, runs: {args.runs}, load average after: {load}")
    for name, by_who in samples.items():
        report(name, by_who["ours"], by_who["theirs"], by_who.get("baseline"), by_who.get("other"))
    return 0


def report(
    name: str,
    ours: list[tuple[float, float]],
    theirs: list[tuple[float, float]],
    baseline: list[tuple[float, float]] | None = None,
    other: list[tuple[float, float]] | None = None,
) -> None:
    """Print one tree's medians and per-round ratios (wall and CPU)."""
    print(f"[{name}]")
    for label, index in (("wall", 0), ("cpu", 1)):
        mine = [sample[index] for sample in ours]
        lspci = [sample[index] for sample in theirs]
        ratio = statistics.median(a / b for a, b in zip(mine, lspci, strict=True))
        print(
            f"  {label:4}  pcidevices scan -o json {statistics.median(mine) * 1000:7.1f} ms"
            f"   lspci -D -nnk {statistics.median(lspci) * 1000:7.1f} ms"
            f"   median ratio {ratio:.2f}x"
            + ("  (target <= 0.70x, floor 1.00x)" if label == "cpu" else "")
        )
        if baseline is not None:
            before = [sample[index] for sample in baseline]
            to_lspci = statistics.median(a / b for a, b in zip(before, lspci, strict=True))
            to_ours = statistics.median(a / b for a, b in zip(mine, before, strict=True))
            print(
                f"  {label:4}  baseline scan           {statistics.median(before) * 1000:7.1f} ms"
                f"   ratio to lspci {to_lspci:.2f}x   this scan / baseline {to_ours:.2f}x"
            )
        if other is not None:
            under = [sample[index] for sample in other]
            to_lspci = statistics.median(a / b for a, b in zip(under, lspci, strict=True))
            print(
                f"  {label:4}  scan under --python     {statistics.median(under) * 1000:7.1f} ms"
                f"   ratio to lspci {to_lspci:.2f}x"
            )


if __name__ == "__main__":
    sys.exit(main())
