"""The wire form of ``SRIOVNetworkDevice`` objects, converted by the one converter.

Field names and values are Harvester's (``devices.harvesterhci.io/v1beta1``): ``spec.address``,
``spec.nodeName``, ``spec.numVFs``; ``status.status`` (``sriovNetworkDeviceEnabled`` or
``sriovNetworkDeviceDisabled``), ``status.vfAddresses``, ``status.vfPCIDevices``; the
``nodename`` label and the ``sriov.devices.harvesterhi.io/interface-name`` annotation (sic: the
annotation key Harvester writes). ``status.conditions`` is additive.
"""

from __future__ import annotations

from typing import Any, Final

import attrs

from pcicore.conditions import Condition
from pcicore.sriov import ObservedSriovDevice, SriovPf, SriovState, SriovStatus
from pcihost.converter import CONVERTER
from pcihost.wirefields import OMIT_IF_DEFAULT, wire_name
from pcioperator.kube.api import JsonObject
from pcioperator.wire.pcidevice_text import API_VERSION, NODE_LABEL

INTERFACE_ANNOTATION: Final = "sriov.devices.harvesterhi.io/interface-name"
"""The annotation naming the PF's network interface, spelled as Harvester spells it."""

__all__ = [
    "INTERFACE_ANNOTATION",
    "NODE_LABEL",
    "SriovSpec",
    "SriovWireStatus",
    "observed_from_object",
    "sriov_manifest",
    "status_to_wire",
]


@attrs.frozen
class SriovSpec:
    """``spec`` of an SRIOVNetworkDevice.

    Attributes:
        address: The PF's PCI address.
        node_name: The node it is on.
        num_vfs: How many VFs the user asks for.
    """

    address: str = ""
    node_name: str = ""
    num_vfs: int = attrs.field(default=0, metadata=wire_name("numVFs"))


@attrs.frozen
class SriovWireStatus:
    """``status`` of an SRIOVNetworkDevice.

    Attributes:
        status: ``sriovNetworkDeviceEnabled`` or ``sriovNetworkDeviceDisabled`` (empty: unset).
        vf_addresses: The VFs' PCI addresses.
        vf_pci_devices: The VFs' PCIDevice names.
        conditions: Standard conditions (additive).
    """

    status: str = ""
    vf_addresses: tuple[str, ...] = attrs.field(
        default=(), metadata=wire_name("vfAddresses", omit_if_default=True)
    )
    vf_pci_devices: tuple[str, ...] = attrs.field(
        default=(), metadata=wire_name("vfPCIDevices", omit_if_default=True)
    )
    conditions: tuple[Condition, ...] = attrs.field(default=(), metadata=OMIT_IF_DEFAULT)


def sriov_manifest(pf: SriovPf, num_vfs: int) -> dict[str, Any]:
    """The object the agent creates for ``pf`` (its status is written next)."""
    metadata: dict[str, Any] = {"name": pf.name, "labels": {NODE_LABEL: pf.node}}
    if pf.interface:
        metadata["annotations"] = {INTERFACE_ANNOTATION: pf.interface}
    spec = SriovSpec(address=str(pf.address), node_name=pf.node, num_vfs=num_vfs)
    return {
        "apiVersion": API_VERSION,
        "kind": "SRIOVNetworkDevice",
        "metadata": metadata,
        "spec": CONVERTER.unstructure(spec),
    }


def observed_from_object(obj: JsonObject) -> ObservedSriovDevice:
    """An object as the SR-IOV controller sees it.

    Raises:
        cattrs.BaseValidationError: the spec or status does not have the CRD's shape.
    """
    meta = obj["metadata"]
    spec = CONVERTER.structure(obj.get("spec") or {}, SriovSpec)
    raw = obj.get("status")
    status = None
    conditions: tuple[Condition, ...] = ()
    if raw:
        wire = CONVERTER.structure(raw, SriovWireStatus)
        conditions = wire.conditions
        if wire.status in {s.value for s in SriovState}:
            status = SriovStatus(SriovState(wire.status), wire.vf_addresses, wire.vf_pci_devices)
    return ObservedSriovDevice(
        name=meta["name"],
        num_vfs=spec.num_vfs,
        generation=int(meta.get("generation", 0)),
        status=status,
        conditions=conditions,
    )


def status_to_wire(status: SriovStatus, conditions: tuple[Condition, ...]) -> dict[str, Any]:
    """The camelCase ``status`` body (empty VF lists are written, so a drop to 0 clears them)."""
    wire = SriovWireStatus(
        status=status.state.value,
        vf_addresses=status.vf_addresses,
        vf_pci_devices=status.vf_pci_devices,
        conditions=conditions,
    )
    body: dict[str, Any] = CONVERTER.unstructure(wire)
    body.setdefault("vfAddresses", [])
    body.setdefault("vfPCIDevices", [])
    for condition in body.get("conditions", []):
        if condition.get("observedGeneration") is None:
            condition.pop("observedGeneration", None)
    return body
