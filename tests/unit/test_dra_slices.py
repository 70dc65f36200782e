"""DRA ResourceSlices of a node: which functions, their attributes, the writes to publish them."""

from __future__ import annotations

import itertools
import re

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pcicore.address import PciAddress
from pcicore.device import IommuGroup, NodeName, PciClass, PciDevice
from pcicore.dra import DRIVER_NAME, address_of
from pcicore.dra_slices import (
    ATTRIBUTE_VALUE_MAX,
    MAX_DEVICES_PER_SLICE,
    NUMA_NODE,
    PCI_BUS_ID,
    PCIE_ROOT,
    AttributeKind,
    AttributeValue,
    CreateSlice,
    DeleteSlice,
    DraDevice,
    ObservedSlice,
    UpdateSlice,
    chunk,
    desired_devices,
    dra_device,
    pcie_root,
    plan_slice_writes,
    publishable,
    slice_name,
)
from pcicore.errors import InvalidSliceSizeError
from pcicore.inventory import OwnerRef
from pcicore.naming import ResourceName

NODE = NodeName("node1")
OWNER = OwnerRef("v1", "Node", "node1", "uid-1", controller=True)
NET = PciClass(0x02, 0x00)
GPU = PciClass(0x03, 0x00)
AUDIO = PciClass(0x04, 0x03)
BRIDGE = PciClass(0x06, 0x04)
HOST_BRIDGE = PciClass(0x06, 0x00)
QUALIFIED_NAME = re.compile(r"([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z_][A-Za-z0-9_]{0,31}")
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def dev(address: str, klass: PciClass = NET, group: int | None = 1, **kw) -> PciDevice:
    """A function at ``address`` in IOMMU group ``group``."""
    iommu = None if group is None else IommuGroup(group)
    return PciDevice(PciAddress.parse(address), 0x8086, 0x1533, klass, iommu_group=iommu, **kw)


class TestDraDevice:
    """One function's DRA device and its attributes."""

    def test_attributes_of_a_gpu(self):
        """Standard names for bus id, root complex and NUMA node; ours for ids, group, name."""
        gpu = PciDevice(
            PciAddress.parse("0000:41:00.0"),
            0x10DE,
            0x2236,
            GPU,
            subsystem_vendor_id=0x10DE,
            subsystem_device_id=0x1482,
            iommu_group=IommuGroup(27),
            numa_node=1,
            root_port=PciAddress.parse("0000:40:01.1"),
        )
        device = dra_device(gpu, ResourceName("nvidia.com/GA102GL_A10"))
        assert device.name == "pci-0000-41-00-0"
        assert device.attributes == {
            "resource.kubernetes.io/pciBusID": AttributeValue.string("0000:41:00.0"),
            "resource.kubernetes.io/pcieRoot": AttributeValue.string("pci0000:40"),
            "resource.kubernetes.io/numaNode": AttributeValue.integer(1),
            "vendorId": AttributeValue.string("10de"),
            "deviceId": AttributeValue.string("2236"),
            "classId": AttributeValue.string("0300"),
            "subsystemVendorId": AttributeValue.string("10de"),
            "subsystemDeviceId": AttributeValue.string("1482"),
            "iommuGroup": AttributeValue.integer(27),
            "resourceName": AttributeValue.string("nvidia.com/GA102GL_A10"),
        }

    def test_no_numa_node_no_attribute(self):
        """A function without NUMA affinity publishes no numaNode (Kubernetes' rule)."""
        assert NUMA_NODE not in dra_device(dev("0000:03:00.0"), None).attributes

    def test_root_bus_device_is_its_own_root(self):
        """A function on a root bus names that bus as its root complex."""
        assert pcie_root(dev("0001:80:1f.6")) == "pci0001:80"

    def test_long_resource_name_is_left_out(self):
        """A resourceName over 64 characters would be refused by the API: it is not published."""
        long_name = ResourceName("x.com/" + "A" * 59)
        assert "resourceName" not in dra_device(dev("0000:03:00.0"), long_name).attributes

    @given(
        st.builds(
            PciDevice,
            address=st.builds(
                PciAddress,
                domain=st.integers(0, 0xFFFF),
                bus=st.integers(0, 0xFF),
                device=st.integers(0, 0x1F),
                function=st.integers(0, 7),
            ),
            vendor_id=st.integers(0, 0xFFFF),
            device_id=st.integers(0, 0xFFFF),
            pci_class=st.builds(PciClass, st.integers(0, 0xFF), st.integers(0, 0xFF)),
            subsystem_vendor_id=st.integers(0, 0xFFFF),
            subsystem_device_id=st.integers(0, 0xFFFF),
            iommu_group=st.none() | st.integers(0, 4096).map(IommuGroup),
            numa_node=st.none() | st.integers(-1, 64),
        ),
        st.none() | st.text(min_size=1, max_size=120).map(ResourceName),
    )
    def test_every_device_fits_the_api(self, device, resource_name):
        """Any function: valid names, at most 32 attributes, strings within 64 characters."""
        published = dra_device(device, resource_name)
        assert address_of(published.name) == device.address
        assert len(published.attributes) <= 32  # the API's limit
        for name, value in published.attributes.items():
            assert QUALIFIED_NAME.fullmatch(name), name
            if value.kind is AttributeKind.STRING:
                assert isinstance(value.value, str)
                assert len(value.value) <= ATTRIBUTE_VALUE_MAX
        assert published.attributes[PCI_BUS_ID].value == str(device.address)
        assert re.fullmatch(
            r"pci[0-9a-f]{4}:[0-9a-f]{2}", str(published.attributes[PCIE_ROOT].value)
        )


class TestPublishable:
    """Which functions are offered under DRA."""

    def test_bridges_groupless_and_refused_are_not_offered(self):
        """No bridge of any kind, none without IOMMU group, none the host refuses."""
        devices = [
            dev("0000:00:00.0", HOST_BRIDGE, group=0),
            dev("0000:00:01.0", BRIDGE, group=1),
            dev("0000:02:00.0", group=None),
            dev("0000:03:00.0", group=3),
            dev("0000:04:00.0", group=4),
        ]
        offered = publishable(devices, refused={PciAddress.parse("0000:04:00.0")}, claimed=())
        assert [str(d.address) for d in offered] == ["0000:03:00.0"]

    def test_claimed_function_and_its_group_stay_with_the_device_plugin(self):
        """A claimed GPU is not offered, nor its audio function in the same IOMMU group."""
        devices = [
            dev("0000:41:00.1", AUDIO, group=27),
            dev("0000:41:00.0", GPU, group=27),
            dev("0000:42:00.0", GPU, group=28),
        ]
        offered = publishable(devices, refused=(), claimed={PciAddress.parse("0000:41:00.0")})
        assert [str(d.address) for d in offered] == ["0000:42:00.0"]

    @given(
        st.lists(
            st.tuples(
                st.integers(0, 40),
                st.sampled_from([NET, GPU, BRIDGE, HOST_BRIDGE]),
                st.none() | st.integers(0, 6),
            ),
            unique_by=lambda t: t[0],
            max_size=30,
        ),
        st.sets(st.integers(0, 40)),
        st.sets(st.integers(0, 40)),
    )
    def test_never_both_modes_and_nothing_else_missing(self, specs, claimed_buses, refused_buses):
        """No offered function is claimed or shares a group with a claimed one; all others are."""
        devices = [dev(f"0000:{bus:02x}:00.0", klass, group) for bus, klass, group in specs]
        claimed = {PciAddress(0, bus, 0, 0) for bus in claimed_buses}
        refused = {PciAddress(0, bus, 0, 0) for bus in refused_buses}
        offered = publishable(devices, refused=refused, claimed=claimed)
        claimed_groups = {d.iommu_group for d in devices if d.address in claimed} - {None}
        expected = [
            d
            for d in devices
            if d.pci_class.base != 0x06
            and d.iommu_group is not None
            and d.address not in claimed | refused
            and d.iommu_group not in claimed_groups
        ]
        assert sorted(offered, key=lambda d: d.address.sort_key) == offered
        assert set(offered) == set(expected)

    def test_desired_devices_name_each_kind(self):
        """The resourceName comes from the namer the device plugin uses."""
        [device] = desired_devices(
            [dev("0000:03:00.0", group=3)],
            lambda _d: ResourceName("intel.com/I210"),
            refused=(),
            claimed=(),
        )
        assert device.attributes["resourceName"] == AttributeValue.string("intel.com/I210")


def devices_named(count: int, start: int = 0) -> list[DraDevice]:
    """``count`` devices with one attribute, in address order."""
    return [
        DraDevice(
            f"pci-0000-{bus:02x}-00-0",
            {PCI_BUS_ID: AttributeValue.string(f"0000:{bus:02x}:00.0")},
        )
        for bus in range(start, start + count)
    ]


class FakeSliceApi:
    """Applies writes as the API server would: versions, conflicts, names unique."""

    def __init__(self, slices: list[ObservedSlice] | None = None) -> None:
        """Start with ``slices``."""
        self.slices = {s.name: s for s in slices or []}
        self._versions = itertools.count(100)
        self.writes = 0

    def apply(self, writes):
        """Apply each write in order."""
        for write in writes:
            self.writes += 1
            match write:
                case CreateSlice(content=c, owner=owner):
                    assert c.name not in self.slices, f"{c.name} exists"
                    self.slices[c.name] = self._stored(c, owner)
                case UpdateSlice(content=c, owner=owner, resource_version=rv):
                    assert self.slices[c.name].resource_version == rv, "conflict"
                    self.slices[c.name] = self._stored(c, owner)
                case DeleteSlice(name=name):
                    del self.slices[name]

    def _stored(self, content, owner) -> ObservedSlice:
        return ObservedSlice(
            name=content.name,
            resource_version=str(next(self._versions)),
            pool=content.node,
            generation=content.generation,
            slice_count=content.slice_count,
            devices=content.devices,
            owners=(owner,) if owner else (),
        )

    def observed(self) -> list[ObservedSlice]:
        """Every stored slice."""
        return list(self.slices.values())


class TestPlan:
    """The writes that publish a node's devices."""

    def test_first_publish_creates_one_slice_at_generation_one(self):
        """Three devices, no slices yet: one slice holding all three, owned by the Node."""
        [write] = plan_slice_writes(NODE, devices_named(3), [], OWNER)
        assert isinstance(write, CreateSlice)
        assert write.content.name == f"node1-{DRIVER_NAME}-0"
        assert (write.content.generation, write.content.slice_count) == (1, 1)
        assert len(write.content.devices) == 3
        assert write.owner == OWNER

    def test_in_step_means_no_writes(self):
        """Slices that already hold the devices are not written again."""
        api = FakeSliceApi()
        api.apply(plan_slice_writes(NODE, devices_named(3), [], OWNER))
        assert plan_slice_writes(NODE, devices_named(3), api.observed(), OWNER) == []

    def test_a_change_rewrites_the_pool_at_the_next_generation(self):
        """One device more: every slice moves to generation 2 together."""
        api = FakeSliceApi()
        api.apply(plan_slice_writes(NODE, devices_named(5), [], OWNER, max_devices=2))
        writes = plan_slice_writes(NODE, devices_named(6), api.observed(), OWNER, max_devices=2)
        api.apply(writes)
        assert {s.generation for s in api.observed()} == {2}
        assert {s.slice_count for s in api.observed()} == {3}

    def test_no_devices_deletes_every_slice(self):
        """A node with nothing to offer has no slices."""
        api = FakeSliceApi()
        api.apply(plan_slice_writes(NODE, devices_named(2), [], OWNER))
        api.apply(plan_slice_writes(NODE, [], api.observed(), OWNER))
        assert api.observed() == []

    def test_missing_owner_is_repaired(self):
        """A slice without the Node as owner is rewritten with it."""
        api = FakeSliceApi()
        api.apply(plan_slice_writes(NODE, devices_named(1), [], None))
        [write] = plan_slice_writes(NODE, devices_named(1), api.observed(), OWNER)
        assert isinstance(write, UpdateSlice)
        assert write.owner == OWNER

    def test_int_and_bool_attributes_differ(self):
        """An attribute that holds 1 where true is wanted is rewritten (types are compared)."""
        wanted = [
            DraDevice("pci-0000-01-00-0", {"x": AttributeValue(AttributeKind.BOOL, value=True)})
        ]
        seen = [DraDevice("pci-0000-01-00-0", {"x": AttributeValue(AttributeKind.INT, 1)})]
        api = FakeSliceApi()
        api.apply(plan_slice_writes(NODE, seen, [], OWNER))
        assert plan_slice_writes(NODE, wanted, api.observed(), OWNER) != []

    @pytest.mark.parametrize("size", [0, -1, MAX_DEVICES_PER_SLICE + 1])
    def test_slice_size_out_of_range_is_refused(self, size):
        """The API takes 1..128 devices per slice; anything else names the value and range."""
        with pytest.raises(InvalidSliceSizeError, match=f"ResourceSlice {size}: .* 1 to 128"):
            chunk(devices_named(1), size)

    @given(
        st.lists(st.integers(0, 300), max_size=6),
        st.integers(1, 5),
    )
    def test_any_history_converges_in_one_plan(self, counts, max_devices):
        """From any earlier state, one plan's writes give the wanted pool, then zero writes.

        After each step: slice names unique, one generation (one above the last, when anything
        was written), resourceSliceCount = slices, at most ``max_devices`` devices each, the
        Node as owner, and together exactly the wanted devices in order.
        """
        api = FakeSliceApi()
        last_generation = 0
        for count in counts:
            wanted = devices_named(count % 40)
            writes = plan_slice_writes(NODE, wanted, api.observed(), OWNER, max_devices)
            api.apply(writes)
            slices = sorted(api.observed(), key=lambda s: int(s.name.rsplit("-", 1)[1]))
            generations = {s.generation for s in slices}
            assert len(generations) <= 1
            if writes and slices:
                assert generations == {last_generation + 1}
            # A pool with no slices left is gone; a new one starts again at generation 1.
            last_generation = max(generations, default=0)
            assert all(s.slice_count == len(slices) for s in slices)
            assert all(len(s.devices) <= max_devices for s in slices)
            assert [d for s in slices for d in s.devices] == wanted
            assert all(OWNER in s.owners for s in slices)
            assert plan_slice_writes(NODE, wanted, api.observed(), OWNER, max_devices) == []


class TestSliceName:
    """Slice object names."""

    def test_names_are_dns_subdomains_of_at_most_253_characters(self):
        """Even for the longest node names, and two long names never collide."""
        long_a = NodeName("a" * 250)
        long_b = NodeName("a" * 249 + "b")
        for node in (NODE, long_a, long_b):
            name = slice_name(node, 7)
            assert len(name) <= 253
            assert DNS_SUBDOMAIN.fullmatch(name)
        assert slice_name(long_a, 0) != slice_name(long_b, 0)


def test_observed_devices_compare_by_value():
    """Two devices with equal attributes are equal, whatever order the keys came in."""
    a = DraDevice(
        "pci-0000-01-00-0", {"a": AttributeValue.string("1"), "b": AttributeValue.integer(2)}
    )
    b = attrs.evolve(
        a, attributes={"b": AttributeValue.integer(2), "a": AttributeValue.string("1")}
    )
    assert a == b
