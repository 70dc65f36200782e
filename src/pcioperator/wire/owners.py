"""The wire form of ``metadata.ownerReferences`` items: one home for every object we own."""

from __future__ import annotations

import functools

from pcicore.inventory import OwnerRef
from pcioperator.kube.api import JsonObject


def owner_from_wire(ref: JsonObject) -> OwnerRef:
    """An ``ownerReferences`` item as the domain sees it."""
    return _owner(
        (
            str(ref.get("apiVersion", "")),
            str(ref.get("kind", "")),
            str(ref.get("name", "")),
            str(ref.get("uid", "")),
        ),
        (ref.get("controller"), ref.get("blockOwnerDeletion")),
    )


@functools.lru_cache(maxsize=256)
def _owner(names: tuple[str, str, str, str], flags: tuple[bool | None, bool | None]) -> OwnerRef:
    # Every object of a node has the same owner: one value, not one per object per rescan.
    return OwnerRef(*names, *flags)


def owner_to_wire(owner: OwnerRef) -> JsonObject:
    """An ``ownerReferences`` item (the optional flags only when stated)."""
    ref: JsonObject = {
        "apiVersion": owner.api_version,
        "kind": owner.kind,
        "name": owner.name,
        "uid": owner.uid,
    }
    if owner.controller is not None:
        ref["controller"] = owner.controller
    if owner.block_owner_deletion is not None:
        ref["blockOwnerDeletion"] = owner.block_owner_deletion
    return ref
