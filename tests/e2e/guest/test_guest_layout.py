"""The guest's kernel sees the fixed layout of `tests/e2e/layout.py` (runs only in the guest)."""

import os
import socket
import subprocess
from pathlib import Path

import pytest

from e2e.guest import rawsysfs
from e2e.layout import (
    BRIDGE,
    FREE_NIC,
    GUEST_HOSTNAME,
    MGMT_NIC,
    NVME_PF,
    SHARED_PAIR,
    USB_CONTROLLER,
)


def test_iommu_groups_are_populated():
    """The emulated Intel IOMMU gives the kernel IOMMU groups."""
    assert any(rawsysfs.SYS_IOMMU_GROUPS.iterdir())


@pytest.mark.parametrize(
    ("address", "class_ids", "driver"),
    [
        (MGMT_NIC, "0200: 1af4:1000", "virtio-pci"),
        (FREE_NIC, "0200: 8086:10d3", "e1000e"),
        (SHARED_PAIR[0], "0200: 8086:100e", "e1000"),
        (SHARED_PAIR[1], "0200: 8086:100e", "e1000"),
        (NVME_PF, "0108: 1b36:0010", "nvme"),
        (USB_CONTROLLER, "0c03: 1b36:000d", "xhci_hcd"),
    ],
    ids=["virtio-net", "e1000e", "e1000-1", "e1000-2", "nvme", "xhci"],
)
def test_lspci_and_sysfs_show_the_device_on_its_driver(address, class_ids, driver):
    """The lspci tool lists each layout device with its class and ids; sysfs shows its driver."""
    listing = subprocess.run(
        ["lspci", "-D", "-n", "-s", address], capture_output=True, text=True, check=True
    ).stdout
    assert f"{address} {class_ids}" in listing
    assert rawsysfs.driver(address) == driver


def test_every_layout_device_has_an_iommu_group():
    """Each device under test has an `iommu_group` link."""
    for address in (MGMT_NIC, FREE_NIC, BRIDGE, *SHARED_PAIR, NVME_PF, USB_CONTROLLER):
        assert rawsysfs.iommu_group(address) >= 0


@pytest.mark.parametrize("address", [NVME_PF, USB_CONTROLLER], ids=["nvme", "xhci"])
def test_nvme_pf_and_usb_controller_are_alone_in_their_groups(address):
    """The SR-IOV PF and the USB controller are each the only member of their IOMMU group."""
    assert rawsysfs.group_members(rawsysfs.iommu_group(address)) == {address}


def test_shared_pair_and_bridge_form_one_group():
    """The two e1000 behind the PCIe-to-PCI bridge share one group with the bridge."""
    group = rawsysfs.iommu_group(SHARED_PAIR[0])
    assert rawsysfs.iommu_group(SHARED_PAIR[1]) == group
    assert rawsysfs.group_members(group) == {BRIDGE, *SHARED_PAIR}


def test_free_nic_is_alone_in_its_group():
    """The e1000e is the only member of its IOMMU group."""
    assert rawsysfs.group_members(rawsysfs.iommu_group(FREE_NIC)) == {FREE_NIC}


def test_default_route_goes_through_the_management_nic():
    """The guest's default route leaves through the virtio-net NIC at the management address."""
    routes = Path("/proc/net/route").read_text().splitlines()[1:]
    default = [line.split()[0] for line in routes if line.split()[1] == "00000000"]
    assert len(default) == 1
    device = Path(os.path.realpath(f"/sys/class/net/{default[0]}/device"))
    assert MGMT_NIC in {part.name for part in (device, *device.parents)}


def test_vfio_modules_are_loaded():
    """The guest's init loaded vfio-pci and vfio_iommu_type1, as the claim engine expects."""
    modules = {line.split()[0] for line in Path("/proc/modules").read_text().splitlines()}
    assert {"vfio_pci", "vfio_iommu_type1"} <= modules


def test_guest_has_the_layout_hostname():
    """The guest's hostname (the node name pcidevices derives) is the layout's."""
    assert socket.gethostname() == GUEST_HOSTNAME
