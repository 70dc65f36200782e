"""Node restriction: an agent writes only its own node's PCIDevices, claims, Events and slices.

``deploy/agent/node-restriction.yaml`` holds ValidatingAdmissionPolicies keyed on the node that
the agent's pod-bound service-account token names. Here two Nodes each get a Pod made from the
agent DaemonSet's pod template (no kubelet runs it); a TokenRequest bound to each Pod is that
node's agent identity, exactly what the kubelet would put in the pod's projected token. The
module applies the namespace, ServiceAccount, RBAC and policies of ``deploy/`` for real and
removes them at its end, so no other module runs under the policies.
"""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException

from fakesys.background import stop_agent, stop_before_report
from fakesys.hosts import FREE_NIC, STATE, workstation
from fakesys.kernel import FakeKernel
from fakesys.tree import FakeDevice, SysfsTree
from harness.identity import applied, kubectl_ok, service_account_client
from harness.kube import REPO_ROOT, KubeCluster
from kube_events import wait_for_events
from pcidevices.wiring.agent import AgentConfig, agent_injector
from pcioperator.agent import Agent
from pcioperator.kube.api import (
    EVENTS,
    NODES,
    PCIDEVICECLAIMS,
    PCIDEVICES,
    RESOURCESLICES,
    SRIOVNETWORKDEVICES,
    USBDEVICECLAIMS,
    USBDEVICES,
    KubeApi,
    Resource,
)
from pcioperator.kube.errors import ApiError, NotFoundError
from polling import wait_for

pytestmark = pytest.mark.kube

GROUP = "devices.harvesterhci.io"
VERSION = "v1beta1"
DEPLOY = REPO_ROOT / "deploy"
NAMESPACE = "pcidevices-system"
SERVICE_ACCOUNT = "pcidevices-agent"
MANIFESTS = (
    DEPLOY / "namespace.yaml",
    DEPLOY / "agent" / "serviceaccount.yaml",
    DEPLOY / "agent" / "rbac.yaml",
    DEPLOY / "agent" / "node-restriction.yaml",
)
POLICIES = (
    "pcidevices-agent-devices",
    "pcidevices-agent-claims",
    "pcidevices-agent-events",
    "pcidevices-agent-sriov",
    "pcidevices-agent-resourceslices",
    "pcidevices-agent-usb",
)
AGENT_USER = f"system:serviceaccount:{NAMESPACE}:{SERVICE_ACCOUNT}"
NODE_NAME_EXTRA = "authentication.kubernetes.io/node-name"
SERVICE_ACCOUNT_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
EVENT_NAMESPACE = "default"
FINALIZER = "devices.harvesterhci.io/return-device"
# A device no fixture or agent publishes: the address of writes that create a new object.
SPARE = "0000:07:00.0"
NO_NODE = "its token names no node"


def compact(address: str) -> str:
    return address.replace(":", "").replace(".", "")


def device_name(node: str, address: str) -> str:
    return f"{node}-{compact(address)}"


def device_body(name: str, label: str) -> dict[str, object]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "PCIDevice",
        "metadata": {"name": name, "labels": {"nodename": label}},
    }


def device_status(node: str, address: str) -> dict[str, object]:
    return {
        "address": address,
        "vendorId": "8086",
        "deviceId": "1533",
        "classId": "0200",
        "iommuGroup": "5",
        "nodeName": node,
        "resourceName": "intel.com/I210_GIGABIT_NETWORK_CONNECTION",
        "description": "Ethernet controller: Intel Corporation I210 Gigabit Network Connection",
        "kernelDriverInUse": "igb",
    }


def event_body(about: str, host: str) -> dict[str, object]:
    """An Event as pcioperator.kube.events writes it: about claim ``about``, from node ``host``."""
    now = "2026-01-01T00:00:00Z"
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{about}.{uuid.uuid4().hex[:16]}", "namespace": EVENT_NAMESPACE},
        "involvedObject": {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "PCIDeviceClaim",
            "name": about,
        },
        "type": "Normal",
        "reason": "BoundToVfio",
        "message": "bound",
        "source": {"component": "pcidevices-agent", "host": host},
        "reportingComponent": "pcidevices-agent",
        "reportingInstance": f"pcidevices-agent-{host}",
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


# --- the two nodes and their agents' pods -------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class AgentPod:
    """A Node and the agent Pod bound to it (made from the DaemonSet's pod template)."""

    node: str
    pod: k8s_client.V1Pod


def agent_pod_template(kube: KubeCluster) -> dict[str, object]:
    built = kubectl_ok(kube, "kustomize", str(DEPLOY))
    (daemonset,) = [
        doc for doc in yaml.safe_load_all(built) if doc and doc.get("kind") == "DaemonSet"
    ]
    template: dict[str, object] = daemonset["spec"]["template"]
    return template


def agent_pod_on(template: dict[str, object], node: str) -> dict[str, object]:
    """The DaemonSet's pod for ``node``, as its controller would create it (scheduled there)."""
    metadata = dict(template["metadata"])
    spec = dict(template["spec"])
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {**metadata, "name": f"pcidevices-agent-{node}", "namespace": NAMESPACE},
        "spec": {**spec, "nodeName": node},
    }


def refused_by_policy(call: Callable[[], object]) -> bool:
    """Whether ``call`` is refused by a ValidatingAdmissionPolicy (403)."""
    try:
        call()
    except ApiException as err:
        return err.status == 403 and "ValidatingAdmissionPolicy" in str(err.body)
    return False


def policy_probes(
    client: k8s_client.ApiClient, probe: str, theirs: str
) -> tuple[Callable[[], object], ...]:
    """One dry-run write per policy, on node ``theirs``'s objects: each changes nothing."""
    custom = k8s_client.CustomObjectsApi(client)
    core = k8s_client.CoreV1Api(client)
    return (
        lambda: custom.create_cluster_custom_object(
            GROUP, VERSION, "pcidevices", device_body(probe, theirs), dry_run="All"
        ),
        lambda: custom.patch_cluster_custom_object_status(
            GROUP,
            VERSION,
            "pcideviceclaims",
            probe,
            {"status": {}},
            dry_run="All",
            _content_type="application/merge-patch+json",
        ),
        lambda: core.create_namespaced_event(
            EVENT_NAMESPACE, event_body(probe, theirs), dry_run="All"
        ),
    )


def wait_policies_in_force(kube: KubeCluster, mine: AgentPod, theirs: AgentPod) -> None:
    """Wait until the API server enforces all three policies (they load asynchronously).

    A policy is in force once it refuses either of two dry-run probes: ``mine``'s agent
    writing ``theirs``'s object, or the agent with a token that names no node writing it. Either
    refusal proves the policy loaded, so a policy that lost one of its checks still loads and
    the tests of that check are the ones that fail.
    """
    admin = KubeApi(kube.api_client)
    probe = device_name(theirs.node, "0000:ff:1f.7")
    admin.create(
        PCIDEVICECLAIMS,
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "PCIDeviceClaim",
            "metadata": {"name": probe},
            "spec": {"address": "0000:ff:1f.7", "nodeName": theirs.node, "userName": "probe"},
        },
    )
    try:
        with (
            service_account_client(kube, NAMESPACE, SERVICE_ACCOUNT, mine.pod) as on_mine,
            service_account_client(kube, NAMESPACE, SERVICE_ACCOUNT) as on_no_node,
        ):
            for pair in zip(
                policy_probes(on_mine, probe, theirs.node),
                policy_probes(on_no_node, probe, theirs.node),
                strict=True,
            ):
                wait_for(
                    lambda pair=pair: any(refused_by_policy(call) for call in pair),
                    timeout=60,
                    interval=0.2,
                )
    finally:
        admin.delete(PCIDEVICECLAIMS, probe)


@pytest.fixture(scope="module")
def restricted(kube_cluster: KubeCluster) -> Iterator[KubeCluster]:
    """The cluster with the agent's namespace, ServiceAccount, RBAC and node policies applied."""
    with applied(kube_cluster, NAMESPACE, MANIFESTS) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def two_nodes(restricted: KubeCluster) -> Iterator[tuple[AgentPod, AgentPod]]:
    """Nodes A and B, each with an agent Pod on it; the policies are in force."""
    admin = KubeApi(restricted.api_client)
    core = k8s_client.CoreV1Api(restricted.api_client)
    template = agent_pod_template(restricted)
    made: list[AgentPod] = []
    try:
        for letter in "ab":
            node = f"node-{letter}-{secrets.token_hex(3)}"
            admin.create(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}})
            pod = core.create_namespaced_pod(NAMESPACE, agent_pod_on(template, node))
            made.append(AgentPod(node, pod))
        a, b = made
        wait_policies_in_force(restricted, a, b)
        yield a, b
    finally:
        for agent_pod in made:
            # No kubelet confirms a graceful deletion here: delete at once.
            core.delete_namespaced_pod(
                agent_pod.pod.metadata.name, NAMESPACE, grace_period_seconds=0
            )
            with contextlib.suppress(NotFoundError):
                admin.delete(NODES, agent_pod.node)


@contextlib.contextmanager
def agent_api(kube: KubeCluster, bound_to: AgentPod | None) -> Iterator[KubeApi]:
    """The agent's ServiceAccount with a token bound to ``bound_to``'s pod, or to nothing."""
    pod = bound_to.pod if bound_to is not None else None
    with service_account_client(kube, NAMESPACE, SERVICE_ACCOUNT, pod) as client:
        yield KubeApi(client)


# --- objects of each node, created by an administrator -----------------------------------------


@dataclasses.dataclass(frozen=True)
class NodeObjects:
    """A node, a PCIDevice of it and a claim on that device (same name), made by the admin."""

    node: str
    device: str


def make_node_objects(admin: KubeApi, node: str) -> NodeObjects:
    name = device_name(node, FREE_NIC)
    admin.create(PCIDEVICES, device_body(name, node))
    admin.patch(PCIDEVICES, name, {"status": device_status(node, FREE_NIC)}, subresource="status")
    admin.create(
        PCIDEVICECLAIMS,
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "PCIDeviceClaim",
            "metadata": {"name": name},
            "spec": {"address": FREE_NIC, "nodeName": node, "userName": "alice"},
        },
    )
    return NodeObjects(node, name)


@pytest.fixture
def objects(
    two_nodes: tuple[AgentPod, AgentPod], kube: KubeCluster
) -> tuple[KubeApi, NodeObjects, NodeObjects]:
    """The admin's API, and a device and claim on each node (removed by ``kube`` afterwards)."""
    admin = KubeApi(kube.api_client)
    a, b = two_nodes
    return admin, make_node_objects(admin, a.node), make_node_objects(admin, b.node)


def snapshot(admin: KubeApi, resource: Resource, name: str, namespace: str | None) -> str | None:
    """The object's resourceVersion, or None when it does not exist."""
    try:
        return str(admin.get(resource, name, namespace)["metadata"]["resourceVersion"])
    except NotFoundError:
        return None


# --- the identity the agent's pod gets -----------------------------------------------------------


class TestPodBoundToken:
    """The agent's pod carries a token bound to it, and that token names the pod's node."""

    def test_agent_pod_mounts_a_projected_service_account_token(self, two_nodes):
        """The API server gives the DaemonSet's pod a projected token where the client looks."""
        pod = two_nodes[0].pod
        projected = {
            volume.name
            for volume in pod.spec.volumes
            if volume.projected is not None
            and any(source.service_account_token for source in volume.projected.sources)
        }
        (container,) = pod.spec.containers
        mounted = {
            mount.name
            for mount in container.volume_mounts
            if mount.mount_path == SERVICE_ACCOUNT_MOUNT
        }
        assert mounted
        assert mounted <= projected
        assert pod.spec.automount_service_account_token is True

    def test_token_bound_to_the_pod_names_its_node(self, two_nodes, kube):
        """A token bound to each agent pod authenticates as the agent, on that pod's node."""
        for agent_pod in two_nodes:
            with service_account_client(kube, NAMESPACE, SERVICE_ACCOUNT, agent_pod.pod) as client:
                review = k8s_client.AuthenticationV1Api(client).create_self_subject_review(
                    k8s_client.V1SelfSubjectReview()
                )
            user = review.status.user_info
            assert user.username == AGENT_USER
            assert user.extra[NODE_NAME_EXTRA] == [agent_pod.node]

    def test_unbound_token_names_no_node(self, two_nodes, kube):
        """A token bound to no pod is the agent's ServiceAccount, on no node."""
        with service_account_client(kube, NAMESPACE, SERVICE_ACCOUNT) as client:
            review = k8s_client.AuthenticationV1Api(client).create_self_subject_review(
                k8s_client.V1SelfSubjectReview()
            )
        user = review.status.user_info
        assert user.username == AGENT_USER
        assert NODE_NAME_EXTRA not in (user.extra or {})


class TestPolicies:
    """The shipped policies are accepted by the API server as written."""

    @pytest.mark.parametrize("name", POLICIES)
    def test_policy_type_checks_clean(self, two_nodes, kube, name):
        """The API server found no expression that does not type-check."""
        policies = k8s_client.AdmissionregistrationV1Api(kube.api_client)

        def checked():
            policy = policies.read_validating_admission_policy(name)
            status = policy.status
            if status is None or status.observed_generation != policy.metadata.generation:
                return None
            return status

        status = wait_for(checked, timeout=60, interval=0.2)
        warnings = status.type_checking.expression_warnings if status.type_checking else None
        assert not warnings


# --- two real agents, one per node ---------------------------------------------------------------

HOST_B = Path("/hosts/b")


def small_host(fs: object) -> FakeKernel:
    """Node B's fake host under ``/hosts/b``: a host bridge and a free NIC on igb."""
    tree = SysfsTree(HOST_B / "sys").add(
        FakeDevice("0000:00:00.0", 0x8086, 0x3E30, 0x060000, iommu_group=0),
        FakeDevice(FREE_NIC, 0x8086, 0x1533, 0x020000, driver="igb", iommu_group=5),
    )
    kernel = FakeKernel(fs, tree, proc=HOST_B / "proc", dev=HOST_B / "dev")
    fs.create_file(
        str(HOST_B / "proc" / "net" / "route"),
        contents="Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n",
    )
    fs.create_file(str(HOST_B / "proc" / "mounts"), contents="proc /proc proc rw 0 0\n")
    return kernel


@dataclasses.dataclass(frozen=True)
class RunningAgent:
    """An agent running for ``node``, and how to read a device's driver on its fake host."""

    node: str
    agent: Agent
    driver: Callable[[str], str | None]


def devices_of(admin: KubeApi, node: str) -> dict[str, dict[str, object]]:
    items, _ = admin.list_objects(PCIDEVICES, label_selector=f"nodename={node}")
    return {item["metadata"]["name"]: item for item in items}


def published(admin: KubeApi, node: str, count: int) -> dict[str, dict[str, object]]:
    """``node``'s devices once there are ``count`` and each has its status, else nothing."""
    devices = devices_of(admin, node)
    if len(devices) != count:
        return {}
    if any(device.get("status", {}).get("nodeName") != node for device in devices.values()):
        return {}
    return devices


@pytest.fixture
def two_agents(request, two_nodes, kube, fake_fs, pci_ids):
    """The real agents of node A (the workstation) and node B (a small host), on own tokens.

    Each authenticates with a token bound to its own node's pod.
    """
    a, b = two_nodes
    host_a = workstation(fake_fs)
    kernel_b = small_host(fake_fs)
    configs = (
        AgentConfig(
            node=a.node,
            state_file=STATE,
            metrics_address=None,
            device_plugin=False,
            rescan_interval=0.5,
        ),
        AgentConfig(
            node=b.node,
            sysfs=HOST_B / "sys",
            proc=HOST_B / "proc",
            dev_root=HOST_B / "dev",
            state_file=HOST_B / "state" / "claims.json",
            metrics_address=None,
            device_plugin=False,
            rescan_interval=0.5,
        ),
    )
    with contextlib.ExitStack() as stack:
        running = []
        for agent_pod, config, driver in zip(
            two_nodes, configs, (host_a.driver, kernel_b.driver_of), strict=True
        ):
            client = stack.enter_context(
                service_account_client(kube, NAMESPACE, SERVICE_ACCOUNT, agent_pod.pod)
            )
            agent = agent_injector(config, client, pci_ids).get(Agent)
            agent.start()
            stop_before_report(request, lambda agent=agent: stop_agent(agent))
            stack.callback(stop_agent, agent)  # already stopped unless the test never ended
            running.append(RunningAgent(agent_pod.node, agent, driver))
        for each in running:
            wait_for(each.agent.ready, timeout=60)
        yield running


class TestAgentsAtWork:
    """Under the policies, each agent does its normal work on its own node."""

    def test_each_agent_publishes_its_devices_and_binds_its_claim(self, two_agents, kube):
        """Both nodes' devices appear; a claim on each node binds and is released; no refusals."""
        admin = KubeApi(kube.api_client)
        a, b = two_agents
        for each, count in ((a, 7), (b, 2)):  # a: the workstation less its root port (a bridge)
            devices = wait_for(
                lambda each=each, count=count: published(admin, each.node, count), 60
            )
            assert all(name.startswith(f"{each.node}-") for name in devices)
        for each in (a, b):
            admin.create(
                PCIDEVICECLAIMS,
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "PCIDeviceClaim",
                    "metadata": {"name": device_name(each.node, FREE_NIC)},
                    "spec": {"address": FREE_NIC, "nodeName": each.node, "userName": "alice"},
                },
            )
        for each in (a, b):
            name = device_name(each.node, FREE_NIC)
            wait_for(
                lambda name=name: (
                    admin.get(PCIDEVICECLAIMS, name).get("status", {}).get("passthroughEnabled")
                ),
                timeout=60,
            )
            claim = admin.get(PCIDEVICECLAIMS, name)
            assert FINALIZER in claim["metadata"]["finalizers"]
            assert each.driver(FREE_NIC) == "vfio-pci"
            wait_for(
                lambda each=each, name=name: (
                    devices_of(admin, each.node)[name]["status"]["kernelDriverInUse"] == "vfio-pci"
                ),
                timeout=60,
            )

        def reported(events):
            seen = {(e["involvedObject"]["name"], e.get("source", {}).get("host")) for e in events}
            return all((device_name(each.node, FREE_NIC), each.node) in seen for each in (a, b))

        wait_for_events(admin, reported, namespace=EVENT_NAMESPACE)
        for each in (a, b):
            admin.delete(PCIDEVICECLAIMS, device_name(each.node, FREE_NIC))
        for each in (a, b):
            name = device_name(each.node, FREE_NIC)
            wait_for(lambda name=name: snapshot(admin, PCIDEVICECLAIMS, name, None) is None, 60)
            assert each.driver(FREE_NIC) == "igb"
        for each in (a, b):
            assert each.agent.queue.failures("claims") == 0
            assert each.agent.queue.failures("devices") == 0


# --- every write across nodes, one by one --------------------------------------------------------

MINE, THEIRS = "mine", "theirs"
# What the policies say about the object, after 'may not <verb> <kind> "<name>": '.
NOT_MY_NAME = 'its name is not "{mine}-<address>"'
BELONGS_ELSEWHERE = 'it belongs to another node (nodename label "{theirs}"'
WOULD_NAME = 'the result would not name this node (nodename label "{theirs}"'
WOULD_NAME_BY_STATUS = (
    'the result would not name this node (nodename label "{mine}", status.nodeName "{theirs}")'
)
CLAIM_ELSEWHERE = 'the claim is for node "{theirs}"'
VERBS = {"create": "create", "patch": "change", "status": "write the status of", "delete": "delete"}


def fill(template: object, **names: str) -> object:
    """``template`` with ``{mine}``, ``{theirs}`` and ``{target}`` filled in every string."""
    if isinstance(template, str):
        return template.format(**names)
    if isinstance(template, dict):
        return {key: fill(value, **names) for key, value in template.items()}
    return template


@dataclasses.dataclass(frozen=True)
class Write:
    """One write by node A's agent, described as data.

    Attributes:
        id: The test id.
        operation: ``create``, ``patch`` (main resource), ``status`` (subresource) or ``delete``.
        resource: PCIDevices or PCIDeviceClaims.
        owner: Whose node the target's name carries, `MINE` or `THEIRS`.
        address: FREE_NIC (the fixture's objects) or SPARE (an object that does not exist).
        body: The created object or the merge patch; ``{mine}``, ``{theirs}`` and ``{target}``
            stand for the two nodes and the target's name.
        why: The refusal's reason, with ``{mine}`` and ``{theirs}``.
    """

    id: str
    operation: str
    resource: Resource
    owner: str
    address: str
    body: dict[str, object]
    why: str

    def target(self, mine: NodeObjects, theirs: NodeObjects) -> str:
        """The name of the object written."""
        return device_name(mine.node if self.owner == MINE else theirs.node, self.address)

    def perform(self, api: KubeApi, mine: NodeObjects, theirs: NodeObjects) -> None:
        """Make the write."""
        name = self.target(mine, theirs)
        body = fill(self.body, mine=mine.node, theirs=theirs.node, target=name)
        assert isinstance(body, dict)
        if self.operation == "create":
            api.create(self.resource, body)
        elif self.operation == "delete":
            api.delete(self.resource, name)
        else:
            subresource = "status" if self.operation == "status" else None
            api.patch(self.resource, name, body, subresource=subresource)

    def refusal(self, mine: NodeObjects, theirs: NodeObjects) -> str:
        """The start of the policy's message."""
        return (
            f'the pcidevices agent on node "{mine.node}" may not {VERBS[self.operation]} '
            f'{self.resource.kind} "{self.target(mine, theirs)}": '
            + self.why.format(mine=mine.node, theirs=theirs.node)
        )


def new_device(label: str) -> dict[str, object]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "PCIDevice",
        "metadata": {"name": "{target}", "labels": {"nodename": label}},
    }


CLAIM_STATUS = {"status": {"passthroughEnabled": True, "kernelDriverToUnbind": "igb"}}
ADD_FINALIZER = {"metadata": {"finalizers": [FINALIZER]}}
ANNOTATE = {"metadata": {"annotations": {"harvesterhci.io/pcideviceDriver": "vfio-pci"}}}

CROSS_NODE = (
    Write(
        "create-a-device-of-the-other-node",
        "create", PCIDEVICES, THEIRS, SPARE, new_device("{theirs}"), NOT_MY_NAME,
    ),
    Write(
        "create-a-device-named-for-this-node-labelled-for-the-other",
        "create", PCIDEVICES, MINE, SPARE, new_device("{theirs}"), WOULD_NAME,
    ),
    Write(
        "create-a-device-named-for-the-other-node-labelled-for-this",
        "create", PCIDEVICES, THEIRS, SPARE, new_device("{mine}"), NOT_MY_NAME,
    ),
    Write(
        "patch-the-other-nodes-device",
        "patch", PCIDEVICES, THEIRS, FREE_NIC, ANNOTATE, NOT_MY_NAME,
    ),
    Write(
        "patch-the-status-of-the-other-nodes-device",
        "status", PCIDEVICES, THEIRS, FREE_NIC,
        {"status": {"kernelDriverInUse": "vfio-pci"}}, NOT_MY_NAME,
    ),
    Write(
        "add-a-finalizer-to-the-other-nodes-device",
        "patch", PCIDEVICES, THEIRS, FREE_NIC, ADD_FINALIZER, NOT_MY_NAME,
    ),
    Write(
        "delete-the-other-nodes-device",
        "delete", PCIDEVICES, THEIRS, FREE_NIC, {}, NOT_MY_NAME,
    ),
    Write(
        "move-this-nodes-device-to-the-other-by-label",
        "patch", PCIDEVICES, MINE, FREE_NIC,
        {"metadata": {"labels": {"nodename": "{theirs}"}}}, WOULD_NAME,
    ),
    Write(
        "move-this-nodes-device-to-the-other-by-status",
        "status", PCIDEVICES, MINE, FREE_NIC,
        {"status": {"nodeName": "{theirs}"}}, WOULD_NAME_BY_STATUS,
    ),
    Write(
        "patch-the-status-of-the-other-nodes-claim",
        "status", PCIDEVICECLAIMS, THEIRS, FREE_NIC, CLAIM_STATUS, CLAIM_ELSEWHERE,
    ),
    Write(
        "add-a-finalizer-to-the-other-nodes-claim",
        "patch", PCIDEVICECLAIMS, THEIRS, FREE_NIC, ADD_FINALIZER, CLAIM_ELSEWHERE,
    ),
)  # fmt: skip


# Devices named for node A whose label or status says node B (made so by an administrator).
INCONSISTENT = (
    (
        "{theirs}",
        None,
        Write(
            "relabel-a-device-labelled-for-the-other-node", "patch", PCIDEVICES, MINE, SPARE,
            {"metadata": {"labels": {"nodename": "{mine}"}}}, BELONGS_ELSEWHERE,
        ),
    ),
    (
        "{mine}",
        "{theirs}",
        Write(
            "annotate-a-device-whose-status-names-the-other-node",
            "patch", PCIDEVICES, MINE, SPARE, ANNOTATE,
            'it belongs to another node (nodename label "{mine}", status.nodeName "{theirs}")',
        ),
    ),
)  # fmt: skip


class TestCrossNodeWritesDenied:
    """Node A's agent cannot write node B's objects, nor move its own objects to node B."""

    @pytest.mark.parametrize("write", CROSS_NODE, ids=lambda write: write.id)
    def test_write_is_denied_and_changes_nothing(self, two_nodes, objects, kube, write):
        """The API server refuses with the policy's message; the object is as it was."""
        admin, mine, theirs = objects
        name = write.target(mine, theirs)
        before = snapshot(admin, write.resource, name, None)
        with agent_api(kube, two_nodes[0]) as api, pytest.raises(ApiError) as refused:
            write.perform(api, mine, theirs)
        assert refused.value.status == 403
        assert write.refusal(mine, theirs) in str(refused.value)
        assert snapshot(admin, write.resource, name, None) == before

    @pytest.mark.parametrize(
        ("label", "status_node", "write"), INCONSISTENT, ids=[case[2].id for case in INCONSISTENT]
    )
    def test_a_device_named_for_this_node_that_says_the_other_is_not_this_nodes(  # noqa: PLR0917 - fixtures and parameters
        self, two_nodes, objects, kube, label, status_node, write
    ):
        """Name, label and status must agree: a device that names node B is not A's to fix."""
        admin, mine, theirs = objects
        name = write.target(mine, theirs)
        body = fill(new_device(label), mine=mine.node, theirs=theirs.node, target=name)
        assert isinstance(body, dict)
        admin.create(PCIDEVICES, body)
        if status_node is not None:
            status = device_status(status_node.format(theirs=theirs.node), SPARE)
            admin.patch(PCIDEVICES, name, {"status": status}, subresource="status")
        before = snapshot(admin, PCIDEVICES, name, None)
        with agent_api(kube, two_nodes[0]) as api, pytest.raises(ApiError) as refused:
            write.perform(api, mine, theirs)
        assert refused.value.status == 403
        assert write.refusal(mine, theirs) in str(refused.value)
        assert snapshot(admin, PCIDEVICES, name, None) == before

    def test_an_event_in_the_other_nodes_name_is_denied(self, two_nodes, objects, kube):
        """Node A's agent cannot record an Event that says node B reported it."""
        admin, mine, theirs = objects
        body = event_body(theirs.device, theirs.node)
        name = str(body["metadata"]["name"])
        with agent_api(kube, two_nodes[0]) as api, pytest.raises(ApiError) as refused:
            api.create(EVENTS, body, namespace=EVENT_NAMESPACE)
        assert refused.value.status == 403
        assert (
            f'the pcidevices agent on node "{mine.node}" may not write Event "{name}": '
            f'it must name this node as its source (source.host "{theirs.node}")'
        ) in str(refused.value)
        assert snapshot(admin, EVENTS, name, EVENT_NAMESPACE) is None


class TestOwnNodeWritesAllowed:
    """Every write the agent makes on its own node's objects still passes."""

    def test_device_life_cycle(self, two_nodes, objects, kube):
        """Create, relabel, annotate, write status, add and remove a finalizer, delete."""
        admin, mine, _theirs = objects
        name = device_name(mine.node, SPARE)
        with agent_api(kube, two_nodes[0]) as api:
            api.create(PCIDEVICES, device_body(name, mine.node))
            api.patch(
                PCIDEVICES, name, {"status": device_status(mine.node, SPARE)}, subresource="status"
            )
            api.patch(
                PCIDEVICES,
                name,
                {"metadata": {"annotations": {"harvesterhci.io/pcideviceDriver": "igb"}}},
            )
            api.patch(PCIDEVICES, name, {"metadata": {"finalizers": [FINALIZER]}})
            written = admin.get(PCIDEVICES, name)
            api.patch(PCIDEVICES, name, {"metadata": {"finalizers": None}})
            api.delete(PCIDEVICES, name)
        assert written["metadata"]["labels"]["nodename"] == mine.node
        assert written["metadata"]["annotations"]["harvesterhci.io/pcideviceDriver"] == "igb"
        assert written["metadata"]["finalizers"] == [FINALIZER]
        assert written["status"]["nodeName"] == mine.node
        assert snapshot(admin, PCIDEVICES, name, None) is None

    def test_a_device_whose_label_was_removed_is_adopted_again(self, two_nodes, objects, kube):
        """The node's agent may put the nodename label back on its own device."""
        admin, mine, _theirs = objects
        admin.patch(PCIDEVICES, mine.device, {"metadata": {"labels": {"nodename": None}}})
        with agent_api(kube, two_nodes[0]) as api:
            api.patch(PCIDEVICES, mine.device, {"metadata": {"labels": {"nodename": mine.node}}})
        assert admin.get(PCIDEVICES, mine.device)["metadata"]["labels"]["nodename"] == mine.node

    def test_claim_finalizer_and_status(self, two_nodes, objects, kube):
        """The agent adds its finalizer to its node's claim and reports passthrough."""
        admin, mine, _theirs = objects
        with agent_api(kube, two_nodes[0]) as api:
            api.patch(PCIDEVICECLAIMS, mine.device, {"metadata": {"finalizers": [FINALIZER]}})
            api.patch(
                PCIDEVICECLAIMS,
                mine.device,
                {"status": {"passthroughEnabled": True, "kernelDriverToUnbind": "igb"}},
                subresource="status",
            )
        claim = admin.get(PCIDEVICECLAIMS, mine.device)
        assert claim["metadata"]["finalizers"] == [FINALIZER]
        assert claim["status"]["passthroughEnabled"] is True

    def test_event_from_this_node(self, two_nodes, objects, kube):
        """The agent records an Event that names its own node as the source."""
        admin, mine, _theirs = objects
        body = event_body(mine.device, mine.node)
        with agent_api(kube, two_nodes[0]) as api:
            api.create(EVENTS, body, namespace=EVENT_NAMESPACE)
        name = body["metadata"]["name"]
        assert admin.get(EVENTS, name, EVENT_NAMESPACE)["source"]["host"] == mine.node


class TestTokenWithoutNode:
    """The agent's ServiceAccount with a token bound to no pod may write nothing."""

    def test_every_write_is_denied(self, two_nodes, objects, kube):
        """Device create and patch, claim status and an Event are all refused."""
        admin, mine, _theirs = objects
        event = event_body(mine.device, mine.node)
        writes: tuple[tuple[Callable[[KubeApi], object], str], ...] = (
            (
                lambda api: api.create(
                    PCIDEVICES, device_body(device_name(mine.node, SPARE), mine.node)
                ),
                f'the pcidevices agent may not create PCIDevice "{device_name(mine.node, SPARE)}"',
            ),
            (
                lambda api: api.patch(
                    PCIDEVICES, mine.device, {"metadata": {"labels": {"extra": "x"}}}
                ),
                f'the pcidevices agent may not change PCIDevice "{mine.device}"',
            ),
            (
                lambda api: api.patch(
                    PCIDEVICECLAIMS,
                    mine.device,
                    {"status": {"passthroughEnabled": True}},
                    subresource="status",
                ),
                f'the pcidevices agent may not write the status of PCIDeviceClaim "{mine.device}"',
            ),
            (
                lambda api: api.create(EVENTS, event, namespace=EVENT_NAMESPACE),
                f'the pcidevices agent may not write Event "{event["metadata"]["name"]}"',
            ),
        )
        before = {
            resource: snapshot(admin, resource, mine.device, None)
            for resource in (PCIDEVICES, PCIDEVICECLAIMS)
        }
        with agent_api(kube, None) as api:
            for write, message in writes:
                with pytest.raises(ApiError) as refused:
                    write(api)
                assert refused.value.status == 403
                assert f"{message}: {NO_NODE}" in str(refused.value)
        assert snapshot(admin, PCIDEVICES, device_name(mine.node, SPARE), None) is None
        assert snapshot(admin, EVENTS, event["metadata"]["name"], EVENT_NAMESPACE) is None
        assert {
            resource: snapshot(admin, resource, mine.device, None)
            for resource in (PCIDEVICES, PCIDEVICECLAIMS)
        } == before


class TestOthersUnaffected:
    """The policies judge only the agent's ServiceAccount."""

    def test_another_service_account_with_the_agents_role_writes_any_node(
        self, two_nodes, objects, kube
    ):
        """A different identity holding the same ClusterRole, on no node, is not restricted."""
        admin, _mine, theirs = objects
        core = k8s_client.CoreV1Api(kube.api_client)
        rbac = k8s_client.RbacAuthorizationV1Api(kube.api_client)
        other = f"not-the-agent-{secrets.token_hex(3)}"
        core.create_namespaced_service_account(
            NAMESPACE, k8s_client.V1ServiceAccount(metadata=k8s_client.V1ObjectMeta(name=other))
        )
        rbac.create_cluster_role_binding(
            k8s_client.V1ClusterRoleBinding(
                metadata=k8s_client.V1ObjectMeta(name=other),
                role_ref=k8s_client.V1RoleRef(
                    api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=SERVICE_ACCOUNT
                ),
                subjects=[
                    k8s_client.RbacV1Subject(kind="ServiceAccount", name=other, namespace=NAMESPACE)
                ],
            )
        )
        try:
            with service_account_client(kube, NAMESPACE, other) as client:
                KubeApi(client).patch(
                    PCIDEVICES,
                    theirs.device,
                    {"status": {"kernelDriverInUse": "vfio-pci"}},
                    subresource="status",
                )
        finally:
            rbac.delete_cluster_role_binding(other)
            core.delete_namespaced_service_account(other, NAMESPACE)
        assert admin.get(PCIDEVICES, theirs.device)["status"]["kernelDriverInUse"] == "vfio-pci"

    def test_an_administrator_writes_any_node(self, two_nodes, objects):
        """A cluster administrator changes and deletes another node's device and claim."""
        admin, _mine, theirs = objects
        admin.patch(
            PCIDEVICECLAIMS,
            theirs.device,
            {"status": {"passthroughEnabled": False, "kernelDriverToUnbind": "igb"}},
            subresource="status",
        )
        admin.delete(PCIDEVICES, theirs.device)
        assert admin.get(PCIDEVICECLAIMS, theirs.device)["status"]["passthroughEnabled"] is False
        assert snapshot(admin, PCIDEVICES, theirs.device, None) is None


def sriov_body(name: str, node: str) -> dict[str, object]:
    """An SRIOVNetworkDevice of ``node``, as the agent creates one."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "SRIOVNetworkDevice",
        "metadata": {"name": name, "labels": {"nodename": node}},
        "spec": {"address": SPARE, "nodeName": node, "numVFs": 0},
    }


SRIOV_STATUS = {"status": {"status": "sriovNetworkDeviceDisabled"}}


class TestSriovNetworkDevices:
    """An agent creates, reports on and deletes only its own node's SRIOVNetworkDevices."""

    def test_own_node_life_cycle(self, two_nodes, kube):
        """Create, write the status, delete: all allowed on the agent's own node."""
        admin = KubeApi(kube.api_client)
        mine = two_nodes[0].node
        name = f"{mine}-enp6s0"
        with agent_api(kube, two_nodes[0]) as api:
            api.create(SRIOVNETWORKDEVICES, sriov_body(name, mine))
            api.patch(SRIOVNETWORKDEVICES, name, SRIOV_STATUS, subresource="status")
            written = admin.get(SRIOVNETWORKDEVICES, name)
            api.delete(SRIOVNETWORKDEVICES, name)
        assert written["status"]["status"] == "sriovNetworkDeviceDisabled"
        assert snapshot(admin, SRIOVNETWORKDEVICES, name, None) is None

    def test_the_other_nodes_objects_are_refused(self, two_nodes, kube):
        """Creating one for node B, or writing or deleting B's, is refused; B's is unchanged."""
        admin = KubeApi(kube.api_client)
        mine, theirs = two_nodes[0].node, two_nodes[1].node
        name = f"{theirs}-enp6s0"
        admin.create(SRIOVNETWORKDEVICES, sriov_body(name, theirs))
        try:
            before = snapshot(admin, SRIOVNETWORKDEVICES, name, None)
            pod = two_nodes[0].pod
            with service_account_client(kube, NAMESPACE, SERVICE_ACCOUNT, pod) as client:
                custom = k8s_client.CustomObjectsApi(client)
                probe = sriov_body(f"{name}x", theirs)
                # The policy loads asynchronously: wait until it refuses a dry-run create.
                wait_for(
                    lambda: refused_by_policy(
                        lambda: custom.create_cluster_custom_object(
                            GROUP, VERSION, "sriovnetworkdevices", probe, dry_run="All"
                        )
                    ),
                    timeout=60,
                    interval=0.2,
                )
            with agent_api(kube, two_nodes[0]) as api:
                for write in (
                    lambda: api.patch(
                        SRIOVNETWORKDEVICES, name, SRIOV_STATUS, subresource="status"
                    ),
                    lambda: api.delete(SRIOVNETWORKDEVICES, name),
                ):
                    with pytest.raises(ApiError) as refused:
                        write()
                    assert refused.value.status == 403
                    assert f'the pcidevices agent on node "{mine}" may not' in str(refused.value)
                    assert f'it is on node "{theirs}"' in str(refused.value)
            assert snapshot(admin, SRIOVNETWORKDEVICES, name, None) == before
        finally:
            admin.delete(SRIOVNETWORKDEVICES, name)


def slice_body(name: str, node: str, driver: str = "pci.devices.harvesterhci.io") -> dict:
    """A ResourceSlice of ``node``'s pool, as the agent's DRA sync writes one."""
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceSlice",
        "metadata": {"name": name},
        "spec": {
            "driver": driver,
            "nodeName": node,
            "pool": {"name": node, "generation": 1, "resourceSliceCount": 1},
            "devices": [
                {"name": "pci-0000-03-00-0", "attributes": {"vendorId": {"string": "8086"}}}
            ],
        },
    }


def slice_refused(call: Callable[[], object], text: str) -> bool:
    """Whether ``call`` is refused (403) with ``text`` in the answer."""
    try:
        call()
    except ApiError as err:
        return err.status == 403 and text in str(err)
    return False


class TestResourceSlices:
    """An agent creates, replaces and deletes only its own node's ResourceSlices of our driver."""

    def test_own_node_life_cycle(self, two_nodes, kube):
        """Create, list by field selector, replace, delete: allowed on its own node (RBAC too)."""
        admin = KubeApi(kube.api_client)
        mine = two_nodes[0].node
        name = f"{mine}-pci.devices.harvesterhci.io-0"
        with agent_api(kube, two_nodes[0]) as api:
            created = api.create(RESOURCESLICES, slice_body(name, mine))
            listed, _ = api.list_objects(RESOURCESLICES, field_selector=f"spec.nodeName={mine}")
            body = slice_body(name, mine)
            body["metadata"]["resourceVersion"] = created["metadata"]["resourceVersion"]
            body["spec"]["pool"]["generation"] = 2
            api.update(RESOURCESLICES, name, body)
            written = admin.get(RESOURCESLICES, name)
            api.delete(RESOURCESLICES, name)
        assert [item["metadata"]["name"] for item in listed] == [name]
        assert written["spec"]["pool"]["generation"] == 2
        assert snapshot(admin, RESOURCESLICES, name, None) is None

    def test_the_other_nodes_slices_are_refused(self, two_nodes, kube):
        """Creating one for node B, replacing or deleting B's: refused, B's unchanged.

        (Moving a slice to B cannot be tried: the API server keeps spec.nodeName immutable.)
        """
        admin = KubeApi(kube.api_client)
        mine, theirs = two_nodes[0].node, two_nodes[1].node
        their_slice = f"{theirs}-pci.devices.harvesterhci.io-0"
        admin.create(RESOURCESLICES, slice_body(their_slice, theirs))
        elsewhere = f'it is for node "{theirs}"'
        try:
            before = snapshot(admin, RESOURCESLICES, their_slice, None)
            with agent_api(kube, two_nodes[0]) as api:
                # The policy loads asynchronously: wait until it refuses the first write.
                wait_for(
                    lambda: slice_refused(
                        lambda: api.create(RESOURCESLICES, slice_body(f"{their_slice}x", theirs)),
                        elsewhere,
                    ),
                    timeout=60,
                    interval=0.2,
                )
                theirs_replaced = admin.get(RESOURCESLICES, their_slice)
                theirs_replaced["spec"]["pool"]["generation"] = 2
                for write in (
                    lambda: api.update(RESOURCESLICES, their_slice, theirs_replaced),
                    lambda: api.delete(RESOURCESLICES, their_slice),
                ):
                    with pytest.raises(ApiError) as refused:
                        write()
                    assert refused.value.status == 403
                    assert f'the pcidevices agent on node "{mine}" may not' in str(refused.value)
                    assert elsewhere in str(refused.value)
            assert snapshot(admin, RESOURCESLICES, their_slice, None) == before
        finally:
            admin.delete(RESOURCESLICES, their_slice)

    def test_another_drivers_slice_on_its_node_is_refused(self, two_nodes, kube):
        """The agent's own node, but another driver's slice: not its own to write."""
        mine = two_nodes[0].node
        body = slice_body(f"{mine}-gpu.example.com-0", mine, driver="gpu.example.com")
        with agent_api(kube, two_nodes[0]) as api:
            assert wait_for(
                lambda: slice_refused(
                    lambda: api.create(RESOURCESLICES, body), "only slices of driver"
                ),
                timeout=60,
                interval=0.2,
            )

    def test_token_without_node_is_refused(self, two_nodes, kube):
        """A token bound to no pod may not write any slice, not even one naming a real node."""
        mine = two_nodes[0].node
        body = slice_body(f"{mine}-pci.devices.harvesterhci.io-9", mine)
        with agent_api(kube, None) as api:
            assert wait_for(
                lambda: slice_refused(lambda: api.create(RESOURCESLICES, body), NO_NODE),
                timeout=60,
                interval=0.2,
            )


def usb_body(name: str, node: str) -> dict[str, object]:
    """A USBDevice of ``node``, as the agent creates one (its status comes next)."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "USBDevice",
        "metadata": {"name": name, "labels": {"nodename": node}},
    }


def usb_status(node: str) -> dict[str, object]:
    """A USBDevice status naming ``node``."""
    return {"status": {"nodeName": node, "vendorID": "0951", "productID": "1666"}}


class TestUsbObjects:
    """An agent publishes only its own node's USBDevices and answers only their claims."""

    def test_own_node_life_cycle(self, two_nodes, kube):
        """Create, write the status, answer the claim, delete: allowed on the agent's node."""
        admin = KubeApi(kube.api_client)
        mine = two_nodes[0].node
        name = f"{mine}-0951-1666-001002"
        admin.create(
            USBDEVICECLAIMS,
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "USBDeviceClaim",
                "metadata": {"name": name},
            },
        )
        try:
            with agent_api(kube, two_nodes[0]) as api:
                api.create(USBDEVICES, usb_body(name, mine))
                api.patch(USBDEVICES, name, usb_status(mine), subresource="status")
                api.patch(
                    USBDEVICECLAIMS, name, {"status": {"nodeName": mine}}, subresource="status"
                )
                written = admin.get(USBDEVICES, name)
                api.delete(USBDEVICES, name)
            assert written["status"]["nodeName"] == mine
            assert admin.get(USBDEVICECLAIMS, name)["status"]["nodeName"] == mine
            assert snapshot(admin, USBDEVICES, name, None) is None
        finally:
            admin.delete(USBDEVICECLAIMS, name)

    def test_the_other_nodes_objects_are_refused(self, two_nodes, kube):
        """Node B's USBDevice and claim: no create, status write or delete; both unchanged."""
        admin = KubeApi(kube.api_client)
        mine, theirs = two_nodes[0].node, two_nodes[1].node
        name = f"{theirs}-0951-1666-001002"
        admin.create(USBDEVICES, usb_body(name, theirs))
        admin.create(
            USBDEVICECLAIMS,
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "USBDeviceClaim",
                "metadata": {"name": name},
            },
        )
        try:
            before = (
                snapshot(admin, USBDEVICES, name, None),
                snapshot(admin, USBDEVICECLAIMS, name, None),
            )
            pod = two_nodes[0].pod
            with service_account_client(kube, NAMESPACE, SERVICE_ACCOUNT, pod) as client:
                custom = k8s_client.CustomObjectsApi(client)
                # A device named for this node but labelled for the other: refused too.
                probe = usb_body(f"{mine}-0951-1666-001003", theirs)
                wait_for(
                    lambda: refused_by_policy(
                        lambda: custom.create_cluster_custom_object(
                            GROUP, VERSION, "usbdevices", probe, dry_run="All"
                        )
                    ),
                    timeout=60,
                    interval=0.2,
                )
            with agent_api(kube, two_nodes[0]) as api:
                for write in (
                    lambda: api.create(USBDEVICES, usb_body(f"{theirs}-0951-1666-001004", mine)),
                    lambda: api.patch(USBDEVICES, name, usb_status(mine), subresource="status"),
                    lambda: api.patch(
                        USBDEVICECLAIMS, name, {"status": {"nodeName": mine}}, subresource="status"
                    ),
                    lambda: api.delete(USBDEVICES, name),
                ):
                    with pytest.raises(ApiError) as refused:
                        write()
                    assert refused.value.status == 403
                    assert f'the pcidevices agent on node "{mine}" may not' in str(refused.value)
                    assert "it is not a USB device of that node" in str(refused.value)
            after = (
                snapshot(admin, USBDEVICES, name, None),
                snapshot(admin, USBDEVICECLAIMS, name, None),
            )
            assert after == before
        finally:
            admin.delete(USBDEVICES, name)
            admin.delete(USBDEVICECLAIMS, name)
