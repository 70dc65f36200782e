"""The USB device plugin over real unix sockets, driven by the kubelet stand-in.

The host's USB tree and ``/dev/bus/usb`` are on disk; the enabled devices come from a fake that
keeps state (what the agent's USB controller reports), the device nodes from the real adapter.
"""

from __future__ import annotations

import os

import grpc
import pytest

from fakesys.usb import FakeUsbDevice, UsbTree
from pcicore.device import NodeName
from pcicore.usb import usb_statuses
from pcicore.usbids import UsbIds
from pcihost.sysfs import SysfsPciBus
from pcihost.usb import HostUsbNodes, SysfsUsbBus
from pcihost.vfio import HostVfioNodes
from pciplugin._generated.v1beta1 import api_pb2
from pciplugin.host import DevicePluginHost, PluginSettings, UsbAdvertising
from plugin_node import FakeClaims
from polling import wait_for

STICK = FakeUsbDevice("1-1", 2, 0x0951, 0x1666, 0x00, (0x08,))
TWIN = FakeUsbDevice("1-2", 3, 0x0951, 0x1666, 0x00, (0x08,))
STICK_NAME = "node1-0951-1666-001002"
TWIN_NAME = "node1-0951-1666-001003"
STICK_RESOURCE = f"kubevirt.io/{STICK_NAME}"
STICK_SOCKET = f"pcidevices-kubevirt.io_{STICK_NAME}.sock"
ENV = f"USB_RESOURCE_KUBEVIRT_IO_{STICK_NAME.upper()}"


class EnabledDevices:
    """The agent's view: which USB devices claims enable, as the test changes it."""

    def __init__(self, usb: UsbTree) -> None:
        """Read the devices of ``usb``; none enabled yet."""
        self._bus = SysfsUsbBus(usb.tree.root)
        self.names: set[str] = set()

    def enabled_usb(self):
        """The statuses of the enabled devices present now."""
        statuses = usb_statuses(NodeName("node1"), self._bus.devices(), UsbIds.empty())
        return {name: statuses[name] for name in self.names if name in statuses}


@pytest.fixture
def usb(node):
    tree, dev = node
    return UsbTree(tree, dev).add_bus(1, None).add(STICK, TWIN)


@pytest.fixture
def enabled(usb):
    devices = EnabledDevices(usb)
    devices.names = {STICK_NAME, TWIN_NAME}
    return devices


@pytest.fixture
def usb_host(node, kubelet, usb, enabled):
    """A plugin host serving the enabled USB devices (no PCI claims), started."""
    tree, dev = node
    host = DevicePluginHost(
        PluginSettings(device_plugins_dir=kubelet.folder),
        FakeClaims([]),
        SysfsPciBus(tree.root),
        HostVfioNodes(dev, tree.root),
        UsbAdvertising(enabled, HostUsbNodes(dev, owner=os.getuid())),
    )
    host.start()
    yield host
    host.stop()


def allocate(stub, *ids):
    """Allocate ``ids`` for one container."""
    request = api_pb2.AllocateRequest(
        container_requests=[api_pb2.ContainerAllocateRequest(devices_ids=list(ids))]
    )
    return stub.Allocate(request, timeout=2)


@pytest.mark.usefixtures("usb_host")
class TestUsbResources:
    """One resource per enabled USB device, answered as KubeVirt expects."""

    def test_each_device_registers_its_own_resource(self, kubelet):
        """Two identical sticks: two resources, so a VM can ask for one of them."""
        found = kubelet.registered(2)
        assert set(found) == {STICK_RESOURCE, f"kubevirt.io/{TWIN_NAME}"}
        assert found[STICK_RESOURCE].endpoint == STICK_SOCKET
        options = kubelet.dial(STICK_SOCKET).GetDevicePluginOptions(api_pb2.Empty(), timeout=2)
        assert options == found[STICK_RESOURCE].options

    def test_list_and_watch_shows_the_device_healthy(self, kubelet):
        """The device's id is its USBDevice name, Healthy while its node exists."""
        kubelet.registered(2)
        stream = kubelet.watch(STICK_SOCKET)
        stream.wait_for(lambda m: len(m.devices) == 1)
        assert stream.health() == {STICK_NAME: "Healthy"}

    def test_allocate_gives_kubevirts_variable_and_the_node(self, kubelet, node):
        """USB_RESOURCE_<resource> = bus:device; the node mrw at the same path; owner set."""
        _tree, dev = node
        kubelet.registered(2)
        response = allocate(kubelet.dial(STICK_SOCKET), STICK_NAME)
        (container,) = response.container_responses
        assert dict(container.envs) == {ENV: "1:2"}
        assert [(d.container_path, d.host_path, d.permissions) for d in container.devices] == [
            ("/dev/bus/usb/001/002", "/dev/bus/usb/001/002", "mrw")
        ]
        assert (dev / "bus/usb/001/002").stat().st_uid == os.getuid()

    def test_unplugged_device_turns_unhealthy_and_is_refused(self, kubelet, usb):
        """Node gone: Unhealthy on the stream, Allocate FAILED_PRECONDITION with the reason."""
        kubelet.registered(2)
        stream = kubelet.watch(STICK_SOCKET)
        stream.wait_for(lambda m: len(m.devices) == 1)
        (usb.dev_root / "bus/usb/001/002").unlink()
        stream.wait_for(lambda m: m.devices[0].health == "Unhealthy")
        with pytest.raises(grpc.RpcError) as caught:
            allocate(kubelet.dial(STICK_SOCKET), STICK_NAME)
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "/dev/bus/usb/001/002 is missing" in caught.value.details()

    def test_preferred_allocation_puts_must_include_first(self, kubelet):
        """GetPreferredAllocation: the must-include ids, then the others, up to the size."""
        kubelet.registered(2)
        request = api_pb2.PreferredAllocationRequest(
            container_requests=[
                api_pb2.ContainerPreferredAllocationRequest(
                    available_deviceIDs=[STICK_NAME], allocation_size=1
                )
            ]
        )
        response = kubelet.dial(STICK_SOCKET).GetPreferredAllocation(request, timeout=2)
        assert list(response.container_responses[0].deviceIDs) == [STICK_NAME]

    def test_unknown_id_is_invalid_argument(self, kubelet):
        """An id that is not this resource's device: INVALID_ARGUMENT naming it."""
        kubelet.registered(2)
        with pytest.raises(grpc.RpcError) as caught:
            allocate(kubelet.dial(STICK_SOCKET), TWIN_NAME)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert TWIN_NAME in caught.value.details()

    def test_disabled_device_stops_being_served(self, kubelet, enabled):
        """Its claim deleted: the resource's socket goes."""
        kubelet.registered(2)
        enabled.names = {TWIN_NAME}
        socket = kubelet.folder / STICK_SOCKET
        wait_for(lambda: not socket.exists())
        assert (kubelet.folder / f"pcidevices-kubevirt.io_{TWIN_NAME}.sock").is_socket()
