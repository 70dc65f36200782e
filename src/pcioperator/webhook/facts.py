"""What the webhook reads from the cluster to decide: devices, VMIs, and who may claim what.

The objects read are turned into the domain values of `pcicore.admission` here, at the edge.

Reads go straight to the API server on every request (no cache): an admission decision must see
the device as its node last reported it, and the webhook is called only when claims change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import cattrs

from pcicore.admission import CLAIM_VERB, DeviceFacts, VmiFacts
from pcicore.device import IommuGroup, PciClass
from pcioperator.kube.api import PCIDEVICES, USBDEVICES, JsonObject, KubeApi, Resource
from pcioperator.kube.errors import NotFoundError
from pcioperator.wire import usb as usb_wire
from pcioperator.wire.kubevirt import vmi_from_object
from pcioperator.wire.pcidevice import reported_status
from pcioperator.wire.pcidevice_text import API_GROUP, NODE_LABEL

SUBJECT_ACCESS_REVIEWS: Final = Resource(
    "authorization.k8s.io", "v1", "subjectaccessreviews", "SubjectAccessReview"
)
# VMIs are namespaced; the collection path without a namespace lists them in every namespace,
# which is what `Resource` builds for a cluster-scoped resource.
ALL_VMIS: Final = Resource("kubevirt.io", "v1", "virtualmachineinstances", "VirtualMachineInstance")


_CLASS_ID_LENGTH: Final = 4


def _iommu_group(text: str) -> IommuGroup | None:
    """``status.iommuGroup`` ("12"); empty or not a number: the device has none."""
    return IommuGroup(int(text)) if text.isdigit() else None


def _pci_class(text: str) -> PciClass | None:
    """``status.classId`` (``0604``: class and subclass in hex), or ``None`` if not one."""
    try:
        code = int(text, 16)
    except ValueError:
        return None
    return PciClass.from_code(code << 8) if len(text) == _CLASS_ID_LENGTH else None


def device_facts(obj: JsonObject) -> DeviceFacts:
    """The `DeviceFacts` of a PCIDevice object (missing status fields read as empty).

    Raises:
        cattrs.BaseValidationError: a status field has the wrong shape.
    """
    status = reported_status(obj)
    return DeviceFacts(
        name=str(obj["metadata"]["name"]),
        address=status.address,
        node_name=status.node_name,
        resource_name=status.resource_name,
        iommu_group=_iommu_group(status.iommu_group),
        pci_class=_pci_class(status.class_id),
        host_protected=status.host_protected,
        protection_reason=status.protection_reason,
    )


def vmi_facts(obj: JsonObject) -> VmiFacts:
    """The `VmiFacts` of a VirtualMachineInstance object.

    Raises:
        cattrs.BaseValidationError: a field has the wrong shape.
    """
    vmi = vmi_from_object(obj)
    return VmiFacts(
        namespace=vmi.metadata.namespace,
        name=vmi.metadata.name,
        node_name=vmi.status.node_name,
        phase=vmi.status.phase,
        host_devices=vmi.host_device_names,
    )


class ClusterFacts:
    """Reads for admission decisions through one `KubeApi`."""

    def __init__(self, api: KubeApi) -> None:
        """Read through ``api``."""
        self._api = api

    def device(self, name: str) -> DeviceFacts | None:
        """The PCIDevice ``name``, or ``None`` if there is none."""
        try:
            return device_facts(self._api.get(PCIDEVICES, name))
        except NotFoundError:
            return None

    def node_devices(self, node: str) -> Sequence[DeviceFacts]:
        """Every PCIDevice labelled as ``node``'s."""
        items, _ = self._api.list_objects(PCIDEVICES, label_selector=f"{NODE_LABEL}={node}")
        return [device_facts(item) for item in items]

    def enabled_usb_behind(self, node: str, controller: str) -> tuple[str, ...]:
        """The enabled USBDevices of ``node`` behind the USB host controller ``controller``.

        None when the USBDevice CRD is not installed.
        """
        try:
            items, _ = self._api.list_objects(USBDEVICES, label_selector=f"{NODE_LABEL}={node}")
        except NotFoundError:
            return ()
        found = []
        for item in items:
            try:
                status = usb_wire.status_from_object(item)
            except (cattrs.BaseValidationError, TypeError):
                continue
            if status is not None and status.enabled and status.pci_address == controller:
                found.append(str(item["metadata"]["name"]))
        return tuple(found)

    def vmis(self) -> Sequence[VmiFacts]:
        """Every KubeVirt VMI in the cluster; none when KubeVirt is not installed."""
        try:
            items, _ = self._api.list_objects(ALL_VMIS)
        except NotFoundError:  # no virtualmachineinstances.kubevirt.io CRD
            return []
        return [vmi_facts(item) for item in items]

    def may_claim(self, user: Mapping[str, Any], device_name: str) -> bool:
        """Whether RBAC grants ``user`` (an AdmissionRequest ``userInfo``) ``claim`` on the device.

        Kubernetes does not apply ``resourceNames`` to ``create`` (the name is not known when it
        authorizes), so the per-device permission is a verb of its own, checked here.
        """
        review = self._api.create(
            SUBJECT_ACCESS_REVIEWS,
            {
                "apiVersion": SUBJECT_ACCESS_REVIEWS.api_version,
                "kind": SUBJECT_ACCESS_REVIEWS.kind,
                "spec": {
                    "user": user.get("username", ""),
                    "uid": user.get("uid", ""),
                    "groups": list(user.get("groups") or ()),
                    "extra": dict(user.get("extra") or {}),
                    "resourceAttributes": {
                        "group": API_GROUP,
                        "resource": PCIDEVICES.plural,
                        "verb": CLAIM_VERB,
                        "name": device_name,
                    },
                },
            },
        )
        return (review.get("status") or {}).get("allowed") is True
