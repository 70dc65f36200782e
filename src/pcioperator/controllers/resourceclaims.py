"""`KubeResourceClaims`: the `pcicore.ports.ResourceClaimSource` on the Kubernetes API.

One GET per claim the kubelet asks to prepare (the kubelet sends only namespace, name and
uid). No informer: a node prepares a claim once per pod start, and a watch of every claim in
the cluster would cost each node far more than those few reads.
"""

from __future__ import annotations

from pcicore.dra_prepare import ClaimAllocation
from pcioperator.kube.api import KubeApi
from pcioperator.kube.errors import NotFoundError
from pcioperator.wire.resourceclaim import RESOURCECLAIMS, claim_allocation


class KubeResourceClaims:
    """Reads ResourceClaims through `KubeApi`."""

    def __init__(self, api: KubeApi) -> None:
        """Read through ``api``."""
        self._api = api

    def get(self, namespace: str, name: str) -> ClaimAllocation | None:
        """The claim now, or ``None`` when there is none.

        Raises:
            pcicore.errors.DraPrepareError: the object is not a ResourceClaim we can read.
            pcioperator.kube.errors.ApiError: the API refused or did not answer.
        """
        try:
            obj = self._api.get(RESOURCECLAIMS, name, namespace)
        except NotFoundError:
            return None
        return claim_allocation(obj)
