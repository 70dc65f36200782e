"""Reads PFs' network interfaces and writes their ``sriov_numvfs``: the `SriovControl` adapter.

``sriov_numvfs`` is written with one unbuffered ``os.write`` on an ``os.open(path, O_WRONLY)``
descriptor, as `pcihost.binding` writes driver attributes: the kernel answers from that write
(``drivers/pci/iov.c``, ``sriov_numvfs_store``): ``EBUSY`` when VFs are enabled and the new
count is not 0, ``ERANGE`` above ``sriov_totalvfs``, ``ENOENT`` when no driver is bound to the
PF or the driver cannot configure SR-IOV. Each answer becomes a `SriovWriteError` whose message
says what to do. The plan (`pcicore.sriov.plan_num_vfs`) never asks for a write the kernel
would refuse; the errors cover a host that changed meanwhile.

A PF's interface is the entry of ``<device>/net/`` (the first by name when a driver exposes
several ports through one function).
"""

# Sysfs attributes are reached with os.open/os.write/os.listdir on str paths, like
# pcihost.binding: the errno of the single write is the point, and pathlib adds nothing there.
# ruff: noqa: PTH208

from __future__ import annotations

import errno
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

from pcicore.address import PciAddress
from pcicore.errors import SriovWriteError
from pcihost.paths import DEFAULT_SYSFS_ROOT

_ADVICE: Final = {
    errno.EBUSY: "VFs are already enabled and the kernel takes a new count only from 0; "
    "write 0 first",
    errno.ERANGE: "the count is above sriov_totalvfs; read it and stay at or below it",
    errno.EINVAL: "the kernel refused the count; stay between 0 and sriov_totalvfs",
    errno.ENOENT: "no driver able to configure SR-IOV is bound to the PF; bind its network "
    "driver first",
    errno.EACCES: "the agent may not write sysfs; run it privileged with /sys mounted writable",
    errno.EPERM: "the agent may not write sysfs; run it privileged with /sys mounted writable",
}


class SysfsSriovControl:
    """SR-IOV physical functions below a sysfs root."""

    def __init__(self, sysfs: Path = DEFAULT_SYSFS_ROOT) -> None:
        """Read and write PFs below ``sysfs``."""
        self._devices = os.fspath(sysfs / "bus" / "pci" / "devices")

    def interfaces(self, addresses: Sequence[PciAddress]) -> Mapping[PciAddress, str]:
        """The network interface of each of ``addresses`` that has one (a vanished PF: none)."""
        found: dict[PciAddress, str] = {}
        for address in addresses:
            try:
                names = sorted(os.listdir(f"{self._devices}/{address}/net"))
            except OSError:
                continue  # no network driver bound, or the device left the bus
            if names:
                found[address] = names[0]
        return found

    def write_num_vfs(self, address: PciAddress, count: int) -> None:
        """Write ``count`` to ``address``'s ``sriov_numvfs`` in one ``os.write``.

        Raises:
            SriovWriteError: opening or writing failed; the message carries the kernel's
                answer and what to do about it.
        """
        path = f"{self._devices}/{address}/sriov_numvfs"
        try:
            fd = os.open(path, os.O_WRONLY)
        except OSError as err:
            code = err.errno or errno.EIO
            raise SriovWriteError(
                address,
                count,
                code,
                f"cannot open {path}: {os.strerror(code)}; "
                + (
                    "the device is not an SR-IOV PF or left the bus"
                    if code == errno.ENOENT
                    else _ADVICE.get(code, "check the device and the kernel log")
                ),
            ) from err
        try:
            os.write(fd, f"{count}\n".encode("ascii"))
        except OSError as err:
            code = err.errno or errno.EIO
            raise SriovWriteError(
                address,
                count,
                code,
                f"writing {count} to {path} failed: {os.strerror(code)}; "
                + _ADVICE.get(code, "check the kernel log (dmesg) for the PF's driver"),
            ) from err
        finally:
            os.close(fd)
