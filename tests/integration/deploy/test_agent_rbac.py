"""The agent's ClusterRole is enough, and no more: an agent runs under its ServiceAccount."""

from __future__ import annotations

import pytest
from kubernetes import client as k8s_client

from fakesys.background import stop_agent, stop_before_report
from fakesys.hosts import FREE_NIC, STATE, workstation
from kube_events import reasons_about, wait_for_events
from pcidevices.wiring.agent import AgentConfig, agent_injector
from pcioperator.agent import Agent
from pcioperator.kube.api import NODES, PCIDEVICECLAIMS, PCIDEVICES, KubeApi
from pcioperator.kube.errors import ApiError, NotFoundError
from polling import wait_for

pytestmark = pytest.mark.kube

GROUP = "devices.harvesterhci.io"
AGENT_USER = "system:serviceaccount:pcidevices-system:pcidevices-agent"
AGENT_GROUPS = (
    "system:serviceaccounts",
    "system:serviceaccounts:pcidevices-system",
    "system:authenticated",
)


def compact(address):
    return address.replace(":", "").replace(".", "")


def devices_of(api, node):
    items, _ = api.list_objects(PCIDEVICES, label_selector=f"nodename={node}")
    return {item["metadata"]["name"]: item for item in items}


def may(kube, verb, resource, *, group="", subresource="", namespace=""):
    """Whether the agent's ServiceAccount may do ``verb`` on ``resource`` (SubjectAccessReview)."""
    review = k8s_client.V1SubjectAccessReview(
        spec=k8s_client.V1SubjectAccessReviewSpec(
            user=AGENT_USER,
            groups=list(AGENT_GROUPS),
            resource_attributes=k8s_client.V1ResourceAttributes(
                group=group,
                resource=resource,
                subresource=subresource,
                verb=verb,
                namespace=namespace,
            ),
        )
    )
    answer = k8s_client.AuthorizationV1Api(kube.api_client).create_subject_access_review(review)
    return answer.status.allowed


@pytest.fixture
def agent_as_service_account(request, agent_api_client, kube, fake_fs, pci_ids, unique_name):  # noqa: PLR0917 - fixtures
    """An agent whose every request is made with the ServiceAccount's token."""
    admin = KubeApi(kube.api_client)
    node = unique_name("node")
    admin.create(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}})
    host = workstation(fake_fs)
    config = AgentConfig(
        node=node,
        state_file=STATE,
        metrics_address=None,
        device_plugin=False,
        rescan_interval=0.5,
    )
    agent = agent_injector(config, agent_api_client, pci_ids).get(Agent)
    agent.start()
    stop_before_report(request, lambda: stop_agent(agent))
    try:
        wait_for(agent.ready, timeout=60)
        yield agent, host, node, admin
    finally:
        stop_agent(agent)  # already stopped unless the test never reached its end


class TestAgentUnderItsRole:
    """Every request the agent makes is allowed by deploy/agent/rbac.yaml."""

    def test_devices_appear_and_claim_completes(self, agent_as_service_account):
        """Devices sync, a claim binds and reports, an Event is written, deletion returns it."""
        agent, host, node, admin = agent_as_service_account
        wait_for(lambda: len(devices_of(admin, node)) == 7, timeout=60)  # 8 less the root port
        name = f"{node}-{compact(FREE_NIC)}"
        admin.create(
            PCIDEVICECLAIMS,
            {
                "apiVersion": f"{GROUP}/v1beta1",
                "kind": "PCIDeviceClaim",
                "metadata": {"name": name},
                "spec": {"address": FREE_NIC, "nodeName": node, "userName": "alice"},
            },
        )
        claim = wait_for(
            lambda: (
                (c := admin.get(PCIDEVICECLAIMS, name)).get("status", {}).get("passthroughEnabled")
                and c
            ),
            timeout=60,
        )
        assert host.driver(FREE_NIC) == "vfio-pci"
        ready = next(c for c in claim["status"]["conditions"] if c["type"] == "Ready")
        assert ready["reason"] == "BoundToVfio"
        wait_for(
            lambda: devices_of(admin, node)[name]["status"]["kernelDriverInUse"] == "vfio-pci",
            timeout=60,
        )
        wait_for_events(admin, lambda events: bool(reasons_about(events, name)))
        admin.delete(PCIDEVICECLAIMS, name)

        def gone():
            try:
                admin.get(PCIDEVICECLAIMS, name)
            except NotFoundError:
                return True
            return False

        wait_for(gone, timeout=60)
        assert host.driver(FREE_NIC) == "igb"
        assert agent.queue.failures("claims") == 0
        assert agent.queue.failures("devices") == 0

    def test_creating_a_claim_is_refused(self, agent_api_client, unique_name):
        """The agent's credentials cannot create a claim: only users make claims."""
        api = KubeApi(agent_api_client)
        with pytest.raises(ApiError) as refused:
            api.create(
                PCIDEVICECLAIMS,
                {
                    "apiVersion": f"{GROUP}/v1beta1",
                    "kind": "PCIDeviceClaim",
                    "metadata": {"name": unique_name("claim")},
                    "spec": {"address": FREE_NIC, "nodeName": "n", "userName": "mallory"},
                },
            )
        assert refused.value.status == 403


ALLOWED = [
    ("list", "pcidevices", GROUP, "", ""),
    ("watch", "pcidevices", GROUP, "", ""),
    ("get", "pcidevices", GROUP, "", ""),
    ("create", "pcidevices", GROUP, "", ""),
    ("patch", "pcidevices", GROUP, "", ""),
    ("delete", "pcidevices", GROUP, "", ""),
    ("patch", "pcidevices", GROUP, "status", ""),
    ("list", "pcideviceclaims", GROUP, "", ""),
    ("watch", "pcideviceclaims", GROUP, "", ""),
    ("patch", "pcideviceclaims", GROUP, "", ""),
    ("patch", "pcideviceclaims", GROUP, "status", ""),
    ("get", "nodes", "", "", ""),
    ("create", "events", "", "", "default"),
]

DENIED = [
    ("create", "pcideviceclaims", GROUP, "", ""),
    ("delete", "pcideviceclaims", GROUP, "", ""),
    ("update", "pcideviceclaims", GROUP, "", ""),
    ("update", "pcidevices", GROUP, "", ""),
    ("deletecollection", "pcidevices", GROUP, "", ""),
    ("update", "pcidevices", GROUP, "status", ""),
    ("delete", "nodes", "", "", ""),
    ("patch", "nodes", "", "", ""),
    ("list", "nodes", "", "", ""),
    ("patch", "nodes", "", "status", ""),
    ("create", "events", "", "", "kube-system"),
    ("get", "secrets", "", "", "pcidevices-system"),
    ("list", "pods", "", "", ""),
    ("create", "pods", "", "", "default"),
    ("create", "customresourcedefinitions", "apiextensions.k8s.io", "", ""),
]


def _id(case):
    verb, resource, _, subresource, namespace = case
    sub = f"/{subresource}" if subresource else ""
    where = f"@{namespace}" if namespace else ""
    return f"{verb}-{resource}{sub}{where}"


class TestLeastPrivilege:
    """The role grants what the agent does and nothing beside it."""

    @pytest.mark.parametrize("case", ALLOWED, ids=_id)
    def test_what_the_agent_does_is_allowed(self, agent_identity, kube, case):
        """A request the agent makes is authorised for its ServiceAccount."""
        verb, resource, group, subresource, namespace = case
        assert may(kube, verb, resource, group=group, subresource=subresource, namespace=namespace)

    @pytest.mark.parametrize("case", DENIED, ids=_id)
    def test_what_the_agent_never_does_is_denied(self, agent_identity, kube, case):
        """A request the agent has no reason to make is not authorised."""
        verb, resource, group, subresource, namespace = case
        assert not may(
            kube, verb, resource, group=group, subresource=subresource, namespace=namespace
        )
