"""The controller's RBAC in deploy/controller/ is enough, and no more: it runs under its token."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes import client as k8s_client
from kubevirt_objects import (
    OURS,
    SLOW,
    USER_ENTRY,
    delete_claim,
    kubevirt_body,
    make_claim,
    make_device,
    permitted,
)

from harness.identity import applied, service_account_client
from harness.kube import REPO_ROOT, KubeCluster
from pcidevices.wiring.controller import ControllerConfig, controller_injector
from pcioperator.controllers.kubevirt import KUBEVIRTS, KubeVirtController, KubeVirtTarget
from pcioperator.kube.api import LEASES, KubeApi
from pcioperator.kube.leader import LeaseSettings
from polling import wait_for

pytestmark = pytest.mark.kube

DEPLOY = REPO_ROOT / "deploy"
NAMESPACE = "pcidevices-system"
SERVICE_ACCOUNT = "pcidevices-controller"
USER = f"system:serviceaccount:{NAMESPACE}:{SERVICE_ACCOUNT}"
GROUPS = ("system:serviceaccounts", f"system:serviceaccounts:{NAMESPACE}", "system:authenticated")
MANIFESTS = (
    DEPLOY / "namespace.yaml",
    DEPLOY / "controller" / "serviceaccount.yaml",
    DEPLOY / "controller" / "rbac.yaml",
)


@pytest.fixture(scope="module")
def controller_identity(kube_cluster: KubeCluster, kubevirt_crd) -> Iterator[KubeCluster]:
    """The cluster with deploy/'s namespace, the controller's ServiceAccount and RBAC applied."""
    with applied(kube_cluster, NAMESPACE, MANIFESTS) as cluster:
        yield cluster


@pytest.fixture
def controller_api_client(controller_identity, kube) -> Iterator[k8s_client.ApiClient]:
    """An API client that authenticates with a token of the controller's ServiceAccount."""
    with service_account_client(kube, NAMESPACE, SERVICE_ACCOUNT) as api_client:
        yield api_client


def may(kube, verb, resource, *, group="", namespace=""):
    """Whether the controller's ServiceAccount may do ``verb`` on ``resource``."""
    review = k8s_client.V1SubjectAccessReview(
        spec=k8s_client.V1SubjectAccessReviewSpec(
            user=USER,
            groups=list(GROUPS),
            resource_attributes=k8s_client.V1ResourceAttributes(
                group=group, resource=resource, verb=verb, namespace=namespace
            ),
        )
    )
    answer = k8s_client.AuthorizationV1Api(kube.api_client).create_subject_access_review(review)
    return answer.status.allowed


class TestControllerUnderItsRole:
    """Every request the controller makes is allowed by deploy/controller/rbac.yaml."""

    def test_controller_leads_and_keeps_the_cr(
        self, controller_api_client, kube, api, make_namespace, unique_name
    ):
        """Under its ServiceAccount it takes the Lease and adds and removes its entry."""
        namespace = make_namespace()
        api.create(KUBEVIRTS, kubevirt_body(namespace), namespace)
        lease = unique_name("lease")
        config = ControllerConfig(
            target=KubeVirtTarget(namespace=namespace),
            lease=LeaseSettings(NAMESPACE, lease, "replica-rbac", retry_interval=0.5),
            metrics_address=None,
        )
        controller = controller_injector(config, controller_api_client).get(KubeVirtController)
        controller.start()
        try:
            wait_for(controller.ready, timeout=SLOW)
            wait_for(controller.elector.leading.is_set, timeout=SLOW)
            node = unique_name("node")
            make_device(api, node, "0000:03:00.0")
            claim = make_claim(api, node, "0000:03:00.0")
            wait_for(lambda: permitted(api, namespace) == [USER_ENTRY, OURS], timeout=SLOW)
            delete_claim(api, claim)
            wait_for(lambda: permitted(api, namespace) == [USER_ENTRY], timeout=SLOW)
            assert controller.queue.failures("permitted-host-devices") == 0
        finally:
            controller.stop()
        spec = KubeApi(kube.api_client).get(LEASES, lease, NAMESPACE)["spec"]
        assert not spec.get("holderIdentity"), "the Lease is released on shutdown"

    @pytest.mark.parametrize(
        ("verb", "resource", "group", "namespace"),
        [
            pytest.param("update", "kubevirts", "kubevirt.io", "kubevirt", id="no-kubevirt-update"),
            pytest.param("delete", "kubevirts", "kubevirt.io", "kubevirt", id="no-kubevirt-delete"),
            pytest.param(
                "patch", "pcideviceclaims", "devices.harvesterhci.io", "", id="no-claim-writes"
            ),
            pytest.param(
                "patch", "pcidevices", "devices.harvesterhci.io", "", id="no-device-writes"
            ),
            pytest.param(
                "delete", "leases", "coordination.k8s.io", NAMESPACE, id="no-lease-delete"
            ),
            pytest.param(
                "patch", "leases", "coordination.k8s.io", "default", id="no-leases-elsewhere"
            ),
            pytest.param("list", "secrets", "", NAMESPACE, id="no-secrets"),
        ],
    )
    def test_nothing_more_is_allowed(  # noqa: PLR0917 - the table's columns
        self, controller_identity, kube, verb, resource, group, namespace
    ):
        """Requests the controller never makes are denied."""
        assert not may(kube, verb, resource, group=group, namespace=namespace)
