"""The VFIO ioctls the guest tests ask the real kernel, with the numbers from `linux/vfio.h`.

Viability is the kernel's own verdict on an IOMMU group: `VFIO_GROUP_GET_STATUS` on
`/dev/vfio/<N>` sets `VFIO_GROUP_FLAGS_VIABLE` only when every endpoint of the group is bound to a
vfio-compatible driver (vfio-pci, pci-stub, or none). A VM that gets a non-viable group fails.
"""

import fcntl
import os
import struct
from pathlib import Path

import attrs

VFIO_TYPE = ord(";")
VFIO_BASE = 100


def _io(kind: int, number: int) -> int:
    """Linux `_IO(type, nr)`: no data direction and no size, so just type << 8 | nr."""
    return (kind << 8) | number


VFIO_GET_API_VERSION = _io(VFIO_TYPE, VFIO_BASE + 0)
VFIO_CHECK_EXTENSION = _io(VFIO_TYPE, VFIO_BASE + 1)
VFIO_GROUP_GET_STATUS = _io(VFIO_TYPE, VFIO_BASE + 3)
VFIO_API_VERSION = 0
VFIO_TYPE1_IOMMU = 1
VFIO_GROUP_FLAGS_VIABLE = 1 << 0
VFIO_GROUP_FLAGS_CONTAINER_SET = 1 << 1
# struct vfio_group_status { __u32 argsz; __u32 flags; };
_GROUP_STATUS = struct.Struct("=II")

DEV_VFIO = Path("/dev/vfio")


@attrs.frozen
class GroupStatus:
    """The kernel's answer to `VFIO_GROUP_GET_STATUS`.

    Attributes:
        viable: Every endpoint of the group is on a vfio-compatible driver.
        container_set: The group is attached to a container (a VM holds it).
    """

    viable: bool
    container_set: bool


def group_status(group: int, dev_vfio: Path = DEV_VFIO) -> GroupStatus:
    """Open `/dev/vfio/<group>` and ask the kernel whether the group is viable.

    Raises:
        FileNotFoundError: No device of the group is bound to vfio-pci.
        OSError: `EBUSY` when another process holds the group open.
    """
    fd = os.open(dev_vfio / str(group), os.O_RDWR)
    try:
        buffer = bytearray(_GROUP_STATUS.pack(_GROUP_STATUS.size, 0))
        fcntl.ioctl(fd, VFIO_GROUP_GET_STATUS, buffer, True)  # noqa: FBT003 (mutate the buffer)
    finally:
        os.close(fd)
    _, flags = _GROUP_STATUS.unpack(buffer)
    return GroupStatus(
        viable=bool(flags & VFIO_GROUP_FLAGS_VIABLE),
        container_set=bool(flags & VFIO_GROUP_FLAGS_CONTAINER_SET),
    )


def api_version(dev_vfio: Path = DEV_VFIO) -> int:
    """`VFIO_GET_API_VERSION` on the container device `/dev/vfio/vfio` (0 on every kernel)."""
    fd = os.open(dev_vfio / "vfio", os.O_RDWR)
    try:
        return fcntl.ioctl(fd, VFIO_GET_API_VERSION)
    finally:
        os.close(fd)


def has_type1_iommu(dev_vfio: Path = DEV_VFIO) -> bool:
    """`VFIO_CHECK_EXTENSION(VFIO_TYPE1_IOMMU)`: vfio_iommu_type1 is loaded and usable."""
    fd = os.open(dev_vfio / "vfio", os.O_RDWR)
    try:
        return fcntl.ioctl(fd, VFIO_CHECK_EXTENSION, VFIO_TYPE1_IOMMU) == 1
    finally:
        os.close(fd)
