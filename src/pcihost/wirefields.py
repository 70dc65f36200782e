"""How a field appears on the wire: its key and when it is left out, and the timestamp format.

The rules `pcihost.converter.CONVERTER` applies to every attrs class, kept apart from it so
that a module can declare wire classes (with `wire_name`/`OMIT_IF_DEFAULT` metadata) without
importing cattrs: ``pcidevices scan`` builds its JSON by hand and never converts.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Final

WIRE_NAME_KEY: Final = "pcidevices.wire_name"
"""Field metadata key: the field's key on the wire, when it is not plain camelCase."""
OMIT_IF_DEFAULT_KEY: Final = "pcidevices.omit_if_default"
"""Field metadata key: leave the key out when the value equals the field's default."""
_TIMESTAMP: Final = "%Y-%m-%dT%H:%M:%SZ"

OMIT_IF_DEFAULT: Final[Mapping[str, Any]] = {OMIT_IF_DEFAULT_KEY: True}
"""Field metadata: leave the key out when the value equals the field's default (``None``)."""


def wire_name(name: str, *, omit_if_default: bool = False) -> Mapping[str, Any]:
    """Field metadata: the field's key is ``name`` (for keys that are not plain camelCase)."""
    return {WIRE_NAME_KEY: name, OMIT_IF_DEFAULT_KEY: omit_if_default}


def camel_case(name: str) -> str:
    """``kernel_driver_to_unbind`` → ``kernelDriverToUnbind``: a field's key on the wire."""
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def format_timestamp(moment: dt.datetime) -> str:
    """``moment`` as Kubernetes writes a ``metav1.Time``: RFC 3339, UTC, whole seconds."""
    return moment.astimezone(dt.UTC).strftime(_TIMESTAMP)


def parse_timestamp(text: str) -> dt.datetime:
    """An RFC 3339 timestamp (``2026-01-31T12:00:00Z``) as an aware `datetime`.

    Raises:
        ValueError: ``text`` is not such a timestamp.
    """
    moment = dt.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no time zone; write it as {_TIMESTAMP}")
    return moment
