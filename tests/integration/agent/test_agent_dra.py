"""``pcidevices agent --dra``: the agent publishes its node's unclaimed devices as ResourceSlices.

The workstation host (tests/fakesys/hosts.py): the GPU and its audio function and the free NIC
are offered; the management NIC (default route), the NVMe drive (root filesystem), the boot
GPU (boot_vga) are the host's, and bridges are never offered. A claim moves its device from the
slices to the device plugin; deleting the claim returns it to DRA.
"""

from __future__ import annotations

import grpc
import pytest

from dra_kube import allocate, create_claim, make_namespace
from dra_node import dra_settings, mirror
from fakesys.hosts import FREE_NIC, GPU, GPU_AUDIO
from pcicore.address import PciAddress
from pcicore.dra import DRIVER_NAME, device_name
from pcioperator.kube.api import PCIDEVICECLAIMS, RESOURCESLICES, KubeApi
from pciplugin._generated.dra.v1 import api_pb2, api_pb2_grpc
from polling import wait_for

pytestmark = pytest.mark.kube


def published(api: KubeApi, node: str) -> set[str]:
    """The device names in ``node``'s slices of our driver."""
    items, _ = api.list_objects(
        RESOURCESLICES, field_selector=f"spec.nodeName={node},spec.driver={DRIVER_NAME}"
    )
    return {d["name"] for s in items for d in s["spec"].get("devices", [])}


def names(*addresses: str) -> set[str]:
    return {device_name(PciAddress.parse(a)) for a in addresses}


@pytest.fixture
def start_dra_agent(short_dir, start_agent, fake_fs):
    """An agent with ``--dra``: its DRA plugin's sockets in a real short folder."""
    mirror(fake_fs, short_dir)

    def start():
        return start_agent(dra=True, dra_plugin=dra_settings(short_dir))

    return start


def test_agent_with_dra_publishes_and_hands_claimed_devices_to_the_plugin(start_dra_agent):
    """Offered: GPU, its audio, the free NIC; a claim on the NIC binds it and takes it out."""
    running = start_dra_agent()
    wait_for(lambda: published(running.api, running.node) == names(GPU, GPU_AUDIO, FREE_NIC))
    claim = f"{running.node}-{FREE_NIC.replace(':', '').replace('.', '')}"
    running.api.create(
        PCIDEVICECLAIMS,
        {
            "apiVersion": "devices.harvesterhci.io/v1beta1",
            "kind": "PCIDeviceClaim",
            "metadata": {"name": claim},
            "spec": {"address": FREE_NIC, "nodeName": running.node, "userName": "alice"},
        },
    )
    wait_for(lambda: published(running.api, running.node) == names(GPU, GPU_AUDIO))
    wait_for(lambda: running.host.driver(FREE_NIC) == "vfio-pci")
    running.api.delete(PCIDEVICECLAIMS, claim)
    wait_for(lambda: published(running.api, running.node) == names(GPU, GPU_AUDIO, FREE_NIC))
    assert running.agent.queue.failures("dra-slices") == 0


def test_agent_without_dra_publishes_no_slices(start_agent):
    """Without --dra the agent has no slice sync and its node has no ResourceSlice."""
    running = start_agent()
    wait_for(lambda: running.agent.devices.last_records)
    assert running.agent.dra is None
    assert published(running.api, running.node) == set()


def prepare(socket, namespace: str, name: str, uid: str):
    """The kubelet's NodePrepareResources for one claim, through the generated stubs."""
    claim = api_pb2.Claim(namespace=namespace, name=name, uid=uid)
    with grpc.insecure_channel(f"unix://{socket}") as channel:
        request = api_pb2.NodePrepareResourcesRequest(claims=[claim])
        stub = api_pb2_grpc.DRAPluginStub(channel)
        return stub.NodePrepareResources(request, timeout=30).claims[uid]


def test_device_a_resource_claim_holds_is_refused_to_a_pci_device_claim(
    start_dra_agent, unique_name
):
    """No double booking: the free NIC prepared for a pod through DRA, then a PCIDeviceClaim.

    The agent's own DRA plugin prepares it (vfio-pci); the PCIDeviceClaim on it is refused with
    HeldByResourceClaim naming the ResourceClaim, and the device stays where the pod has it.
    """
    running = start_dra_agent()
    api = running.api
    namespace = make_namespace(api, unique_name("dra"))
    uid = create_claim(api, namespace, "vm-nic", ["nic"])
    allocate(
        api,
        namespace,
        "vm-nic",
        [("nic", device_name(PciAddress.parse(FREE_NIC)))],
        node=running.node,
    )
    answer = prepare(running.agent.services[-1].settings.socket, namespace, "vm-nic", uid)
    assert answer.error == ""
    assert running.host.driver(FREE_NIC) == "vfio-pci"
    claim = f"{running.node}-{FREE_NIC.replace(':', '').replace('.', '')}"
    api.create(
        PCIDEVICECLAIMS,
        {
            "apiVersion": "devices.harvesterhci.io/v1beta1",
            "kind": "PCIDeviceClaim",
            "metadata": {"name": claim},
            "spec": {"address": FREE_NIC, "nodeName": running.node, "userName": "bob"},
        },
    )
    ready = wait_for(lambda: settled(api.get(PCIDEVICECLAIMS, claim)))
    assert (ready["status"], ready["reason"]) == ("False", "HeldByResourceClaim")
    assert f"{namespace}/vm-nic" in ready["message"]
    assert running.host.driver(FREE_NIC) == "vfio-pci"
    assert not api.get(PCIDEVICECLAIMS, claim)["status"].get("passthroughEnabled")


def settled(claim):
    """The claim's Ready condition once the agent decided (not InProgress), else None."""
    conditions = (claim.get("status") or {}).get("conditions") or []
    ready = next((c for c in conditions if c["type"] == "Ready"), None)
    return ready if ready is not None and ready["reason"] != "InProgress" else None
