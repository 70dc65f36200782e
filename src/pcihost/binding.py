"""Moves PCI functions between kernel drivers through sysfs: the `DriverControl` adapter.

Only the kernel's per-device path is used (Documentation/ABI/testing/sysfs-bus-pci):
``driver/unbind``, ``driver_override``, ``drivers_probe`` and ``drivers/<name>/bind``, never
``new_id`` (which would hand *every* device
with the same vendor:device pair to the driver). Each attribute is written with one unbuffered
``os.write`` on an ``os.open(path, O_WRONLY)`` descriptor, because sysfs returns the kernel's
answer (``EBUSY``, ``ENODEV``, ``EINVAL``) from that write; buffered text I/O would report it, if
at all, at close. The engine confirms every step by observing again (`observe`).

The sysfs and proc roots are parameters, so the same code drives a real host and a fake kernel.
A driver name is parsed (`pcicore.device.parse_driver_name`) before it becomes part of a path.
"""

# Sysfs attributes are reached with os.open/os.write on str paths, like pcihost.sysfs: the
# errno of the single write is the point, and pathlib adds nothing there.
# ruff: noqa: PTH112

from __future__ import annotations

import errno
import os
import subprocess
import time
from pathlib import Path
from typing import Protocol

from pcicore.address import PciAddress
from pcicore.claim import (
    Action,
    BindDriver,
    LoadModules,
    Observation,
    Probe,
    SetOverride,
    Unbind,
    Wait,
)
from pcicore.device import VFIO_DRIVER, DriverName, parse_driver_name
from pcicore.errors import DriverWriteError, InvalidDriverNameError, ModuleLoadError
from pcihost.paths import DEFAULT_PROC_ROOT, DEFAULT_SYSFS_ROOT
from pcihost.sysfs import SysfsPciBus


class ModuleLoader(Protocol):
    """Loads a kernel module (``modprobe``)."""

    def load(self, module: str) -> None:
        """Load ``module``.

        Raises:
            OSError: it could not be loaded.
        """
        ...


class Modprobe:
    """Loads modules with the system's ``modprobe``."""

    def __init__(self, command: str = "modprobe", timeout: float = 60.0) -> None:
        """Run ``command <module>`` to load a module."""
        self._command = command
        self._timeout = timeout

    def load(self, module: str) -> None:
        """Run ``modprobe <module>``.

        Raises:
            OSError: modprobe is missing, timed out or failed (its stderr in the message).
        """
        try:
            result = subprocess.run(
                [self._command, module],
                capture_output=True,
                text=True,
                timeout=self._timeout,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as err:
            raise OSError(errno.ENOENT, f"{self._command} {module}: {err}") from err
        if result.returncode != 0:
            raise OSError(errno.ENOENT, result.stderr.strip() or f"{self._command} {module} failed")


class SystemClock:
    """The `pcicore.ports.Clock` of a real process."""

    def now(self) -> float:
        """Monotonic seconds."""
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        """Sleep ``seconds``."""
        time.sleep(seconds)


def _driver_name(name: str) -> str:
    """``name`` if it can be a driver's directory name; never a path."""
    try:
        return parse_driver_name(name)
    except InvalidDriverNameError as err:
        raise DriverWriteError(name, errno.EINVAL, str(err)) from err


class SysfsDriverControl:
    """Observes and changes driver bindings below a sysfs root."""

    def __init__(
        self,
        modules: ModuleLoader,
        *,
        sysfs: Path = DEFAULT_SYSFS_ROOT,
        proc: Path = DEFAULT_PROC_ROOT,
    ) -> None:
        """Bind devices below ``sysfs``; load modules with ``modules``; read ``proc/modules``."""
        self._bus = SysfsPciBus(sysfs)
        self._modules = modules
        self._pci = os.fspath(sysfs / "bus" / "pci")
        self._sysfs = os.fspath(sysfs)
        self._proc_modules = os.fspath(proc / "modules")

    # --- observing -------------------------------------------------------------------------

    def observe(self, address: PciAddress) -> Observation:
        """The device, its ``driver_override`` and whether the vfio modules are loaded."""
        device = self._bus.device(address)
        override = None
        if device is not None:
            text = self._read(f"{self._pci}/devices/{address}/driver_override")
            value = (text or "").strip()
            override = DriverName(value) if value and value != "(null)" else None
        return Observation(device=device, override=override, modules_loaded=self.vfio_ready())

    def vfio_ready(self) -> bool:
        """Whether the ``vfio-pci`` driver is registered and ``vfio_iommu_type1`` is loaded."""
        return os.path.isdir(f"{self._pci}/drivers/{VFIO_DRIVER}") and not self.missing_modules(
            ("vfio_iommu_type1",)
        )

    def missing_modules(self, modules: tuple[str, ...]) -> tuple[str, ...]:
        """The ``modules`` neither listed in ``/proc/modules`` nor built in (``/sys/module``)."""
        listed = {
            line.split(" ", 1)[0] for line in (self._read(self._proc_modules) or "").splitlines()
        }
        return tuple(
            name
            for name in modules
            if name not in listed and not os.path.isdir(f"{self._sysfs}/module/{name}")
        )

    # --- acting ----------------------------------------------------------------------------

    def apply(self, action: Action) -> None:
        """Perform one write of a claim.

        Raises:
            DriverWriteError: the kernel refused the write; ``errno`` is its answer.
            ModuleLoadError: a module could not be loaded.
        """
        match action:
            case LoadModules(modules=modules):
                self._load(modules)
            case Unbind(address=address):
                self._write(f"{self._pci}/devices/{address}/driver/unbind", f"{address}\n")
            case SetOverride(address=address, driver=driver):
                text = f"{_driver_name(driver)}\n" if driver is not None else "\n"
                self._write(f"{self._pci}/devices/{address}/driver_override", text)
            case Probe(address=address):
                self._write(f"{self._pci}/drivers_probe", f"{address}\n")
            case BindDriver(address=address, driver=driver):
                self._write(f"{self._pci}/drivers/{_driver_name(driver)}/bind", f"{address}\n")
            case Wait():
                pass

    def _load(self, modules: tuple[str, ...]) -> None:
        for name in self.missing_modules(modules):
            try:
                self._modules.load(name)
            except OSError as err:
                raise ModuleLoadError(
                    f"could not load kernel module {name}: {err.strerror or err}; install the "
                    "kernel's vfio modules (linux-modules-extra on Ubuntu) and enable the IOMMU"
                ) from err

    @staticmethod
    def _read(path: str) -> str | None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return None
        # To the end: ``/proc/modules`` passes 64 KiB on a host with some 900 modules.
        chunks = []
        try:
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
        except OSError:
            return None
        finally:
            os.close(fd)
        return b"".join(chunks).decode("ascii", "replace")

    @staticmethod
    def _write(path: str, text: str) -> None:
        """One unbuffered write of ``text`` to the attribute at ``path``.

        Raises:
            DriverWriteError: opening or writing failed; a missing ``driver/unbind`` (the device
                lost its driver meanwhile) is reported as ``ENODEV``.
        """
        shown = text.strip() or "an empty line"
        try:
            fd = os.open(path, os.O_WRONLY)
        except OSError as err:
            code = errno.ENODEV if err.errno == errno.ENOENT else (err.errno or errno.EIO)
            raise DriverWriteError(path, code, f"cannot open {path}: {os.strerror(code)}") from err
        try:
            os.write(fd, text.encode("ascii"))
        except OSError as err:
            code = err.errno or errno.EIO
            raise DriverWriteError(
                path, code, f"writing {shown} to {path} failed: {os.strerror(code)}"
            ) from err
        finally:
            os.close(fd)
