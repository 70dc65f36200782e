"""The KubeVirt controller against a real API server, with a stand-in KubeVirt CRD.

The CRD is cluster-scoped, so it is installed once for this folder and deleted at the end
(deleting a CRD deletes its CRs). Every test makes its own namespace, Lease and KubeVirt CR.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from kubevirt_objects import CRD, kubevirt_body

from pcidevices.wiring.controller import ControllerConfig, controller_injector
from pcioperator.controllers.kubevirt import KUBEVIRTS, KubeVirtController, KubeVirtTarget
from pcioperator.kube.api import KubeApi, Resource
from pcioperator.kube.leader import LeaseSettings
from polling import wait_for

NAMESPACES = Resource("", "v1", "namespaces", "Namespace")

# Short enough for tests, in the same proportions as the defaults (15 s / 10 s / 5 s).
FAST_LEASE = {"lease_duration": 3.0, "renew_deadline": 2.0, "retry_interval": 0.5}


@pytest.fixture(scope="package")
def kubevirt_crd(kube_cluster) -> Iterator[None]:
    """The stand-in KubeVirt CRD, installed for this folder's tests and deleted after them."""
    kube_cluster.install_crds([CRD])
    yield
    kube_cluster.kubectl("delete", "--ignore-not-found", "--wait=false", "-f", str(CRD))


@pytest.fixture
def api(kube) -> KubeApi:
    """An admin client of the test's own (its requests are not the controller's)."""
    return KubeApi(kube.api_client)


@pytest.fixture
def make_namespace(api, unique_name) -> Callable[[], str]:
    """Create a namespace the `kube` fixture deletes after the test."""

    def make() -> str:
        name = unique_name("ns")
        api.create(
            NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        )
        return name

    return make


@pytest.fixture
def start_controller(kube, kubevirt_crd, make_namespace, unique_name):
    """Start controllers on the real API server; stop them after the test."""
    started: list[KubeVirtController] = []
    lease_namespace = make_namespace()
    lease_name = unique_name("lease")

    def start(target: KubeVirtTarget, identity: str = "replica-a") -> KubeVirtController:
        config = ControllerConfig(
            target=target,
            lease=LeaseSettings(lease_namespace, lease_name, identity, **FAST_LEASE),
            metrics_address=None,
        )
        controller = controller_injector(config, kube.api_client).get(KubeVirtController)
        controller.start()
        started.append(controller)
        wait_for(controller.ready, timeout=60)
        return controller

    yield start
    for controller in started:
        controller.stop()


@pytest.fixture
def kubevirt(api, make_namespace, start_controller) -> tuple[str, KubeVirtController]:
    """A new namespace with a KubeVirt CR and a controller watching it: (namespace, controller)."""
    namespace = make_namespace()
    api.create(KUBEVIRTS, kubevirt_body(namespace), namespace)
    return namespace, start_controller(KubeVirtTarget(namespace=namespace))
