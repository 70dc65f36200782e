"""Every admission rule end to end: the real API server calls the webhook on 127.0.0.1."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from webhook_support import create_device, denial, refusal

from pcioperator.kube.api import PCIDEVICECLAIMS, KubeApi, Resource
from pcioperator.kube.errors import ApiError
from pcioperator.webhook.admission import REQUESTED_BY

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.kube

ADDRESS = "0000:03:00.0"
VMIS = Resource(
    "kubevirt.io", "v1", "virtualmachineinstances", "VirtualMachineInstance", namespaced=True
)
VMI_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: virtualmachineinstances.kubevirt.io
spec:
  group: kubevirt.io
  names:
    kind: VirtualMachineInstance
    listKind: VirtualMachineInstanceList
    plural: virtualmachineinstances
    singular: virtualmachineinstance
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      subresources: {status: {}}
      schema:
        openAPIV3Schema:
          type: object
          x-kubernetes-preserve-unknown-fields: true
"""


@pytest.fixture
def node(unique_name) -> str:
    return unique_name("node")


def _create(api: KubeApi, body):
    return lambda: api.create(PCIDEVICECLAIMS, body)


def _create_as(api_client, body):
    custom = client.CustomObjectsApi(api_client)
    return lambda: custom.create_cluster_custom_object(
        "devices.harvesterhci.io", "v1beta1", "pcideviceclaims", body
    )


def _admin_create(kube, body):
    return _create_as(kube.api_client, body)


class TestCreate:
    """Claims that can only fail are refused at create time, with what to do."""

    def test_missing_device(self, kube, webhook, node):
        """A claim on a device its node never reported is refused, naming the device."""
        name = f"{node}-000003000"
        body = webhook.claim_body(name, ADDRESS, node)
        assert refusal(_admin_create(kube, body)) == denial(
            f'no PCIDevice "{name}" exists: node "{node}" has not reported a device at '
            f"{ADDRESS}; check spec.nodeName and spec.address against "
            f"'kubectl get pcidevices -l nodename={node}'"
        )

    def test_name_must_be_the_device_name(self, kube, webhook, node):
        """A claim not named <node>-<compact address> is refused with the right name."""
        device = create_device(webhook.admin, node, ADDRESS)
        body = webhook.claim_body("my-nic", ADDRESS, node)
        assert refusal(_admin_create(kube, body)) == denial(
            f'claim name "my-nic" must be the PCIDevice\'s name "{device}" '
            f"(<nodeName>-<address without ':' and '.'> for spec.nodeName \"{node}\" and "
            f'spec.address "{ADDRESS}"); name the claim "{device}"'
        )

    def test_address_must_match_the_device(self, kube, webhook, node):
        """spec.address other than the device's is refused with the device's address."""
        device = create_device(webhook.admin, node, ADDRESS)
        body = webhook.claim_body(device, "0000:03:00.1", node)
        assert refusal(_admin_create(kube, body)) == denial(
            f'spec.address "0000:03:00.1" does not match PCIDevice "{device}", which is at '
            f'"{ADDRESS}"; set spec.address to "{ADDRESS}"'
        )

    def test_node_must_match_the_device(self, kube, webhook, node):
        """spec.nodeName other than the device's is refused with the device's node."""
        device = create_device(webhook.admin, node, ADDRESS)
        body = webhook.claim_body(device, ADDRESS, "elsewhere")
        assert refusal(_admin_create(kube, body)) == denial(
            f'spec.nodeName "elsewhere" does not match PCIDevice "{device}", which is on node '
            f'"{node}"; set spec.nodeName to "{node}"'
        )

    def test_host_protected_device(self, kube, webhook, node):
        """A device its node reports as host-protected is refused with the node's reason."""
        reason = "carries the node's default route"
        device = create_device(
            webhook.admin, node, ADDRESS, hostProtected=True, protectionReason=reason
        )
        body = webhook.claim_body(device, ADDRESS, node)
        assert refusal(_admin_create(kube, body)) == denial(
            f'PCIDevice "{device}" ({ADDRESS}) is host-protected by node "{node}": {reason}; '
            "claim another device"
        )

    def test_device_without_iommu_group(self, kube, webhook, node):
        """A device with no IOMMU group is refused, with how to enable the node's IOMMU."""
        device = create_device(webhook.admin, node, ADDRESS, iommu_group="")
        body = webhook.claim_body(device, ADDRESS, node)
        assert refusal(_admin_create(kube, body)) == denial(
            f'PCIDevice "{device}" ({ADDRESS}) has no IOMMU group: node "{node}" has no IOMMU '
            "enabled, and passthrough without one is not supported (vfio-pci refuses it, and a "
            "VM could reach all host memory); enable the IOMMU (VT-d or AMD-Vi in the firmware, "
            "intel_iommu=on or amd_iommu=on on the kernel command line), reboot the node and "
            "claim it again"
        )

    def test_bridge(self, kube, webhook, node):
        """A PCI bridge (classId 0604) is refused in the words the node agent uses."""
        device = create_device(webhook.admin, node, ADDRESS, class_id="0604")
        body = webhook.claim_body(device, ADDRESS, node)
        assert refusal(_admin_create(kube, body)) == denial(
            f'PCIDevice "{device}" ({ADDRESS}) is a PCI bridge (class 0604); bridges are never '
            "passed through, claim the devices behind it instead"
        )

    def test_group_with_a_protected_member(self, kube, webhook, node):
        """A device whose IOMMU group holds a host-protected device can never be handed over."""
        device = create_device(webhook.admin, node, ADDRESS, iommu_group="12")
        member = create_device(
            webhook.admin,
            node,
            "0000:03:00.1",
            iommu_group="12",
            hostProtected=True,
            protectionReason="controller of the disk mounted at /",
        )
        body = webhook.claim_body(device, ADDRESS, node)
        assert refusal(_admin_create(kube, body)) == denial(
            f'IOMMU group 12 of PCIDevice "{device}" can never be handed to a VM: its member '
            f'"{member}" (0000:03:00.1) is host-protected (controller of the disk mounted at /); '
            "claim a device in another IOMMU group"
        )

    def test_valid_claim_gets_the_requesting_user(self, kube, webhook, node):
        """A valid claim without userName is admitted with the authenticated user's name."""
        device = create_device(webhook.admin, node, ADDRESS)
        created = webhook.admin.create(PCIDEVICECLAIMS, webhook.claim_body(device, ADDRESS, node))
        assert created["spec"]["userName"] == "admin"

    def test_ui_user_name_is_admitted_and_the_requester_recorded(self, kube, webhook, node):
        """Harvester's UI claim (userName: the Rancher user) is admitted; who sent it is kept."""
        device = create_device(webhook.admin, node, ADDRESS)
        body = webhook.claim_body(device, ADDRESS, node, user_name="u-rancher")
        body["metadata"]["annotations"] = {REQUESTED_BY: "mallory"}  # a forged record is replaced
        created = webhook.admin.create(PCIDEVICECLAIMS, body)
        assert created["spec"]["userName"] == "u-rancher"
        assert created["metadata"]["annotations"][REQUESTED_BY] == "admin"

    def test_requester_record_cannot_be_changed(self, kube, webhook, node):
        """An update that rewrites who created the claim is refused, saying why."""
        device = create_device(webhook.admin, node, ADDRESS)
        webhook.admin.create(PCIDEVICECLAIMS, webhook.claim_body(device, ADDRESS, node))
        with pytest.raises(ApiError) as caught:
            webhook.admin.patch(
                PCIDEVICECLAIMS, device, {"metadata": {"annotations": {REQUESTED_BY: "mallory"}}}
            )
        assert "the record of who created this claim (admin) cannot be changed" in str(caught.value)

    def test_own_user_name_accepted(self, kube, webhook, node):
        """A userName equal to the requesting user's is kept."""
        device = create_device(webhook.admin, node, ADDRESS)
        body = webhook.claim_body(device, ADDRESS, node, user_name="admin")
        assert webhook.admin.create(PCIDEVICECLAIMS, body)["spec"]["userName"] == "admin"


class TestUpdate:
    """A claim's spec cannot change; its metadata can."""

    def test_spec_change_refused(self, kube, webhook, node):
        """Changing spec.address is refused; the CRD's own rule answers before the webhook."""
        device = create_device(webhook.admin, node, ADDRESS)
        webhook.admin.create(PCIDEVICECLAIMS, webhook.claim_body(device, ADDRESS, node))
        custom = client.CustomObjectsApi(kube.api_client)
        message = refusal(
            lambda: custom.patch_cluster_custom_object(
                "devices.harvesterhci.io",
                "v1beta1",
                "pcideviceclaims",
                device,
                {"spec": {"address": "0000:03:00.1"}},
            )
        )
        assert message == (
            f'PCIDeviceClaim.devices.harvesterhci.io "{device}" is invalid: spec: Invalid value: '
            "spec is immutable; delete the claim and create a new one"
        )

    def test_metadata_change_allowed(self, kube, webhook, node):
        """Finalizers and labels change freely (the agent adds its finalizer by update)."""
        device = create_device(webhook.admin, node, ADDRESS)
        webhook.admin.create(PCIDEVICECLAIMS, webhook.claim_body(device, ADDRESS, node))
        patched = webhook.admin.patch(
            PCIDEVICECLAIMS,
            device,
            {"metadata": {"finalizers": ["example.com/test"], "labels": {"team": "a"}}},
        )
        assert patched["metadata"]["finalizers"] == ["example.com/test"]
        webhook.admin.patch(PCIDEVICECLAIMS, device, {"metadata": {"finalizers": None}})


class TestPerDeviceRbac:
    """A user with the 'claim' verb on one PCIDevice can claim that device and no other."""

    @pytest.fixture
    def bob(self, kube, unique_name) -> tuple[str, Path]:
        """An unprivileged user (client certificate, no groups) and its kubeconfig."""
        name = unique_name("bob")
        return name, kube.user_kubeconfig(name)

    def test_one_device_only(self, kube, webhook, node, bob):
        """Bob claims the device he was granted; the other one is refused with the RBAC fix."""
        user, kubeconfig = bob
        allowed = create_device(webhook.admin, node, ADDRESS)
        other = create_device(webhook.admin, node, "0000:04:00.0")
        rbac = client.RbacAuthorizationV1Api(kube.api_client)
        role = {
            "metadata": {"name": user},
            "rules": [
                {
                    "apiGroups": ["devices.harvesterhci.io"],
                    "resources": ["pcideviceclaims"],
                    "verbs": ["create", "get", "list", "watch", "delete"],
                },
                {
                    "apiGroups": ["devices.harvesterhci.io"],
                    "resources": ["pcidevices"],
                    "verbs": ["claim"],
                    "resourceNames": [allowed],
                },
            ],
        }
        binding = {
            "metadata": {"name": user},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": user,
            },
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
        }
        rbac.create_cluster_role(role)
        rbac.create_cluster_role_binding(binding)
        bob_client = config.new_client_from_config(config_file=str(kubeconfig))
        try:
            bob_api = KubeApi(bob_client)
            created = bob_api.create(PCIDEVICECLAIMS, webhook.claim_body(allowed, ADDRESS, node))
            assert created["spec"]["userName"] == user
            body = webhook.claim_body(other, "0000:04:00.0", node)
            assert refusal(_create_as(bob_client, body)) == denial(
                f'user "{user}" may not claim PCIDevice "{other}"; ask an administrator for '
                'RBAC verb "claim" on resource "pcidevices" (apiGroup devices.harvesterhci.io) '
                f'with resourceNames ["{other}"]'
            )
        finally:
            bob_client.close()
            for call in (rbac.delete_cluster_role_binding, rbac.delete_cluster_role):
                with contextlib.suppress(ApiException):
                    call(user)


class TestDelete:
    """A claim a running VM uses cannot be deleted; otherwise deletion goes through."""

    def test_unused_claim_deleted(self, kube, webhook, node):
        """With no VM using the device, the claim is deleted."""
        device = create_device(webhook.admin, node, ADDRESS)
        webhook.admin.create(PCIDEVICECLAIMS, webhook.claim_body(device, ADDRESS, node))
        webhook.admin.delete(PCIDEVICECLAIMS, device)

    def test_claim_used_by_running_vmi(self, kube, webhook, node, unique_name, tmp_path):
        """Deleting is refused while a running VMI on the node uses the device, then allowed."""
        crd = tmp_path / "vmi-crd.yaml"
        crd.write_text(VMI_CRD)
        kube.install_crds([crd])
        namespace = unique_name("vms")
        client.CoreV1Api(kube.api_client).create_namespace({"metadata": {"name": namespace}})
        resource = "intel.com/I350_GIGABIT_NETWORK_CONNECTION"
        device = create_device(webhook.admin, node, ADDRESS, resource_name=resource)
        webhook.admin.create(PCIDEVICECLAIMS, webhook.claim_body(device, ADDRESS, node))
        api = webhook.admin
        api.create(
            VMIS,
            {
                "apiVersion": "kubevirt.io/v1",
                "kind": "VirtualMachineInstance",
                "metadata": {"name": "vm1"},
                "spec": {
                    "domain": {
                        "devices": {"hostDevices": [{"name": "nic", "deviceName": resource}]}
                    }
                },
            },
            namespace=namespace,
        )
        api.patch(
            VMIS,
            "vm1",
            {"status": {"nodeName": node, "phase": "Running"}},
            namespace=namespace,
            subresource="status",
        )
        custom = client.CustomObjectsApi(kube.api_client)

        def delete() -> None:
            """Delete the claim as the admin."""
            custom.delete_cluster_custom_object(
                "devices.harvesterhci.io", "v1beta1", "pcideviceclaims", device
            )

        assert refusal(delete) == denial(
            f'PCIDeviceClaim "{device}" is in use: VirtualMachineInstance "{namespace}/vm1" on '
            f'node "{node}" uses its device (hostDevices deviceName "{resource}"); stop that '
            "VM, or remove the host device from it, then delete the claim"
        )
        api.patch(
            VMIS,
            "vm1",
            {"status": {"phase": "Succeeded"}},
            namespace=namespace,
            subresource="status",
        )
        delete()
