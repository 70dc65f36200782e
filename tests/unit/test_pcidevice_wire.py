"""The PCIDevice wire form: the fast JSON text is exactly the manifest dictionary."""

from __future__ import annotations

import json

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from pcicore.address import PciAddress
from pcicore.catalog import DeviceRecord
from pcicore.device import DriverName, IommuGroup, NodeName, PciClass, PciDevice, SriovInfo
from pcicore.naming import ResourceName
from pcioperator.wire.pcidevice import pcidevice_manifest
from pcioperator.wire.pcidevice_text import _QUOTED, _quoted, pcidevice_json


def record(**overrides) -> DeviceRecord:
    device = PciDevice(
        address=PciAddress.parse(overrides.pop("address", "0000:65:00.0")),
        vendor_id=0x10DE,
        device_id=0x2235,
        pci_class=PciClass(0x03, 0x00, 0x01),
        subsystem_vendor_id=0x10DE,
        subsystem_device_id=0x145A,
        revision=0xA1,
        driver=overrides.pop("driver", DriverName("nvidia")),
        iommu_group=overrides.pop("iommu_group", IommuGroup(40)),
        numa_node=overrides.pop("numa_node", 1),
        sriov=overrides.pop("sriov", SriovInfo()),
    )
    fields = {
        "name": "titan-000065000",
        "node": NodeName("titan"),
        "device": device,
        "resource_name": ResourceName("nvidia.com/GA102GL_A40"),
        "description": "VGA compatible controller: NVIDIA Corporation GA102GL [A40]",
        "original_driver": DriverName("nvidia"),
    }
    fields.update(overrides)
    return DeviceRecord(**fields)


@pytest.mark.parametrize(
    "rec",
    [
        pytest.param(record(), id="bound-gpu"),
        pytest.param(
            record(driver=None, iommu_group=None, numa_node=None, original_driver=None),
            id="unbound-no-group-no-numa",
        ),
        pytest.param(
            record(description='Class 1234: Vendor "quoted" \\ back\u00e9 \u2013 dash'),
            id="escaped-description",
        ),
        pytest.param(record(protection=""), id="evaluated-not-protected"),
        pytest.param(record(protection='refusing: "it is the boot GPU"'), id="protected"),
        pytest.param(
            record(sriov=SriovInfo(physfn=PciAddress.parse("0000:04:00.0"))), id="sriov-vf"
        ),
        pytest.param(record(sriov=SriovInfo(total_vfs=7, num_vfs=None)), id="sriov-pf"),
        pytest.param(
            record(
                sriov=SriovInfo(physfn=PciAddress.parse("0000:04:00.0")),
                parent_sriov="titan-enp4s0",
            ),
            id="sriov-vf-with-parent-label",
        ),
    ],
)
def test_fast_json_is_the_manifest(rec):
    """The directly built JSON parses to exactly the manifest dictionary."""
    assert json.loads(pcidevice_json(rec)) == pcidevice_manifest(rec)


def test_fast_json_keeps_key_order():
    """Keys come in the manifest's order, so the text reads like the YAML output."""
    rec = record()
    assert list(json.loads(pcidevice_json(rec))["status"]) == list(
        pcidevice_manifest(rec)["status"]
    )


def test_a_vf_of_a_published_pf_is_labelled_with_its_parent():
    """The manifest of a VF whose PF is published carries the parent-sriov-network-device label."""
    rec = record(parent_sriov="titan-enp4s0")
    assert pcidevice_manifest(rec)["metadata"]["labels"] == {
        "nodename": "titan",
        "harvesterhci.io/parent-sriov-network-device": "titan-enp4s0",
    }


@given(st.text() | st.text(st.characters(max_codepoint=0x7F)))
@example('quote " inside')
@example("back \\ slash")
@example("tab\tand newline\n")
@example("delete \x7f")
@example("é accented")
def test_quoted_text_is_what_json_dumps_writes(text):
    """The unescaped shortcut is taken only where ``json.dumps`` writes the text unchanged."""
    _QUOTED.clear()
    assert _quoted(text) == json.dumps(text)
    assert _quoted(text) == json.dumps(text)  # and again, from the cache
