"""The USBDevice and USBDeviceClaim CRDs take objects as Harvester writes them, unchanged."""

from __future__ import annotations

import pytest
from kubernetes import client

pytestmark = pytest.mark.kube

GROUP = "devices.harvesterhci.io"
VERSION = "v1beta1"
API_VERSION = f"{GROUP}/{VERSION}"


@pytest.fixture
def custom(kube):
    """The custom-objects API of the test cluster, CRDs installed."""
    return client.CustomObjectsApi(kube.api_client)


def write_status(custom, plural, name, status):
    custom.patch_cluster_custom_object_status(
        GROUP,
        VERSION,
        plural,
        name,
        {"status": status},
        _content_type="application/merge-patch+json",
    )


class TestHarvesterUsbObjects:
    """Harvester's agent creates a USBDevice bare, then writes its status; its UI makes claims."""

    def test_harvester_usb_device_round_trips_unchanged(self, custom, unique_name):
        """Every status field Harvester writes (first release's and later) reads back as written."""
        node = unique_name("node")
        name = f"{node}-0951-1666-002045"
        body = {
            "apiVersion": API_VERSION,
            "kind": "USBDevice",
            "metadata": {"name": name, "labels": {"nodename": node}},
        }
        status = {
            "classType": "Mass Storage",
            "description": "DataTraveler 100 G3/G4/SE9 G2/50 Kyson (Kingston Technology) "
            "[DataTraveler 3.0]",
            "devicePath": "/dev/bus/usb/002/045",
            "enabled": False,
            "nodeName": node,
            "pciAddress": "0000:02:01.0",
            "productID": "1666",
            "resourceName": f"kubevirt.io/{name}",
            "vendorID": "0951",
        }
        custom.create_cluster_custom_object(GROUP, VERSION, "usbdevices", body)
        write_status(custom, "usbdevices", name, status)
        stored = custom.get_cluster_custom_object(GROUP, VERSION, "usbdevices", name)
        assert stored["status"] == status
        assert stored["metadata"]["labels"] == {"nodename": node}
        write_status(custom, "usbdevices", name, {"status": "orphaned", "message": "gone"})
        stored = custom.get_cluster_custom_object(GROUP, VERSION, "usbdevices", name)
        assert (stored["status"]["status"], stored["status"]["message"]) == ("orphaned", "gone")

    def test_harvester_usb_claim_round_trips_unchanged(self, custom, unique_name):
        """A claim with an ownerReference, ``spec.userName`` and Harvester's status is kept."""
        node = unique_name("node")
        name = f"{node}-0951-1666-002004"
        body = {
            "apiVersion": API_VERSION,
            "kind": "USBDeviceClaim",
            "metadata": {
                "name": name,
                "ownerReferences": [
                    {
                        "apiVersion": API_VERSION,
                        "kind": "USBDevice",
                        "name": name,
                        "uid": "b584d7d0-0820-445e-bc90-4ffbfe82d63b",
                    }
                ],
            },
            "spec": {"userName": "admin"},
        }
        status = {"nodeName": node, "pciAddress": "0000:02:01.0"}
        custom.create_cluster_custom_object(GROUP, VERSION, "usbdeviceclaims", body)
        write_status(custom, "usbdeviceclaims", name, status)
        stored = custom.get_cluster_custom_object(GROUP, VERSION, "usbdeviceclaims", name)
        assert (stored["spec"], stored["status"]) == (body["spec"], status)
        assert stored["metadata"]["ownerReferences"][0]["kind"] == "USBDevice"

    def test_first_release_claim_with_empty_spec_is_kept(self, custom, unique_name):
        """Harvester's first USB release wrote ``spec: {}`` and ``status.userName``."""
        name = unique_name("node") + "-0951-1666-002005"
        body = {
            "apiVersion": API_VERSION,
            "kind": "USBDeviceClaim",
            "metadata": {"name": name},
            "spec": {},
        }
        status = {"nodeName": "jacknode", "pciAddress": "0000:02:01.0", "userName": ""}
        custom.create_cluster_custom_object(GROUP, VERSION, "usbdeviceclaims", body)
        write_status(custom, "usbdeviceclaims", name, status)
        stored = custom.get_cluster_custom_object(GROUP, VERSION, "usbdeviceclaims", name)
        assert stored["status"] == status
