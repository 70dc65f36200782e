"""The wire form of a ``resource.k8s.io/v1`` ResourceClaim, as far as the DRA plugin reads it.

Only identity and allocation: ``metadata.{namespace,name,uid}``, the pod-claim-name annotation
and ``status.allocation.devices.results[]`` (``request``, ``driver``, ``pool``, ``device``,
``adminAccess``). Every text that becomes part of a file name is checked on the way in
(`pcicore.dra_prepare.DraClaimRef.parse`).
"""

from __future__ import annotations

from typing import Any, Final

from pcicore.dra_prepare import AllocationResult, ClaimAllocation, DraClaimRef, parse_pod_claim_name
from pcicore.errors import DraPrepareError
from pcioperator.kube.api import JsonObject, Resource

RESOURCECLAIMS: Final = Resource(
    "resource.k8s.io", "v1", "resourceclaims", "ResourceClaim", namespaced=True
)
POD_CLAIM_NAME_ANNOTATION: Final = "resource.kubernetes.io/pod-claim-name"
"""Set on claims made from a template: the pod's own name for the claim (``k8s.io/api``)."""


def claim_allocation(obj: JsonObject) -> ClaimAllocation:
    """The identity and allocation of a ResourceClaim object.

    Raises:
        DraPrepareError: the object lacks a field the API always sets, or has one of the wrong
            type (not a ResourceClaim of ``resource.k8s.io/v1``).
    """
    metadata = _mapping(obj.get("metadata"), "metadata")
    ref = DraClaimRef.parse(
        _text(metadata.get("namespace"), "metadata.namespace"),
        _text(metadata.get("name"), "metadata.name"),
        _text(metadata.get("uid"), "metadata.uid"),
    )
    annotations = _mapping(metadata.get("annotations") or {}, "metadata.annotations")
    pod_claim_name = parse_pod_claim_name(annotations.get(POD_CLAIM_NAME_ANNOTATION))
    status = _mapping(obj.get("status") or {}, "status")
    allocation = status.get("allocation")
    if allocation is None:
        return ClaimAllocation(ref, None, pod_claim_name)
    devices = _mapping(_mapping(allocation, "status.allocation").get("devices") or {}, "devices")
    results = []
    for index, entry in enumerate(devices.get("results") or []):
        where = f"status.allocation.devices.results[{index}]"
        result = _mapping(entry, where)
        results.append(
            AllocationResult(
                request=_text(result.get("request"), f"{where}.request"),
                driver=_text(result.get("driver"), f"{where}.driver"),
                pool=_text(result.get("pool"), f"{where}.pool"),
                device=_text(result.get("device"), f"{where}.device"),
                admin_access=result.get("adminAccess") is True,
            )
        )
    return ClaimAllocation(ref, tuple(results), pod_claim_name)


def _mapping(value: Any, where: str) -> dict[str, Any]:  # noqa: ANN401 - JSON input
    if not isinstance(value, dict):
        raise DraPrepareError(
            f"ResourceClaim field {where} is not an object; is the API "
            "server's resource.k8s.io/v1 what this plugin expects?"
        )
    return value


def _text(value: Any, where: str) -> str:  # noqa: ANN401 - JSON input
    if not isinstance(value, str) or not value:
        raise DraPrepareError(
            f"ResourceClaim field {where} is missing or not a string; is "
            "the API server's resource.k8s.io/v1 what this plugin expects?"
        )
    return value
