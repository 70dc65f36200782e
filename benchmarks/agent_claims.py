"""The node agent against a real API server: claim latency, idle resync requests, peak RSS.

Run: ``.venv/bin/python benchmarks/agent_claims.py`` (add ``--claims N``, ``--devices N``).

It starts the test harness's etcd + kube-apiserver (`tests/harness/kube.py`) and measures:

1. Claim latency: an agent on a pyfakefs fake kernel (the workstation of
   `tests/fakesys/hosts.py` plus ``--claims`` free NICs, each in its own IOMMU group); claims
   are created one after another and the time from create to ``status.passthroughEnabled=true``
   is taken (p50 / p95; target p50 < 1 s). The kernel is fake, so this is the agent's and the
   API server's share of the latency, not the time a real driver takes to unbind.
2. Idle resync: an agent on a fake kernel with ``--devices`` devices on one node; after the
   first sync, the API requests the agent makes across several idle rescans are counted with
   `KubeApi.requests` and divided by the rescans done (target: 0 writes).
3. Peak RSS: an agent in a child process on an on-disk sysfs tree of ``--devices`` devices,
   with ``--rss-claims`` claims on the node (default 100), through its first sync and a few
   idle rescans; the child reports ``getrusage(RUSAGE_SELF).ru_maxrss`` (target < 100 MiB;
   the DaemonSet's memory limit is 150 MiB). The tree is plain files, so the claims' binds
   fail and are retried: the agent holds 100 claims in its caches and ledger as it would on a
   busy node. ``/proc/modules`` of the tree lists the VFIO modules, so nothing runs
   ``modprobe`` on this host. ``--tracemalloc`` runs the child under ``tracemalloc`` instead and
   prints the ten biggest allocation sites (by file and by line) held after the first sync;
   its RSS then includes tracemalloc's own memory, so take the RSS from a run without it.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from pyfakefs.fake_filesystem_unittest import Patcher

from fakesys.descriptors import guard_descriptors
from fakesys.hosts import STATE, workstation
from fakesys.tree import FakeDevice, SysfsTree
from harness.kube import KubeCluster
from pcidevices.wiring.agent import AgentConfig, agent_injector, load_api_client
from pcihost.pciids_file import load_pci_ids
from pcioperator.agent import Agent
from pcioperator.kube.api import NODES, PCIDEVICECLAIMS, PCIDEVICES, KubeApi, is_write
from pcioperator.kube.errors import NotFoundError

T = TypeVar("T")
WORKSTATION_DEVICES = 8
IDLE_RESCANS = 5


def wait_for(check: Callable[[], T], timeout: float, what: str) -> T:
    """Poll ``check`` until truthy; exit with ``what`` if it never is."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.01)


def log(text: str) -> None:
    """Progress on stderr (the table goes to stdout)."""
    print(text, file=sys.stderr, flush=True)


def nic(index: int, *, driver: str | None = "igb", group: int | None = None) -> FakeDevice:
    """A free Intel i210 NIC at bus 0x10 + index / 32, in its own IOMMU group."""
    bus, slot = 0x10 + index // 32, index % 32
    return FakeDevice(
        f"0000:{bus:02x}:{slot:02x}.0",
        0x8086,
        0x1533,
        0x020000,
        driver=driver,
        iommu_group=1000 + index if group is None else group,
    )


def fillers(count: int) -> tuple[FakeDevice, ...]:
    """``count`` devices for a big node: NICs and NVMe drives, each in its own group."""
    devices = []
    for index in range(count):
        spec = nic(index)
        if index % 2:
            spec = FakeDevice(
                spec.address, 0x144D, 0xA808, 0x010802, driver="nvme", iommu_group=1000 + index
            )
        devices.append(spec)
    return tuple(devices)


def percentile(values: list[float], fraction: float) -> float:
    """The ``fraction`` quantile (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def make_node(admin: KubeApi, name: str) -> str:
    """Create the Node object an agent's PCIDevices are owned by."""
    admin.create(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})
    return name


def gone(admin: KubeApi, name: str) -> bool:
    """Whether the claim ``name`` no longer exists."""
    try:
        admin.get(PCIDEVICECLAIMS, name)
    except NotFoundError:
        return True
    return False


def count_devices(admin: KubeApi, node: str) -> int:
    """How many PCIDevices the API server holds for ``node``."""
    items, _ = admin.list_objects(PCIDEVICES, label_selector=f"nodename={node}")
    return len(items)


@contextmanager
def fake_agent(
    cluster: KubeCluster, node: str, extra: tuple[FakeDevice, ...], rescan_interval: float
) -> Iterator[tuple[Agent, RescanCounter]]:
    """An agent on a pyfakefs workstation with ``extra`` devices, and its rescan counter."""
    ids = load_pci_ids()
    # No additional_skip_names (unlike the agent tests): with them pyfakefs walks the stack on
    # every file call, which made each fake sysfs read about 3x slower. The client's TLS files
    # are read by OpenSSL in C, which pyfakefs does not see; the harness's key is added anyway.
    with Patcher() as patcher:
        guard_descriptors(patcher.fs)  # the agent's threads open fake files at once
        patcher.fs.add_real_directory(str(cluster.pki))
        workstation(patcher.fs, extra=extra)
        config = AgentConfig(
            node=node,
            state_file=STATE,
            metrics_address=None,
            device_plugin=False,
            rescan_interval=rescan_interval,
        )
        agent = agent_injector(config, cluster.api_client, ids).get(Agent)
        rescans = RescanCounter(agent)
        agent.start()
        try:
            wait_for(agent.ready, 120, "the agent's caches to sync")
            yield agent, rescans
        finally:
            # A rescan of 1,000 fake devices can outlast stop()'s default 10 s; a worker still
            # running after the patcher exits would close real descriptors by fake numbers.
            agent.stop(timeout=600)


def claim_latency(cluster: KubeCluster, claims: int, *, hold: bool) -> list[float]:
    """Seconds from creating each claim to passthroughEnabled=true, one claim at a time.

    Each claim is deleted (and its device returned) before the next one, unless ``hold``: then
    the claims pile up on the node, as when a node fills with VMs.
    """
    admin = KubeApi(cluster.api_client)
    node = make_node(admin, "bench-claims")
    free = tuple(nic(index) for index in range(claims))
    latencies = []
    with fake_agent(cluster, node, free, rescan_interval=30.0):
        log(f"claims: waiting for {WORKSTATION_DEVICES + claims} devices")
        wait_for(
            lambda: count_devices(admin, node) == WORKSTATION_DEVICES + claims,
            300,
            "the claim node's devices",
        )
        for spec in free:
            name = f"{node}-{spec.address.replace(':', '').replace('.', '')}"
            started = time.monotonic()
            admin.create(
                PCIDEVICECLAIMS,
                {
                    "apiVersion": "devices.harvesterhci.io/v1beta1",
                    "kind": "PCIDeviceClaim",
                    "metadata": {"name": name},
                    "spec": {"address": spec.address, "nodeName": node, "userName": "bench"},
                },
            )

            def enabled(claim_name: str = name) -> bool:
                status = admin.get(PCIDEVICECLAIMS, claim_name).get("status") or {}
                return bool(status.get("passthroughEnabled"))

            wait_for(enabled, 60, f"claim {name} to be passed through")
            latencies.append(time.monotonic() - started)
            log(f"claims: {name} {latencies[-1] * 1000:.0f} ms")
            if not hold:
                admin.delete(PCIDEVICECLAIMS, name)
                wait_for(lambda n=name: gone(admin, n), 120, f"claim {name} to be released")
    return latencies


class RescanCounter:
    """Counts an agent's device reconciles and the time they take (wraps `DeviceSync`)."""

    def __init__(self, agent: Agent) -> None:
        """Wrap ``agent.devices.reconcile`` (before the agent starts)."""
        self.count = 0
        self.seconds = 0.0
        reconcile = agent.devices.reconcile

        def counted(key: str = "devices") -> float:
            started = time.monotonic()
            try:
                return reconcile(key)
            finally:
                self.seconds += time.monotonic() - started
                self.count += 1

        agent.devices.reconcile = counted  # type: ignore[method-assign]


def idle_requests(cluster: KubeCluster, devices: int) -> tuple[float, dict[str, float], float]:
    """Requests per idle rescan with ``devices`` devices: (writes, reads by verb, rescan s)."""
    admin = KubeApi(cluster.api_client)
    node = make_node(admin, "bench-idle")
    with fake_agent(cluster, node, fillers(devices - WORKSTATION_DEVICES), 1.0) as running:
        agent, counter = running
        log(f"idle: waiting for {devices} PCIDevices")
        wait_for(lambda: count_devices(admin, node) == devices, 600, f"{devices} PCIDevices")
        log("idle: synced; counting")
        # Let the first sync's own writes come back through the watch, then start counting.
        settled = counter.count + 2
        wait_for(lambda: counter.count >= settled, 300, "two rescans after the sync")
        api = agent.devices._api  # noqa: SLF001 - the agent's own request counter
        before, rescans_before, seconds_before = api.requests.copy(), counter.count, counter.seconds
        wait_for(
            lambda: counter.count >= rescans_before + IDLE_RESCANS, 300, f"{IDLE_RESCANS} rescans"
        )
        after, rescans = api.requests.copy(), counter.count - rescans_before
        elapsed = counter.seconds - seconds_before
    delta = after - before
    writes = sum(n for verb, n in delta.items() if is_write(verb)) / rescans
    reads = {verb: n / rescans for verb, n in delta.items() if not is_write(verb)}
    return writes, reads, elapsed / rescans


# /proc/modules lines (name size refcount deps state address) for the modules a claim needs.
VFIO_LOADED = "".join(
    f"{name} 16384 0 - Live 0x0000000000000000\n"
    for name in ("vfio", "vfio_pci", "vfio_iommu_type1", "vfio_pci_core")
)


def peak_rss(
    cluster: KubeCluster, devices: int, claims: int, *, trace: bool = False
) -> tuple[float, float]:
    """(peak RSS MiB, seconds to first full sync) of an agent process with ``devices``."""
    admin = KubeApi(cluster.api_client)
    node = make_node(admin, "bench-rss-traced" if trace else "bench-rss")
    with tempfile.TemporaryDirectory(prefix="pcidevices-rss-") as tmp:
        root = Path(tmp)
        specs = fillers(devices)
        SysfsTree(root / "sys").add(*specs)
        (root / "proc" / "net").mkdir(parents=True)
        for name in ("modules", "mounts", "net/route", "net/if_inet6"):
            (root / "proc" / name).write_text(VFIO_LOADED if name == "modules" else "")
        for spec in specs[:claims]:
            admin.create(
                PCIDEVICECLAIMS,
                {
                    "apiVersion": "devices.harvesterhci.io/v1beta1",
                    "kind": "PCIDeviceClaim",
                    "metadata": {
                        "name": f"{node}-{spec.address.replace(':', '').replace('.', '')}"
                    },
                    "spec": {"address": spec.address, "nodeName": node, "userName": "bench"},
                },
            )
        log(f"rss: agent process with {devices} devices and {min(claims, devices)} claims")
        child = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child-rss",
                str(root),
                "--node",
                node,
                "--devices",
                str(devices),
                "--kubeconfig",
                str(cluster.kubeconfig),
                *(["--tracemalloc"] if trace else []),
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=1800,
        )
        if child.returncode != 0:
            raise SystemExit(f"the RSS child failed:\n{child.stderr[-4000:]}")
        if trace:
            log(child.stdout.strip().rpartition("\n")[0])
        answer = json.loads(child.stdout.strip().splitlines()[-1])
    return answer["maxrss_kib"] / 1024, answer["sync_seconds"]


def child_rss(root: Path, node: str, devices: int, kubeconfig: Path, *, trace: bool) -> None:
    """In the child: run an agent until synced plus idle rescans; print ru_maxrss as JSON."""
    if trace:
        tracemalloc.start()
    config = AgentConfig(
        node=node,
        sysfs=root / "sys",
        proc=root / "proc",
        dev_root=root / "dev",
        state_file=root / "state" / "claims.json",
        metrics_address=None,
        device_plugin=False,
        rescan_interval=0.5,
    )
    started = time.monotonic()
    agent = agent_injector(config, load_api_client(kubeconfig), load_pci_ids()).get(Agent)
    counter = RescanCounter(agent)
    agent.start()
    try:
        wait_for(lambda: len(agent.devices.informer.objects()) == devices, 600, "the sync")
        synced = time.monotonic() - started
        if trace:
            # Traced, every rescan is several times slower: take the picture after the sync.
            print_top_allocations(tracemalloc.take_snapshot())
        else:
            done = counter.count + IDLE_RESCANS
            wait_for(lambda: counter.count >= done, 900, "idle rescans")
    finally:
        agent.stop()
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"maxrss_kib": maxrss, "sync_seconds": synced}))


def print_top_allocations(snapshot: tracemalloc.Snapshot, limit: int = 10) -> None:
    """The ``limit`` biggest allocation sites of ``snapshot``, by file and by line."""
    own = tracemalloc.Filter(inclusive=False, filename_pattern=tracemalloc.__file__)
    snapshot = snapshot.filter_traces([own])
    total = sum(stat.size for stat in snapshot.statistics("filename"))
    print(f"tracemalloc: {total / 2**20:.1f} MiB traced in Python allocations")
    for key in ("filename", "lineno"):
        print(f"tracemalloc: top {limit} by {key}")
        for stat in snapshot.statistics(key)[:limit]:
            frame = stat.traceback[0]
            where = frame.filename if key == "filename" else f"{frame.filename}:{frame.lineno}"
            print(f"  {stat.size / 2**20:7.2f} MiB {stat.count:8d} blocks  {where}")


def table(rows: list[tuple[str, str, str, str]]) -> str:
    """Rows as an aligned text table."""
    header = ("measure", "value", "target", "ok")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) for row in rows]
    rule = "  ".join("-" * width for width in widths)
    head = "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(header))
    return "\n".join([head, rule, *lines])


def main(argv: list[str]) -> int:
    """Run the three measurements and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claims", type=int, default=50)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument(
        "--hold", action="store_true", help="keep every claim instead of deleting each in turn"
    )
    parser.add_argument(
        "--only", choices=("claims", "idle", "rss"), action="append", help="run only these"
    )
    parser.add_argument("--rss-claims", type=int, default=100, help="claims on the RSS node")
    parser.add_argument(
        "--tracemalloc", action="store_true", help="run the RSS child under tracemalloc"
    )
    parser.add_argument("--child-rss", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--node", help=argparse.SUPPRESS)
    parser.add_argument("--kubeconfig", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_rss is not None:
        child_rss(args.child_rss, args.node, args.devices, args.kubeconfig, trace=args.tracemalloc)
        return 0
    if args.claims > 32 * (0x100 - 0x10):
        parser.error("--claims is at most 7680")
    out: dict[str, Any] = {}
    cluster = KubeCluster.start()
    try:
        cluster.ensure_project_crds()
        only = set(args.only or ("claims", "idle", "rss"))
        if "claims" in only:
            out["latencies"] = claim_latency(cluster, args.claims, hold=args.hold)
        if "idle" in only:
            out["idle"] = idle_requests(cluster, args.devices)
        if "rss" in only:
            out["rss"] = peak_rss(cluster, args.devices, args.rss_claims, trace=args.tracemalloc)
    finally:
        cluster.stop()
    rows: list[tuple[str, str, str, str]] = []
    if "latencies" in out:
        latencies = out["latencies"]
        mode = "held" if args.hold else "one at a time"
        p50, p95 = statistics.median(latencies), percentile(latencies, 0.95)
        rows += [
            (f"claim -> passthroughEnabled p50 ({len(latencies)} claims, {mode})",
             f"{p50 * 1000:.0f} ms", "< 1000 ms", "yes" if p50 < 1.0 else "NO"),
            ("claim -> passthroughEnabled p95", f"{p95 * 1000:.0f} ms", "-", "-"),
            ("claim -> passthroughEnabled max", f"{max(latencies) * 1000:.0f} ms", "-", "-"),
        ]  # fmt: skip
    if "idle" in out:
        writes, reads, rescan_seconds = out["idle"]
        read_text = ", ".join(f"{verb} {n:g}" for verb, n in sorted(reads.items())) or "0"
        rows += [
            (f"API writes per idle resync ({args.devices} devices)", f"{writes:g}", "0",
             "yes" if writes == 0 else "NO"),
            (f"API reads per idle resync ({args.devices} devices)", read_text, "-", "-"),
            (f"idle rescan duration ({args.devices} devices, pyfakefs)",
             f"{rescan_seconds:.2f} s", "-", "-"),
        ]  # fmt: skip
    if "rss" in out:
        rss_mib, sync_seconds = out["rss"]
        rows += [
            (f"agent peak RSS ({args.devices} devices, {args.rss_claims} claims, process"
             + (", under tracemalloc: not the figure)" if args.tracemalloc else ")"),
             f"{rss_mib:.1f} MiB", "< 100 MiB", "yes" if rss_mib < 100 else "NO"),
            (f"first sync of {args.devices} devices (process, on-disk sysfs)",
             f"{sync_seconds:.1f} s", "-", "-"),
        ]  # fmt: skip
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
