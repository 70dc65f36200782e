"""DRA end to end on the real kernel: the real scheduler allocates, our driver prepares.

Stage 2's API server (`e2e.guest.cluster`) runs with the real kube-scheduler beside it. The
test makes the guest's Node (Ready, allocatable: what a kubelet would leave), applies
`deploy/dra`'s DeviceClasses and runs `pcidevices agent --dra` on the guest's real `/sys` with
the DRA plugin's folders in a temporary one. Once the agent's ResourceSlices hold the free
e1000e, a ResourceClaim for it (NIC class, CEL on our `vendorId`/`deviceId` and its `pciBusID`)
and a pod naming the claim (`resourceClaimName`, so no controller manager is needed) are created;
the scheduler must place the pod on the guest and write an allocation naming our driver, the
guest's pool and the NIC. Then `harness kubelet-dra` (the kubelet's own DRA client code, found
through our registration socket) prepares the claim: the NIC must be on vfio-pci with a viable
group and the CDI spec must name the real character devices; unprepare must return it to e1000e
and remove the spec. Prepare latency (p50, p95) goes to the guest's log and to the result share,
which the host's summary prints; nothing is asserted on time.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

from e2e.guest import rawsysfs, vfio
from e2e.guest.cluster import STAGE2_CLUSTER
from e2e.layout import FREE_NIC, GUEST_HOSTNAME, MGMT_NIC
from e2e.qemu import DRA_LATENCY_FILE, RESULT_MOUNT
from harness.kube import REPO_ROOT, KubeCluster
from pcicore.address import PciAddress
from pcicore.dra import DRIVER_NAME, device_name
from pcioperator.kube.api import NODES, PCIDEVICES, RESOURCESLICES, KubeApi, Resource
from pcioperator.kube.errors import NotFoundError
from pcioperator.wire.resourceclaim import RESOURCECLAIMS
from pciplugin._generated.dra.v1 import api_pb2, api_pb2_grpc
from pciplugin.dra.host import DraPluginSettings
from polling import wait_for

CLUSTER_TIMEOUT = 1500.0
"""Seconds to wait for the API server and the scheduler (both start at collection)."""
CALL_TIMEOUT = 120.0
"""Seconds one prepare or unprepare may take under TCG (the kubelet's own is 45 s)."""
HARNESS_CYCLES = 2
"""Prepare/unprepare cycles through the kubelet's client (`harness kubelet-dra`)."""
GRPC_CYCLES = 5
"""Prepare/unprepare cycles as bare gRPC calls on the plugin's socket (the call alone)."""
NAMESPACE = "dra-e2e"
CLAIM = "nic"
VIABLE = vfio.GroupStatus(viable=True, container_set=False)
DEVICECLASSES_YAML = REPO_ROOT / "deploy" / "dra" / "deviceclasses.yaml"
DEVICECLASSES = Resource("resource.k8s.io", "v1", "deviceclasses", "DeviceClass")
PODS = Resource("", "v1", "pods", "Pod", namespaced=True)
NAMESPACES = Resource("", "v1", "namespaces", "Namespace")
SERVICEACCOUNTS = Resource("", "v1", "serviceaccounts", "ServiceAccount", namespaced=True)
PHASES: dict[str, float] = {}


@contextlib.contextmanager
def phase(name: str) -> Iterator[None]:
    """Time one phase into `PHASES` (seconds, reported with the latency figures)."""
    started = time.monotonic()
    try:
        yield
    finally:
        PHASES[name] = round(time.monotonic() - started, 1)


@pytest.fixture(scope="module")
def cluster() -> KubeCluster:
    """Stage 2's API server with the kube-scheduler; `test_guest_agent.py` stops it later."""
    return STAGE2_CLUSTER.wait_scheduler(CLUSTER_TIMEOUT)


@pytest.fixture
def folder() -> Iterator[Path]:
    """A short folder for the plugin's sockets (unix socket paths stay below 108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="dra-", dir="/run"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def make_node(api: KubeApi) -> None:
    """The guest's Node as a kubelet would leave it: Ready, allocatable, untainted, labelled."""
    api.create(
        NODES,
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": GUEST_HOSTNAME,
                "labels": {"kubernetes.io/hostname": GUEST_HOSTNAME},
            },
        },
    )
    # TaintNodesByCondition admission taints a new Node not-ready; the kubelet would lift it.
    api.patch(NODES, GUEST_HOSTNAME, {"spec": {"taints": None}})
    capacity = {"cpu": "2", "memory": "4Gi", "pods": "110"}
    ready = {
        "type": "Ready",
        "status": "True",
        "reason": "KubeletReady",
        "message": "made by the test",
        "lastHeartbeatTime": "2026-01-01T00:00:00Z",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }
    api.patch(
        NODES,
        GUEST_HOSTNAME,
        {"status": {"capacity": capacity, "allocatable": capacity, "conditions": [ready]}},
        subresource="status",
    )


def published(api: KubeApi) -> set[str]:
    """The device names in the guest's ResourceSlices of our driver."""
    items, _ = api.list_objects(
        RESOURCESLICES, field_selector=f"spec.nodeName={GUEST_HOSTNAME},spec.driver={DRIVER_NAME}"
    )
    return {d["name"] for s in items for d in s["spec"].get("devices") or []}


def offered_with(api: KubeApi, name: str) -> set[str]:
    """The guest's offered device names once ``name`` is among them, else an empty set."""
    names = published(api)
    return names if name in names else set()


def nic_claim(vendor: str, device: str) -> dict[str, Any]:
    """A ResourceClaim for the free NIC: these PCI ids, at its address.

    The address keeps the allocation to this one function should the layout grow another of
    the same model.
    """
    ours = f'device.attributes["{DRIVER_NAME}"]'
    standard = 'device.attributes["resource.kubernetes.io"]'
    expression = (
        f'{ours}.vendorId == "{vendor}" && {ours}.deviceId == "{device}"'
        f' && {standard}.pciBusID == "{FREE_NIC}"'
    )
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": CLAIM},
        "spec": {
            "devices": {
                "requests": [
                    {
                        "name": "nic",
                        "exactly": {
                            "deviceClassName": f"nic.{DRIVER_NAME}",
                            "selectors": [{"cel": {"expression": expression}}],
                        },
                    }
                ]
            }
        },
    }


def vm_pod() -> dict[str, Any]:
    """A pod for the guest's node that uses the claim by name (no template, no controller)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "vm"},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": GUEST_HOSTNAME},
            "automountServiceAccountToken": False,
            "resourceClaims": [{"name": "nic", "resourceClaimName": CLAIM}],
            "containers": [
                {
                    "name": "vm",
                    "image": "registry.example/virt-launcher:none",
                    "resources": {"claims": [{"name": "nic"}]},
                }
            ],
        },
    }


def placement(api: KubeApi) -> str | None:
    """The pod's node, or why it was not placed; None while the scheduler has not said."""
    found = api.get(PODS, "vm", NAMESPACE)
    if found["spec"].get("nodeName"):
        return str(found["spec"]["nodeName"])
    for condition in (found.get("status") or {}).get("conditions") or []:
        if condition["type"] == "PodScheduled" and condition["status"] == "False":
            return f"not placed: {condition.get('reason')}: {condition.get('message')}"
    return None


def kubelet_dra(
    cluster: KubeCluster, verb: str, settings: DraPluginSettings, uid: str
) -> tuple[subprocess.CompletedProcess[str], float]:
    """The kubelet's DRA client code (`harness kubelet-dra`) on our registration socket.

    Returns the finished process and its wall time in milliseconds (process start, the
    registration handshake and the call).
    """
    started = time.perf_counter()
    done = subprocess.run(
        [
            str(cluster.binary),
            "kubelet-dra",
            verb,
            "--driver",
            DRIVER_NAME,
            "--namespace",
            NAMESPACE,
            "--name",
            CLAIM,
            "--uid",
            uid,
            "--registration",
            str(settings.registration_socket),
            "--node",
            GUEST_HOSTNAME,
            "--timeout",
            f"{CALL_TIMEOUT:.0f}s",
        ],
        capture_output=True,
        text=True,
        timeout=3 * CALL_TIMEOUT,
        check=False,
    )
    return done, (time.perf_counter() - started) * 1000


def cdi_spec(settings: DraPluginSettings, uid: str) -> Path:
    return settings.cdi_dir / f"{DRIVER_NAME}-vfio_{uid}.json"


def spec_nodes(spec: Path) -> list[str]:
    """Every device node the CDI spec hands the container."""
    devices = json.loads(spec.read_text())["devices"]
    return [node["path"] for d in devices for node in d["containerEdits"]["deviceNodes"]]


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (with 5 values, p95 is the largest)."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


def summary(values: list[float]) -> dict[str, Any]:
    return {
        "n": len(values),
        "p50_ms": round(percentile(values, 50), 1),
        "p95_ms": round(percentile(values, 95), 1),
        "all_ms": [round(v, 1) for v in values],
    }


def clean_up(api: KubeApi) -> None:
    """Remove what the next stage-2 file would see: slices, PCIDevices, the Node.

    The namespace with its pod and claim stays: with no kubelet and no controller manager a
    bound pod is never confirmed deleted, and nothing later reads that namespace.
    """
    items, _ = api.list_objects(RESOURCESLICES, field_selector=f"spec.nodeName={GUEST_HOSTNAME}")
    for item in items:  # owned by the Node, but no garbage collector runs here
        with contextlib.suppress(NotFoundError):
            api.delete(RESOURCESLICES, item["metadata"]["name"])
    items, _ = api.list_objects(PCIDEVICES, label_selector=f"nodename={GUEST_HOSTNAME}")
    for item in items:
        with contextlib.suppress(NotFoundError):
            api.delete(PCIDEVICES, item["metadata"]["name"])
    with contextlib.suppress(NotFoundError):
        api.delete(NODES, GUEST_HOSTNAME)


def set_up_cluster(api: KubeApi) -> None:
    """The Node, our DeviceClasses, the namespace and its default ServiceAccount."""
    make_node(api)
    for body in yaml.safe_load_all(DEVICECLASSES_YAML.read_text()):
        api.create(DEVICECLASSES, body)
    api.create(
        NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
    )
    # The ServiceAccount admission needs it; the controller that makes it does not run here.
    api.create(
        SERVICEACCOUNTS,
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}},
        NAMESPACE,
    )


def agent_command(cluster: KubeCluster, settings: DraPluginSettings, state: Path) -> list[str]:
    """`pcidevices agent --dra` on the guest's /sys, its DRA folders in ``settings``."""
    return [
        "pcidevices",
        "agent",
        "--dra",
        "--node",
        GUEST_HOSTNAME,
        "--kubeconfig",
        str(cluster.kubeconfig),
        "--state-file",
        str(state),
        "--metrics-address",
        "off",
        "--no-device-plugin",  # this test is about DRA; no kubelet device-plugin socket here
        "--dra-plugin-dir",
        str(settings.plugin_dir),
        "--plugins-registry-dir",
        str(settings.registry_dir),
        "--cdi-dir",
        str(settings.cdi_dir),
    ]


class Latency:
    """Wall times (ms) of each prepare and unprepare, by how the plugin was called."""

    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = {
            "kubelet_client_prepare": [],
            "kubelet_client_unprepare": [],
            "grpc_prepare": [],
            "grpc_unprepare": [],
        }

    def kubelet_cycle(self, cluster: KubeCluster, settings: DraPluginSettings, uid: str) -> None:
        """Prepare and unprepare through `harness kubelet-dra`; the NIC moves both ways."""
        done, took = kubelet_dra(cluster, "prepare", settings, uid)
        assert done.returncode == 0, done.stderr
        assert rawsysfs.driver(FREE_NIC) == "vfio-pci"
        self.samples["kubelet_client_prepare"].append(took)
        done, took = kubelet_dra(cluster, "unprepare", settings, uid)
        assert done.returncode == 0, done.stderr
        assert rawsysfs.driver(FREE_NIC) == "e1000e"
        self.samples["kubelet_client_unprepare"].append(took)

    def grpc_cycle(self, stub: api_pb2_grpc.DRAPluginStub, uid: str) -> None:
        """Prepare and unprepare as bare calls on the plugin's socket; the NIC moves both ways."""
        claims = [api_pb2.Claim(namespace=NAMESPACE, name=CLAIM, uid=uid)]
        started = time.perf_counter()
        prepared = stub.NodePrepareResources(
            api_pb2.NodePrepareResourcesRequest(claims=claims), timeout=CALL_TIMEOUT
        )
        self.samples["grpc_prepare"].append((time.perf_counter() - started) * 1000)
        assert prepared.claims[uid].error == ""
        assert rawsysfs.driver(FREE_NIC) == "vfio-pci"
        started = time.perf_counter()
        returned = stub.NodeUnprepareResources(
            api_pb2.NodeUnprepareResourcesRequest(claims=claims), timeout=CALL_TIMEOUT
        )
        self.samples["grpc_unprepare"].append((time.perf_counter() - started) * 1000)
        assert returned.claims[uid].error == ""
        assert rawsysfs.driver(FREE_NIC) == "e1000e"

    def report(self) -> dict[str, Any]:
        """p50/p95 per kind, and the phases' durations; written to the result share too."""
        figures: dict[str, Any] = {
            key: summary(values) for key, values in self.samples.items() if values
        }
        figures["phases_s"] = PHASES | STAGE2_CLUSTER.timings
        Path(RESULT_MOUNT, DRA_LATENCY_FILE).write_text(json.dumps(figures, indent=2) + "\n")
        return figures


def allocated_by_the_scheduler(api: KubeApi, nic: str, ids: list[str]) -> str:
    """Claim the NIC by its ids, place a pod using it; the scheduler must allocate ``nic``.

    Returns the claim's uid.
    """
    uid = str(api.create(RESOURCECLAIMS, nic_claim(*ids), NAMESPACE)["metadata"]["uid"])
    api.create(PODS, vm_pod(), NAMESPACE)
    placed = wait_for(lambda: placement(api), timeout=600, interval=1)
    assert placed == GUEST_HOSTNAME, placed
    status = api.get(RESOURCECLAIMS, CLAIM, NAMESPACE)["status"]
    (result,) = status["allocation"]["devices"]["results"]
    assert {k: result[k] for k in ("request", "driver", "pool", "device")} == {
        "request": "nic",
        "driver": DRIVER_NAME,
        "pool": GUEST_HOSTNAME,
        "device": nic,
    }
    pod_uid = api.get(PODS, "vm", NAMESPACE)["metadata"]["uid"]
    assert [r["uid"] for r in status["reservedFor"]] == [pod_uid]
    return uid


def first_cycle(
    cluster: KubeCluster, settings: DraPluginSettings, latency: Latency, uid: str
) -> None:
    """Prepare: vfio-pci, viable group, CDI nodes are char devices; unprepare: all back."""
    group = rawsysfs.iommu_group(FREE_NIC)
    interfaces = rawsysfs.net_interfaces(FREE_NIC)
    done, took = kubelet_dra(cluster, "prepare", settings, uid)
    assert done.returncode == 0, done.stderr
    latency.samples["kubelet_client_prepare"].append(took)
    (device,) = json.loads(done.stdout)["claims"][uid]["devices"]
    assert (device["poolName"], device["deviceName"]) == (
        GUEST_HOSTNAME,
        device_name(PciAddress.parse(FREE_NIC)),
    )
    assert rawsysfs.driver(FREE_NIC) == "vfio-pci"
    assert vfio.group_status(group) == VIABLE
    nodes = spec_nodes(cdi_spec(settings, uid))
    assert nodes[:2] == ["/dev/vfio/vfio", f"/dev/vfio/{group}"]
    assert all(Path(node).is_char_device() for node in nodes), nodes

    done, took = kubelet_dra(cluster, "unprepare", settings, uid)
    assert done.returncode == 0, done.stderr
    latency.samples["kubelet_client_unprepare"].append(took)
    assert rawsysfs.driver(FREE_NIC) == "e1000e"
    assert rawsysfs.net_interfaces(FREE_NIC) == interfaces
    assert not cdi_spec(settings, uid).exists()


def test_scheduler_allocates_our_slice_and_the_kubelet_client_prepares_it_on_the_real_kernel(
    cluster, folder, tmp_path, record_property
):
    """Real scheduler → allocation of the e1000e; prepare → vfio-pci + CDI; unprepare → e1000e."""
    api = KubeApi(cluster.api_client)
    settings = DraPluginSettings(
        plugin_dir=folder / "plugin", registry_dir=folder / "reg", cdi_dir=folder / "cdi"
    )
    nic = device_name(PciAddress.parse(FREE_NIC))
    ids = [
        (rawsysfs.device_dir(FREE_NIC) / name).read_text().strip().removeprefix("0x")
        for name in ("vendor", "device")
    ]
    interfaces = rawsysfs.net_interfaces(FREE_NIC)
    assert rawsysfs.driver(FREE_NIC) == "e1000e"
    with phase("node_classes_namespace"):
        set_up_cluster(api)
    log = (tmp_path / "agent.log").open("w")
    agent = subprocess.Popen(agent_command(cluster, settings, tmp_path / "claims.json"), stderr=log)
    latency = Latency()
    try:
        with phase("agent_to_slices_and_registration"):
            offered = wait_for(lambda: offered_with(api, nic), timeout=600, interval=2)
            wait_for(settings.registration_socket.exists, timeout=300, interval=1)
        # The management NIC carries the default route: the host's, never offered.
        assert device_name(PciAddress.parse(MGMT_NIC)) not in offered

        with phase("claim_and_pod_to_allocation"):
            uid = allocated_by_the_scheduler(api, nic, ids)
        with phase("first_prepare_and_unprepare"):
            first_cycle(cluster, settings, latency, uid)

        with phase("latency_cycles"):
            for _ in range(HARNESS_CYCLES - 1):
                latency.kubelet_cycle(cluster, settings, uid)
            with grpc.insecure_channel(f"unix://{settings.socket}") as channel:
                stub = api_pb2_grpc.DRAPluginStub(channel)
                for _ in range(GRPC_CYCLES):
                    latency.grpc_cycle(stub, uid)
        assert rawsysfs.net_interfaces(FREE_NIC) == interfaces
        assert not cdi_spec(settings, uid).exists()

        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=120) == 0
    finally:
        if agent.poll() is None:
            agent.kill()
        log.close()
        figures = latency.report()
        for key, value in figures.items():
            record_property(key, json.dumps(value))
        print((tmp_path / "agent.log").read_text()[-3000:])  # noqa: T201 (in the guest's log)
        print(f"DRA on the real kernel, real scheduler: {json.dumps(figures)}")  # noqa: T201
        clean_up(api)
