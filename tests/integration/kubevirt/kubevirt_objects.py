"""KubeVirt CRs, PCIDevices and claims as the tests of this folder make and read them."""

from __future__ import annotations

from pathlib import Path

from pcicore.address import PciAddress
from pcioperator.controllers.kubevirt import KUBEVIRTS, PermittedDevicesSync
from pcioperator.kube.api import PCIDEVICECLAIMS, PCIDEVICES, KubeApi
from pcioperator.kube.errors import NotFoundError
from pcioperator.wire.kubevirt import MANAGED_ANNOTATION

CRD = Path(__file__).with_name("kubevirt-crd.yaml")
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


def set_entries(api: KubeApi, namespace: str, entries: list[dict]) -> None:
    """Replace the CR's pciHostDevices, as a user with kubectl edit would."""
    api.patch(
        KUBEVIRTS,
        "kubevirt",
        {"spec": {"configuration": {"permittedHostDevices": {"pciHostDevices": entries}}}},
        namespace=namespace,
    )
