"""The KubeVirt permitted-devices controller against a real kube-apiserver + etcd."""

from __future__ import annotations

import pytest

from pcicore.address import PciAddress
from pcioperator.kube.api import PCIDEVICECLAIMS, PCIDEVICES, KubeApi
from pcioperator.kube.errors import NotFoundError
from pcioperator.kubevirt import KUBEVIRTS, MANAGED_ANNOTATION, KubeVirtTarget, PermittedDevicesSync
from polling import wait_for

pytestmark = pytest.mark.kube

NIC = "intel.com/I350_GIGABIT_NETWORK_CONNECTION"
OURS = {"pciVendorSelector": "8086:1521", "resourceName": NIC, "externalResourceProvider": True}
SLOW = 60.0  # generous: the API server shares two cores with other suites


USER_ENTRY = {"pciVendorSelector": "1AF4:1000", "resourceName": "devices.kubevirt.io/virtio"}


def kubevirt_body(namespace: str, name: str = "kubevirt", entries=(USER_ENTRY,)) -> dict:
    """A KubeVirt CR with a user-written permitted entry."""
    return {
        "apiVersion": KUBEVIRTS.api_version,
        "kind": KUBEVIRTS.kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "configuration": {
                "developerConfiguration": {"featureGates": ["HostDevices"]},
                "permittedHostDevices": {"pciHostDevices": [dict(e) for e in entries]},
            }
        },
    }


def permitted(api: KubeApi, namespace: str, name: str = "kubevirt") -> list[dict]:
    """The CR's pciHostDevices now."""
    cr = api.get(KUBEVIRTS, name, namespace)
    return cr["spec"]["configuration"]["permittedHostDevices"].get("pciHostDevices") or []


def make_device(
    api: KubeApi,
    node: str,
    address: str,
    *,
    vendor: str = "8086",
    device: str = "1521",
    resource: str = "intel.com/I350_GIGABIT_NETWORK_CONNECTION",
) -> str:
    """Create a PCIDevice as the agent would (status through the /status subresource)."""
    name = f"{node}-{PciAddress.parse(address).compact}"
    api.create(
        PCIDEVICES,
        {
            "apiVersion": PCIDEVICES.api_version,
            "kind": PCIDEVICES.kind,
            "metadata": {"name": name, "labels": {"nodename": node}},
            "spec": {},
        },
    )
    api.patch(
        PCIDEVICES,
        name,
        {
            "status": {
                "address": address,
                "vendorId": vendor,
                "deviceId": device,
                "classId": "0200",
                "nodeName": node,
                "resourceName": resource,
                "iommuGroup": "12",
                "description": "Ethernet controller: test",
            }
        },
        subresource="status",
    )
    return name


def make_claim(api: KubeApi, node: str, address: str, **spec) -> str:
    """Create a claim on ``address`` of ``node`` (named like the device, as Harvester does)."""
    name = f"{node}-{PciAddress.parse(address).compact}"
    api.create(
        PCIDEVICECLAIMS,
        {
            "apiVersion": PCIDEVICECLAIMS.api_version,
            "kind": PCIDEVICECLAIMS.kind,
            "metadata": {"name": name},
            "spec": {"address": address, "nodeName": node, "userName": "alice", **spec},
        },
    )
    return name


def delete_claim(api: KubeApi, name: str) -> None:
    """Delete a claim, dropping any finalizer (no agent runs here to remove it)."""
    try:
        api.patch(PCIDEVICECLAIMS, name, {"metadata": {"finalizers": None}})
        api.delete(PCIDEVICECLAIMS, name)
    except NotFoundError:
        return


def annotation(api: KubeApi, namespace: str, name: str = "kubevirt") -> str | None:
    """The ownership record on the CR."""
    cr = api.get(KUBEVIRTS, name, namespace)
    return (cr["metadata"].get("annotations") or {}).get(MANAGED_ANNOTATION)


def settled(sync: PermittedDevicesSync) -> bool:
    """Whether the last reconcile found nothing to change."""
    return sync.last_plan is not None and not sync.last_plan.changed


class TestPermittedDevices:
    """The CR's pciHostDevices follow the claims; users' entries are never touched."""

    def test_claim_adds_entry_and_deleting_it_removes_it(
        self, api, make_namespace, start_controller, unique_name
    ):
        """A claim adds an external entry beside the user's; deleting the claim removes it."""
        namespace = make_namespace()
        api.create(KUBEVIRTS, kubevirt_body(namespace), namespace)
        start_controller(KubeVirtTarget(namespace=namespace))
        node = unique_name("node")
        make_device(api, node, "0000:03:00.0")
        claim = make_claim(api, node, "0000:03:00.0")
        wait_for(lambda: permitted(api, namespace) == [USER_ENTRY, OURS], timeout=SLOW)
        assert annotation(api, namespace) == (
            '[{"pciVendorSelector":"8086:1521","resourceName":"' + NIC + '"}]'
        )
        delete_claim(api, claim)
        wait_for(lambda: permitted(api, namespace) == [USER_ENTRY], timeout=SLOW)
        assert annotation(api, namespace) is None

    def test_entry_stays_while_another_claim_needs_it(
        self, api, make_namespace, start_controller, unique_name
    ):
        """Two claims of one kind on two nodes need one entry; it goes with the last claim."""
        namespace = make_namespace()
        api.create(KUBEVIRTS, kubevirt_body(namespace), namespace)
        controller = start_controller(KubeVirtTarget(namespace=namespace))
        nodes = [unique_name("node"), unique_name("node")]
        claims = []
        for node in nodes:
            make_device(api, node, "0000:03:00.0")
            claims.append(make_claim(api, node, "0000:03:00.0"))
        wait_for(lambda: permitted(api, namespace) == [USER_ENTRY, OURS], timeout=SLOW)
        delete_claim(api, claims[0])
        wait_for(lambda: controller.sync.claims.get(claims[0]) is None, timeout=SLOW)
        wait_for(lambda: settled(controller.sync), timeout=SLOW)
        assert permitted(api, namespace) == [USER_ENTRY, OURS]
        delete_claim(api, claims[1])
        wait_for(lambda: permitted(api, namespace) == [USER_ENTRY], timeout=SLOW)

    def test_second_reconcile_writes_nothing(
        self, api, make_namespace, start_controller, unique_name
    ):
        """Once the CR is in step, reconciling again makes no write at all."""
        namespace = make_namespace()
        api.create(KUBEVIRTS, kubevirt_body(namespace), namespace)
        controller = start_controller(KubeVirtTarget(namespace=namespace))
        node = unique_name("node")
        make_device(api, node, "0000:03:00.0")
        make_claim(api, node, "0000:03:00.0")
        wait_for(lambda: permitted(api, namespace) == [USER_ENTRY, OURS], timeout=SLOW)
        wait_for(lambda: settled(controller.sync), timeout=SLOW)
        before = controller.sync.api.requests.copy()
        assert controller.sync.reconcile() is None
        after = controller.sync.api.requests
        assert {verb: after[verb] - before[verb] for verb in ("create", "update", "patch")} == {
            "create": 0,
            "update": 0,
            "patch": 0,
        }
        assert not controller.sync.last_plan.changed

    def test_users_entry_with_same_resource_is_not_duplicated_nor_owned(
        self, api, make_namespace, start_controller, unique_name
    ):
        """A user's entry for the claimed resource serves; it is neither duplicated nor removed."""
        namespace = make_namespace()
        user_nic = {"pciVendorSelector": "8086:1521", "resourceName": NIC}
        api.create(KUBEVIRTS, kubevirt_body(namespace, entries=(USER_ENTRY, user_nic)), namespace)
        controller = start_controller(KubeVirtTarget(namespace=namespace))
        node = unique_name("node")
        make_device(api, node, "0000:03:00.0")
        claim = make_claim(api, node, "0000:03:00.0")
        wait_for(
            lambda: controller.sync.last_plan is not None and controller.sync.last_plan.blocked,
            timeout=SLOW,
        )
        assert permitted(api, namespace) == [USER_ENTRY, user_nic]
        delete_claim(api, claim)
        wait_for(lambda: controller.sync.claims.get(claim) is None, timeout=SLOW)
        wait_for(lambda: settled(controller.sync), timeout=SLOW)
        assert permitted(api, namespace) == [USER_ENTRY, user_nic]
        assert annotation(api, namespace) is None

    def test_dedicated_claim_gets_its_own_resource(
        self, api, make_namespace, start_controller, unique_name
    ):
        """A claim with disableResourcePooling permits the device's own resource name."""
        namespace = make_namespace()
        api.create(KUBEVIRTS, kubevirt_body(namespace), namespace)
        start_controller(KubeVirtTarget(namespace=namespace))
        node = unique_name("node")
        make_device(api, node, "0000:03:00.1")
        make_claim(api, node, "0000:03:00.1", disableResourcePooling=True)
        dedicated = {**OURS, "resourceName": f"{NIC}-000003001"}
        wait_for(lambda: permitted(api, namespace) == [USER_ENTRY, dedicated], timeout=SLOW)

    def test_user_edits_survive_and_removed_entry_comes_back(
        self, api, make_namespace, start_controller, unique_name
    ):
        """Our entry deleted by hand while claimed is re-added; users' later edits are kept."""
        namespace = make_namespace()
        api.create(KUBEVIRTS, kubevirt_body(namespace), namespace)
        start_controller(KubeVirtTarget(namespace=namespace))
        node = unique_name("node")
        make_device(api, node, "0000:03:00.0")
        make_claim(api, node, "0000:03:00.0")
        wait_for(lambda: permitted(api, namespace) == [USER_ENTRY, OURS], timeout=SLOW)
        gpu = {"pciVendorSelector": "10DE:2236", "resourceName": "nvidia.com/A10"}
        set_entries(api, namespace, [USER_ENTRY, gpu])
        wait_for(lambda: permitted(api, namespace) == [USER_ENTRY, gpu, OURS], timeout=SLOW)

    def test_missing_cr_is_waited_for_without_errors(
        self, api, make_namespace, start_controller, unique_name
    ):
        """Without the CR the controller waits quietly; once it appears, it is filled in."""
        namespace = make_namespace()
        controller = start_controller(KubeVirtTarget(namespace=namespace))
        node = unique_name("node")
        make_device(api, node, "0000:03:00.0")
        claim = make_claim(api, node, "0000:03:00.0")
        wait_for(controller.sync.kubevirts.synced.is_set, timeout=SLOW)
        wait_for(lambda: controller.sync.claims.get(claim) is not None, timeout=SLOW)
        wait_for(lambda: len(controller.queue) == 0, timeout=SLOW)
        assert controller.queue.failures(PermittedDevicesSync.KEY) == 0
        api.create(KUBEVIRTS, kubevirt_body(namespace), namespace)
        wait_for(lambda: permitted(api, namespace) == [USER_ENTRY, OURS], timeout=SLOW)


def set_entries(api: KubeApi, namespace: str, entries: list[dict]) -> None:
    """Replace the CR's pciHostDevices, as a user with kubectl edit would."""
    api.patch(
        KUBEVIRTS,
        "kubevirt",
        {"spec": {"configuration": {"permittedHostDevices": {"pciHostDevices": entries}}}},
        namespace=namespace,
    )
