"""The PCIDevice, PCIDeviceClaim and SRIOVNetworkDevice CRDs, as kube-apiserver enforces them."""

from __future__ import annotations

import json
import time

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from harness.kube import CRD_DIR

pytestmark = pytest.mark.kube

GROUP = "devices.harvesterhci.io"
VERSION = "v1beta1"
API_VERSION = f"{GROUP}/{VERSION}"


def harvester_device(node: str) -> dict:
    """A PCIDevice exactly as Harvester's agent writes it: no additive fields at all."""
    return {
        "apiVersion": API_VERSION,
        "kind": "PCIDevice",
        "metadata": {
            "name": f"{node}-0000001f6",
            "labels": {"nodename": node},
            "annotations": {"harvesterhci.io/pcideviceDriver": "e1000e"},
        },
        "spec": {},
    }


HARVESTER_STATUS = {
    "address": "0000:00:1f.6",
    "vendorId": "8086",
    "deviceId": "15bc",
    "classId": "0200",
    "iommuGroup": "",
    "nodeName": "titan",
    "resourceName": "intel.com/ETHERNET_CONNECTION_7_I219LM",
    "description": "Ethernet controller: Intel Corporation Ethernet Connection (7) I219-LM",
    "kernelDriverInUse": "e1000e",
}


def claim(name: str, **spec: object) -> dict:
    """A PCIDeviceClaim body with the given spec."""
    return {
        "apiVersion": API_VERSION,
        "kind": "PCIDeviceClaim",
        "metadata": {"name": name},
        "spec": spec,
    }


def refusal(err: ApiException) -> str:
    """The API server's own message for a refused request."""
    return json.loads(err.body)["message"]


@pytest.fixture
def custom(kube):
    """The custom-objects API of the test cluster, CRDs installed."""
    return client.CustomObjectsApi(kube.api_client)


class TestInstall:
    """Installing the CRDs."""

    @pytest.mark.parametrize(
        "name",
        ["pcidevices", "pcideviceclaims", "sriovnetworkdevices", "usbdevices", "usbdeviceclaims"],
    )
    def test_crd_is_established(self, kube, name):
        """Each CRD is accepted by the API server and reaches the Established condition."""
        crd = client.ApiextensionsV1Api(kube.api_client).read_custom_resource_definition(
            f"{name}.{GROUP}"
        )
        conditions = {c.type: c.status for c in crd.status.conditions}
        assert conditions["Established"] == "True"
        assert conditions["NamesAccepted"] == "True"

    def test_install_is_idempotent(self, kube):
        """Installing the CRDs again on a cluster that has them succeeds and changes nothing."""
        extensions = client.ApiextensionsV1Api(kube.api_client)
        crd_names = [
            f"pcideviceclaims.{GROUP}",
            f"pcidevices.{GROUP}",
            f"sriovnetworkdevices.{GROUP}",
            f"usbdeviceclaims.{GROUP}",
            f"usbdevices.{GROUP}",
        ]
        versions = [
            extensions.read_custom_resource_definition(n).metadata.resource_version
            for n in crd_names
        ]
        names = kube.install_crds(sorted(CRD_DIR.glob("*.yaml")))
        assert sorted(names) == crd_names
        assert [
            extensions.read_custom_resource_definition(n).metadata.resource_version
            for n in crd_names
        ] == versions


class TestPciDeviceStatus:
    """The status subresource of PCIDevice."""

    def test_status_is_written_through_status_subresource(self, custom, unique_name):
        """A status patched through /status is stored and read back unchanged."""
        body = harvester_device(unique_name("node"))
        name = body["metadata"]["name"]
        custom.create_cluster_custom_object(GROUP, VERSION, "pcidevices", body)
        custom.patch_cluster_custom_object_status(
            GROUP,
            VERSION,
            "pcidevices",
            name,
            {"status": HARVESTER_STATUS},
            _content_type="application/merge-patch+json",
        )
        stored = custom.get_cluster_custom_object(GROUP, VERSION, "pcidevices", name)
        assert stored["status"] == HARVESTER_STATUS

    def test_status_on_create_is_dropped(self, custom, unique_name):
        """A status sent with the object itself on create is not stored."""
        body = harvester_device(unique_name("node")) | {"status": HARVESTER_STATUS}
        custom.create_cluster_custom_object(GROUP, VERSION, "pcidevices", body)
        stored = custom.get_cluster_custom_object(
            GROUP, VERSION, "pcidevices", body["metadata"]["name"]
        )
        assert "status" not in stored

    def test_status_written_via_main_resource_is_ignored(self, custom, unique_name):
        """Patching status through the main resource leaves the stored status as it was."""
        body = harvester_device(unique_name("node"))
        name = body["metadata"]["name"]
        custom.create_cluster_custom_object(GROUP, VERSION, "pcidevices", body)
        custom.patch_cluster_custom_object_status(
            GROUP,
            VERSION,
            "pcidevices",
            name,
            {"status": HARVESTER_STATUS},
            _content_type="application/merge-patch+json",
        )
        custom.patch_cluster_custom_object(
            GROUP,
            VERSION,
            "pcidevices",
            name,
            {"status": {"kernelDriverInUse": "vfio-pci"}},
            _content_type="application/merge-patch+json",
        )
        stored = custom.get_cluster_custom_object(GROUP, VERSION, "pcidevices", name)
        assert stored["status"]["kernelDriverInUse"] == "e1000e"

    def test_additive_fields_are_stored(self, custom, unique_name):
        """Additive fields (NUMA -1, SR-IOV, conditions, host protection) are stored as sent."""
        body = harvester_device(unique_name("node"))
        name = body["metadata"]["name"]
        custom.create_cluster_custom_object(GROUP, VERSION, "pcidevices", body)
        status = HARVESTER_STATUS | {
            "iommuGroup": "13",
            "numaNode": -1,
            "subsystemVendorId": "17aa",
            "subsystemDeviceId": "2248",
            "revision": "0a",
            "progIf": "00",
            "physFn": "0000:03:00.0",
            "numVFs": 0,
            "totalVFs": 8,
            "hostProtected": True,
            "protectionReason": "carries the node's default route; it would cut the node off",
            "conditions": [
                {
                    "type": "Discovered",
                    "status": "True",
                    "reason": "Scanned",
                    "message": "seen in /sys/bus/pci/devices",
                    "lastTransitionTime": "2025-01-01T00:00:00Z",
                    "observedGeneration": 1,
                }
            ],
        }
        custom.patch_cluster_custom_object_status(
            GROUP,
            VERSION,
            "pcidevices",
            name,
            {"status": status},
            _content_type="application/merge-patch+json",
        )
        stored = custom.get_cluster_custom_object(GROUP, VERSION, "pcidevices", name)
        assert stored["status"] == status


class TestHarvesterCompatibility:
    """Objects in Harvester's format are accepted unchanged."""

    def test_harvester_device_round_trips_unchanged(self, custom, unique_name):
        """A Harvester-format PCIDevice reads back with the same labels, annotations and status."""
        body = harvester_device(unique_name("node"))
        name = body["metadata"]["name"]
        custom.create_cluster_custom_object(GROUP, VERSION, "pcidevices", body)
        custom.patch_cluster_custom_object_status(
            GROUP,
            VERSION,
            "pcidevices",
            name,
            {"status": HARVESTER_STATUS},
            _content_type="application/merge-patch+json",
        )
        stored = custom.get_cluster_custom_object(GROUP, VERSION, "pcidevices", name)
        assert (stored["spec"], stored["status"]) == (body["spec"], HARVESTER_STATUS)
        assert stored["metadata"]["labels"] == body["metadata"]["labels"]
        assert stored["metadata"]["annotations"] == body["metadata"]["annotations"]

    def test_harvester_claim_round_trips_unchanged(self, custom, unique_name):
        """A Harvester-format PCIDeviceClaim reads back with the same spec and status."""
        name = unique_name("node") + "-0000001f6"
        spec = {"address": "0000:00:1f.6", "nodeName": "titan", "userName": "admin"}
        status = {"kernelDriverToUnbind": "e1000e", "passthroughEnabled": True}
        custom.create_cluster_custom_object(GROUP, VERSION, "pcideviceclaims", claim(name, **spec))
        custom.patch_cluster_custom_object_status(
            GROUP,
            VERSION,
            "pcideviceclaims",
            name,
            {"status": status},
            _content_type="application/merge-patch+json",
        )
        stored = custom.get_cluster_custom_object(GROUP, VERSION, "pcideviceclaims", name)
        assert (stored["spec"], stored["status"]) == (spec, status)

    def test_harvester_sriov_device_round_trips_unchanged(self, custom, unique_name):
        """An SRIOVNetworkDevice as Harvester writes it reads back unchanged, spec and status."""
        node = unique_name("node")
        name = f"{node}-eno49"
        body = {
            "apiVersion": API_VERSION,
            "kind": "SRIOVNetworkDevice",
            "metadata": {
                "name": name,
                "labels": {"nodename": node},
                "annotations": {"sriov.devices.harvesterhi.io/interface-name": "eno49"},
            },
            "spec": {"address": "0000:04:00.0", "nodeName": node, "numVFs": 2},
        }
        status = {
            "status": "sriovNetworkDeviceEnabled",
            "vfAddresses": ["0000:04:10.0", "0000:04:10.2"],
            "vfPCIDevices": [f"{node}-000004100", f"{node}-000004102"],
        }
        custom.create_cluster_custom_object(GROUP, VERSION, "sriovnetworkdevices", body)
        custom.patch_cluster_custom_object_status(
            GROUP,
            VERSION,
            "sriovnetworkdevices",
            name,
            {"status": status},
            _content_type="application/merge-patch+json",
        )
        stored = custom.get_cluster_custom_object(GROUP, VERSION, "sriovnetworkdevices", name)
        assert (stored["spec"], stored["status"]) == (body["spec"], status)
        assert stored["metadata"]["annotations"] == body["metadata"]["annotations"]

    def test_negative_num_vfs_is_refused(self, custom, unique_name):
        """The API server refuses numVFs below 0, naming the field."""
        body = {
            "apiVersion": API_VERSION,
            "kind": "SRIOVNetworkDevice",
            "metadata": {"name": unique_name("node") + "-eno49"},
            "spec": {"address": "0000:04:00.0", "nodeName": "titan", "numVFs": -1},
        }
        with pytest.raises(ApiException) as refused:
            custom.create_cluster_custom_object(GROUP, VERSION, "sriovnetworkdevices", body)
        assert "spec.numVFs" in refusal(refused.value)


GOOD_SPEC = {"address": "0000:00:1f.6", "nodeName": "titan", "userName": "admin"}


class TestHarvesterSamples:
    """What Harvester's samples and real objects contain is accepted as written."""

    def test_claim_with_short_address_and_empty_user_is_stored(self, custom, unique_name):
        """A claim on ``00:1f.6`` with ``userName: ""`` (Harvester's sample) is stored as is."""
        name = unique_name("node") + "-001f6"
        spec = {"address": "00:1f.6", "nodeName": "titan", "userName": ""}
        custom.create_cluster_custom_object(GROUP, VERSION, "pcideviceclaims", claim(name, **spec))
        stored = custom.get_cluster_custom_object(GROUP, VERSION, "pcideviceclaims", name)
        assert stored["spec"] == spec

    def test_device_with_short_address_and_no_iommu_group_is_stored(self, custom, unique_name):
        """A PCIDevice an older Harvester agent wrote (``00:1f.6``, ``iommuGroup: ""``) is kept."""
        node = unique_name("node")
        body = harvester_device(node) | {}
        body["metadata"] = {**body["metadata"], "name": f"{node}-001f6"}
        custom.create_cluster_custom_object(GROUP, VERSION, "pcidevices", body)
        status = HARVESTER_STATUS | {"address": "00:1f.6", "iommuGroup": ""}
        custom.patch_cluster_custom_object_status(
            GROUP,
            VERSION,
            "pcidevices",
            f"{node}-001f6",
            {"status": status},
            _content_type="application/merge-patch+json",
        )
        stored = custom.get_cluster_custom_object(GROUP, VERSION, "pcidevices", f"{node}-001f6")
        assert stored["status"] == status


class TestValidation:
    """Invalid objects are refused by the API server, naming the field."""

    @pytest.mark.parametrize(
        ("spec", "expected"),
        [
            pytest.param(
                GOOD_SPEC | {"address": "0000:00:1F.6"},
                'spec.address: Invalid value: "0000:00:1F.6": spec.address in body should '
                "match '^([0-9a-f]{4}:)?[0-9a-f]{2}:[01][0-9a-f]\\.[0-7]$'",
                id="upper-case-address",
            ),
            pytest.param(
                GOOD_SPEC | {"address": "00:20.0"},
                "spec.address: Invalid value",
                id="device-above-1f",
            ),
            pytest.param(
                GOOD_SPEC | {"address": "0:1f.6"},
                "spec.address: Invalid value",
                id="one-digit-bus",
            ),
            pytest.param(
                GOOD_SPEC | {"address": "../../../etc"},
                "spec.address: Invalid value",
                id="path-address",
            ),
            pytest.param(
                GOOD_SPEC | {"disableResourcePooling": "yes"},
                'spec.disableResourcePooling: Invalid value: "string": '
                "spec.disableResourcePooling in body must be of type boolean",
                id="pooling-not-bool",
            ),
            pytest.param(
                GOOD_SPEC | {"nodeName": 7},
                'spec.nodeName: Invalid value: "integer": spec.nodeName in body must be of type '
                "string",
                id="node-not-string",
            ),
            pytest.param(
                {k: v for k, v in GOOD_SPEC.items() if k != "address"},
                "spec.address: Required value",
                id="missing-address",
            ),
            pytest.param(
                {k: v for k, v in GOOD_SPEC.items() if k != "nodeName"},
                "spec.nodeName: Required value",
                id="missing-node",
            ),
            pytest.param(
                {k: v for k, v in GOOD_SPEC.items() if k != "userName"},
                "spec.userName: Required value",
                id="missing-user",
            ),
        ],
    )
    def test_invalid_claim_is_refused(self, custom, unique_name, spec, expected):
        """A claim with a bad or missing spec field is refused with 422 naming that field."""
        name = unique_name("bad")
        with pytest.raises(ApiException) as caught:
            custom.create_cluster_custom_object(
                GROUP, VERSION, "pcideviceclaims", claim(name, **spec)
            )
        assert caught.value.status == 422
        assert expected in refusal(caught.value)

    @pytest.mark.parametrize(
        ("status", "expected"),
        [
            pytest.param(
                {"address": "0000:00:1f.8"}, "status.address: Invalid value", id="function-8"
            ),
            pytest.param(
                {"vendorId": "8086a"}, "status.vendorId: Invalid value", id="vendor-5-digits"
            ),
            pytest.param({"deviceId": "15BC"}, "status.deviceId: Invalid value", id="device-upper"),
            pytest.param({"classId": "02"}, "status.classId: Invalid value", id="class-short"),
            pytest.param(
                {"iommuGroup": 13},
                'status.iommuGroup: Invalid value: "integer": iommuGroup in body must be of type '
                "string",
                id="iommu-group-integer",
            ),
            pytest.param(
                {"numaNode": -2},
                "status.numaNode: Invalid value: -2: numaNode in body should be greater than or "
                "equal to -1",
                id="numa-below-minus-one",
            ),
        ],
    )
    def test_invalid_device_status_is_refused(self, custom, unique_name, status, expected):
        """A device status with a malformed field is refused with 422 naming that field."""
        body = harvester_device(unique_name("node"))
        name = body["metadata"]["name"]
        custom.create_cluster_custom_object(GROUP, VERSION, "pcidevices", body)
        with pytest.raises(ApiException) as caught:
            custom.patch_cluster_custom_object_status(
                GROUP,
                VERSION,
                "pcidevices",
                name,
                {"status": status},
                _content_type="application/merge-patch+json",
            )
        assert caught.value.status == 422
        assert expected in refusal(caught.value)

    def test_short_device_address_is_refused_only_when_invalid(self, custom, unique_name):
        """A PCIDevice status with the short form is stored; a short form with device 20 is not."""
        body = harvester_device(unique_name("node"))
        name = body["metadata"]["name"]
        custom.create_cluster_custom_object(GROUP, VERSION, "pcidevices", body)
        with pytest.raises(ApiException) as caught:
            custom.patch_cluster_custom_object_status(
                GROUP,
                VERSION,
                "pcidevices",
                name,
                {"status": {"address": "00:20.0"}},
                _content_type="application/merge-patch+json",
            )
        assert caught.value.status == 422
        assert "status.address: Invalid value" in refusal(caught.value)

    def test_claim_spec_is_immutable(self, custom, unique_name):
        """Changing a claim's spec after creation is refused with the CEL rule's message."""
        name = unique_name("claim")
        custom.create_cluster_custom_object(
            GROUP, VERSION, "pcideviceclaims", claim(name, **GOOD_SPEC)
        )
        with pytest.raises(ApiException) as caught:
            custom.patch_cluster_custom_object(
                GROUP,
                VERSION,
                "pcideviceclaims",
                name,
                {"spec": {"address": "0000:00:02.0"}},
                _content_type="application/merge-patch+json",
            )
        assert caught.value.status == 422
        assert "spec: Invalid value" in refusal(caught.value)
        assert "spec is immutable; delete the claim and create a new one" in refusal(caught.value)


class TestKubectl:
    """What a user sees through kubectl."""

    def test_get_pcidevices_shows_printer_columns(self, kube, custom, unique_name):
        """`kubectl get pcidevices` prints the compatible columns and the device's values."""
        body = harvester_device(unique_name("node"))
        name = body["metadata"]["name"]
        custom.create_cluster_custom_object(GROUP, VERSION, "pcidevices", body)
        custom.patch_cluster_custom_object_status(
            GROUP,
            VERSION,
            "pcidevices",
            name,
            {"status": HARVESTER_STATUS | {"iommuGroup": "7"}},
            _content_type="application/merge-patch+json",
        )
        result = kube.kubectl("get", "pcidevices", name)
        assert result.returncode == 0, result.stderr
        header, row = result.stdout.splitlines()
        columns = [
            "NAME",
            "ADDRESS",
            "VENDOR ID",
            "DEVICE ID",
            "NODE NAME",
            "DESCRIPTION",
            "KERNEL DRIVER IN USE",
            "IOMMU GROUP",
            "RESOURCE NAME",
        ]
        positions = [header.index(column) for column in columns]
        assert positions == sorted(positions)
        assert row.split("  ")[0] == name
        for value in ("0000:00:1f.6", "8086", "15bc", "titan", "e1000e", "intel.com/"):
            assert value in row

    def test_short_name_pd_lists_devices(self, kube, custom, unique_name):
        """`kubectl get pd` lists PCIDevices by their short name."""
        body = harvester_device(unique_name("node"))
        custom.create_cluster_custom_object(GROUP, VERSION, "pcidevices", body)
        result = kube.kubectl("get", "pd", "-o", "name")
        assert result.returncode == 0, result.stderr
        assert f"pcidevice.{GROUP}/{body['metadata']['name']}" in result.stdout.split()

    def test_get_claims_shows_printer_columns(self, kube, custom, unique_name):
        """`kubectl get pdc` prints address, node, user, driver, passthrough and age."""
        name = unique_name("claim")
        custom.create_cluster_custom_object(
            GROUP, VERSION, "pcideviceclaims", claim(name, **GOOD_SPEC)
        )
        result = kube.kubectl("get", "pdc", name)
        assert result.returncode == 0, result.stderr
        header = result.stdout.splitlines()[0]
        columns = [
            "NAME",
            "ADDRESS",
            "NODE NAME",
            "USER NAME",
            "KERNEL DRIVER TO UNBIND",
            "PASSTHROUGH ENABLED",
            "AGE",
        ]
        positions = [header.index(column) for column in columns]
        assert positions == sorted(positions)

    def test_explain_claim_spec_lists_fields(self, kube):
        """`kubectl explain pcideviceclaim.spec` documents every spec field and what is required."""
        result = kube.kubectl("explain", "pcideviceclaim.spec")
        assert result.returncode == 0, result.stderr
        for line in (
            "address\t<string> -required-",
            "nodeName\t<string> -required-",
            "userName\t<string> -required-",
            "disableResourcePooling\t<boolean>",
        ):
            assert line in result.stdout


class TestGarbageCollection:
    """kube-controller-manager's garbage collector acts on ownerReferences."""

    def test_device_owned_by_node_is_deleted_with_node(self, kube, custom, unique_name):
        """Deleting a Node deletes the PCIDevice whose ownerReference names that Node."""
        core = client.CoreV1Api(kube.api_client)
        node = core.create_node(
            {"apiVersion": "v1", "kind": "Node", "metadata": {"name": unique_name("node")}}
        )
        body = harvester_device(node.metadata.name)
        body["metadata"]["ownerReferences"] = [
            {
                "apiVersion": "v1",
                "kind": "Node",
                "name": node.metadata.name,
                "uid": node.metadata.uid,
            }
        ]
        name = body["metadata"]["name"]
        custom.create_cluster_custom_object(GROUP, VERSION, "pcidevices", body)
        core.delete_node(node.metadata.name)
        deadline = time.monotonic() + 120
        remaining = [name]
        while remaining and time.monotonic() < deadline:
            time.sleep(1)
            items = custom.list_cluster_custom_object(GROUP, VERSION, "pcidevices")["items"]
            remaining = [i["metadata"]["name"] for i in items if i["metadata"]["name"] == name]
        assert remaining == []
