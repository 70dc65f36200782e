"""The cluster ports of the claim controller on the Kubernetes API: claims and their Events.

`KubeClaimStore` implements `pcicore.ports.ClaimStore` on an `Informer` (reads) and `KubeApi`
(writes); `KubeClaimEvents` implements `pcicore.ports.ClaimEvents` on an `EventRecorder`. They
translate between the wire form (`pcioperator.wire.claim`) and the domain values
(`pcicore.cluster_claim`) and nothing more; every decision is in `pcicore.claim_report`.

They live with the controllers, not in ``pcioperator.kube``: they need the claim's wire form,
and the machinery layer (``kube``) sits below the wire forms.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import Final

import attrs
import cattrs

from pcicore.claim_binding import claim_binding
from pcicore.cluster_claim import ClaimEvent, ClaimStatus, ClusterClaim
from pcicore.device import NodeName
from pcioperator.kube.api import PCIDEVICECLAIMS, JsonObject, KubeApi
from pcioperator.kube.errors import NotFoundError
from pcioperator.kube.events import EventRecorder
from pcioperator.kube.informer import Informer
from pcioperator.wire import claim as wire

log = logging.getLogger(__name__)

SKIP_VFIO_BINDING: Final = "pcidevices.harvesterhci.io/skip-vfio-binding"
"""On a claim: another component binds its device (Harvester's vGPU).

See `pcicore.claim_binding`.
"""


class KubeClaimStore:
    """The claims of one node, read from an informer's cache and written through the API."""

    def __init__(self, node: str, api: KubeApi, informer: Informer) -> None:
        """Claims of ``node`` found in ``informer`` (which watches PCIDeviceClaims)."""
        self._node = node
        self._api = api
        self.informer = informer

    def synced(self) -> bool:
        """Whether the informer has listed every claim once."""
        return self.informer.synced.is_set()

    def claims(self) -> Sequence[ClusterClaim]:
        """This node's claims in the cache; unreadable ones are logged and left out."""
        found = []
        for obj in self.informer.objects():
            if (obj.get("spec") or {}).get("nodeName") != self._node:
                continue
            claim = self._read(obj)
            if claim is not None:
                found.append(claim)
        return found

    @staticmethod
    def _read(obj: JsonObject) -> ClusterClaim | None:
        try:
            claim = wire.claim_from_object(obj)
        except (cattrs.BaseValidationError, KeyError, TypeError, ValueError) as err:
            log.warning("claim %s has an unreadable spec: %s", obj["metadata"]["name"], err)
            return None
        return ClusterClaim(
            name=claim.name,
            uid=claim.uid,
            resource_version=claim.resource_version,
            generation=claim.generation,
            deleting=claim.deleting,
            finalizers=claim.finalizers,
            address=claim.spec.address,
            node=NodeName(claim.spec.node_name),
            status=claim.status,
            binding=claim_binding(
                ((obj.get("metadata") or {}).get("annotations") or {}).get(SKIP_VFIO_BINDING)
            ),
        )

    def write_status(self, claim: ClusterClaim, status: ClaimStatus) -> None:
        """Patch the status subresource; a claim deleted meanwhile is done with."""
        with contextlib.suppress(NotFoundError):
            self._api.patch(
                PCIDEVICECLAIMS,
                claim.name,
                {"status": wire.status_to_wire(status)},
                subresource="status",
            )

    def set_finalizers(self, claim: ClusterClaim, finalizers: tuple[str, ...]) -> None:
        """Patch ``metadata.finalizers`` against the version read.

        Finalizers are a list a merge patch replaces whole, so the patch carries the
        resourceVersion read: a concurrent change by another controller answers 409, and the
        reconcile is retried with a fresh read instead of dropping that controller's entry.
        """
        with contextlib.suppress(NotFoundError):
            self._api.patch(
                PCIDEVICECLAIMS,
                claim.name,
                {
                    "metadata": {
                        "finalizers": list(finalizers),
                        "resourceVersion": claim.resource_version,
                    }
                },
            )


@attrs.frozen
class KubeClaimEvents:
    """Claim Events as core/v1 Events.

    Attributes:
        recorder: Writes the Events (logging, never raising, a failure).
    """

    recorder: EventRecorder

    def emit(self, claim: ClusterClaim, event: ClaimEvent) -> None:
        """Record ``event`` against ``claim``."""
        self.recorder.emit(
            PCIDEVICECLAIMS,
            claim.name,
            claim.uid,
            warning=event.warning,
            reason=event.reason,
            message=event.message,
        )
