"""The USBDeviceClaim webhook through the real API server: what it refuses and what it says."""

from __future__ import annotations

import time

import pytest
from webhook_support import TEST_LABEL, create_device

from pcioperator.kube.api import PCIDEVICECLAIMS, USBDEVICECLAIMS, USBDEVICES
from pcioperator.kube.errors import ApiError

pytestmark = pytest.mark.kube

USB_HOOK = "validate.usbdeviceclaims.devices.harvesterhci.io"
CONTROLLER = "0000:00:14.0"


def usb_claim(name: str, label: str) -> dict:
    """A USBDeviceClaim this test's webhook reviews."""
    return {
        "apiVersion": USBDEVICECLAIMS.api_version,
        "kind": USBDEVICECLAIMS.kind,
        "metadata": {"name": name, "labels": {TEST_LABEL: label}},
        "spec": {"userName": "admin"},
    }


def make_usb_device(admin, name: str, node: str, **status) -> None:
    """A USBDevice with status, as the agent publishes it."""
    admin.create(
        USBDEVICES,
        {
            "apiVersion": USBDEVICES.api_version,
            "kind": USBDEVICES.kind,
            "metadata": {"name": name, "labels": {"nodename": node}},
        },
    )
    body = {
        "vendorID": "0951",
        "productID": "1666",
        "nodeName": node,
        "resourceName": f"kubevirt.io/{name}",
        "devicePath": "/dev/bus/usb/001/002",
        "description": "stick",
        "pciAddress": CONTROLLER,
        "classType": "Mass Storage",
        **status,
    }
    admin.patch(USBDEVICES, name, {"status": body}, subresource="status")


def refused(admin, body) -> str:
    """The USB webhook's message refusing the creation of ``body`` (waits until it is in effect)."""
    deadline = time.monotonic() + 60
    marker = f'admission webhook "{USB_HOOK}" denied the request: '
    while True:
        try:
            admin.create(USBDEVICECLAIMS, body)
        except ApiError as err:
            if marker in str(err):
                return str(err).split(marker, 1)[1]
            if time.monotonic() > deadline:
                raise
        else:
            admin.delete(USBDEVICECLAIMS, body["metadata"]["name"])
            if time.monotonic() > deadline:
                pytest.fail("the API server accepted a claim the webhook should refuse")
        time.sleep(0.5)


def test_claim_naming_no_usb_device_is_refused(webhook, unique_name):
    """Not a USBDevice's name, or no such USBDevice: one line naming it and what to do."""
    admin = webhook.admin
    message = refused(admin, usb_claim("not-a-usb-name", webhook.label))
    assert "invalid USB device name 'not-a-usb-name'" in message
    name = f"{unique_name('node')}-0951-1666-001002"
    message = refused(admin, usb_claim(name, webhook.label))
    assert f'no USBDevice "{name}"' in message
    assert "kubectl get usbdevices" in message


def test_orphaned_device_and_claimed_controller_are_refused(webhook, unique_name):
    """An orphaned USBDevice, or one behind a PCI-claimed controller, cannot be claimed."""
    admin = webhook.admin
    node = unique_name("node")
    orphan = f"{node}-0951-1666-001002"
    make_usb_device(admin, orphan, node, status="orphaned", message="it left")
    assert "is orphaned (it left)" in refused(admin, usb_claim(orphan, webhook.label))
    behind = f"{node}-0951-1666-001003"
    make_usb_device(admin, behind, node)
    admin.create(
        PCIDEVICECLAIMS,
        {
            "apiVersion": PCIDEVICECLAIMS.api_version,
            "kind": PCIDEVICECLAIMS.kind,
            "metadata": {"name": f"{node}-000000140"},
            "spec": {"address": CONTROLLER, "nodeName": node, "userName": "admin"},
        },
    )
    message = refused(admin, usb_claim(behind, webhook.label))
    assert f"USB host controller {CONTROLLER}" in message
    assert "delete that PCIDeviceClaim first" in message


def test_claim_of_a_present_device_is_admitted(webhook, unique_name):
    """A USBDevice that can be enabled: the claim is created."""
    admin = webhook.admin
    node = unique_name("node")
    name = f"{node}-0951-1666-001004"
    make_usb_device(admin, name, node)
    refused(admin, usb_claim("not-a-usb-name", webhook.label))  # the USB hook is in effect
    admin.create(USBDEVICECLAIMS, usb_claim(name, webhook.label))
    assert admin.get(USBDEVICECLAIMS, name)["spec"] == {"userName": "admin"}


def test_pci_claim_of_a_controller_with_an_enabled_usb_device_is_refused(webhook, unique_name):
    """The converse: a PCIDeviceClaim on the xHCI controller while a USB device is enabled."""
    admin = webhook.admin
    node = unique_name("node")
    create_device(admin, node, CONTROLLER, class_id="0c03", resource_name="intel.com/XHCI")
    make_usb_device(admin, f"{node}-0951-1666-001005", node, enabled=True)
    name = f"{node}-000000140"
    with pytest.raises(ApiError) as refused_claim:
        admin.create(PCIDEVICECLAIMS, webhook.claim_body(name, CONTROLLER, node, "u"))
    message = str(refused_claim.value)
    assert f"enabled USBDevice(s) {node}-0951-1666-001005" in message
    assert "delete their USBDeviceClaims first" in message
