"""Errors of the Kubernetes API, with retry intent in their type.

The official client raises ``ApiException`` (an HTTP status) or urllib3 errors (no answer); both
are translated here, chaining the original as ``__cause__``, so callers decide on the type:
`TemporaryApiError` is worth retrying, `PermanentApiError` is not.
"""

from __future__ import annotations

import json
from typing import Final

from pcicore.errors import PciDevicesError

_CONFLICT: Final = 409
_GONE: Final = 410
_NOT_FOUND: Final = 404
_TOO_MANY_REQUESTS: Final = 429
_SERVER_ERROR: Final = 500


class ApiError(PciDevicesError):
    """The Kubernetes API refused or did not answer a request.

    Attributes:
        status: The HTTP status, or 0 when no answer came.
        reason: The API's machine-readable reason (``NotFound``, ``Conflict``, …), if any.
    """

    def __init__(self, message: str, *, status: int = 0, reason: str = "") -> None:
        """Describe a failed request."""
        super().__init__(message)
        self.status = status
        self.reason = reason


class TemporaryApiError(ApiError):
    """Worth retrying with backoff: no answer, 429, 5xx."""


class PermanentApiError(ApiError):
    """Retrying the same request will fail the same way (400, 403, 422, …)."""


class NotFoundError(PermanentApiError):
    """The object does not exist (404). For a reconcile, usually: nothing left to do."""


class ConflictError(TemporaryApiError):
    """The object changed since it was read (409): read again, recompute, write again."""


class GoneError(TemporaryApiError):
    """The resourceVersion a watch asked for is too old (410): list again."""


def from_status(status: int, body: str | bytes | None, what: str) -> ApiError:
    """The error for an HTTP ``status`` answered to a request about ``what``."""
    message, reason = _status_message(body)
    text = f"{what}: {message or f'HTTP {status}'}"
    if status == _NOT_FOUND:
        return NotFoundError(text, status=status, reason=reason)
    if status == _CONFLICT:
        return ConflictError(text, status=status, reason=reason)
    if status == _GONE:
        return GoneError(text, status=status, reason=reason)
    if status == _TOO_MANY_REQUESTS or status >= _SERVER_ERROR:
        return TemporaryApiError(text, status=status, reason=reason)
    return PermanentApiError(text, status=status, reason=reason)


def _status_message(body: str | bytes | None) -> tuple[str, str]:
    """The ``message`` and ``reason`` of a ``metav1.Status`` body, if it is one."""
    if not body:
        return ("", "")
    try:
        status = json.loads(body)
    except (ValueError, TypeError):
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        return (text.strip()[:500], "")
    if not isinstance(status, dict):
        return ("", "")
    return (str(status.get("message", "")), str(status.get("reason", "")))
