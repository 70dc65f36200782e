"""Which fields an installed CRD schema would prune (`pcioperator.kube.schema.missing_fields`)."""

from __future__ import annotations

from pcioperator.kube.schema import GROUP, VERSION, missing_fields

GVK = [{"group": GROUP, "version": VERSION, "kind": "PCIDevice"}]


def document(status: dict) -> dict:
    """An OpenAPI v3 document serving PCIDevice with the given status schema."""
    return {
        "components": {
            "schemas": {
                "io.harvesterhci.devices.v1beta1.PCIDevice": {
                    "x-kubernetes-group-version-kind": GVK,
                    "properties": {"status": status},
                },
                "Status": {"properties": {"hostProtected": {"type": "boolean"}}},
            }
        }
    }


REQUIRED = {"PCIDevice": ("status.hostProtected", "status.conditions")}


class TestMissingFields:
    """Fields are missing unless declared or kept by preserve-unknown-fields."""

    def test_declared_fields_are_not_missing(self):
        """Both fields declared: nothing is missing."""
        status = {"properties": {"hostProtected": {}, "conditions": {}}}
        assert missing_fields(document(status), REQUIRED) == []

    def test_undeclared_field_is_named_with_its_kind(self):
        """A field the schema lacks is reported as ``Kind.path``."""
        status = {"properties": {"hostProtected": {}}}
        assert missing_fields(document(status), REQUIRED) == ["PCIDevice.status.conditions"]

    def test_preserved_unknown_fields_keep_everything_below(self):
        """``x-kubernetes-preserve-unknown-fields`` on status keeps any field under it."""
        status = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        assert missing_fields(document(status), REQUIRED) == []

    def test_reference_is_followed(self):
        """A ``$ref`` (here in ``allOf``) is looked up among the document's schemas."""
        status = {"allOf": [{"$ref": "#/components/schemas/Status"}]}
        assert missing_fields(document(status), REQUIRED) == ["PCIDevice.status.conditions"]

    def test_kind_not_served_is_named(self):
        """A kind the document does not serve is reported by its name alone."""
        assert missing_fields({"components": {"schemas": {}}}, REQUIRED) == ["PCIDevice"]
