"""USB on the guest's real kernel: its sysfs layout, our discovery of it, allocation and unplug.

The first tests record what Linux 6.1 shows for QEMU's xhci controller and the devices of
`e2e.layout.GUEST_USB_DEVICES` with no project code: the entries of `/sys/bus/usb/devices`, their
attributes, interface folders and drivers, the path each resolves to (up to the xhci PCI
function) and the device node `/dev/bus/usb/BBB/DDD`. The fake USB tree of the integration tests
(`tests/fakesys/usb.py`) is modelled on this layout (nested device and interface folders, links
in `bus/usb/devices`, minor = (bus - 1) * 128 + devnum - 1); where it simplifies, this is the
reference (a USB 3 root hub is 1d6b:0003, not 0002, and root hubs carry the controller's address
as `serial`).

Then the project's reader (`pcihost.usb.SysfsUsbBus`) must find every device as the kernel shows
it; the allocation the device plugin makes (`pcicore.usb.allocate_usb`) must name a node that
exists, which `pcihost.usb.HostUsbNodes` hands to QEMU's user; and after a real unplug (QEMU's
`device_del`, through `e2e.guest.hotplug`) the device and its node are gone, the plugin reports it
Unhealthy and a claimed device's USBDevice turns `orphaned`. The unplug is the last test: the
adapter stays unplugged for the rest of the boot.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

from e2e.guest import hotplug
from e2e.layout import GUEST_HOSTNAME, GUEST_USB_DEVICES, USB_CONTROLLER, USB_ROOT_HUBS
from pcicore.device import NodeName
from pcicore.naming import ResourceName
from pcicore.resources import Health
from pcicore.usb import (
    ORPHANED,
    UsbPool,
    allocate_usb,
    assess_usb,
    desired_usb_objects,
    plan_usb_writes,
    usb_env_var,
    usb_statuses,
)
from pcihost.usb import QEMU_UID, HostUsbNodes, SysfsUsbBus, load_usb_ids

SYS_USB_DEVICES = Path("/sys/bus/usb/devices")
CONTROLLER_DIR = Path("/sys/devices/pci0000:00", USB_CONTROLLER)
NODE = NodeName(GUEST_HOSTNAME)
BY_NAME = {device.name: device for device in GUEST_USB_DEVICES}
SERIAL = BY_NAME["1-3.1"]
"""The device the unplug test pulls out (behind the hub, so the hub stays)."""


def attribute(name: str, attr: str) -> str:
    """One attribute of a USB device or interface, as the kernel prints it."""
    return (SYS_USB_DEVICES / name / attr).read_text().strip()


def bus_and_devnum(name: str) -> tuple[int, int]:
    """`busnum` and `devnum` of a device."""
    return int(attribute(name, "busnum")), int(attribute(name, "devnum"))


def node_path(name: str) -> Path:
    """The device node the kernel gives a device, `/dev/bus/usb/BBB/DDD`."""
    bus, devnum = bus_and_devnum(name)
    return Path(f"/dev/bus/usb/{bus:03d}/{devnum:03d}")


def entries() -> tuple[set[str], set[str]]:
    """The device and the interface entries of `/sys/bus/usb/devices` (root hubs included)."""
    names = {entry.name for entry in SYS_USB_DEVICES.iterdir()}
    return {n for n in names if ":" not in n}, {n for n in names if ":" in n}


def test_the_bus_holds_the_layout_devices_their_interfaces_and_two_root_hubs():
    """Entries: usb1, usb2, each layout device, and its interfaces plus the root hubs' `N-0:1.0`."""
    devices, interfaces = entries()

    assert devices == {*USB_ROOT_HUBS, *BY_NAME}
    expected = {f"{hub.removeprefix('usb')}-0:1.0" for hub in USB_ROOT_HUBS}
    for device in GUEST_USB_DEVICES:
        expected |= {interface for interface, _ in device.interface_drivers}
    assert interfaces == expected


def test_each_device_reports_its_ids_class_bus_and_port_path():
    """idVendor/idProduct/bDeviceClass are QEMU's; busnum and devpath are the name's parts."""
    for device in GUEST_USB_DEVICES:
        bus, port_path = device.name.split("-", 1)
        seen = tuple(
            attribute(device.name, attr)
            for attr in ("idVendor", "idProduct", "bDeviceClass", "busnum", "devpath")
        )
        assert seen == (device.vendor_id, device.product_id, device.device_class, bus, port_path)
        assert int(attribute(device.name, "devnum")) > 1  # 1 is the root hub of each bus


def test_root_hubs_are_the_xhci_functions_usb2_and_usb3_hubs():
    """usb1/usb2 have the Linux Foundation 2.0/3.0 hub ids and the xhci address as serial."""
    for hub, (vendor, product) in USB_ROOT_HUBS.items():
        assert (attribute(hub, "idVendor"), attribute(hub, "idProduct")) == (vendor, product)
        assert attribute(hub, "serial") == USB_CONTROLLER
        assert bus_and_devnum(hub) == (int(hub.removeprefix("usb")), 1)


def test_each_interface_is_on_its_driver():
    """Each interface folder's driver link names the driver that took it at boot."""
    for device in GUEST_USB_DEVICES:
        for interface, driver in device.interface_drivers:
            assert (SYS_USB_DEVICES / interface / "driver").readlink().name == driver


def test_each_device_resolves_below_the_xhci_pci_function():
    """`/sys/bus/usb/devices/1-3.1` is `/sys/devices/pci0000:00/<xhci>/usb1/1-3/1-3.1`."""
    for device in GUEST_USB_DEVICES:
        bus, ports = device.name.split("-", 1)
        chain = [
            f"{bus}-{'.'.join(ports.split('.')[: depth + 1])}"
            for depth in range(ports.count(".") + 1)
        ]
        resolved = (SYS_USB_DEVICES / device.name).resolve()
        assert resolved == CONTROLLER_DIR.joinpath(f"usb{bus}", *chain)


def test_each_device_has_its_character_node_in_dev_bus_usb():
    """`/dev/bus/usb/BBB/DDD` exists, is a character device, and has the `dev` numbers."""
    for device in GUEST_USB_DEVICES:
        path = node_path(device.name)
        st = path.stat()
        assert stat.S_ISCHR(st.st_mode)
        major, minor = attribute(device.name, "dev").split(":")
        assert (os.major(st.st_rdev), os.minor(st.st_rdev)) == (int(major), int(minor))
        uevent = attribute(device.name, "uevent").splitlines()
        assert f"DEVNAME={path.relative_to('/dev')}" in uevent


def test_discovery_finds_every_usb_device_as_the_kernel_shows_it():
    """SysfsUsbBus: each layout device (no root hub) with its ids, numbers, classes, controller."""
    found = {device.port: device for device in SysfsUsbBus().devices()}

    assert set(found) == set(BY_NAME)
    for name, device in found.items():
        layout = BY_NAME[name]
        assert (f"{device.vendor_id:04x}", f"{device.product_id:04x}") == (
            layout.vendor_id,
            layout.product_id,
        )
        assert f"{device.device_class:02x}" == layout.device_class
        assert (device.bus, device.devnum) == bus_and_devnum(name)
        assert device.device_path == str(node_path(name))
        assert str(device.controller) == USB_CONTROLLER
        assert device.interface_classes == tuple(
            int(attribute(interface, "bInterfaceClass"), 16)
            for interface, _ in layout.interface_drivers
        )
        assert device.product == attribute(name, "product")


def test_published_names_and_paths_follow_the_kernels_numbers():
    """Each USBDevice is `<node>-vvvv-pppp-BBBDDD` with the device path and the xhci address."""
    devices = SysfsUsbBus().devices()
    statuses = usb_statuses(NODE, devices, load_usb_ids())

    for name, status in statuses.items():
        bus, devnum = (int(part) for part in status.device_path.rsplit("/", 2)[-2:])
        assert name == f"{NODE}-{status.vendor_id}-{status.product_id}-{bus:03d}{devnum:03d}"
        assert status.pci_address == USB_CONTROLLER
        assert status.resource_name == f"kubevirt.io/{name}"
        assert Path(status.device_path).is_char_device()
    assert len(statuses) == len(GUEST_USB_DEVICES)


def test_an_allocated_device_is_handed_over_then_orphaned_when_unplugged():
    """Allocate names a node that exists and goes to QEMU's user; after device_del it is orphaned.

    The serial adapter behind the hub is allocated as the in-agent plugin does it, then unplugged
    with QEMU's `device_del`: its sysfs entry and node go, the hub and the other devices stay, the
    plugin reports it Unhealthy, and its USBDevice, still claimed, turns `orphaned`; unclaimed,
    it would be deleted.
    """
    ids = load_usb_ids()
    nodes = HostUsbNodes()
    before = usb_statuses(NODE, SysfsUsbBus().devices(), ids)
    name = next(n for n, s in before.items() if s.device_path == str(node_path(SERIAL.name)))
    status = before[name]
    advertised = assess_usb(name, status, node_present=nodes.exists(status.device_path))
    assert advertised.health is Health.HEALTHY
    pool = UsbPool(ResourceName(status.resource_name), (advertised,))

    allocation = allocate_usb(pool, [name])

    bus, devnum = bus_and_devnum(SERIAL.name)
    assert allocation.envs == {usb_env_var(pool.name): f"{bus}:{devnum}"}
    assert [node.path for node in allocation.device_nodes] == [status.device_path]
    assert all(Path(node.path).is_char_device() for node in allocation.device_nodes)
    nodes.hand_over(status.device_path)
    st = Path(status.device_path).stat()
    assert (st.st_uid, st.st_gid) == (QEMU_UID, QEMU_UID)

    hotplug.unplug(SERIAL.qemu_id)
    deadline = time.monotonic() + 120
    while (SYS_USB_DEVICES / SERIAL.name).exists():
        assert time.monotonic() < deadline, f"{SERIAL.name} is still on the bus after device_del"
        time.sleep(0.2)

    assert not Path(status.device_path).exists()
    assert not nodes.exists(status.device_path)
    after = usb_statuses(NODE, SysfsUsbBus().devices(), ids)
    assert set(after) == set(before) - {name}
    gone = assess_usb(name, status, node_present=nodes.exists(status.device_path))
    assert gone.health is Health.UNHEALTHY
    assert status.device_path in gone.reason
    observed = dict(before)
    claimed = desired_usb_objects(after, observed, enabled={name}, held={name})
    assert claimed[name].status == ORPHANED
    assert status.device_path in claimed[name].message
    unclaimed = plan_usb_writes(desired_usb_objects(after, observed, enabled=(), held=()), observed)
    assert unclaimed.delete == (name,)
