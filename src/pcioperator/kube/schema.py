"""Refuse to start against CRDs that would silently drop the fields we write.

The API server prunes every field a CRD's schema does not declare. Harvester's own
``devices.harvesterhci.io`` CRDs declare only Harvester's fields, so if they stay installed our
additive fields (``hostProtected``, ``conditions``, ``groupMembers``, …) vanish on every write:
the webhook loses host protection without a word, and every pass re-sends the same patch.

`check_installed_schema` reads the schemas the API server publishes (OpenAPI v3, which every
authenticated client may read: no extra RBAC) once at start-up and raises
`InstalledSchemaError` naming the missing fields and the fix. The walk over a schema
(`missing_fields`) is pure and tested on its own.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any, Final

import attrs

from pcicore.errors import PciDevicesError
from pcioperator.kube.api import KubeApi, Resource
from pcioperator.kube.errors import ApiError, NotFoundError

log = logging.getLogger(__name__)

GROUP: Final = "devices.harvesterhci.io"
VERSION: Final = "v1beta1"

# Each field written by this release beyond Harvester's, by kind. A schema that lacks one of
# them would prune it (the wire modules write them; see docs/api.md).
REQUIRED_FIELDS: Final[Mapping[str, tuple[str, ...]]] = {
    "PCIDevice": (
        "status.classId",
        "status.iommuGroup",
        "status.resourceName",
        "status.numaNode",
        "status.subsystemVendorId",
        "status.subsystemDeviceId",
        "status.revision",
        "status.progIf",
        "status.physFn",
        "status.numVFs",
        "status.totalVFs",
        "status.hostProtected",
        "status.protectionReason",
        "status.conditions",
    ),
    "PCIDeviceClaim": (
        "spec.disableResourcePooling",
        "status.observedGeneration",
        "status.groupMembers",
        "status.conditions",
    ),
    "USBDevice": ("status.classType", "status.status", "status.message"),
    "USBDeviceClaim": ("status.conditions",),
}

FIX: Final = (
    "another version of the CRDs (Harvester's?) is installed and the API server would drop "
    "these fields; apply this release's CRDs (kubectl apply -f deploy/crds/) and start again"
)


class InstalledSchemaError(PciDevicesError):
    """The installed CRDs lack fields this release writes (it refuses to run against them)."""


@attrs.frozen
class OpenApiDocument(Resource):
    """The OpenAPI v3 document of one API group version (``/openapi/v3/apis/<g>/<v>``)."""

    def path(self, namespace: str | None = None, name: str | None = None) -> str:  # noqa: ARG002 - one document, no namespace or name
        """The document's URL path."""
        return f"/openapi/v3/apis/{self.group}/{self.version}"


DEVICES_OPENAPI: Final = OpenApiDocument(GROUP, VERSION, "openapi", "OpenAPI")


def _resolve(node: Mapping[str, Any], schemas: Mapping[str, Any]) -> Mapping[str, Any]:
    """``node`` with a ``$ref`` (direct or as the one ``allOf`` item) replaced by its target."""
    ref = node.get("$ref")
    if ref is None and len(node.get("allOf") or []) == 1:
        ref = node["allOf"][0].get("$ref")
    if isinstance(ref, str):
        return schemas.get(ref.rsplit("/", 1)[-1]) or {}
    return node


def _declares(schema: Mapping[str, Any], path: str, schemas: Mapping[str, Any]) -> bool:
    """Whether ``schema`` keeps the field at dotted ``path`` (declared, or unknowns preserved)."""
    node = _resolve(schema, schemas)
    for part in path.split("."):
        if node.get("x-kubernetes-preserve-unknown-fields") is True:
            return True
        child = (node.get("properties") or {}).get(part)
        if not isinstance(child, Mapping):
            return False
        node = _resolve(child, schemas)
    return True


def kind_schema(
    document: Mapping[str, Any], kind: str, group: str = GROUP
) -> Mapping[str, Any] | None:
    """The schema of ``kind`` of ``group`` in an OpenAPI v3 document (``None``: not served)."""
    schemas = (document.get("components") or {}).get("schemas") or {}
    for schema in schemas.values():
        for gvk in schema.get("x-kubernetes-group-version-kind") or []:
            if (gvk.get("group"), gvk.get("version"), gvk.get("kind")) == (group, VERSION, kind):
                return dict(schema)
    return None


def missing_fields(
    document: Mapping[str, Any],
    required: Mapping[str, Iterable[str]] = REQUIRED_FIELDS,
    group: str = GROUP,
) -> list[str]:
    """``Kind.field`` for every required field the document's schemas would prune, in order.

    A kind the document does not serve is reported as ``Kind`` (its CRD is not installed).
    """
    schemas = (document.get("components") or {}).get("schemas") or {}
    missing: list[str] = []
    for kind, fields in required.items():
        schema = kind_schema(document, kind, group)
        if schema is None:
            missing.append(kind)
            continue
        missing.extend(f"{kind}.{f}" for f in fields if not _declares(schema, f, schemas))
    return missing


def check_installed_schema(api: KubeApi, group: str = GROUP) -> None:
    """Raise `InstalledSchemaError` if the installed CRDs would drop fields we write.

    One GET. A server that publishes no OpenAPI v3 document cannot be checked: that is logged
    once and the process runs. ``group`` is ours; tests name another.

    Raises:
        InstalledSchemaError: A field (or a whole CRD) is missing; the message names each one.
    """
    try:
        document = api.get(OpenApiDocument(group, VERSION, "openapi", "OpenAPI"), "")
    except NotFoundError:
        raise InstalledSchemaError(
            f"the API server serves no {group}/{VERSION}: the CRDs are not installed; apply "
            "this release's CRDs (kubectl apply -f deploy/crds/) and start again"
        ) from None
    except ApiError as err:
        log.warning("cannot read the installed CRDs' schema (%s); not checked", err)
        return
    missing = missing_fields(document, group=group)
    if missing:
        raise InstalledSchemaError(f"the installed {group} CRDs lack {', '.join(missing)}: {FIX}")


__all__ = [
    "DEVICES_OPENAPI",
    "REQUIRED_FIELDS",
    "InstalledSchemaError",
    "OpenApiDocument",
    "check_installed_schema",
    "kind_schema",
    "missing_fields",
]
