"""Advertised resources: naming, health rule, pools and the Allocate answer."""

import attrs
import pytest

from pcicore.address import PciAddress
from pcicore.device import DriverName, IommuGroup, PciClass, PciDevice
from pcicore.naming import ResourceName
from pcicore.resources import (
    AdvertisedDevice,
    ClaimedDevice,
    DeviceNode,
    Health,
    ResourcePool,
    UnhealthyDeviceError,
    UnknownDeviceError,
    allocate,
    assess,
    dedicated_resource_name,
    env_var_name,
    group_into_pools,
)

NIC = ResourceName("intel.com/I350_GIGABIT_NETWORK_CONNECTION")
A = PciAddress.parse("0000:03:00.0")
B = PciAddress.parse("0000:03:00.1")


def pci(address=A, driver="vfio-pci", group=12, numa=1):
    """A present device with the given driver, IOMMU group and NUMA node."""
    return PciDevice(
        address=address,
        vendor_id=0x8086,
        device_id=0x1521,
        pci_class=PciClass.from_code(0x020000),
        driver=DriverName(driver) if driver else None,
        iommu_group=IommuGroup(group) if group is not None else None,
        numa_node=numa,
        root_port=PciAddress.parse("0000:00:01.0"),
    )


def healthy(address, group=12, cdev=None):
    """A healthy advertised device."""
    return AdvertisedDevice(address, Health.HEALTHY, iommu_group=IommuGroup(group), vfio_cdev=cdev)


class TestNames:
    """dedicated_resource_name and env_var_name."""

    def test_dedicated_name_appends_the_compact_address(self):
        """A per-device resource is the pool name, a dash and the compact address."""
        assert dedicated_resource_name(NIC, A) == (
            "intel.com/I350_GIGABIT_NETWORK_CONNECTION-000003000"
        )

    def test_dedicated_name_fits_a_qualified_name(self):
        """The part after the slash is cut to 63 characters, keeping the address."""
        long_pool = ResourceName("nvidia.com/" + "X" * 60)
        name = dedicated_resource_name(long_pool, A)
        assert len(name.split("/", 1)[1]) == 63
        assert name.endswith("-000003000")

    def test_env_var_is_kubevirts(self):
        """Upper case, '/' and '.' become '_', prefixed PCI_RESOURCE_."""
        assert env_var_name(NIC) == "PCI_RESOURCE_INTEL_COM_I350_GIGABIT_NETWORK_CONNECTION"

    @pytest.mark.parametrize("separator", ["_", ".", "-"])
    def test_a_cut_product_leaves_no_separator_before_the_address(self, separator):
        """A cut that ends on ``_``, ``.`` or ``-`` drops it: never ``…_-000003000``."""
        long_pool = ResourceName("nvidia.com/" + "A" * 52 + separator + "B" * 20)
        assert dedicated_resource_name(long_pool, A) == "nvidia.com/" + "A" * 52 + "-000003000"

    def test_claim_advertised_as(self):
        """A pooled claim advertises the pool; a dedicated one its own resource."""
        assert ClaimedDevice(A, NIC).advertised_as == NIC
        assert ClaimedDevice(A, NIC, dedicated=True).advertised_as == dedicated_resource_name(
            NIC, A
        )


class TestAssess:
    """The health rule."""

    def test_bound_to_vfio_with_group_node_is_healthy(self):
        """vfio-pci plus /dev/vfio/<group> means Healthy, with NUMA and group carried along."""
        advertised = assess(A, pci(), group_node_present=True, vfio_cdev="vfio3")
        assert advertised.health is Health.HEALTHY
        assert (advertised.numa_node, advertised.iommu_group, advertised.vfio_cdev) == (
            1,
            12,
            "vfio3",
        )

    @pytest.mark.parametrize(
        ("device", "node", "reason"),
        [
            pytest.param(None, False, "device is gone from the bus", id="vanished"),
            pytest.param(pci(driver="igb"), True, "bound to igb, not vfio-pci", id="other-driver"),
            pytest.param(pci(driver=None), True, "bound to no driver, not vfio-pci", id="unbound"),
            pytest.param(
                pci(group=None),
                False,
                "no IOMMU group: enable the IOMMU (intel_iommu=on / amd_iommu=on)",
                id="no-iommu",
            ),
            pytest.param(
                pci(),
                False,
                "/dev/vfio/12 is missing: bind every device of IOMMU group 12 to vfio-pci",
                id="group-node-missing",
            ),
        ],
    )
    def test_unhealthy(self, device, node, reason):
        """Anything short of a usable VFIO device is Unhealthy, with a reason saying what to do.

        The reason reaches the user in the Allocate error (`UnhealthyDeviceError`): in full here.
        """
        advertised = assess(A, device, group_node_present=node)
        assert advertised.health is Health.UNHEALTHY
        assert advertised.reason == reason

    @pytest.mark.parametrize("node", [True, False], ids=["healthy", "unhealthy"])
    def test_the_root_port_is_carried_for_preferred_allocation(self, node):
        """Preferred allocation keeps devices under one root port: it must know each one's."""
        advertised = assess(A, pci(), group_node_present=node)
        assert advertised.root_port == PciAddress.parse("0000:00:01.0")


class TestPools:
    """group_into_pools."""

    def test_dedicated_device_leaves_the_pool(self):
        """Pooled claims share one resource; a dedicated claim gets its own."""
        claims = [ClaimedDevice(B, NIC), ClaimedDevice(A, NIC, dedicated=True)]
        pools = group_into_pools(claims, {A: healthy(A), B: healthy(B)})
        assert {name: [d.id for d in p.devices] for name, p in pools.items()} == {
            NIC: ["0000:03:00.1"],
            dedicated_resource_name(NIC, A): ["0000:03:00.0"],
        }

    def test_devices_sorted_by_address(self):
        """A pool lists its devices in address order."""
        pools = group_into_pools(
            [ClaimedDevice(B, NIC), ClaimedDevice(A, NIC)], {A: healthy(A), B: healthy(B)}
        )
        assert [d.id for d in pools[NIC].devices] == ["0000:03:00.0", "0000:03:00.1"]


class TestAllocate:
    """allocate."""

    def test_env_and_device_nodes(self):
        """Addresses comma-joined in the env var; the container node and each group once."""
        pool = ResourcePool(NIC, (healthy(A, 12), healthy(B, 12)))
        got = allocate(pool, ["0000:03:00.1", "0000:03:00.0"], iommufd=False)
        assert got.envs == {
            "PCI_RESOURCE_INTEL_COM_I350_GIGABIT_NETWORK_CONNECTION": "0000:03:00.1,0000:03:00.0"
        }
        assert got.device_nodes == (DeviceNode("/dev/vfio/vfio"), DeviceNode("/dev/vfio/12"))

    def test_iommufd_nodes_when_exposed(self):
        """With iommufd, /dev/iommu and each device's vfio cdev are added."""
        pool = ResourcePool(NIC, (healthy(A, 12, "vfio0"),))
        got = allocate(pool, ["0000:03:00.0"], iommufd=True)
        assert [n.path for n in got.device_nodes] == [
            "/dev/vfio/vfio",
            "/dev/vfio/12",
            "/dev/iommu",
            "/dev/vfio/devices/vfio0",
        ]
        assert {n.permissions for n in got.device_nodes} == {"mrw"}

    @pytest.mark.parametrize(("cdev", "iommufd"), [("vfio0", False), (None, True)])
    def test_no_iommufd_nodes_without_both_iommufd_and_a_cdev(self, cdev, iommufd):
        """Without ``/dev/iommu`` on the host, or without a device cdev, only the legacy nodes."""
        pool = ResourcePool(NIC, (healthy(A, 12, cdev),))
        got = allocate(pool, ["0000:03:00.0"], iommufd=iommufd)
        assert [n.path for n in got.device_nodes] == ["/dev/vfio/vfio", "/dev/vfio/12"]

    def test_unknown_ids_are_named(self):
        """Ids that are not devices of the pool raise, naming each."""
        pool = ResourcePool(NIC, (healthy(A),))
        with pytest.raises(UnknownDeviceError, match=r"0000:09:00\.0, bogus") as caught:
            allocate(pool, ["0000:03:00.0", "0000:09:00.0", "bogus"], iommufd=False)
        assert caught.value.device_ids == ("0000:09:00.0", "bogus")

    def test_unknown_ids_error_names_the_resource_and_says_to_retry(self):
        """The kubelet shows the message in the pod's events: resource, ids and what to do."""
        pool = ResourcePool(NIC, (healthy(A),))
        with pytest.raises(UnknownDeviceError) as caught:
            allocate(pool, ["0000:09:00.0", "bogus"], iommufd=False)
        assert str(caught.value) == (
            "resource intel.com/I350_GIGABIT_NETWORK_CONNECTION has no device(s) 0000:09:00.0, "
            "bogus; the kubelet's view is stale: it refreshes from ListAndWatch, retry the pod"
        )
        assert caught.value.resource == NIC

    def test_unhealthy_ids_are_named_with_the_reason(self):
        """Unhealthy devices raise, naming the device and why."""
        sick = attrs.evolve(healthy(A), health=Health.UNHEALTHY, reason="bound to igb")
        with pytest.raises(UnhealthyDeviceError, match=r"0000:03:00\.0: bound to igb"):
            allocate(ResourcePool(NIC, (sick,)), ["0000:03:00.0"], iommufd=False)

    def test_unhealthy_error_lists_each_device_and_names_the_claim_to_check(self):
        """Two unhealthy devices: each with its reason, then the resource and the claim kind."""
        sick_a = attrs.evolve(healthy(A), health=Health.UNHEALTHY, reason="bound to igb")
        sick_b = attrs.evolve(healthy(B), health=Health.UNHEALTHY, reason="device is gone")
        with pytest.raises(UnhealthyDeviceError) as caught:
            allocate(
                ResourcePool(NIC, (sick_a, sick_b)), ["0000:03:00.0", "0000:03:00.1"], iommufd=False
            )
        assert str(caught.value) == (
            "device(s) of intel.com/I350_GIGABIT_NETWORK_CONNECTION not usable now "
            "(0000:03:00.0: bound to igb; 0000:03:00.1: device is gone); check the PCIDeviceClaim"
        )
        assert caught.value.resource == NIC
        assert caught.value.device_ids == ("0000:03:00.0", "0000:03:00.1")
