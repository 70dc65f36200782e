"""`ClaimAdmission`: reads what a request needs, asks `pcicore.admission`, and answers.

The validating webhook answers every operation on claims; the mutating one, on create, fills an
empty ``spec.userName`` and records the authenticated user in `REQUESTED_BY` (whatever the
request says there), which no update may change. ``spec.userName`` itself is the client's label:
Harvester's UI sends the Rancher user. The per-device RBAC verb ``claim`` is checked only when
``require_claim_verb`` is set (no shipped or Harvester role grants it).

A read that fails is a denial that says to retry: with ``failurePolicy: Fail`` the API server
would refuse anyway, and this way the user learns why.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import cattrs

from pcicore.admission import (
    ClaimSpecFacts,
    CreateRequest,
    Verdict,
    review_create,
    review_delete,
    review_requested_by,
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

REQUESTED_BY = "devices.harvesterhci.io/requested-by"
"""Annotation: the authenticated user who created the claim, set by the mutating webhook."""


def _requested_by(obj: object) -> str | None:
    """The `REQUESTED_BY` annotation of ``obj`` (``None``: none)."""
    metadata = obj.get("metadata") if isinstance(obj, dict) else None
    annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
    value = annotations.get(REQUESTED_BY) if isinstance(annotations, dict) else None
    return value if isinstance(value, str) else None


class ClaimAdmission:
    """Admission decisions for PCIDeviceClaims."""

    def __init__(self, facts: ClusterFacts, *, require_claim_verb: bool = False) -> None:
        """Decide with what ``facts`` reads; ask RBAC for ``claim`` only if told to."""
        self._facts = facts
        self._require_claim_verb = require_claim_verb

    def validate(self, request: AdmissionRequest) -> Verdict:
        """The validating webhook's verdict on ``request``."""
        return guarded_verdict(request, "claim", self._validate)

    def _validate(self, request: AdmissionRequest) -> Verdict:
        if request.operation == "CREATE":
            return self._validate_create(request)
        if request.operation == "UPDATE":
            old, new = spec_facts(request.old_object), spec_facts(request.object)
            if old is None or new is None:
                return _malformed()
            recorded = review_requested_by(
                _requested_by(request.old_object), _requested_by(request.object)
            )
            return recorded if not recorded.allowed else review_update(old, new)
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
                may_claim=(
                    self._facts.may_claim(request.user_info, request.name)
                    if self._require_claim_verb
                    else True
                ),
                enabled_usb=(
                    self._facts.enabled_usb_behind(device.node_name, device.address)
                    if device is not None
                    else ()
                ),
            )
        )

    def mutate(self, request: AdmissionRequest) -> JsonPatch:
        """The JSONPatch of the mutating webhook on create: who asked, and an empty userName."""
        if request.operation != "CREATE" or not isinstance(request.object, dict):
            return []
        spec = spec_facts(request.object)
        if spec is None or not isinstance(request.object.get("spec"), dict):
            return []  # the schema refuses it, with its own message
        metadata = request.object.get("metadata")
        has_annotations = isinstance(metadata, dict) and isinstance(
            metadata.get("annotations"), dict
        )
        patch: JsonPatch = [
            {
                "op": "add",
                "path": "/metadata/annotations/" + REQUESTED_BY.replace("/", "~1"),
                "value": request.user,
            }
            if has_annotations
            else {
                "op": "add",
                "path": "/metadata/annotations",
                "value": {REQUESTED_BY: request.user},
            }
        ]
        user_name = user_name_to_set(spec, request.user)
        if user_name is not None:
            patch.append({"op": "add", "path": "/spec/userName", "value": user_name})
        return patch


def guarded_verdict(
    request: AdmissionRequest, kind: str, decide: Callable[[AdmissionRequest], Verdict]
) -> Verdict:
    """``decide(request)``, or a denial saying to retry when the cluster could not be read.

    With ``failurePolicy: Fail`` the API server would refuse anyway; this way the user learns
    why. Denials are logged with ``kind`` (what the request is about).
    """
    try:
        verdict = decide(request)
    except ApiError as err:
        verdict = Verdict.deny(
            f"the pcidevices webhook could not read the cluster ({err}); try again"
        )
    if not verdict.allowed:
        log.info(
            "denied %s of %s %s by %s: %s",
            request.operation,
            kind,
            request.name,
            request.user,
            verdict.message,
        )
    return verdict


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
