"""The webhook's reading of PCIDevice and claim objects into the values of `pcicore.admission`."""

from __future__ import annotations

import attrs
import pytest

from pcicore.admission import ClaimSpecFacts
from pcicore.device import IommuGroup, PciClass
from pcioperator.webhook.admission import spec_facts
from pcioperator.webhook.facts import device_facts
from pcioperator.wire.claim import ClaimSpec


def _device(**status):
    return {"metadata": {"name": "titan-000003000"}, "status": status}


class TestDeviceFacts:
    """Status strings become domain values; what is not one reads as absent."""

    def test_reported_device(self):
        """The IOMMU group and class id are parsed; the rest is kept as reported."""
        facts = device_facts(
            _device(address="0000:03:00.0", nodeName="titan", iommuGroup="12", classId="0604")
        )
        assert (facts.address, facts.node_name) == ("0000:03:00.0", "titan")
        assert facts.iommu_group == IommuGroup(12)
        assert facts.pci_class == PciClass(0x06, 0x04)
        assert facts.is_bridge

    @pytest.mark.parametrize(
        ("group", "klass"),
        [
            pytest.param("", "", id="empty"),
            pytest.param("twelve", "06zz", id="not-numbers"),
            pytest.param(None, "060400", id="missing-group-long-class"),
        ],
    )
    def test_unusable_values_read_as_absent(self, group, klass):
        """No IOMMU group (so the rules refuse it) and no class (so it is not a bridge)."""
        facts = device_facts(_device(iommuGroup=group, classId=klass))
        assert facts.iommu_group is None
        assert facts.pci_class is None
        assert not facts.is_bridge


def test_every_wire_spec_field_reaches_the_rules():
    """The rules see every field of the wire spec, so none can change unnoticed on update."""
    wire = [field.name for field in attrs.fields(ClaimSpec)]
    assert [field.name for field in attrs.fields(ClaimSpecFacts)] == wire
    body = {"address": "a", "nodeName": "n", "userName": "u", "disableResourcePooling": True}
    spec = spec_facts({"spec": body})
    assert spec == ClaimSpecFacts("a", "n", "u", disable_resource_pooling=True)
