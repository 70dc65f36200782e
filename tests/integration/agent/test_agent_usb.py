"""USB passthrough through the node agent: a real kube-apiserver + etcd, a fake kernel with USB.

One story, as a user lives it: the node's USB devices are published as USBDevices in Harvester's
shape; a USBDeviceClaim enables one (Ready True, nodeName and pciAddress); unplugging it leaves
the object orphaned while the claim holds it, with a Warning Event; deleting the claim deletes
the orphan. A claim on a device whose xHCI controller is claimed for PCI passthrough is refused.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fakesys.hosts import workstation
from fakesys.tree import FakeDevice
from fakesys.usb import FakeUsbDevice, UsbTree
from kube_events import reasons_about, wait_for_events
from pcioperator.kube.api import PCIDEVICECLAIMS, USBDEVICECLAIMS, USBDEVICES
from pcioperator.kube.errors import NotFoundError
from polling import wait_for

pytestmark = pytest.mark.kube

XHCI = "0000:05:00.0"
XHCI_DEVICE = FakeDevice(XHCI, 0x1B36, 0x000D, 0x0C0330, driver="xhci_hcd", iommu_group=7)
STICK = FakeUsbDevice("1-1", 2, 0x0951, 0x1666, 0x00, (0x08,), "DataTraveler 3.0")
SERIAL = FakeUsbDevice("1-2", 3, 0x0403, 0x6001, 0x00, (0xFF,))


def usb_object(api, name):
    try:
        return api.get(USBDEVICES, name)
    except NotFoundError:
        return None


def ready(api, name):
    obj = api.get(USBDEVICECLAIMS, name)
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == "Ready"), None)


def claim_manifest(name, uid=None):
    """A claim as Harvester's UI makes it: named after the device, ownerReference to it."""
    metadata = {"name": name}
    if uid is not None:
        metadata["ownerReferences"] = [
            {
                "apiVersion": "devices.harvesterhci.io/v1beta1",
                "kind": "USBDevice",
                "name": name,
                "uid": uid,
            }
        ]
    return {
        "apiVersion": "devices.harvesterhci.io/v1beta1",
        "kind": "USBDeviceClaim",
        "metadata": metadata,
        "spec": {"userName": "admin"},
    }


@pytest.fixture
def usb_host(fake_fs):
    host = workstation(fake_fs, extra=(XHCI_DEVICE,))
    usb = UsbTree(host.tree, Path("/dev")).add_bus(1, XHCI).add(STICK, SERIAL)
    return host, usb


def test_published_claimed_orphaned_and_cleaned_up(start_agent, usb_host):
    """The whole life of a USB device and its claim, each step read back from the API."""
    host, usb = usb_host
    running = start_agent(host=host)
    api, node = running.api, running.node
    stick = f"{node}-0951-1666-001002"
    serial = f"{node}-0403-6001-001003"

    wait_for(lambda: usb_object(api, stick) and usb_object(api, stick).get("status"))
    status = api.get(USBDEVICES, stick)["status"]
    assert status == {
        "vendorID": "0951",
        "productID": "1666",
        "nodeName": node,
        "resourceName": f"kubevirt.io/{stick}",
        "devicePath": "/dev/bus/usb/001/002",
        "description": status["description"],  # names depend on the installed usb.ids
        "pciAddress": XHCI,
        "classType": status["classType"],
        "enabled": False,
        "status": "",
        "message": "",
    }
    assert status["description"].endswith("[DataTraveler 3.0]")
    assert api.get(USBDEVICES, stick)["metadata"]["labels"] == {"nodename": node}
    assert usb_object(api, serial) is not None

    uid = api.get(USBDEVICES, stick)["metadata"]["uid"]
    api.create(USBDEVICECLAIMS, claim_manifest(stick, uid))
    wait_for(lambda: (ready(api, stick) or {}).get("reason") == "Enabled")
    assert api.get(USBDEVICES, stick)["status"]["enabled"] is True
    claim_status = api.get(USBDEVICECLAIMS, stick)["status"]
    assert (claim_status["nodeName"], claim_status["pciAddress"]) == (node, XHCI)
    assert set(running.agent.usb.enabled) == {stick}

    usb.unplug("1-1")
    usb.unplug("1-2")
    wait_for(lambda: usb_object(api, serial) is None)
    wait_for(lambda: api.get(USBDEVICES, stick)["status"]["status"] == "orphaned")
    orphan = api.get(USBDEVICES, stick)["status"]
    assert f"delete USBDeviceClaim {stick}" in orphan["message"]
    wait_for(lambda: (ready(api, stick) or {}).get("reason") == "DeviceOrphaned")
    wait_for_events(api, lambda events: "DeviceOrphaned" in reasons_about(events, stick))

    api.delete(USBDEVICECLAIMS, stick)
    wait_for(lambda: usb_object(api, stick) is None)
    assert running.agent.usb.enabled == {}


def test_claim_refused_while_its_controller_is_pci_claimed(start_agent, usb_host):
    """A PCIDeviceClaim on the xHCI controller: the USB claim is refused, the device disabled."""
    host, _usb = usb_host
    running = start_agent(host=host)
    api, node = running.api, running.node
    stick = f"{node}-0951-1666-001002"
    wait_for(lambda: usb_object(api, stick) and usb_object(api, stick).get("status"))
    api.create(
        PCIDEVICECLAIMS,
        {
            "apiVersion": "devices.harvesterhci.io/v1beta1",
            "kind": "PCIDeviceClaim",
            "metadata": {"name": f"{node}-000005000"},
            "spec": {"address": XHCI, "nodeName": node, "userName": "admin"},
        },
    )
    api.create(USBDEVICECLAIMS, claim_manifest(stick))
    wait_for(lambda: (ready(api, stick) or {}).get("reason") == "ControllerClaimed")
    assert XHCI in ready(api, stick)["message"]
    assert api.get(USBDEVICES, stick)["status"]["enabled"] is False


def test_harvester_claim_is_released_when_deleted(start_agent, usb_host):
    """A claim as Harvester's controller left it (its finalizer on): deleting it completes."""
    host, _usb = usb_host
    running = start_agent(host=host)
    api, node = running.api, running.node
    stick = f"{node}-0951-1666-001002"
    wait_for(lambda: usb_object(api, stick) and usb_object(api, stick).get("status"))
    body = claim_manifest(stick, api.get(USBDEVICES, stick)["metadata"]["uid"])
    body["metadata"]["finalizers"] = ["wrangler.cattle.io/usbClaimClient-device-claim-remove"]
    api.create(USBDEVICECLAIMS, body)
    wait_for(lambda: api.get(USBDEVICES, stick)["status"]["enabled"] is True)
    api.delete(USBDEVICECLAIMS, stick)
    wait_for(lambda: usb_claim_gone(api, stick))
    assert api.get(USBDEVICES, stick)["status"]["enabled"] is False


def usb_claim_gone(api, name):
    try:
        api.get(USBDEVICECLAIMS, name)
    except NotFoundError:
        return True
    return False
