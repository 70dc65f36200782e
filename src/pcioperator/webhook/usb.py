"""`UsbClaimAdmission`: the validating webhook of USBDeviceClaims (path ``/validate-usb``).

It reads the USBDevice the claim is named after, the PCIDeviceClaims that name its host
controller and the running VMIs, asks `pcicore.usb` (``review_usb_claim_create``,
``review_usb_claim_delete``), and answers. A read that fails is a denial that says to retry.
"""

from __future__ import annotations

import cattrs

from pcicore.address import PciAddress
from pcicore.admission import Verdict
from pcicore.errors import InvalidPciAddressError
from pcicore.usb import UsbStatus, review_usb_claim_create, review_usb_claim_delete
from pcioperator.kube.api import PCIDEVICECLAIMS, USBDEVICES, KubeApi
from pcioperator.kube.errors import NotFoundError
from pcioperator.webhook.admission import guarded_verdict
from pcioperator.webhook.facts import ClusterFacts
from pcioperator.webhook.review import AdmissionRequest
from pcioperator.wire import usb as wire
from pcioperator.wire.claim import claim_from_object


class UsbFacts:
    """Reads for USB admission decisions through one `KubeApi`."""

    def __init__(self, api: KubeApi, cluster: ClusterFacts) -> None:
        """Read USB objects through ``api``; VMIs through ``cluster``."""
        self._api = api
        self.cluster = cluster

    def usb_device(self, name: str) -> UsbStatus | None:
        """The status of USBDevice ``name`` (``None``: none, or no status yet)."""
        try:
            return wire.status_from_object(self._api.get(USBDEVICES, name))
        except NotFoundError:
            return None
        except (cattrs.BaseValidationError, TypeError):
            return None

    def controller_claimed(self, device: UsbStatus) -> bool:
        """Whether a PCIDeviceClaim names ``device``'s host controller on its node."""
        try:
            controller = PciAddress.parse(device.pci_address)
        except InvalidPciAddressError:
            return False  # no controller on PCI (or not one the agent wrote)
        items, _ = self._api.list_objects(PCIDEVICECLAIMS)
        for obj in items:
            try:
                claim = claim_from_object(obj)
                address = PciAddress.parse(claim.spec.address)
            except (cattrs.BaseValidationError, InvalidPciAddressError, KeyError, ValueError):
                continue
            if address == controller and claim.spec.node_name == device.node_name:
                return True
        return False


class UsbClaimAdmission:
    """Admission decisions for USBDeviceClaims."""

    def __init__(self, facts: UsbFacts) -> None:
        """Decide with what ``facts`` reads."""
        self._facts = facts

    def validate(self, request: AdmissionRequest) -> Verdict:
        """The validating webhook's verdict on ``request``."""
        return guarded_verdict(request, "USB claim", self._validate)

    def _validate(self, request: AdmissionRequest) -> Verdict:
        if request.operation == "CREATE":
            device = self._facts.usb_device(request.name)
            claimed = device is not None and self._facts.controller_claimed(device)
            return review_usb_claim_create(request.name, device, controller_claimed=claimed)
        if request.operation == "DELETE":
            device = self._facts.usb_device(request.name)
            return review_usb_claim_delete(request.name, device, self._facts.cluster.vmis())
        return Verdict.allow()
