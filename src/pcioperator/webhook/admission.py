"""`ClaimAdmission`: reads what a request needs, asks `pcicore.admission`, and answers.

The validating webhook answers every operation on claims; the mutating one only fills
``spec.userName`` on create. A read that fails is a denial that says to retry: with
``failurePolicy: Fail`` the API server would refuse anyway, and this way the user learns why.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import cattrs

from pcicore.admission import (
    ClaimSpecFacts,
    CreateRequest,
    Verdict,
    review_create,
    review_delete,
    review_update,
    user_name_to_set,
)
from pcihost.converter import CONVERTER
from pcioperator.kube.errors import ApiError
from pcioperator.webhook.facts import ClusterFacts
from pcioperator.webhook.review import AdmissionRequest
from pcioperator.wire.claim import ClaimSpec

log = logging.getLogger(__name__)

JsonPatch = list[Mapping[str, Any]]


class ClaimAdmission:
    """Admission decisions for PCIDeviceClaims."""

    def __init__(self, facts: ClusterFacts) -> None:
        """Decide with what ``facts`` reads."""
        self._facts = facts

    def validate(self, request: AdmissionRequest) -> Verdict:
        """The validating webhook's verdict on ``request``."""
        try:
            verdict = self._validate(request)
        except ApiError as err:
            verdict = Verdict.deny(
                f"the pcidevices webhook could not read the cluster ({err}); try again"
            )
        if not verdict.allowed:
            log.info(
                "denied %s of claim %s by %s: %s",
                request.operation,
                request.name,
                request.user,
                verdict.message,
            )
        return verdict

    def _validate(self, request: AdmissionRequest) -> Verdict:
        if request.operation == "CREATE":
            return self._validate_create(request)
        if request.operation == "UPDATE":
            old, new = spec_facts(request.old_object), spec_facts(request.object)
            if old is None or new is None:
                return _malformed()
            return review_update(old, new)
        if request.operation == "DELETE":
            spec = spec_facts(request.old_object)
            if spec is None:
                return Verdict.allow()
            return review_delete(
                request.name, spec, self._facts.device(request.name), self._facts.vmis()
            )
        return Verdict.allow()

    def _validate_create(self, request: AdmissionRequest) -> Verdict:
        spec = spec_facts(request.object)
        if spec is None:
            return _malformed()
        device = self._facts.device(request.name)
        node_devices = (
            self._facts.node_devices(device.node_name)
            if device is not None and device.iommu_group is not None and device.node_name
            else ()
        )
        return review_create(
            CreateRequest(
                claim_name=request.name,
                spec=spec,
                user=request.user,
                device=device,
                node_devices=node_devices,
                may_claim=self._facts.may_claim(request.user_info, request.name),
            )
        )

    def mutate(self, request: AdmissionRequest) -> JsonPatch:
        """The JSONPatch of the mutating webhook: ``spec.userName`` on create when empty."""
        if request.operation != "CREATE" or not isinstance(request.object, dict):
            return []
        spec = spec_facts(request.object)
        if spec is None or not isinstance(request.object.get("spec"), dict):
            return []  # the schema refuses it, with its own message
        user_name = user_name_to_set(spec, request.user)
        if user_name is None:
            return []
        return [{"op": "add", "path": "/spec/userName", "value": user_name}]


def spec_facts(obj: Mapping[str, Any] | None) -> ClaimSpecFacts | None:
    """The spec of the claim object ``obj``, or ``None`` if it has none of the claim's shape."""
    if obj is None:
        return None
    try:
        spec = CONVERTER.structure(obj.get("spec") or {}, ClaimSpec)
    except (cattrs.BaseValidationError, KeyError, TypeError, ValueError):
        return None
    return ClaimSpecFacts(
        address=spec.address,
        node_name=spec.node_name,
        user_name=spec.user_name,
        disable_resource_pooling=spec.disable_resource_pooling,
    )


def _malformed() -> Verdict:
    return Verdict.deny(
        "the claim has no valid spec; set spec.address (dddd:bb:dd.f) and spec.nodeName"
    )
