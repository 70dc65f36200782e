"""Whether a ``PCIDeviceClaim`` may be created, changed or deleted: the pure admission rules.

Every function here takes what the webhook read from the request and the cluster and returns a
`Verdict`; nothing here reads the network, so each rule is tested as a table. Every denial names
the bad value and says what to do, because the user sees it verbatim from ``kubectl``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Final

import attrs

from pcicore.address import PciAddress
from pcicore.device import NodeName
from pcicore.errors import InvalidPciAddressError
from pcicore.naming import ResourceName, object_name
from pcicore.resources import dedicated_resource_name
from pcioperator.wire.claim import ClaimSpec

CLAIM_VERB: Final = "claim"
"""The RBAC verb on ``pcidevices`` (with ``resourceNames``) that lets a user claim a device."""

_BRIDGE_CLASS_ID: Final = "0604"
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
class DeviceFacts:
    """What a PCIDevice's node last reported about it (its ``status``).

    Attributes:
        name: Object name.
        address: ``status.address`` (empty when not reported).
        node_name: ``status.nodeName``.
        resource_name: ``status.resourceName``.
        iommu_group: ``status.iommuGroup`` (empty: no IOMMU group).
        class_id: ``status.classId`` (``0200``).
        host_protected: ``status.hostProtected``.
        protection_reason: ``status.protectionReason``.
    """

    name: str
    address: str = ""
    node_name: str = ""
    resource_name: str = ""
    iommu_group: str = ""
    class_id: str = ""
    host_protected: bool = False
    protection_reason: str = ""


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
class RuleSettings:
    """Cluster-wide choices of the administrator.

    Attributes:
        allow_no_iommu: Accept claims on devices without an IOMMU group (the VM could then
            reach all host memory).
    """

    allow_no_iommu: bool = False


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
    """

    claim_name: str
    spec: ClaimSpec
    user: str
    device: DeviceFacts | None
    node_devices: Sequence[DeviceFacts] = ()
    may_claim: bool = True


def user_name_to_set(spec: ClaimSpec, user: str) -> str | None:
    """The ``spec.userName`` the mutating webhook writes: ``user`` when it is empty, else none."""
    return user if not spec.user_name else None


def review_create(request: CreateRequest, settings: RuleSettings) -> Verdict:
    """Whether a new claim can ever succeed and its sender may make it."""
    spec = request.spec
    if spec.user_name and spec.user_name != request.user:
        return Verdict.deny(
            f'spec.userName "{spec.user_name}" is not the user who sent the request '
            f'("{request.user}"); leave spec.userName empty and it is set to "{request.user}"'
        )
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
    expected = object_name(NodeName(spec.node_name), address)
    device = request.device
    if device is None:
        if request.claim_name != expected:
            return _misnamed(request.claim_name, expected, spec)
        return Verdict.deny(
            f'no PCIDevice "{expected}" exists: node "{spec.node_name}" has not reported a '
            f"device at {address}; check spec.nodeName and spec.address against "
            f"'kubectl get pcidevices -l nodename={spec.node_name}'"
        )
    return _review_device(request, device, expected, settings)


def _misnamed(claim_name: str, expected: str, spec: ClaimSpec) -> Verdict:
    return Verdict.deny(
        f'claim name "{claim_name}" must be the PCIDevice\'s name "{expected}" '
        f"(<nodeName>-<address without ':' and '.'> for spec.nodeName \"{spec.node_name}\" and "
        f'spec.address "{spec.address}"); name the claim "{expected}"'
    )


def _review_device(
    request: CreateRequest, device: DeviceFacts, expected: str, settings: RuleSettings
) -> Verdict:
    spec = request.spec
    if spec.address != device.address:
        return Verdict.deny(
            f'spec.address "{spec.address}" does not match PCIDevice "{device.name}", which is '
            f'at "{device.address}"; set spec.address to "{device.address}"'
        )
    if spec.node_name != device.node_name:
        return Verdict.deny(
            f'spec.nodeName "{spec.node_name}" does not match PCIDevice "{device.name}", which '
            f'is on node "{device.node_name}"; set spec.nodeName to "{device.node_name}"'
        )
    if request.claim_name != expected:
        return _misnamed(request.claim_name, expected, spec)
    if device.host_protected:
        return Verdict.deny(
            f'PCIDevice "{device.name}" ({device.address}) is host-protected by node '
            f'"{device.node_name}": {device.protection_reason or "no reason reported"}; claim '
            "another device"
        )
    return _review_group(device, request.node_devices, settings)


def _review_group(
    device: DeviceFacts, node_devices: Sequence[DeviceFacts], settings: RuleSettings
) -> Verdict:
    """Whether VFIO can ever hand the device's whole IOMMU group to a VM."""
    if device.class_id == _BRIDGE_CLASS_ID:
        return Verdict.deny(
            f'PCIDevice "{device.name}" ({device.address}) is a PCI bridge (class '
            f"{device.class_id}); bridges are never passed through, claim the devices behind "
            "it instead"
        )
    if not device.iommu_group:
        if settings.allow_no_iommu:
            return Verdict.allow()
        return Verdict.deny(
            f'PCIDevice "{device.name}" has no IOMMU group (status.iommuGroup is empty): node '
            f'"{device.node_name}" has no IOMMU or it is disabled; enable it (intel_iommu=on / '
            "amd_iommu=on, or VT-d/AMD-Vi in the firmware), or, accepting that a VM could then "
            "reach all host memory, run the webhook with --allow-no-iommu"
        )
    for member in node_devices:
        if (
            member.iommu_group == device.iommu_group
            and member.name != device.name
            and member.class_id != _BRIDGE_CLASS_ID
            and member.host_protected
        ):
            return Verdict.deny(
                f'IOMMU group {device.iommu_group} of PCIDevice "{device.name}" can never be '
                f'handed to a VM: its member "{member.name}" ({member.address}) is '
                f"host-protected ({member.protection_reason or 'no reason reported'}); claim a "
                "device in another IOMMU group"
            )
    return Verdict.allow()


def review_update(old: ClaimSpec, new: ClaimSpec) -> Verdict:
    """Whether a change to a claim keeps its spec (metadata and status may change)."""
    for field in attrs.fields(ClaimSpec):
        before, after = getattr(old, field.name), getattr(new, field.name)
        if before != after:
            wire = _camel(field.name)
            return Verdict.deny(
                f"spec is immutable: spec.{wire} changed from {_show(before)} to "
                f"{_show(after)}; delete the claim and create a new one"
            )
    return Verdict.allow()


def review_delete(
    claim_name: str, spec: ClaimSpec, device: DeviceFacts | None, vmis: Sequence[VmiFacts]
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


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _show(value: object) -> str:
    return f'"{value}"' if isinstance(value, str) else str(value).lower()
