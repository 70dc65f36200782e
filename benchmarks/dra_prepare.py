"""Kubelet DRA plugin: NodePrepareResources / NodeUnprepareResources latency over real gRPC.

Run: ``.venv/bin/python benchmarks/dra_prepare.py`` (add ``--cycles N``).

The plugin serves on real unix sockets in this process; its sysfs is the kernel-faithful fake
of ``tests/fakesys`` (pyfakefs: every bind is the engine's real unbind → driver_override →
drivers_probe sequence through ``pcihost.binding``, with the fake kernel answering), its
checkpoint, ledger and CDI specs are files in the fake filesystem, the ResourceClaims come from
memory (in a cluster, add one GET of the claim from the API server to a first prepare). The
kubelet is a gRPC client with the generated stubs, in the same process (it shares the GIL with
the server, so figures are an upper bound of a separate kubelet's).

Each cycle prepares one claim of the workstation's free NIC (``igb`` → ``vfio-pci``, CDI spec
and metadata written), prepares it again (the idempotent path: checkpoint, no sysfs write), and
unprepares it (back to ``igb``, files removed). Prints p50 / p95 / max of each, in ms.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import grpc
from pyfakefs.fake_filesystem_unittest import Patcher

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from dra_fakes import FakeResourceClaims, ref, result
from dra_node import dra_settings, make_plugin, mirror
from fakesys.descriptors import guard_descriptors
from fakesys.hosts import FREE_NIC, Host, workstation
from pciplugin._generated.dra.v1 import api_pb2, api_pb2_grpc
from pciplugin.dra.host import DraPluginHost


def percentile(samples: list[float], fraction: float) -> float:
    """The ``fraction`` quantile (nearest rank)."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def report(name: str, samples: list[float]) -> None:
    """One line of figures, in milliseconds."""
    ms = [s * 1000 for s in samples]
    print(
        f"{name:<18} n={len(ms):<4} p50 {percentile(ms, 0.50):6.2f} ms   "
        f"p95 {percentile(ms, 0.95):6.2f} ms   max {max(ms):6.2f} ms"
    )


def main() -> int:
    """Run the cycles and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=200)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="drab", dir="/tmp"))
    for sub in ("plugin", "reg"):
        (folder / sub).mkdir()
    try:
        with Patcher() as patcher:
            guard_descriptors(patcher.fs)
            mirror(patcher.fs, folder)
            host = workstation(patcher.fs)
            claims = FakeResourceClaims()
            plugin = make_plugin(host, dra_settings(folder), claims)
            plugin.start()
            try:
                run(plugin, claims, host, args.cycles)
            finally:
                plugin.stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


def run(plugin: DraPluginHost, claims: FakeResourceClaims, host: Host, cycles: int) -> None:
    """Prepare, prepare again, unprepare, ``cycles`` times; then print."""
    prepare, again, unprepare = [], [], []
    with grpc.insecure_channel(f"unix://{plugin.settings.socket}") as channel:
        stub = api_pb2_grpc.DRAPluginStub(channel)
        for cycle in range(cycles + 5):  # the first 5 warm up
            claim_ref = ref(uid=f"uid-{cycle}")
            claims.allocate(claim_ref, result(FREE_NIC))
            wire = [api_pb2.Claim(namespace="vms", name="vm-nic", uid=claim_ref.uid)]
            for samples, call in (
                (prepare, lambda w=wire: stub.NodePrepareResources(
                    api_pb2.NodePrepareResourcesRequest(claims=w), timeout=30)),
                (again, lambda w=wire: stub.NodePrepareResources(
                    api_pb2.NodePrepareResourcesRequest(claims=w), timeout=30)),
                (unprepare, lambda w=wire: stub.NodeUnprepareResources(
                    api_pb2.NodeUnprepareResourcesRequest(claims=w), timeout=30)),
            ):  # fmt: skip
                start = time.perf_counter()
                answer = call()
                elapsed = time.perf_counter() - start
                error = answer.claims[claim_ref.uid].error
                if error:
                    raise SystemExit(f"cycle {cycle}: {error}")
                if cycle >= 5:
                    samples.append(elapsed)
            if host.driver(FREE_NIC) != "igb":
                raise SystemExit(f"cycle {cycle}: the NIC did not come back to igb")
    report("prepare (bind)", prepare)
    report("prepare again", again)
    report("unprepare (return)", unprepare)


if __name__ == "__main__":
    raise SystemExit(main())
