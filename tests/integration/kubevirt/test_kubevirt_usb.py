"""KubeVirt's permittedHostDevices.usb follows the USBDeviceClaims (real kube-apiserver + etcd)."""

from __future__ import annotations

import pytest
from kubevirt_objects import SLOW, USER_ENTRY, permitted

from pcioperator.controllers.kubevirt import KUBEVIRTS
from pcioperator.kube.api import USBDEVICECLAIMS, USBDEVICES, KubeApi
from pcioperator.wire.kubevirt import MANAGED_USB_ANNOTATION
from polling import wait_for

pytestmark = pytest.mark.kube

# An entry Harvester's controller wrote before the switch: a user's to us, never removed.
HARVESTER_ENTRY = {
    "resourceName": "kubevirt.io/old-0951-1666-002005",
    "externalResourceProvider": True,
    "selectors": [{"vendor": "0951", "product": "1666"}],
}


def usb_entries(api: KubeApi, namespace: str) -> list[dict]:
    """The CR's permittedHostDevices.usb now."""
    cr = api.get(KUBEVIRTS, "kubevirt", namespace)
    return cr["spec"]["configuration"]["permittedHostDevices"].get("usb") or []


def make_usb_device(api: KubeApi, name: str, node: str) -> None:
    """A USBDevice as the agent writes it (status through /status)."""
    api.create(
        USBDEVICES,
        {
            "apiVersion": USBDEVICES.api_version,
            "kind": USBDEVICES.kind,
            "metadata": {"name": name, "labels": {"nodename": node}},
        },
    )
    status = {
        "vendorID": "0951",
        "productID": "1666",
        "nodeName": node,
        "resourceName": f"kubevirt.io/{name}",
        "devicePath": "/dev/bus/usb/001/002",
        "description": "DataTraveler (Kingston Technology)",
        "pciAddress": "0000:00:14.0",
        "classType": "Mass Storage",
        "enabled": False,
        "status": "",
        "message": "",
    }
    api.patch(USBDEVICES, name, {"status": status}, subresource="status")


def test_usb_claim_adds_harvesters_entry_and_deleting_it_removes_it(api, kubevirt, unique_name):
    """Claim: one external entry with the device's selector; others' entries never touched."""
    namespace, _ = kubevirt
    api.patch(
        KUBEVIRTS,
        "kubevirt",
        {"spec": {"configuration": {"permittedHostDevices": {"usb": [HARVESTER_ENTRY]}}}},
        namespace=namespace,
    )
    node = unique_name("node")
    name = f"{node}-0951-1666-001002"
    make_usb_device(api, name, node)
    api.create(
        USBDEVICECLAIMS,
        {
            "apiVersion": USBDEVICECLAIMS.api_version,
            "kind": USBDEVICECLAIMS.kind,
            "metadata": {"name": name},
            "spec": {"userName": "admin"},
        },
    )
    ours = {
        "resourceName": f"kubevirt.io/{name}",
        "externalResourceProvider": True,
        "selectors": [{"vendor": "0951", "product": "1666"}],
    }
    wait_for(lambda: usb_entries(api, namespace) == [HARVESTER_ENTRY, ours], timeout=SLOW)
    assert permitted(api, namespace) == [USER_ENTRY]
    cr = api.get(KUBEVIRTS, "kubevirt", namespace)
    assert cr["metadata"]["annotations"][MANAGED_USB_ANNOTATION] == (
        '[{"pciVendorSelector":"0951:1666","resourceName":"kubevirt.io/' + name + '"}]'
    )
    api.delete(USBDEVICECLAIMS, name)
    wait_for(lambda: usb_entries(api, namespace) == [HARVESTER_ENTRY], timeout=SLOW)
    cr = api.get(KUBEVIRTS, "kubevirt", namespace)
    assert MANAGED_USB_ANNOTATION not in (cr["metadata"].get("annotations") or {})
    assert permitted(api, namespace) == [USER_ENTRY]
