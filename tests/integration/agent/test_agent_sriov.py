"""SR-IOV through the node agent: a real kube-apiserver + etcd, a fake kernel with one SR-IOV NIC.

One story, in the order a user lives it: the PF is published as an SRIOVNetworkDevice; numVFs 2
creates two VFs, published as PCIDevices labelled with their parent; a claim on a VF binds it to
vfio-pci; numVFs 0 is refused (condition) while that VF is claimed, and applied once the claim
is gone, which removes the VFs and their PCIDevices.
"""

from __future__ import annotations

import pytest

from fakesys.hosts import workstation
from fakesys.tree import FakeDevice
from pcioperator.kube.api import PCIDEVICECLAIMS, PCIDEVICES, SRIOVNETWORKDEVICES
from pcioperator.kube.errors import NotFoundError
from polling import wait_for

pytestmark = pytest.mark.kube

PF = "0000:06:00.0"
VF0 = "0000:06:10.0"
VF1 = "0000:06:10.1"
SRIOV_NIC = FakeDevice(
    PF,
    0x8086,
    0x10FB,
    0x020000,
    driver="ixgbe",
    iommu_group=6,
    sriov_totalvfs=4,
    interface="enp6s0",
    vf_device=0x10ED,
    vf_driver="ixgbevf",
)
PARENT = "harvesterhci.io/parent-sriov-network-device"


def compact(address):
    return address.replace(":", "").replace(".", "")


def sriov_object(api, name):
    try:
        return api.get(SRIOVNETWORKDEVICES, name)
    except NotFoundError:
        return None


def configured(obj):
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == "VFsConfigured"), None)


def vf_devices(api, node, parent):
    items, _ = api.list_objects(PCIDEVICES, label_selector=f"nodename={node},{PARENT}={parent}")
    return sorted(item["status"]["address"] for item in items if "status" in item)


def test_vfs_created_published_claimed_guarded_and_removed(start_agent, fake_fs):
    """The whole SR-IOV story, asserting on the cluster's objects and the kernel's state."""
    running = start_agent(host=workstation(fake_fs, extra=(SRIOV_NIC,)))
    api, node, kernel = running.api, running.node, running.host.kernel
    name = f"{node}-enp6s0"

    # Published as Harvester publishes it, with the count the host has.
    obj = wait_for(lambda: (o := sriov_object(api, name)) and "status" in o and o)
    assert obj["spec"] == {"address": PF, "nodeName": node, "numVFs": 0}
    assert obj["metadata"]["labels"]["nodename"] == node
    assert obj["metadata"]["annotations"] == {
        "sriov.devices.harvesterhi.io/interface-name": "enp6s0"
    }
    assert obj["status"]["status"] == "sriovNetworkDeviceDisabled"

    # numVFs 2: two VFs in the kernel, in the status, and as labelled PCIDevices.
    api.patch(SRIOVNETWORKDEVICES, name, {"spec": {"numVFs": 2}})
    obj = wait_for(
        lambda: (
            (o := sriov_object(api, name))
            and o["status"].get("status") == "sriovNetworkDeviceEnabled"
            and o
        )
    )
    assert obj["status"]["vfAddresses"] == [VF0, VF1]
    assert obj["status"]["vfPCIDevices"] == [f"{node}-{compact(VF0)}", f"{node}-{compact(VF1)}"]
    assert kernel.vfs_of(PF) == [VF0, VF1]
    assert wait_for(lambda: vf_devices(api, node, name) == [VF0, VF1])

    # A claim on a VF binds it like any claim.
    claim_name = f"{node}-{compact(VF1)}"
    api.create(
        PCIDEVICECLAIMS,
        {
            "apiVersion": "devices.harvesterhci.io/v1beta1",
            "kind": "PCIDeviceClaim",
            "metadata": {"name": claim_name},
            "spec": {"address": VF1, "nodeName": node, "userName": "alice"},
        },
    )
    wait_for(
        lambda: api.get(PCIDEVICECLAIMS, claim_name).get("status", {}).get("passthroughEnabled")
    )
    assert running.host.driver(VF1) == "vfio-pci"

    # numVFs 0 while VF1 is claimed: refused, the VFs stay.
    api.patch(SRIOVNETWORKDEVICES, name, {"spec": {"numVFs": 0}})
    condition = wait_for(
        lambda: (
            (c := configured(api.get(SRIOVNETWORKDEVICES, name))) and c["status"] == "False" and c
        )
    )
    assert condition["reason"] == "VfClaimed"
    assert VF1 in condition["message"]
    assert kernel.vfs_of(PF) == [VF0, VF1]

    # Released: the count drops to 0, the VFs and their PCIDevices go.
    api.delete(PCIDEVICECLAIMS, claim_name)
    obj = wait_for(
        lambda: (
            (o := sriov_object(api, name))
            and o["status"].get("status") == "sriovNetworkDeviceDisabled"
            and o
        ),
        timeout=30,
    )
    assert obj["status"]["vfAddresses"] == []
    assert configured(obj)["status"] == "True"
    assert kernel.vfs_of(PF) == []
    assert wait_for(lambda: vf_devices(api, node, name) == [])
