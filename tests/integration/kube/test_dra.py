"""DRA against real peers: our ResourceSlices on the real API server, the real scheduler.

A sysfs tree on disk stands for the node's host (a GPU with its audio function, two NICs of
which the host uses one, an NVMe drive, the bridges); the standalone publisher
(`DraSlicePublisher`, as ``pcidevices dra-slices`` builds it) keeps the node's slices. Nothing
here runs a kubelet: the tests make the Node objects themselves (allocatable, so the scheduler
can place pods on them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s_client

from fakesys.tree import FakeDevice, SysfsTree
from harness.kube import REPO_ROOT, KubeCluster
from pcicore.address import PciAddress
from pcicore.device import NodeName
from pcicore.dra import DRIVER_NAME
from pcicore.naming import DeviceNamer
from pcidevices.wiring.agent import claimed_addresses, dra_slice_sync
from pcihost.pciids_file import load_pci_ids
from pcihost.sysfs import SysfsPciBus
from pcioperator.controllers.dra_slices import DraSlicePublisher, DraSliceSync
from pcioperator.kube.api import (
    NODES,
    PCIDEVICECLAIMS,
    RESOURCESLICES,
    KubeApi,
    Resource,
    is_write,
)
from pcioperator.kube.informer import Informer
from pcioperator.kube.workqueue import WorkQueue
from polling import wait_for

pytestmark = pytest.mark.kube

DEVICECLASSES_YAML = REPO_ROOT / "deploy" / "dra" / "deviceclasses.yaml"
EXAMPLES_YAML = REPO_ROOT / "deploy" / "examples" / "dra-claim-templates.yaml"
DEVICECLASSES = Resource("resource.k8s.io", "v1", "deviceclasses", "DeviceClass")
CLAIM_TEMPLATES = Resource(
    "resource.k8s.io", "v1", "resourceclaimtemplates", "ResourceClaimTemplate", namespaced=True
)
CLAIMS = Resource("resource.k8s.io", "v1", "resourceclaims", "ResourceClaim", namespaced=True)
PODS = Resource("", "v1", "pods", "Pod", namespaced=True)
NAMESPACES = Resource("", "v1", "namespaces", "Namespace")
GPU_CLASS = f"gpu.{DRIVER_NAME}"

GPU = "0000:01:00.0"
GPU_AUDIO = "0000:01:00.1"
HOST_NIC = "0000:00:1f.6"
FREE_NIC = "0000:02:00.0"
NVME = "0000:03:00.0"
NEW_NIC = "0000:04:00.0"
HOST = (
    FakeDevice("0000:00:00.0", 0x8086, 0x3E30, 0x060000, iommu_group=0),
    FakeDevice("0000:00:01.0", 0x8086, 0x1901, 0x060400, iommu_group=1, driver="pcieport"),
    FakeDevice(
        GPU,
        0x10DE,
        0x2236,
        0x030200,
        subsystem_vendor=0x10DE,
        subsystem_device=0x1482,
        iommu_group=2,
        numa_node=0,
        parent="0000:00:01.0",
        driver="nvidia",
    ),
    FakeDevice(GPU_AUDIO, 0x10DE, 0x1AEF, 0x040300, iommu_group=2, parent="0000:00:01.0"),
    FakeDevice(HOST_NIC, 0x8086, 0x15BC, 0x020000, iommu_group=3, driver="e1000e"),
    FakeDevice(FREE_NIC, 0x8086, 0x1533, 0x020000, iommu_group=4, numa_node=0, driver="igb"),
    FakeDevice(NVME, 0x144D, 0xA808, 0x010802, iommu_group=5, driver="nvme"),
)


def dra_name(address: str) -> str:
    return "pci-" + address.replace(":", "-").replace(".", "-")


@pytest.fixture(scope="module")
def namer() -> DeviceNamer:
    return DeviceNamer(load_pci_ids())


@pytest.fixture
def host(tmp_path: Path) -> SysfsTree:
    return SysfsTree(tmp_path / "sys").add(*HOST)


def make_node(api: KubeApi, name: str) -> None:
    """A Node as a kubelet would leave it: allocatable, Ready, labelled with its hostname."""
    api.create(
        NODES,
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        },
    )
    # The API server's TaintNodesByCondition admission taints a new Node not-ready; the kubelet
    # (or the node lifecycle controller) would lift it once Ready: lift it here.
    api.patch(NODES, name, {"spec": {"taints": None}})
    capacity = {"cpu": "4", "memory": "8Gi", "pods": "110"}
    api.patch(
        NODES,
        name,
        {
            "status": {
                "capacity": capacity,
                "allocatable": capacity,
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "KubeletReady",
                        "message": "made by the test",
                        "lastHeartbeatTime": "2026-01-01T00:00:00Z",
                        "lastTransitionTime": "2026-01-01T00:00:00Z",
                    }
                ],
            }
        },
        subresource="status",
    )


def writes_sent(api: KubeApi) -> int:
    """Writes sent through ``api`` so far."""
    return sum(count for verb, count in api.requests.items() if is_write(verb))


def server_slices(api: KubeApi, node: str) -> list[dict[str, Any]]:
    """``node``'s slices of our driver, straight from the API server (not a cache)."""
    items, _ = api.list_objects(
        RESOURCESLICES, field_selector=f"spec.nodeName={node},spec.driver={DRIVER_NAME}"
    )
    return sorted(items, key=lambda item: item["metadata"]["name"])


class Publisher:
    """A running standalone publisher for one node, with its own counted API."""

    def __init__(self, publisher: DraSlicePublisher, api: KubeApi, node: str) -> None:
        self.publisher = publisher
        self.api = api
        self.node = node

    @property
    def sync(self) -> DraSliceSync:
        return self.publisher.sync

    def writes(self) -> int:
        """Writes this publisher has sent to the API server so far."""
        return writes_sent(self.api)

    def slices(self) -> list[dict[str, Any]]:
        """This node's slices of our driver, straight from the API server (not the cache)."""
        return server_slices(self.api, self.node)

    def published(self) -> set[str]:
        return {d["name"] for s in self.slices() for d in s["spec"].get("devices", [])}


@pytest.fixture
def start_publisher(
    kube: KubeCluster, host: SysfsTree, namer: DeviceNamer, unique_name
) -> Iterator[Callable[..., Publisher]]:
    running: list[DraSlicePublisher] = []

    def start(
        node: str | None = None, refused: frozenset[str] = frozenset(), devices_per_slice=128
    ) -> Publisher:
        api = KubeApi(kube.api_client)
        if node is None:
            node = unique_name("dra-node")
            make_node(api, node)
        queue: WorkQueue[str] = WorkQueue()
        claims = Informer(api, PCIDEVICECLAIMS, on_change=lambda _n: queue.add(DraSliceSync.KEY))
        refused_addresses = frozenset(PciAddress.parse(a) for a in refused)
        sync = dra_slice_sync(
            NodeName(node),
            api,
            SysfsPciBus(host.root),
            namer,
            lambda _devices: refused_addresses,
            claimed_addresses(node, claims),
            lambda _name: queue.add(DraSliceSync.KEY),
            3600.0,  # no timed rescans: only changes (and the test) queue the sync
            devices_per_slice,
        )
        assert sync.informer is not None
        publisher = DraSlicePublisher(sync, queue, [sync.informer, claims])
        publisher.start()
        running.append(publisher)
        wait_for(publisher.ready, timeout=30)
        return Publisher(publisher, api, node)

    yield start
    for publisher in running:
        publisher.stop()
        assert publisher.alive_threads() == []


class TestSlicesOnTheApiServer:
    """The node's slices on the real API server follow the host and the claims, and nothing else."""

    def test_claimable_devices_are_published_with_their_attributes(self, start_publisher):
        """GPU, its audio, the free NIC and the NVMe drive; not the bridges, not the host's NIC."""
        pub = start_publisher(refused=frozenset({HOST_NIC}))
        expected = {dra_name(a) for a in (GPU, GPU_AUDIO, FREE_NIC, NVME)}
        wait_for(lambda: pub.published() == expected, timeout=30)
        (only,) = pub.slices()
        spec = only["spec"]
        assert spec["driver"] == DRIVER_NAME
        assert spec["nodeName"] == pub.node
        assert spec["pool"] == {"name": pub.node, "generation": 1, "resourceSliceCount": 1}
        (gpu,) = [d for d in spec["devices"] if d["name"] == dra_name(GPU)]
        assert gpu["attributes"] == {
            "resource.kubernetes.io/pciBusID": {"string": GPU},
            "resource.kubernetes.io/pcieRoot": {"string": "pci0000:00"},
            "resource.kubernetes.io/numaNode": {"int": 0},
            "vendorId": {"string": "10de"},
            "deviceId": {"string": "2236"},
            "classId": {"string": "0302"},
            "subsystemVendorId": {"string": "10de"},
            "subsystemDeviceId": {"string": "1482"},
            "iommuGroup": {"int": 2},
            "resourceName": {"string": pub.sync.last_devices[0].attributes["resourceName"].value},
        }
        (owner,) = only["metadata"]["ownerReferences"]
        node = pub.api.get(NODES, pub.node)
        assert (owner["kind"], owner["name"], owner["uid"]) == (
            "Node",
            pub.node,
            node["metadata"]["uid"],
        )

    def test_idle_resyncs_write_nothing(self, start_publisher):
        """Once in step, reconciling again sends no write and leaves every resourceVersion."""
        pub = start_publisher(devices_per_slice=2)
        wait_for(lambda: len(pub.published()) == 5, timeout=30)
        wait_for(
            lambda: (
                {s["metadata"]["resourceVersion"] for s in pub.slices()}
                == {s["metadata"]["resourceVersion"] for s in pub.sync.informer.objects()}
            ),
            timeout=30,
        )
        writes = pub.writes()
        versions = {s["metadata"]["name"]: s["metadata"]["resourceVersion"] for s in pub.slices()}
        for _ in range(3):
            pub.sync.reconcile()
        assert pub.writes() == writes
        assert {
            s["metadata"]["name"]: s["metadata"]["resourceVersion"] for s in pub.slices()
        } == versions
        assert len(versions) == 3
        pools = [s["spec"]["pool"] for s in pub.slices()]
        assert {p["generation"] for p in pools} == {1}
        assert {p["resourceSliceCount"] for p in pools} == {3}

    def test_a_watch_that_lags_behind_its_own_writes_causes_no_second_generation(
        self, kube, host, namer, unique_name
    ):
        """The cache keeps the sync's own writes: reconciling again writes nothing.

        The watch has not delivered them yet: here it never started, as on a loaded node.
        """
        api = KubeApi(kube.api_client)
        node = unique_name("dra-node")
        make_node(api, node)
        sync = dra_slice_sync(
            NodeName(node),
            api,
            SysfsPciBus(host.root),
            namer,
            lambda _devices: frozenset(),
            frozenset,
            lambda _name: None,
            3600.0,
            2,
        )
        sync.reconcile()
        written = writes_sent(api)
        sync.reconcile()
        sync.reconcile()
        assert writes_sent(api) == written
        pools = [s["spec"]["pool"] for s in server_slices(api, node)]
        assert len(pools) == 3
        assert {p["generation"] for p in pools} == {1}

    def test_a_new_device_moves_the_pool_to_the_next_generation(self, start_publisher, host):
        """A device hot-plugged: one slice rewritten at generation 2, no create, no delete."""
        pub = start_publisher()
        wait_for(lambda: len(pub.published()) == 5, timeout=30)
        before = dict(pub.api.requests)
        host.add(FakeDevice(NEW_NIC, 0x8086, 0x1533, 0x020000, iommu_group=6))
        pub.publisher.queue.add(DraSliceSync.KEY)
        wait_for(lambda: dra_name(NEW_NIC) in pub.published(), timeout=30)
        (only,) = pub.slices()
        assert only["spec"]["pool"]["generation"] == 2
        assert pub.api.requests["update"] - before.get("update", 0) == 1
        assert pub.api.requests["create"] == before.get("create", 0)
        assert pub.api.requests["delete"] == before.get("delete", 0)

    def test_a_claimed_device_and_its_group_leave_the_slices_and_come_back(
        self, start_publisher, kube
    ):
        """Dual mode: a PCIDeviceClaim on the GPU takes it and its audio function out of DRA."""
        pub = start_publisher()
        admin = KubeApi(kube.api_client)
        wait_for(lambda: dra_name(GPU) in pub.published(), timeout=30)
        claim = f"{pub.node}-{GPU.replace(':', '').replace('.', '')}"
        admin.create(
            PCIDEVICECLAIMS,
            {
                "apiVersion": "devices.harvesterhci.io/v1beta1",
                "kind": "PCIDeviceClaim",
                "metadata": {"name": claim},
                "spec": {"address": GPU, "nodeName": pub.node, "userName": "alice"},
            },
        )
        wait_for(lambda: dra_name(GPU) not in pub.published(), timeout=30)
        assert pub.published() == {dra_name(a) for a in (HOST_NIC, FREE_NIC, NVME)}
        admin.delete(PCIDEVICECLAIMS, claim)
        wait_for(lambda: {dra_name(GPU), dra_name(GPU_AUDIO)} <= pub.published(), timeout=30)

    def test_slices_go_with_their_node(self, start_publisher):
        """Deleting the Node garbage-collects its slices (ownerReference)."""
        pub = start_publisher()
        wait_for(pub.slices, timeout=30)
        pub.publisher.stop()
        pub.api.delete(NODES, pub.node)
        wait_for(lambda: not pub.slices(), timeout=60)


class TestDeviceClasses:
    """The shipped DeviceClasses."""

    def test_the_api_server_accepts_them(self, kube):
        """Applied for real (CEL selectors compile); any, GPUs and NICs exist."""
        result = kube.kubectl("apply", "--server-side", "-f", str(DEVICECLASSES_YAML))
        assert result.returncode == 0, result.stderr
        api = KubeApi(kube.api_client)
        names = {item["metadata"]["name"] for item in api.list_objects(DEVICECLASSES)[0]}
        assert {DRIVER_NAME, GPU_CLASS, f"nic.{DRIVER_NAME}"} <= names

    def test_the_example_claim_templates_are_accepted(self, kube, namespace):
        """deploy/examples/dra-claim-templates.yaml passes the API server's validation."""
        result = kube.kubectl(
            "apply", "--dry-run=server", "-n", namespace, "-f", str(EXAMPLES_YAML)
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.count("resourceclaimtemplate.resource.k8s.io/") == 3


# --- the real scheduler ---------------------------------------------------------------------


def claim_template(name: str, expression: str) -> dict[str, Any]:
    """A ResourceClaimTemplate asking for one GPU of ours that matches ``expression``."""
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaimTemplate",
        "metadata": {"name": name},
        "spec": {
            "spec": {
                "devices": {
                    "requests": [
                        {
                            "name": "gpu",
                            "exactly": {
                                "deviceClassName": GPU_CLASS,
                                "selectors": [{"cel": {"expression": expression}}],
                            },
                        }
                    ]
                }
            }
        },
    }


def pod(name: str, node: str, template: str) -> dict[str, Any]:
    """A pod for ``node`` (by hostname label) that needs a claim from ``template``."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": node},
            "resourceClaims": [{"name": "gpu", "resourceClaimTemplateName": template}],
            "containers": [
                {
                    "name": "vm",
                    "image": "registry.example/virt-launcher:none",
                    "resources": {"claims": [{"name": "gpu"}]},
                }
            ],
        },
    }


@pytest.fixture
def namespace(kube, unique_name) -> str:
    api = KubeApi(kube.api_client)
    name = unique_name("dra")
    api.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    # The ServiceAccount controller makes "default"; a pod cannot be created before it exists.
    core = k8s_client.CoreV1Api(kube.api_client)
    wait_for(
        lambda: any(
            sa.metadata.name == "default" for sa in core.list_namespaced_service_account(name).items
        ),
        timeout=30,
    )
    return name


@pytest.fixture
def device_classes(kube) -> None:
    result = kube.kubectl("apply", "--server-side", "-f", str(DEVICECLASSES_YAML))
    assert result.returncode == 0, result.stderr


def scheduled_condition(api: KubeApi, namespace: str, name: str) -> dict[str, Any] | None:
    found = api.get(PODS, name, namespace)
    for condition in found.get("status", {}).get("conditions", []):
        if condition["type"] == "PodScheduled":
            return condition
    return None


def placement(api: KubeApi, namespace: str, name: str) -> str | None:
    """The pod's node, else ``None`` while the scheduler has not reported on it."""
    found = api.get(PODS, name, namespace)
    node = found["spec"].get("nodeName")
    if node:
        return str(node)
    condition = scheduled_condition(api, namespace, name)
    if condition is not None and condition["status"] == "False":
        return f"not placed: {condition.get('reason')}: {condition.get('message')}"
    return None


class TestScheduler:
    """The real kube-scheduler allocates devices from our slices."""

    def test_a_pod_gets_a_gpu_from_our_slice(
        self, kube_scheduler, start_publisher, device_classes, namespace
    ):
        """Class + CEL vendor selector: the pod lands on the node, its claim names our GPU."""
        pub = start_publisher(refused=frozenset({HOST_NIC}))
        wait_for(lambda: dra_name(GPU) in pub.published(), timeout=30)
        api = KubeApi(kube_scheduler.api_client)
        vendor = f'device.attributes["{DRIVER_NAME}"].vendorId == "10de"'
        api.create(CLAIM_TEMPLATES, claim_template("one-gpu", vendor), namespace)
        api.create(PODS, pod("vm", pub.node, "one-gpu"), namespace)
        placed = wait_for(lambda: placement(api, namespace, "vm"), timeout=60)
        assert placed == pub.node, placed
        statuses = api.get(PODS, "vm", namespace)["status"]["resourceClaimStatuses"]
        (status,) = statuses
        claim = api.get(CLAIMS, status["resourceClaimName"], namespace)
        (result,) = claim["status"]["allocation"]["devices"]["results"]
        assert {k: result[k] for k in ("request", "driver", "pool", "device")} == {
            "request": "gpu",
            "driver": DRIVER_NAME,
            "pool": pub.node,
            "device": dra_name(GPU),
        }

    def test_no_matching_device_leaves_the_pod_unschedulable(
        self, kube_scheduler, start_publisher, device_classes, namespace
    ):
        """A vendor no device of the node has: the scheduler reports the pod Unschedulable."""
        pub = start_publisher()
        wait_for(lambda: dra_name(GPU) in pub.published(), timeout=30)
        api = KubeApi(kube_scheduler.api_client)
        nowhere = f'device.attributes["{DRIVER_NAME}"].vendorId == "ffff"'
        api.create(CLAIM_TEMPLATES, claim_template("no-gpu", nowhere), namespace)
        api.create(PODS, pod("vm", pub.node, "no-gpu"), namespace)
        condition = wait_for(lambda: scheduled_condition(api, namespace, "vm"), timeout=60)
        assert condition["status"] == "False"
        assert condition["reason"] == "Unschedulable"
        # The node was refused for the claim, not for anything else (taints, resources).
        assert "cannot allocate all claims" in condition["message"], condition["message"]
        assert "nodeName" not in api.get(PODS, "vm", namespace)["spec"]
