"""The fixed PCI layout of the end-to-end guest: one source for QEMU's arguments and the tests.

The harness (`qemu.py`) builds QEMU's `-device` arguments from `GUEST_DEVICES`; the tests that run
inside the guest import the addresses from here, so a change of layout is a change of one file.

QEMU's q35 machine with an emulated Intel IOMMU (`intel-iommu`, `intel_iommu=on`) puts every
device into an IOMMU group. Guest view (guest kernel 6.1, Debian bookworm):

| address      | device (ids)               | driver     | group | role                     |
|--------------|----------------------------|------------|-------|--------------------------|
| 0000:00:00.0 | q35 host bridge            | -          | 0     | chipset                  |
| 0000:00:02.0 | virtio-net-pci (1af4:1000) | virtio-pci | 1     | management NIC (eth0)    |
| 0000:00:03.0 | e1000e 82574L (8086:10d3)  | e1000e     | 2     | free, claimable NIC      |
| 0000:00:04.0 | pcie-pci-bridge (1b36:000e)| -          | 3     | bridge of the pair       |
| 0000:01:01.0 | e1000 82540EM (8086:100e)  | e1000      | 3     | shared group, member 1   |
| 0000:01:02.0 | e1000 82540EM (8086:100e)  | e1000      | 3     | shared group, member 2   |
| 0000:00:05.0 | virtio-9p-pci (1af4:1009)  | virtio-pci | 4     | host root (read-only)    |
| 0000:00:06.0 | virtio-9p-pci (1af4:1009)  | virtio-pci | 5     | result share (writable)  |
| 0000:00:07.0 | NVMe, SR-IOV (1b36:0010)   | nvme       | 6     | SR-IOV PF, 2 VFs at most |
| 0000:00:08.0 | qemu-xhci (1b36:000d)      | xhci_hcd   | 7     | USB controller           |
| 0000:00:1f.* | ICH9 LPC, AHCI, SMBus      | -          | 8     | chipset                  |

The NVMe PF's VFs (`sriov_numvfs`) appear at routing id PF + 1 + i (QEMU's VF offset and
stride are 1): 0000:00:07.1 and 0000:00:07.2, each in an IOMMU group of its own. Behind the xhci
controller are the devices of `GUEST_USB_DEVICES`: on its USB 2 root hub (bus 1) a keyboard and
a hub with an FTDI serial adapter behind it, on its USB 3 root hub (bus 2) a mass-storage stick.

Group numbers are what this layout gives today; tests should read `iommu_group` rather than
assume them. The management NIC carries the guest's address 10.0.2.15/24 and default route via
10.0.2.2 on QEMU's user-mode network with `restrict=on` (nothing outside the guest is reachable,
no port forwards). The other NICs have restricted user-mode back ends too and stay down.
"""

import attrs


@attrs.frozen
class GuestDevice:
    """One PCI device of the guest and how QEMU creates it.

    Attributes:
        address: The guest's PCI address of the device, `dddd:bb:dd.f`.
        role: What the tests use it for.
        qemu_args: The QEMU arguments that create it (a `-netdev` back end, then `-device`).
    """

    address: str
    role: str
    qemu_args: tuple[str, ...]


MGMT_NIC = "0000:00:02.0"
"""virtio-net NIC that carries the guest's default route: a claim must refuse it."""
FREE_NIC = "0000:00:03.0"
"""e1000e NIC alone in its IOMMU group: the plain claimable device."""
BRIDGE = "0000:00:04.0"
"""PCIe-to-PCI bridge in front of the shared pair (bridges are exempt from group viability)."""
SHARED_PAIR = ("0000:01:01.0", "0000:01:02.0")
"""Two e1000 NICs behind the bridge, one IOMMU group: a claim must move both or neither."""
HOST_ROOT_SHARE = "0000:00:05.0"
RESULT_SHARE = "0000:00:06.0"
NVME_PF = "0000:00:07.0"
"""QEMU's NVMe controller with SR-IOV, on the nvme driver: the SR-IOV physical function."""
NVME_MAX_VFS = 2
"""Its `sriov_totalvfs` (QEMU's `sriov_max_vfs`)."""
NVME_VFS = ("0000:00:07.1", "0000:00:07.2")
"""Where its VFs appear when `sriov_numvfs` is 2 (QEMU's VF offset and stride are 1)."""
USB_CONTROLLER = "0000:00:08.0"
"""QEMU's xhci USB controller, on xhci_hcd: every USB device of the guest is behind it."""

GUEST_HOSTNAME = "e2e-guest"
"""The guest's hostname, hence the node name `pcidevices` derives (set by init.sh)."""
GUEST_ADDRESS = "10.0.2.15/24"
DEFAULT_GATEWAY = "10.0.2.2"


def _nic(netdev_id: str, device: str, address: str, bus: str = "pcie.0") -> tuple[str, ...]:
    # restrict=on: the user-mode stack lets the guest talk to nobody but QEMU's own gateway.
    return (
        "-netdev",
        f"user,id={netdev_id},restrict=on",
        "-device",
        f"{device},netdev={netdev_id},bus={bus},addr={address}",
    )


GUEST_DEVICES: tuple[GuestDevice, ...] = (
    GuestDevice(MGMT_NIC, "management NIC", _nic("mgmt", "virtio-net-pci", "02.0")),
    GuestDevice(FREE_NIC, "free NIC", _nic("free", "e1000e", "03.0")),
    GuestDevice(
        BRIDGE,
        "bridge of the shared pair",
        ("-device", "pcie-pci-bridge,id=pair,bus=pcie.0,addr=04.0"),
    ),
    GuestDevice(SHARED_PAIR[0], "shared group, member 1", _nic("pair1", "e1000", "01.0", "pair")),
    GuestDevice(SHARED_PAIR[1], "shared group, member 2", _nic("pair2", "e1000", "02.0", "pair")),
    GuestDevice(
        NVME_PF,
        "SR-IOV PF",
        (
            # A controller without namespaces: nothing to store, only functions to create.
            # Flexible queue and interrupt resources are what QEMU hands to its VFs.
            "-device",
            "nvme-subsys,id=nvmesubsys",
            "-device",
            (
                f"nvme,id=nvmepf,serial=deadbeef,subsys=nvmesubsys,sriov_max_vfs={NVME_MAX_VFS},"
                "sriov_vq_flexible=4,sriov_vi_flexible=2,max_ioqpairs=6,msix_qsize=4,"
                "bus=pcie.0,addr=07.0"
            ),
        ),
    ),
    GuestDevice(
        USB_CONTROLLER, "USB controller", ("-device", "qemu-xhci,id=xhci,bus=pcie.0,addr=08.0")
    ),
)
"""The PCI devices under test, in the order QEMU creates them (the 9p shares come from qemu.py)."""


@attrs.frozen
class GuestUsbDevice:
    """One USB device of the guest, behind `USB_CONTROLLER`, and how QEMU creates it.

    Attributes:
        name: The kernel's name of the device, `<bus>-<port>[.<port>...]` (its folder in
            `/sys/bus/usb/devices`).
        qemu_id: QEMU's id of the device (what `device_del` takes).
        vendor_id: `idVendor`, 4 lower-case hex digits (QEMU's emulated device).
        product_id: `idProduct`, 4 lower-case hex digits.
        device_class: `bDeviceClass`, 2 hex digits (`00`: the class is per interface).
        interface_drivers: The driver of each interface, by interface folder name
            (`<name>:<configuration>.<interface>`), as the guest boots.
        role: What the tests use it for.
        qemu_args: The QEMU arguments that create it.
    """

    name: str
    qemu_id: str
    vendor_id: str
    product_id: str
    device_class: str
    interface_drivers: tuple[tuple[str, str], ...]
    role: str
    qemu_args: tuple[str, ...]


USB_ROOT_HUBS = {"usb1": ("1d6b", "0002"), "usb2": ("1d6b", "0003")}
"""xhci's root hubs (bus 1: USB 2, bus 2: USB 3) and their ids (Linux Foundation 2.0/3.0 hub)."""

GUEST_USB_DEVICES: tuple[GuestUsbDevice, ...] = (
    GuestUsbDevice(
        "1-1",
        "usbkbd",
        "0627",
        "0001",
        "00",
        (("1-1:1.0", "usbhid"),),
        "keyboard (HID)",
        ("-device", "usb-kbd,id=usbkbd,bus=xhci.0,port=1"),
    ),
    GuestUsbDevice(
        # QEMU's usb-storage is SuperSpeed: on xhci port 2 it lands on the USB 3 root hub.
        "2-2",
        "usbstick",
        "46f4",
        "0001",
        "00",
        (("2-2:1.0", "usb-storage"),),
        "mass storage (a 1 MiB null drive: reads zeros)",
        (
            "-blockdev",
            "driver=null-co,node-name=usbstickdrive,size=1048576,read-zeroes=on",
            "-device",
            "usb-storage,id=usbstick,bus=xhci.0,port=2,drive=usbstickdrive,serial=e2estick",
        ),
    ),
    GuestUsbDevice(
        "1-3",
        "usbhub",
        "0409",
        "55aa",
        "09",
        (("1-3:1.0", "hub"),),
        "hub (the serial adapter is behind it)",
        ("-device", "usb-hub,id=usbhub,bus=xhci.0,port=3"),
    ),
    GuestUsbDevice(
        "1-3.1",
        "usbserial",
        "0403",
        "6001",
        "00",
        (("1-3.1:1.0", "ftdi_sio"),),
        "FTDI serial adapter behind the hub (its chardev is a ring buffer in QEMU)",
        (
            "-chardev",
            # A ring buffer: QEMU attaches a usb-serial only once its chardev is open, and a
            # `null` chardev never opens (the adapter would never reach the guest's bus).
            "ringbuf,id=usbserialchar,size=4096",
            "-device",
            "usb-serial,id=usbserial,bus=xhci.0,port=3.1,chardev=usbserialchar",
        ),
    ),
)
"""The USB devices, in the order QEMU creates them (after `USB_CONTROLLER`; a hub before what
is behind it)."""
