"""A component's deploy/ identity applied for real, and a client authenticating as it.

Tests use these to prove that the shipped namespace, ServiceAccount and RBAC are enough.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

from kubernetes import client as k8s_client

from harness.kube import KubeCluster
from polling import wait_for

_GONE_SECONDS = 120.0


def kubectl_ok(cluster: KubeCluster, *args: str) -> str:
    """Run kubectl and fail the test with its stderr if it fails."""
    result = cluster.kubectl(*args, timeout=120)
    assert result.returncode == 0, f"kubectl {' '.join(args)} failed:\n{result.stderr}"
    return result.stdout


def wait_namespace_gone(cluster: KubeCluster, namespace: str) -> None:
    """Wait until ``namespace`` is fully deleted."""
    core = k8s_client.CoreV1Api(cluster.api_client)

    def gone() -> bool:
        return namespace not in {ns.metadata.name for ns in core.list_namespace().items}

    wait_for(gone, timeout=_GONE_SECONDS, interval=0.2)


@contextlib.contextmanager
def applied(
    cluster: KubeCluster, namespace: str, manifests: Sequence[Path]
) -> Iterator[KubeCluster]:
    """``manifests`` applied (after an earlier ``namespace`` finished terminating), then removed."""
    cluster.ensure_project_crds()
    core = k8s_client.CoreV1Api(cluster.api_client)
    for ns in core.list_namespace().items:
        if ns.metadata.name == namespace and ns.metadata.deletion_timestamp:
            wait_namespace_gone(cluster, namespace)  # left terminating by an earlier module
    for path in manifests:
        kubectl_ok(cluster, "apply", "-f", str(path))
    try:
        yield cluster
    finally:
        for path in reversed(manifests):
            kubectl_ok(cluster, "delete", "--ignore-not-found", "--wait=false", "-f", str(path))
        wait_namespace_gone(cluster, namespace)


@contextlib.contextmanager
def service_account_client(
    cluster: KubeCluster, namespace: str, name: str, bound_pod: k8s_client.V1Pod | None = None
) -> Iterator[k8s_client.ApiClient]:
    """An API client with a fresh TokenRequest token of ServiceAccount ``namespace/name``.

    With ``bound_pod`` the token is bound to that pod, as the kubelet's projected tokens are:
    it is valid only while the pod exists, and when the pod has a node the API server records
    the node's name in the token (user extra ``authentication.kubernetes.io/node-name``).
    Without it the token is bound to nothing and names no node.
    """
    bound = None
    if bound_pod is not None:
        bound = k8s_client.V1BoundObjectReference(
            api_version="v1", kind="Pod", name=bound_pod.metadata.name, uid=bound_pod.metadata.uid
        )
    request = k8s_client.AuthenticationV1TokenRequest(
        spec=k8s_client.V1TokenRequestSpec(
            audiences=[], expiration_seconds=3600, bound_object_ref=bound
        )
    )
    answer = k8s_client.CoreV1Api(cluster.api_client).create_namespaced_service_account_token(
        name, namespace, request
    )
    configuration = k8s_client.Configuration()
    configuration.host = cluster.server
    configuration.api_key = {"authorization": f"Bearer {answer.status.token}"}
    configuration.ssl_ca_cert = str(cluster.pki / "ca.crt")
    api_client = k8s_client.ApiClient(configuration)
    try:
        yield api_client
    finally:
        api_client.close()
