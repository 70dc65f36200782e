"""The wire form of ``PCIDeviceClaim`` objects, converted by the one converter.

The attrs classes here mirror the CRD in snake_case; `pcihost.converter.CONVERTER` renames every
field to and from camelCase, so no camelCase key of a claim's spec or status is written by hand.
The status is the domain's own `pcicore.cluster_claim.ClaimStatus`: its fields are the CRD's.
"""

from __future__ import annotations

from typing import Any

import attrs

from pcicore.cluster_claim import ClaimStatus
from pcihost.converter import CONVERTER
from pcioperator.kube.api import JsonObject

__all__ = [
    "Claim",
    "ClaimSpec",
    "ClaimStatus",
    "claim_from_object",
    "status_to_wire",
]


@attrs.frozen
class ClaimSpec:
    """``spec`` of a claim (Harvester's fields, plus none of ours).

    Attributes:
        address: The device's PCI address, as the user wrote it (parsed before any use).
        node_name: The node the device is on.
        user_name: Who asked for it.
        disable_resource_pooling: Advertise this device under its own resource.
    """

    address: str
    node_name: str
    user_name: str = ""
    disable_resource_pooling: bool = False


@attrs.frozen
class Claim:
    """The parts of a claim object the agent reads.

    Attributes:
        name: Object name.
        uid: Object uid (for events).
        resource_version: ``metadata.resourceVersion`` (for optimistic concurrency).
        generation: ``metadata.generation``.
        deleting: Whether a deletion is pending (finalizers hold it).
        finalizers: ``metadata.finalizers``.
        spec: The spec.
        status: The status.
    """

    name: str
    uid: str
    resource_version: str
    generation: int
    deleting: bool
    finalizers: tuple[str, ...]
    spec: ClaimSpec
    status: ClaimStatus


def claim_from_object(obj: JsonObject) -> Claim:
    """Structure an API object into a `Claim`.

    Raises:
        cattrs.BaseValidationError: the object does not have the claim's shape.
    """
    meta = obj["metadata"]
    return Claim(
        name=meta["name"],
        uid=meta.get("uid", ""),
        resource_version=str(meta.get("resourceVersion", "")),
        generation=int(meta.get("generation", 0)),
        deleting=bool(meta.get("deletionTimestamp")),
        finalizers=tuple(meta.get("finalizers") or ()),
        spec=CONVERTER.structure(obj.get("spec") or {}, ClaimSpec),
        status=CONVERTER.structure(obj.get("status") or {}, ClaimStatus),
    )


def status_to_wire(status: ClaimStatus) -> dict[str, Any]:
    """Unstructure a `ClaimStatus` into the camelCase ``status`` body."""
    body: dict[str, Any] = CONVERTER.unstructure(status)
    for condition in body["conditions"]:
        if condition.get("observedGeneration") is None:
            condition.pop("observedGeneration", None)
    return body
