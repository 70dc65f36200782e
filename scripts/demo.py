"""The README's first command: this machine's PCI bus as PCIDevice objects in a real cluster.

Starts the test harness's real kube-apiserver + etcd on loopback, registers this machine as a
Node, runs `pcidevices agent` against the real /sys (discovery only: no claim exists, so nothing
is bound), waits for the objects, and prints `kubectl get pcidevices` as a user would see it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from harness.kube import KubeCluster  # noqa: E402 - after the path set-up above


def main() -> int:
    node = os.environ.get("NODE_NAME") or socket.gethostname().lower()
    with tempfile.TemporaryDirectory(prefix="pcidevices-demo-") as tmp:
        work = Path(tmp)
        print("demo: starting a local kube-apiserver + etcd (built once, cached)...", flush=True)
        cluster = KubeCluster.start(work / "cluster")
        agent = None
        try:
            cluster.ensure_project_crds()
            cluster.kubectl("create", "-f", "-", stdin=_node_manifest(node))
            agent = subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "pcidevices"),
                    "agent",
                    "--node",
                    node,
                    "--kubeconfig",
                    str(cluster.kubeconfig),
                    "--state-file",
                    str(work / "claims.json"),
                    "--metrics-address",
                    "off",
                    "--no-device-plugin",
                ],
                stderr=(work / "agent.log").open("w"),
            )
            expected = len(os.listdir("/sys/bus/pci/devices"))
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                listed = cluster.kubectl("get", "pcidevices", "-o", "name").stdout.split()
                if len(listed) >= expected:
                    break
                time.sleep(0.5)
            print(f"demo: the agent on node {node!r} wrote {expected} PCIDevice objects:\n")
            print(cluster.kubectl("get", "pcidevices").stdout)
        finally:
            if agent is not None:
                agent.terminate()
                agent.wait(timeout=30)
            cluster.stop()
    return 0


def _node_manifest(node: str) -> str:
    return f"apiVersion: v1\nkind: Node\nmetadata:\n  name: {node}\n"


if __name__ == "__main__":
    sys.exit(main())
