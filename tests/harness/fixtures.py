"""pytest fixtures for tests marked ``kube``: a real API server, shared and cleaned per test.

``kube_cluster`` (session) starts etcd, kube-apiserver and kube-controller-manager once, or
attaches to the cluster named by ``$PCIDEVICES_KUBECONFIG``; ``kube_scheduler`` (session) adds
the real kube-scheduler to it for tests that need pods placed (DRA allocation). ``kube`` (per
test) installs the project's CRDs and deletes afterwards every PCIDevice, PCIDeviceClaim, Node
and Namespace the test created, so tests cannot see one another's objects. A build or start-up
failure fails the test with the exact error; it never skips.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from harness.kube import HarnessError, KubeCluster

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

GROUP = "devices.harvesterhci.io"
VERSION = "v1beta1"
PLURALS = ("pcideviceclaims", "pcidevices", "usbdeviceclaims", "usbdevices")
_CLEANUP_TIMEOUT_SECONDS = 30.0


@pytest.fixture(scope="session")
def kube_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    """The session's cluster: started here (and stopped at the end) or attached to."""
    reuse = os.environ.get("PCIDEVICES_KUBECONFIG")
    cluster: KubeCluster | None = None
    try:
        if reuse:
            cluster = KubeCluster.attach(Path(reuse))
        else:
            cluster = KubeCluster.start(tmp_path_factory.mktemp("kube"))
    except HarnessError as err:
        failure = str(err)
    if cluster is None:
        # Outside the except block, so the report shows the build's output and nothing else.
        pytest.fail(f"the kube test cluster is unavailable: {failure}", pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def kube(kube_cluster: KubeCluster) -> Iterator[KubeCluster]:
    """The cluster with the project's CRDs; objects the test creates are deleted after it."""
    failure = ""
    try:
        kube_cluster.ensure_project_crds()
    except HarnessError as err:
        failure = str(err)
    if failure:
        pytest.fail(failure, pytrace=False)
    before = _snapshot(kube_cluster)
    yield kube_cluster
    _delete_created(kube_cluster, before)


@pytest.fixture(scope="session")
def kube_scheduler(kube_cluster: KubeCluster) -> KubeCluster:
    """The session's cluster with the real kube-scheduler running (started on first use)."""
    failure = ""
    try:
        kube_cluster.start_scheduler()
    except HarnessError as err:
        failure = str(err)
    if failure:
        pytest.fail(f"the kube-scheduler is unavailable: {failure}", pytrace=False)
    return kube_cluster


@pytest.fixture
def unique_name() -> Callable[[str], str]:
    """Make DNS-1123 names no other test (or earlier run on a reused cluster) has used."""

    def make(prefix: str = "t") -> str:
        return f"{prefix}-{secrets.token_hex(4)}"

    return make


def _snapshot(cluster: KubeCluster) -> dict[str, set[str]]:
    from kubernetes import client  # noqa: PLC0415 - keep the client out of import time

    custom = client.CustomObjectsApi(cluster.api_client)
    core = client.CoreV1Api(cluster.api_client)
    names = {
        plural: {
            item["metadata"]["name"]
            for item in custom.list_cluster_custom_object(GROUP, VERSION, plural)["items"]
        }
        for plural in PLURALS
    }
    names["nodes"] = {node.metadata.name for node in core.list_node().items}
    names["namespaces"] = {ns.metadata.name for ns in core.list_namespace().items}
    return names


def _delete_created(cluster: KubeCluster, before: dict[str, set[str]]) -> None:
    from kubernetes import client  # noqa: PLC0415 - keep the client out of import time

    after = _snapshot(cluster)
    custom = client.CustomObjectsApi(cluster.api_client)
    core = client.CoreV1Api(cluster.api_client)
    for plural in PLURALS:
        for name in after[plural] - before[plural]:
            # An agent under test may have left a finalizer; nobody will remove it now.
            _ignore_missing(
                custom.patch_cluster_custom_object,
                GROUP,
                VERSION,
                plural,
                name,
                {"metadata": {"finalizers": None}},
                _content_type="application/merge-patch+json",
            )
            _ignore_missing(custom.delete_cluster_custom_object, GROUP, VERSION, plural, name)
    for name in after["nodes"] - before["nodes"]:
        _ignore_missing(core.delete_node, name)
    for name in after["namespaces"] - before["namespaces"]:
        _ignore_missing(core.delete_namespace, name)
    deadline = time.monotonic() + _CLEANUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        left = _snapshot(cluster)
        if all(not (left[plural] - before[plural]) for plural in PLURALS):
            return
        time.sleep(0.2)


def _ignore_missing(call: Callable[..., object], *args: object, **kwargs: object) -> None:
    """Run a delete-like call; 404 (already gone) and 409 (already terminating) mean done."""
    from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

    try:
        call(*args, **kwargs)
    except ApiException as err:
        if err.status not in (404, 409):
            raise
