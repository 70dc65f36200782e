"""ResourceClaims in the real API server, made as a user and allocated as the scheduler does.

Shared by the DRA plugin's tests against the harness's kube-apiserver.
"""

from __future__ import annotations

from pcicore.dra import DRIVER_NAME
from pcioperator.kube.api import KubeApi, Resource
from pcioperator.wire.resourceclaim import RESOURCECLAIMS

NAMESPACES = Resource("", "v1", "namespaces", "Namespace")


def make_namespace(api: KubeApi, name: str) -> str:
    """Create namespace ``name``; return it."""
    api.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


def create_claim(api: KubeApi, namespace: str, name: str, requests: list[str]) -> str:
    """A ResourceClaim with one exactly-one request per name; returns its uid."""
    body = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "devices": {
                "requests": [
                    {"name": r, "exactly": {"deviceClassName": "pci.devices.harvesterhci.io"}}
                    for r in requests
                ]
            }
        },
    }
    return api.create(RESOURCECLAIMS, body, namespace)["metadata"]["uid"]


def allocate(
    api: KubeApi,
    namespace: str,
    name: str,
    results: list[tuple[str, str]],
    node: str = "titan",
) -> None:
    """Write status.allocation as the scheduler does: (request, device) on ``node``."""
    status = {
        "status": {
            "allocation": {
                "devices": {
                    "results": [
                        {"request": r, "driver": DRIVER_NAME, "pool": node, "device": d}
                        for r, d in results
                    ]
                },
                "nodeSelector": {
                    "nodeSelectorTerms": [
                        {
                            "matchFields": [
                                {"key": "metadata.name", "operator": "In", "values": [node]}
                            ]
                        }
                    ]
                },
            }
        }
    }
    api.patch(RESOURCECLAIMS, name, status, namespace=namespace, subresource="status")
