"""The ``admission.k8s.io/v1`` AdmissionReview wire form, in and out.

Parsed once at the edge into `AdmissionRequest`; answers are built from a `Verdict` (and, for
the mutating webhook, a JSONPatch) by `response_review`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

import attrs

from pcicore.admission import Verdict
from pcioperator.kube.api import JsonObject

ADMISSION_API_VERSION: Final = "admission.k8s.io/v1"
_FORBIDDEN: Final = 403


class MalformedReviewError(ValueError):
    """The body is not an ``admission.k8s.io/v1`` AdmissionReview with a request."""


@attrs.frozen
class AdmissionRequest:
    """The parts of an AdmissionReview request the webhook uses.

    Attributes:
        uid: The request's uid, echoed in the response.
        operation: ``CREATE``, ``UPDATE``, ``DELETE`` or ``CONNECT``.
        name: The object's name.
        user_info: The authenticated user (``username``, ``uid``, ``groups``, ``extra``).
        object: The object as it would be stored (``None`` for DELETE).
        old_object: The stored object (UPDATE, DELETE), else ``None``.
    """

    uid: str
    operation: str
    name: str
    user_info: Mapping[str, Any]
    object: JsonObject | None
    old_object: JsonObject | None

    @property
    def user(self) -> str:
        """The authenticated user's name."""
        return str(self.user_info.get("username", ""))


def parse_review(body: bytes) -> AdmissionRequest:
    """The request of an AdmissionReview body.

    Raises:
        MalformedReviewError: it is not one.
    """
    try:
        review = json.loads(body)
        request = review["request"]
        return AdmissionRequest(
            uid=str(request["uid"]),
            operation=str(request["operation"]),
            name=str(request.get("name") or ""),
            user_info=request.get("userInfo") or {},
            object=request.get("object"),
            old_object=request.get("oldObject"),
        )
    except (ValueError, TypeError, KeyError) as err:
        raise MalformedReviewError(f"not an AdmissionReview v1 with a request: {err}") from err


def response_review(
    uid: str, verdict: Verdict, patch: Sequence[Mapping[str, Any]] = ()
) -> JsonObject:
    """The AdmissionReview that answers request ``uid``."""
    response: JsonObject = {"uid": uid, "allowed": verdict.allowed}
    if not verdict.allowed:
        response["status"] = {"code": _FORBIDDEN, "reason": "Forbidden", "message": verdict.message}
    if patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(list(patch)).encode()).decode()
    return {"apiVersion": ADMISSION_API_VERSION, "kind": "AdmissionReview", "response": response}
