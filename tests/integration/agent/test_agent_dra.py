"""``pcidevices agent --dra``: the agent publishes its node's unclaimed devices as ResourceSlices.

The workstation host (tests/fakesys/hosts.py): the GPU and its audio function and the free NIC
are offered; the management NIC (default route), the NVMe drive (root filesystem), the boot
GPU (boot_vga) are the host's, and bridges are never offered. A claim moves its device from the
slices to the device plugin; deleting the claim returns it to DRA.
"""

from __future__ import annotations

import pytest

from fakesys.hosts import FREE_NIC, GPU, GPU_AUDIO
from pcicore.address import PciAddress
from pcicore.dra import DRIVER_NAME, device_name
from pcioperator.kube.api import PCIDEVICECLAIMS, RESOURCESLICES, KubeApi
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


def test_agent_with_dra_publishes_and_hands_claimed_devices_to_the_plugin(start_agent):
    """Offered: GPU, its audio, the free NIC; a claim on the NIC binds it and takes it out."""
    running = start_agent(dra=True)
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
