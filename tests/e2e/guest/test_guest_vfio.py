"""Raw per-device binds through the guest kernel's sysfs, judged by VFIO itself (guest only).

No project code runs here: these tests pin down the kernel behaviour the claim engine relies on.
"""

from pathlib import Path

import pytest

from e2e.guest import rawsysfs, vfio
from e2e.layout import FREE_NIC, SHARED_PAIR


def test_vfio_container_speaks_api_version_0_with_type1():
    """`/dev/vfio/vfio` answers the API version and offers the type1 IOMMU backend."""
    assert vfio.api_version() == vfio.VFIO_API_VERSION
    assert vfio.has_type1_iommu()


def test_driver_override_bind_creates_the_group_device():
    """driver_override + drivers_probe moves the e1000e to vfio-pci and creates /dev/vfio/<N>."""
    group = rawsysfs.iommu_group(FREE_NIC)

    rawsysfs.bind_to_vfio(FREE_NIC)

    assert rawsysfs.driver(FREE_NIC) == "vfio-pci"
    assert (vfio.DEV_VFIO / str(group)).exists()
    assert vfio.group_status(group) == vfio.GroupStatus(viable=True, container_set=False)


def test_release_returns_the_nic_to_its_driver_and_interface():
    """Clearing driver_override and probing again gives the e1000e and its interface back."""
    group = rawsysfs.iommu_group(FREE_NIC)
    rawsysfs.bind_to_vfio(FREE_NIC)
    assert rawsysfs.net_interfaces(FREE_NIC) == []

    rawsysfs.release(FREE_NIC)

    assert rawsysfs.driver(FREE_NIC) == "e1000e"
    assert len(rawsysfs.net_interfaces(FREE_NIC)) == 1
    assert not (vfio.DEV_VFIO / str(group)).exists()
    assert Path(rawsysfs.device_dir(FREE_NIC) / "driver_override").read_text() == "(null)\n"


def test_shared_group_with_one_member_on_vfio_is_not_viable():
    """One e1000 of the shared pair on vfio-pci: /dev/vfio/<N> exists but is not viable."""
    group = rawsysfs.iommu_group(SHARED_PAIR[0])

    rawsysfs.bind_to_vfio(SHARED_PAIR[0])

    assert rawsysfs.driver(SHARED_PAIR[1]) == "e1000"
    assert vfio.group_status(group) == vfio.GroupStatus(viable=False, container_set=False)


def test_shared_group_with_both_members_on_vfio_is_viable():
    """Both e1000 of the shared pair on vfio-pci (the bridge is exempt): the group is viable."""
    group = rawsysfs.iommu_group(SHARED_PAIR[0])

    for address in SHARED_PAIR:
        rawsysfs.bind_to_vfio(address)

    assert vfio.group_status(group) == vfio.GroupStatus(viable=True, container_set=False)


def test_group_device_is_absent_while_no_member_is_on_vfio():
    """With the pair on its own drivers there is no /dev/vfio/<N> to open."""
    group = rawsysfs.iommu_group(SHARED_PAIR[0])

    with pytest.raises(FileNotFoundError):
        vfio.group_status(group)
