"""The agent's manifests installed for real in the test cluster, and an agent running as them.

`agent_identity` applies the namespace, ServiceAccount and RBAC of ``deploy/`` once per module
(before the per-test `kube` snapshot, so the cleanup after each test leaves them alone) and
removes them at the end, waiting for the namespace to go so no later test finds it terminating.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client as k8s_client
from pyfakefs.fake_filesystem_unittest import Patcher

from harness.kube import REPO_ROOT, KubeCluster
from pcicore.pciids import PciIds
from pcioperator.pciids_file import load_pci_ids

DEPLOY = REPO_ROOT / "deploy"
NAMESPACE = "pcidevices-system"
SERVICE_ACCOUNT = "pcidevices-agent"
IDENTITY_MANIFESTS = (
    DEPLOY / "namespace.yaml",
    DEPLOY / "agent" / "serviceaccount.yaml",
    DEPLOY / "agent" / "rbac.yaml",
)
_NAMESPACE_GONE_SECONDS = 120.0


def _kubectl_ok(cluster: KubeCluster, *args: str) -> str:
    result = cluster.kubectl(*args, timeout=120)
    assert result.returncode == 0, f"kubectl {' '.join(args)} failed:\n{result.stderr}"
    return result.stdout


def _wait_namespace_gone(cluster: KubeCluster) -> None:
    core = k8s_client.CoreV1Api(cluster.api_client)
    deadline = time.monotonic() + _NAMESPACE_GONE_SECONDS
    while time.monotonic() < deadline:
        names = {ns.metadata.name for ns in core.list_namespace().items}
        if NAMESPACE not in names:
            return
        time.sleep(0.2)
    pytest.fail(f"namespace {NAMESPACE} still present after {_NAMESPACE_GONE_SECONDS}s")


@pytest.fixture(scope="module")
def agent_identity(kube_cluster: KubeCluster) -> Iterator[KubeCluster]:
    """The cluster with deploy/'s namespace, ServiceAccount and RBAC applied for real."""
    kube_cluster.ensure_project_crds()
    core = k8s_client.CoreV1Api(kube_cluster.api_client)
    for ns in core.list_namespace().items:
        if ns.metadata.name == NAMESPACE and ns.metadata.deletion_timestamp:
            _wait_namespace_gone(kube_cluster)  # left terminating by an earlier run
    for path in IDENTITY_MANIFESTS:
        _kubectl_ok(kube_cluster, "apply", "-f", str(path))
    yield kube_cluster
    for path in reversed(IDENTITY_MANIFESTS):
        _kubectl_ok(kube_cluster, "delete", "--ignore-not-found", "--wait=false", "-f", str(path))
    _wait_namespace_gone(kube_cluster)


@pytest.fixture
def agent_api_client(
    agent_identity: KubeCluster, kube: KubeCluster
) -> Iterator[k8s_client.ApiClient]:
    """An API client that authenticates with a token of the agent's ServiceAccount."""
    request = k8s_client.AuthenticationV1TokenRequest(
        spec=k8s_client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
    )
    answer = k8s_client.CoreV1Api(kube.api_client).create_namespaced_service_account_token(
        SERVICE_ACCOUNT, NAMESPACE, request
    )
    configuration = k8s_client.Configuration()
    configuration.host = kube.server
    configuration.api_key = {"authorization": f"Bearer {answer.status.token}"}
    configuration.ssl_ca_cert = str(kube.pki / "ca.crt")
    api_client = k8s_client.ApiClient(configuration)
    yield api_client
    api_client.close()


@pytest.fixture(scope="session")
def pci_ids() -> PciIds:
    return load_pci_ids()


@pytest.fixture
def fake_fs(kube: KubeCluster) -> Iterator[object]:
    # No additional_skip_names: the client's TLS files are read by OpenSSL in C, which pyfakefs
    # does not see, and with skip names every fake file call walks the stack (slow), and file
    # objects opened through them were seen to close a real descriptor of pytest's capture.
    with Patcher() as patcher:
        patcher.fs.add_real_directory(str(Path(kube.pki)))
        yield patcher.fs
        # Fake files left for the garbage collector must be closed while their descriptors are
        # still fake: closed after the patcher, they would close a real descriptor of the same
        # number (seen as pytest's capture failing with EBADF at exit).
        gc.collect()
