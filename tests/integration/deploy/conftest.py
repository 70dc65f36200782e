"""The agent's manifests installed for real in the test cluster, and an agent running as them.

`agent_identity` applies the namespace, ServiceAccount and RBAC of ``deploy/`` once per module
(before the per-test `kube` snapshot, so the cleanup after each test leaves them alone) and
removes them at the end, waiting for the namespace to go so no later test finds it terminating.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from kubernetes import client as k8s_client
from pyfakefs.fake_filesystem_unittest import Patcher

from fakesys.descriptors import guard_descriptors
from harness.identity import applied, service_account_client
from harness.kube import REPO_ROOT, KubeCluster
from pcicore.pciids import PciIds
from pcihost.pciids_file import load_pci_ids

DEPLOY = REPO_ROOT / "deploy"
NAMESPACE = "pcidevices-system"
SERVICE_ACCOUNT = "pcidevices-agent"
IDENTITY_MANIFESTS = (
    DEPLOY / "namespace.yaml",
    DEPLOY / "agent" / "serviceaccount.yaml",
    DEPLOY / "agent" / "rbac.yaml",
)


@pytest.fixture(scope="module")
def agent_identity(kube_cluster: KubeCluster) -> Iterator[KubeCluster]:
    """The cluster with deploy/'s namespace, ServiceAccount and RBAC applied for real."""
    with applied(kube_cluster, NAMESPACE, IDENTITY_MANIFESTS) as cluster:
        yield cluster


@pytest.fixture
def agent_api_client(
    agent_identity: KubeCluster, kube: KubeCluster
) -> Iterator[k8s_client.ApiClient]:
    """An API client that authenticates with a token of the agent's ServiceAccount."""
    with service_account_client(kube, NAMESPACE, SERVICE_ACCOUNT) as api_client:
        yield api_client


@pytest.fixture(scope="session")
def pci_ids() -> PciIds:
    return load_pci_ids()


@pytest.fixture
def fake_fs(kube: KubeCluster) -> Iterator[object]:
    # No additional_skip_names: the client's TLS files are read by OpenSSL in C, which pyfakefs
    # does not see, and with skip names every fake file call walks the stack (slow), and file
    # objects opened through them were seen to close a real descriptor of pytest's capture.
    with Patcher() as patcher:
        guard_descriptors(patcher.fs)
        patcher.fs.add_real_directory(str(kube.pki))
        yield patcher.fs
        # Fake files left for the garbage collector must be closed while their descriptors are
        # still fake: closed after the patcher, they would close a real descriptor of the same
        # number (seen as pytest's capture failing with EBADF at exit).
        gc.collect()
