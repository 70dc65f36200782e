"""Whether a ``PCIDeviceClaim`` may be created, changed or deleted: the pure admission rules.

Every function here takes domain values (what the webhook read from the request and the
cluster, already parsed by its adapters in ``pcioperator.webhook``) and returns a `Verdict`;
nothing here reads the network or sees a wire object, so each rule is tested as a table. Every
denial names the bad value and says what to do, because the user sees it verbatim from
``kubectl``. Whether a device can ever be passed through (bridge, no IOMMU group) is decided by
`pcicore.protection`, the same rules the node agent applies.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Final

import attrs

from pcicore.address import PciAddress
from pcicore.claim_report import claim_name_problem
from pcicore.device import IommuGroup, NodeName, PciClass
from pcicore.errors import InvalidPciAddressError
from pcicore.naming import ResourceName, object_name
from pcicore.protection import passthrough_refusal
from pcicore.resources import dedicated_resource_name

CLAIM_VERB: Final = "claim"
"""The RBAC verb on ``pcidevices`` (with ``resourceNames``) that lets a user claim a device."""

_FINAL_VMI_PHASES: Final = frozenset({"Succeeded", "Failed"})


@attrs.frozen
class Verdict:
    """The answer to one admission request.

    Attributes:
        allowed: Whether the request may proceed.
        message: Why not (empty when allowed).
    """

    allowed: bool
    message: str = ""

    @classmethod
    def allow(cls) -> Verdict:
        """Let the request through."""
        return cls(allowed=True)

    @classmethod
    def deny(cls, message: str) -> Verdict:
        """Refuse the request with ``message``."""
        return cls(allowed=False, message=message)


@attrs.frozen
class ClaimSpecFacts:
    """What a claim's spec asks for, as written (untrusted: the rules parse what they use).

    Attributes:
        address: ``spec.address``.
        node_name: ``spec.nodeName``.
        user_name: ``spec.userName`` (empty: not set).
        disable_resource_pooling: ``spec.disableResourcePooling``.
    """

    address: str
    node_name: str
    user_name: str = ""
    disable_resource_pooling: bool = False


# The names users write for each field of the spec, for the messages that refuse a change.
_SPEC_FIELD_PATHS: Final = {
    "address": "spec.address",
    "node_name": "spec.nodeName",
    "user_name": "spec.userName",
    "disable_resource_pooling": "spec.disableResourcePooling",
}


@attrs.frozen
class DeviceFacts:
    """What a PCIDevice's node last reported about it (its ``status``).

    Attributes:
        name: Object name.
        address: ``status.address`` as reported (empty when not reported).
        node_name: ``status.nodeName``.
        resource_name: ``status.resourceName``.
        iommu_group: ``status.iommuGroup`` (``None``: the device has no IOMMU group).
        pci_class: Class and subclass from ``status.classId`` (``None``: not reported).
        host_protected: ``status.hostProtected``.
        protection_reason: ``status.protectionReason``.
    """

    name: str
    address: str = ""
    node_name: str = ""
    resource_name: str = ""
    iommu_group: IommuGroup | None = None
    pci_class: PciClass | None = None
    host_protected: bool = False
    protection_reason: str = ""

    @property
    def is_bridge(self) -> bool:
        """Whether the node reported a PCI-to-PCI bridge."""
        return self.pci_class is not None and self.pci_class.is_bridge


@attrs.frozen
class VmiFacts:
    """The parts of a KubeVirt VirtualMachineInstance that tell whether it uses a device.

    Attributes:
        namespace: Its namespace.
        name: Its name.
        node_name: ``status.nodeName`` (empty until scheduled).
        phase: ``status.phase``.
        host_devices: ``spec.domain.devices.hostDevices[].deviceName``.
    """

    namespace: str
    name: str
    node_name: str = ""
    phase: str = ""
    host_devices: tuple[str, ...] = ()

    @property
    def running(self) -> bool:
        """Whether it may still hold its devices (any phase but a final one)."""
        return self.phase not in _FINAL_VMI_PHASES


@attrs.frozen
class CreateRequest:
    """A claim being created, and what the webhook read about it.

    Attributes:
        claim_name: ``metadata.name`` of the claim.
        spec: Its spec (after the mutating webhook).
        user: The authenticated user who sent the request.
        device: The PCIDevice named like the claim, or ``None`` if there is none.
        node_devices: Every PCIDevice of the device's node (for its IOMMU group).
        may_claim: Whether RBAC grants ``user`` the verb ``claim`` on that PCIDevice.
        enabled_usb: The enabled USBDevices behind the device (a USB host controller).
    """

    claim_name: str
    spec: ClaimSpecFacts
    user: str
    device: DeviceFacts | None
    node_devices: Sequence[DeviceFacts] = ()
    may_claim: bool = True
    enabled_usb: Sequence[str] = ()


def user_name_to_set(spec: ClaimSpecFacts, user: str) -> str | None:
    """The ``spec.userName`` the mutating webhook writes: ``user`` when it is empty, else none."""
    return user if not spec.user_name else None


def review_requested_by(old: str | None, new: str | None) -> Verdict:
    """Whether an update may change the record of who created a claim: never.

    ``spec.userName`` is what the client says (Harvester's UI writes the Rancher user); the
    mutating webhook records the authenticated creator beside it, and that record is kept.
    """
    if old == new:
        return Verdict.allow()
    return Verdict.deny(
        f"the record of who created this claim ({old or 'none'}) cannot be changed; it is set "
        "from the authenticated user when the claim is created"
    )


def review_create(request: CreateRequest) -> Verdict:
    """Whether a new claim can ever succeed and its sender may make it.

    ``spec.userName`` is not judged: it is the client's label (Harvester's UI sends the Rancher
    user, which is not who the API server authenticated); who really asked is recorded by the
    mutating webhook from the request.
    """
    spec = request.spec
    if not request.may_claim:
        return Verdict.deny(
            f'user "{request.user}" may not claim PCIDevice "{request.claim_name}"; ask an '
            f'administrator for RBAC verb "{CLAIM_VERB}" on resource "pcidevices" (apiGroup '
            f'devices.harvesterhci.io) with resourceNames ["{request.claim_name}"]'
        )
    try:
        address = PciAddress.parse(spec.address)
    except InvalidPciAddressError:
        return Verdict.deny(
            f'spec.address "{spec.address}" is not a PCI address; write it as dddd:bb:dd.f, '
            "e.g. 0000:00:1f.6, as in the PCIDevice's status.address"
        )
    misnamed = claim_name_problem(request.claim_name, spec.node_name, address, spec.address)
    device = request.device
    if device is None:
        if misnamed is not None:
            return Verdict.deny(misnamed)
        expected = object_name(NodeName(spec.node_name), address)
        return Verdict.deny(
            f'no PCIDevice "{expected}" exists: node "{spec.node_name}" has not reported a '
            f"device at {address}; check spec.nodeName and spec.address against "
            f"'kubectl get pcidevices -l nodename={spec.node_name}'"
        )
    return _review_device(request, device, misnamed)


def _same_address(written: str, reported: str) -> bool:
    """Whether two texts name one address (``00:1f.6`` is ``0000:00:1f.6``)."""
    try:
        return PciAddress.parse(written) == PciAddress.parse(reported)
    except InvalidPciAddressError:
        return written == reported


def _review_device(request: CreateRequest, device: DeviceFacts, misnamed: str | None) -> Verdict:
    spec = request.spec
    if not _same_address(spec.address, device.address):
        return Verdict.deny(
            f'spec.address "{spec.address}" does not match PCIDevice "{device.name}", which is '
            f'at "{device.address}"; set spec.address to "{device.address}"'
        )
    if spec.node_name != device.node_name:
        return Verdict.deny(
            f'spec.nodeName "{spec.node_name}" does not match PCIDevice "{device.name}", which '
            f'is on node "{device.node_name}"; set spec.nodeName to "{device.node_name}"'
        )
    if misnamed is not None:
        return Verdict.deny(misnamed)
    if device.host_protected:
        return Verdict.deny(
            f'PCIDevice "{device.name}" ({device.address}) is host-protected by node '
            f'"{device.node_name}": {device.protection_reason or "no reason reported"}; claim '
            "another device"
        )
    if request.enabled_usb:
        return Verdict.deny(
            f'PCIDevice "{device.name}" ({device.address}) is the USB host controller of enabled '
            f"USBDevice(s) {', '.join(sorted(request.enabled_usb))}: passing it through takes "
            "every USB device behind it; delete their USBDeviceClaims first"
        )
    return _review_group(device, request.node_devices)


def _review_group(device: DeviceFacts, node_devices: Sequence[DeviceFacts]) -> Verdict:
    """Whether VFIO can ever hand the device's whole IOMMU group to a VM."""
    refusal = passthrough_refusal(
        f'PCIDevice "{device.name}" ({device.address})',
        device.pci_class,
        device.iommu_group,
        f'node "{device.node_name}"',
    )
    if refusal is not None:
        return Verdict.deny(refusal.message)
    for member in node_devices:
        if (
            member.iommu_group == device.iommu_group
            and member.name != device.name
            and not member.is_bridge
            and member.host_protected
        ):
            return Verdict.deny(
                f'IOMMU group {device.iommu_group} of PCIDevice "{device.name}" can never be '
                f'handed to a VM: its member "{member.name}" ({member.address}) is '
                f"host-protected ({member.protection_reason or 'no reason reported'}); claim a "
                "device in another IOMMU group"
            )
    return Verdict.allow()


def review_update(old: ClaimSpecFacts, new: ClaimSpecFacts) -> Verdict:
    """Whether a change to a claim keeps its spec (metadata and status may change)."""
    for field in attrs.fields(ClaimSpecFacts):
        before, after = getattr(old, field.name), getattr(new, field.name)
        if before != after:
            path = _SPEC_FIELD_PATHS[field.name]
            return Verdict.deny(
                f"spec is immutable: {path} changed from {_show(before)} to {_show(after)}; "
                "delete the claim and create a new one"
            )
    return Verdict.allow()


def review_delete(
    claim_name: str, spec: ClaimSpecFacts, device: DeviceFacts | None, vmis: Sequence[VmiFacts]
) -> Verdict:
    """Whether a claim may go: not while a running VMI on its node uses its device."""
    if device is None or not device.resource_name:
        return Verdict.allow()
    names = {device.resource_name}
    with contextlib.suppress(InvalidPciAddressError):  # the schema requires a valid one
        names.add(
            dedicated_resource_name(
                ResourceName(device.resource_name), PciAddress.parse(spec.address)
            )
        )
    for vmi in vmis:
        if vmi.running and vmi.node_name == spec.node_name:
            used = next((name for name in vmi.host_devices if name in names), None)
            if used is not None:
                return Verdict.deny(
                    f'PCIDeviceClaim "{claim_name}" is in use: VirtualMachineInstance '
                    f'"{vmi.namespace}/{vmi.name}" on node "{vmi.node_name}" uses its device '
                    f'(hostDevices deviceName "{used}"); stop that VM, or remove the host '
                    "device from it, then delete the claim"
                )
    return Verdict.allow()


def _show(value: object) -> str:
    return f'"{value}"' if isinstance(value, str) else str(value).lower()
