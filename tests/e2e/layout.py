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
| 0000:00:1f.* | ICH9 LPC, AHCI, SMBus      | -          | 6     | chipset                  |

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
)
"""The devices under test, in the order QEMU creates them (the 9p shares come from qemu.py)."""
