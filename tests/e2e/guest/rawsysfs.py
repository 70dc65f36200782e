"""Driver moves done by hand through the guest kernel's sysfs, without any project code.

Tests use these to set up and check what the kernel does; the project's own adapter is what the
tests exercise, never these helpers. Each write is one unbuffered `os.write` on an `O_WRONLY`
descriptor, so the kernel's errno comes back from that write.
"""

import os
from pathlib import Path

SYS_PCI = Path("/sys/bus/pci")
SYS_IOMMU_GROUPS = Path("/sys/kernel/iommu_groups")


def device_dir(address: str) -> Path:
    """`/sys/bus/pci/devices/<address>`."""
    return SYS_PCI / "devices" / address


def write_attribute(path: Path, value: str) -> None:
    """Write one sysfs attribute in a single `write(2)`."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def driver(address: str) -> str | None:
    """The name of the driver bound to the device, None when unbound.

    The link is read once: the kernel removes it the moment the driver lets go, so a link seen
    by one call can be gone at the next (asking ``is_symlink()`` first and then ``readlink()``
    raced with the kernel and failed with ``FileNotFoundError``).
    """
    try:
        return (device_dir(address) / "driver").readlink().name
    except FileNotFoundError:
        return None


def iommu_group(address: str) -> int:
    """The device's IOMMU group number."""
    return int((device_dir(address) / "iommu_group").readlink().name)


def group_members(group: int) -> set[str]:
    """The PCI addresses in an IOMMU group."""
    return {entry.name for entry in (SYS_IOMMU_GROUPS / str(group) / "devices").iterdir()}


def unbind(address: str) -> None:
    """Unbind the device from its driver, if it has one.

    No check first: a driver seen a moment ago may have let go since, and then the ``unbind``
    file is gone with the ``driver`` link; either way the device ends up unbound.
    """
    try:
        write_attribute(device_dir(address) / "driver" / "unbind", address)
    except FileNotFoundError:
        return


def bind_to(address: str, driver_name: str) -> None:
    """Move the device to a driver: unbind, `driver_override`, `drivers_probe`."""
    unbind(address)
    write_attribute(device_dir(address) / "driver_override", driver_name)
    write_attribute(SYS_PCI / "drivers_probe", address)


def bind_to_vfio(address: str) -> None:
    """Move the device to vfio-pci the per-device way (never `new_id`)."""
    bind_to(address, "vfio-pci")


def release(address: str) -> None:
    """Return the device to whatever driver the kernel picks: unbind, clear override, probe."""
    unbind(address)
    write_attribute(device_dir(address) / "driver_override", "\n")
    write_attribute(SYS_PCI / "drivers_probe", address)


def net_interfaces(address: str) -> list[str]:
    """The network interfaces the device's driver created (empty when none)."""
    try:
        return sorted(entry.name for entry in (device_dir(address) / "net").iterdir())
    except FileNotFoundError:  # no driver, or it let go of the device meanwhile
        return []
