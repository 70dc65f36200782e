"""NVMe admin commands the SR-IOV guest test sends to QEMU's NVMe PF, with numbers from the spec.

QEMU's NVMe VFs are secondary controllers that start offline, without queue or interrupt
resources; the nvme driver cannot bring one up ("Device not ready; aborting initialisation").
The PF's admin queue assigns them flexible resources and puts them online with Virtualization
Management commands (NVMe 1.4+, section 5.22; QEMU's docs/system/devices/nvme.rst), which is
what `nvme virt-mgmt` of nvme-cli sends. The commands go through the kernel's admin passthrough
ioctl on the PF's controller node (`/dev/nvme0`), `struct nvme_passthru_cmd` of
`linux/nvme_ioctl.h`.
"""

import ctypes
import fcntl
import os
import struct
from pathlib import Path

import attrs

# _IOWR('N', 0x41, struct nvme_passthru_cmd): read-write (3 << 30), size 72, type 'N', number 0x41.
NVME_IOCTL_ADMIN_CMD = 0xC0484E41
# opcode, flags, rsvd1, nsid, cdw2, cdw3, metadata, addr, metadata_len, data_len, cdw10..cdw15,
# timeout_ms, result.
_PASSTHRU = struct.Struct("<BBHIIIQQIIIIIIIIII")
IDENTIFY = 0x06
VIRTUALIZATION_MANAGEMENT = 0x1C
CNS_SECONDARY_CONTROLLER_LIST = 0x15
ACTION_ASSIGN = 0x8
ACTION_ONLINE = 0x9
RESOURCE_QUEUES = 0  # VQ: submission/completion queue pairs (the admin queue counts)
RESOURCE_INTERRUPTS = 1  # VI: interrupt vectors


class NvmeAdminError(Exception):
    """The controller completed an admin command with a non-zero status."""


@attrs.frozen
class SecondaryController:
    """One entry of the Secondary Controller List (Identify CNS 15h).

    Attributes:
        controller_id: SCID, the secondary controller's id.
        vf_number: VFN, the VF it is (1-based: VF 1 is `virtfn0`).
        online: SCS bit 0.
        queues: NVQ, flexible queue resources assigned.
        interrupts: NVI, flexible interrupt resources assigned.
    """

    controller_id: int
    vf_number: int
    online: bool
    queues: int
    interrupts: int


def _admin(device: Path, opcode: int, cdw10: int, cdw11: int = 0, data_len: int = 0) -> bytes:
    buffer = ctypes.create_string_buffer(data_len) if data_len else None
    address = ctypes.addressof(buffer) if buffer is not None else 0
    command = bytearray(
        _PASSTHRU.pack(opcode, 0, 0, 0, 0, 0, 0, address, 0, data_len, cdw10, cdw11, *[0] * 6)
    )
    fd = os.open(device, os.O_RDWR)
    try:
        status = fcntl.ioctl(fd, NVME_IOCTL_ADMIN_CMD, command)  # fills in `command`
    finally:
        os.close(fd)
    if status:
        raise NvmeAdminError(
            f"admin command {opcode:#04x} (cdw10 {cdw10:#x}, cdw11 {cdw11}) on {device} "
            f"completed with status {status:#x}"
        )
    return buffer.raw if buffer is not None else b""


def secondary_controllers(device: Path) -> list[SecondaryController]:
    """The PF's secondary controllers (one per VF it can have)."""
    data = _admin(device, IDENTIFY, CNS_SECONDARY_CONTROLLER_LIST, data_len=4096)
    found = []
    for index in range(data[0]):  # entries of 32 bytes after a 32-byte header
        entry = data[32 + 32 * index : 64 + 32 * index]
        controller_id, _primary, state = struct.unpack_from("<HHB", entry, 0)
        vf_number, queues, interrupts = struct.unpack_from("<HHH", entry, 8)
        found.append(
            SecondaryController(controller_id, vf_number, bool(state & 1), queues, interrupts)
        )
    return found


def assign(device: Path, controller_id: int, resource: int, count: int) -> None:
    """Assign ``count`` flexible resources of a type to an offline secondary controller."""
    _admin(
        device,
        VIRTUALIZATION_MANAGEMENT,
        ACTION_ASSIGN | resource << 8 | controller_id << 16,
        count,
    )


def set_online(device: Path, controller_id: int) -> None:
    """Put a secondary controller with resources online."""
    _admin(device, VIRTUALIZATION_MANAGEMENT, ACTION_ONLINE | controller_id << 16)
