"""The wire form of ``resource.k8s.io/v1`` ResourceSlices of this driver.

A slice is written whole (PUT with its resourceVersion), so the manifest is everything the
driver states: ``spec.driver``, ``spec.nodeName``, ``spec.pool`` (name = node, generation,
``resourceSliceCount``) and ``spec.devices`` with ``attributes`` as the API's one-of values
(``{"string": …}``, ``{"int": …}``, ``{"bool": …}``, ``{"version": …}``).

Reading a slice back, anything this driver does not write (capacity, taints, an unknown
attribute type) marks it inexact, so the next plan rewrites it.
"""

from __future__ import annotations

from typing import Any, Final

from pcicore.device import NodeName
from pcicore.dra import DRIVER_NAME
from pcicore.dra_slices import (
    AttributeKind,
    AttributeValue,
    DraDevice,
    ObservedSlice,
    SliceContent,
)
from pcicore.inventory import OwnerRef
from pcioperator.kube.api import RESOURCESLICES, JsonObject
from pcioperator.wire.owners import owner_from_wire, owner_to_wire

NODE_NAME_FIELD: Final = "spec.nodeName"
DRIVER_FIELD: Final = "spec.driver"

_DEVICE_KEYS: Final = frozenset({"name", "attributes"})
_KINDS: Final = {kind.value: kind for kind in AttributeKind}
_TYPES: Final[dict[AttributeKind, type]] = {
    AttributeKind.STRING: str,
    AttributeKind.VERSION: str,
    AttributeKind.INT: int,
    AttributeKind.BOOL: bool,
}


def slices_of_node(node: NodeName) -> str:
    """The field selector of this driver's slices on ``node``."""
    return f"{NODE_NAME_FIELD}={node},{DRIVER_FIELD}={DRIVER_NAME}"


def slice_manifest(
    content: SliceContent, owner: OwnerRef | None, resource_version: str | None = None
) -> JsonObject:
    """The whole ResourceSlice object for ``content``."""
    metadata: JsonObject = {"name": content.name}
    if owner is not None:
        metadata["ownerReferences"] = [owner_to_wire(owner)]
    if resource_version is not None:
        metadata["resourceVersion"] = resource_version
    return {
        "apiVersion": RESOURCESLICES.api_version,
        "kind": RESOURCESLICES.kind,
        "metadata": metadata,
        "spec": {
            "driver": DRIVER_NAME,
            "nodeName": content.node,
            "pool": {
                "name": content.node,
                "generation": content.generation,
                "resourceSliceCount": content.slice_count,
            },
            "devices": [_device_to_wire(device) for device in content.devices],
        },
    }


def _device_to_wire(device: DraDevice) -> JsonObject:
    return {
        "name": device.name,
        "attributes": {
            name: {value.kind.value: value.value} for name, value in device.attributes.items()
        },
    }


def _attribute(wire: Any) -> AttributeValue | None:  # noqa: ANN401 - untrusted JSON
    """One attribute's value, or ``None`` if it is not exactly one known, well-typed field."""
    if not isinstance(wire, dict) or len(wire) != 1:
        return None
    [(key, value)] = wire.items()
    kind = _KINDS.get(key)
    if not isinstance(value, str | int) or kind is None or type(value) is not _TYPES[kind]:
        return None  # bool is an int; the exact type must match the field
    return AttributeValue(kind, value)


def _device(wire: Any) -> tuple[DraDevice, bool]:  # noqa: ANN401 - untrusted JSON
    """A listed device and whether it was read exactly."""
    if not isinstance(wire, dict):
        return DraDevice(""), False
    exact = set(wire) <= _DEVICE_KEYS
    attributes: dict[str, AttributeValue] = {}
    for name, value in (wire.get("attributes") or {}).items():
        parsed = _attribute(value)
        if parsed is None:
            exact = False
        else:
            attributes[str(name)] = parsed
    return DraDevice(str(wire.get("name", "")), attributes), exact


def observed_slice(obj: JsonObject) -> ObservedSlice:
    """A ResourceSlice of this driver as the slice sync sees it."""
    metadata = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    pool = spec.get("pool") or {}
    read = [_device(device) for device in spec.get("devices") or []]
    return ObservedSlice(
        name=str(metadata.get("name", "")),
        resource_version=str(metadata.get("resourceVersion", "")),
        pool=str(pool.get("name", "")),
        generation=int(pool.get("generation", 0)),
        slice_count=int(pool.get("resourceSliceCount", 0)),
        devices=tuple(device for device, _ in read),
        owners=tuple(owner_from_wire(ref) for ref in metadata.get("ownerReferences") or []),
        exact=all(exact for _, exact in read) and not _foreign_spec(spec),
    )


_SPEC_KEYS: Final = frozenset({"driver", "nodeName", "pool", "devices"})


def _foreign_spec(spec: JsonObject) -> bool:
    """Whether the spec states something this driver does not write (shared counters, …)."""
    return not set(spec) <= _SPEC_KEYS
