"""The README's first command: this machine's PCI bus as PCIDevice objects in a real cluster.

Starts a real kube-apiserver + etcd on loopback (the test harness's small "demo" build: no
controller manager, no kubectl, so a first run compiles less), installs the project's CRDs,
registers this machine as a Node, runs `pcidevices agent` against the real /sys (discovery
only: no claim exists, so nothing is bound), waits for the objects, and prints them as
`kubectl get pcidevices` would: the API server's own table of the CRD's printer columns.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from harness.kube import CRD_DIR, KubeCluster, Profile  # noqa: E402 - after the path set-up above

# The demo needs nothing the controller manager does (no garbage collection to show).
DEMO_PROFILE = Profile(controller_manager=False)
PCIDEVICES = "/apis/devices.harvesterhci.io/v1beta1/pcidevices"
# Ask the API server for the table kubectl prints (the CRD's additionalPrinterColumns).
AS_TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"


def main() -> int:
    node = os.environ.get("NODE_NAME") or socket.gethostname().lower()
    with tempfile.TemporaryDirectory(prefix="pcidevices-demo-") as tmp:
        work = Path(tmp)
        print("demo: starting a local kube-apiserver + etcd...", flush=True)
        cluster = KubeCluster.start(work / "cluster", DEMO_PROFILE, variant="demo")
        agent = None
        try:
            install_crds(cluster)
            request(cluster, "POST", "/api/v1/nodes", _node_manifest(node))
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
            table = request(cluster, "GET", PCIDEVICES, accept=AS_TABLE)
            while len(table.get("rows", [])) < expected and time.monotonic() < deadline:
                time.sleep(0.5)
                table = request(cluster, "GET", PCIDEVICES, accept=AS_TABLE)
            print(f"demo: the agent on node {node!r} wrote {expected} PCIDevice objects:\n")
            print(render_table(table))
        finally:
            if agent is not None:
                agent.terminate()
                agent.wait(timeout=30)
            cluster.stop()
    return 0


def request(
    cluster: KubeCluster,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    accept: str = "application/json",
) -> dict[str, Any]:
    """One call to the API server as the cluster's admin; the decoded JSON answer."""
    client = cluster.api_client
    params = client.param_serialize(
        method,
        path,
        header_params={"Accept": accept, "Content-Type": "application/json"},
        body=body,
    )
    response = client.call_api(*params)
    response.read()
    if response.status >= 300:  # noqa: PLR2004 - HTTP success codes
        sys.exit(f"demo: {method} {path} answered {response.status}: {response.data[:500]!r}")
    answer: dict[str, Any] = json.loads(response.data)
    return answer


def install_crds(cluster: KubeCluster, timeout: float = 60.0) -> None:
    """Create the project's CRDs and wait until the API server serves them (Established)."""
    names = []
    for path in sorted(CRD_DIR.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "CustomResourceDefinition":
                request(
                    cluster, "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", doc
                )
                names.append(doc["metadata"]["name"])
    deadline = time.monotonic() + timeout
    for name in names:
        path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"
        while not _established(request(cluster, "GET", path)):
            if time.monotonic() > deadline:
                sys.exit(f"demo: CRD {name} not Established after {timeout:.0f}s")
            time.sleep(0.2)


def _established(crd: dict[str, Any]) -> bool:
    conditions = crd.get("status", {}).get("conditions", [])
    return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)


def render_table(table: dict[str, Any]) -> str:
    """A ``meta.k8s.io/v1`` Table as kubectl prints it: upper-case headers, aligned columns."""
    shown = [i for i, c in enumerate(table["columnDefinitions"]) if c.get("priority", 0) == 0]
    rows = [[table["columnDefinitions"][i]["name"].upper() for i in shown]]
    rows += [
        ["" if row["cells"][i] is None else str(row["cells"][i]) for i in shown]
        for row in table["rows"]
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(shown))]
    return "\n".join(
        "   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _node_manifest(node: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}}


if __name__ == "__main__":
    sys.exit(main())
