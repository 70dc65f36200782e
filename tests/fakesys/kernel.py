"""A fake kernel on a pyfakefs tree: sysfs driver-binding files behave as Linux's do.

`FakeKernel` turns a `SysfsTree` laid out on a pyfakefs filesystem into a live one: writes to
``<dev>/driver/unbind``, ``bus/pci/drivers/<d>/bind``, ``<dev>/driver_override``,
``bus/pci/drivers_probe`` and ``new_id``/``remove_id`` move the ``driver`` links and the
``uevent`` ``DRIVER=`` line as ``drivers/base/bus.c`` and ``drivers/pci/pci-driver.c`` do, and
answer with the kernel's errnos. ``/dev/vfio/<group>`` exists only while its group is viable,
``/proc/modules`` lists loaded modules and `FakeModprobe` loads them.

Kernel rules reproduced (Linux 6.x):
- a driver matches a device by ``driver_override`` if set (and only then), else by its dynamic
  ids (``new_id``) or its static id table; ``vfio-pci`` and ``pci-stub`` have no id table;
- ``bind``: no such device or no match -> ENODEV; device already bound -> EBUSY; a probe
  failure returns the probe's errno;
- ``unbind``: device not bound to this driver -> ENODEV;
- ``drivers_probe``: unknown device -> ENODEV; otherwise the first matching loaded driver binds
  and probe errors are not reported;
- ``driver_override``: a newline alone clears it; reading shows ``(null)`` when unset;
- ``new_id``: adds a dynamic id and binds every unbound matching device.
- ``sriov_numvfs`` (``drivers/pci/iov.c``): not a number -> EINVAL; above ``sriov_totalvfs`` ->
  ERANGE; the current count -> nothing happens; no driver on the PF -> ENOENT; non-zero over
  non-zero -> EBUSY; 0 removes every VF (unbound first), N creates N VFs at routing ids
  PF + 0x80 + i, each with ``physfn``/``virtfn<i>`` links and an IOMMU group of its own.

pyfakefs calls a file's ``side_effect`` when the file is opened for writing (empty contents)
and again on flush with the bytes written over the old contents; the fake ignores the empty call
and takes the first line as the command, so writes must end with a newline, as ``echo`` does.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs

from fakesys.tree import FakeDevice, SysfsTree

VFIO = "vfio-pci"
PCI_STUB = "pci-stub"


@attrs.define
class FakeDriver:
    """A PCI driver the fake kernel knows.

    Attributes:
        name: Its name under ``bus/pci/drivers``.
        ids: Its static id table, as (vendor, device) pairs.
        module: The module providing it (``None``: built in, always loaded).
        dynamic_ids: Ids added through ``new_id``.
    """

    name: str
    ids: frozenset[tuple[int, int]] = frozenset()
    module: str | None = None
    dynamic_ids: set[tuple[int, int]] = attrs.field(factory=set)


@attrs.define
class _Fault:
    error: int
    times: int | None  # None: forever
    driver: str | None  # None: whichever driver


@attrs.define
class _LiveDevice:
    spec: FakeDevice
    driver: str | None
    override: str | None = None
    present: bool = True
    faults: dict[str, _Fault] = attrs.field(factory=dict)


class FakeKernel:
    """The driver core of a fake host whose sysfs is ``tree`` on the pyfakefs ``fs``."""

    def __init__(
        self,
        fs: Any,
        tree: SysfsTree,
        drivers: Iterable[FakeDriver] = (),
        *,
        proc: Path = Path("/proc"),
        dev: Path = Path("/dev"),
        loaded_modules: Iterable[str] = ("vfio", "vfio_pci", "vfio_iommu_type1"),
    ) -> None:
        """Make ``tree`` live; drivers not declared get an id table of their initial devices."""
        self.fs = fs
        self.tree = tree
        self.proc = proc
        self.dev = dev
        self.writes: list[tuple[str, str]] = []
        self.modules: set[str] = set()
        self.devices = {
            address: _LiveDevice(spec=spec, driver=spec.driver)
            for address, spec in tree.devices.items()
        }
        declared = {driver.name: driver for driver in drivers}
        for name in sorted({spec.driver for spec in tree.devices.values() if spec.driver}):
            if name not in declared:
                ids = frozenset(
                    (spec.vendor, spec.device)
                    for spec in tree.devices.values()
                    if spec.driver == name
                )
                declared[name] = FakeDriver(name, ids)
        declared.setdefault(VFIO, FakeDriver(VFIO, module="vfio_pci"))
        declared.setdefault(PCI_STUB, FakeDriver(PCI_STUB))
        self.drivers = declared
        self._control(tree.root / "bus" / "pci" / "drivers_probe", self._drivers_probe)
        self.num_vfs: dict[str, int] = {}
        for address in self.devices:
            self._control(tree.device_dir(address) / "driver_override", self._override(address))
        for address, spec in tree.devices.items():
            if spec.sriov_totalvfs is not None:
                self._sriov_control(address, spec.sriov_numvfs or 0)
        for name in loaded_modules:
            self.modules.add(name)
        for driver in self.drivers.values():
            if driver.module is None or driver.module in self.modules:
                self._register(driver)
        self._write_proc_modules()
        self._refresh_vfio()

    # --- test controls ---------------------------------------------------------------------

    def fail(
        self,
        address: str,
        operation: str,
        error: int,
        times: int | None = None,
        driver: str | None = None,
    ) -> None:
        """Make ``operation`` (``unbind``, ``bind``, ``override``, ``sriov``) on ``address`` fail.

        ``times`` limits how often (default: always); ``driver`` limits a bind fault to one
        driver's probe (default: any driver).
        """
        self.devices[address].faults[operation] = _Fault(error, times, driver)

    def unplug(self, address: str) -> None:
        """Hot-remove a device: its directory and every link to it disappear."""
        live = self.devices[address]
        if live.driver is not None:
            self._detach(address)
        live.present = False
        path = self.tree.device_dir(address)
        self.fs.remove_object(os.fspath(self.tree.root / "bus" / "pci" / "devices" / address))
        if live.spec.iommu_group is not None:
            group = self.tree.root / "kernel" / "iommu_groups" / str(live.spec.iommu_group)
            self.fs.remove_object(os.fspath(group / "devices" / address))
        self.fs.remove_object(os.fspath(path))
        self._refresh_vfio()

    def surprise_removal(self, address: str) -> None:
        """A device that fell off the bus but is still listed: its config reads all ones."""
        path = self.tree.device_dir(address)
        spec = attrs.evolve(self.devices[address].spec, vendor=0xFFFF, device=0xFFFF)
        self.devices[address].spec = spec
        self._set(path / "vendor", "0xffff\n")
        self._set(path / "uevent", self._uevent(address))

    def driver_of(self, address: str) -> str | None:
        """The driver the ``driver`` link names (what ``readlink`` shows), or ``None``."""
        link = self.tree.device_dir(address) / "driver"
        if not os.path.lexists(link):
            return None
        return link.readlink().name

    def override_of(self, address: str) -> str | None:
        """The device's ``driver_override``, or ``None``."""
        return self.devices[address].override

    def vfio_groups(self) -> set[int]:
        """The groups with a ``/dev/vfio/<N>`` node."""
        folder = self.dev / "vfio"
        if not folder.exists():
            return set()
        return {int(node.name) for node in folder.iterdir() if node.name.isdigit()}

    def load_module(self, name: str) -> None:
        """What ``modprobe <name>`` does: load it and register its drivers."""
        name = name.replace("-", "_")
        if name in self.modules:
            return
        self.modules.add(name)
        if name == "vfio_pci":
            self.modules.add("vfio")
        for driver in self.drivers.values():
            if driver.module == name:
                self._register(driver)
        self._write_proc_modules()
        self._refresh_vfio()

    # --- kernel behaviour ------------------------------------------------------------------

    def _control(self, path: Path, handler: Any, shown: str | None = None) -> None:
        """A control file at ``path`` whose first written line goes to ``handler``.

        It reads ``shown`` (default: ``(null)`` for ``driver_override``, else nothing) until a
        handler changes it with `_set`; a refused write leaves it as it was.
        """
        if path.exists() or path.is_symlink():
            self.fs.remove_object(os.fspath(path))
        if shown is None:
            shown = "(null)\n" if path.name == "driver_override" else ""

        def side_effect(file: Any) -> None:
            data = file.byte_contents or b""
            if not data:
                return  # pyfakefs' call on open-for-write, before anything was written
            command = data.decode("ascii", "replace").split("\n", 1)[0]
            file.set_initial_contents(
                f"{self.num_vfs[address]}\n" if address is not None else shown
            )
            self.writes.append((os.fspath(path.relative_to(self.tree.root)), command))
            handler(command)

        address = path.parent.name if path.name == "sriov_numvfs" else None
        self.fs.create_file(os.fspath(path), contents=shown, side_effect=side_effect)

    def _register(self, driver: FakeDriver) -> None:
        folder = self.tree.driver_dir(driver.name)
        name = driver.name
        self._control(folder / "bind", lambda text: self._bind_file(name, text))
        self._control(folder / "unbind", lambda text: self._unbind_file(name, text))
        self._control(folder / "new_id", lambda text: self._new_id(name, text))
        self._control(folder / "remove_id", lambda text: self._remove_id(name, text))

    def _loaded(self, driver: FakeDriver) -> bool:
        return driver.module is None or driver.module in self.modules

    def _live(self, address: str) -> _LiveDevice:
        live = self.devices.get(address.strip())
        if live is None or not live.present:
            raise OSError(errno.ENODEV, os.strerror(errno.ENODEV))
        return live

    def _fault(self, live: _LiveDevice, operation: str, driver: str | None = None) -> None:
        fault = live.faults.get(operation)
        if fault is None or (fault.driver is not None and fault.driver != driver):
            return
        if fault.times is not None:
            fault.times -= 1
            if fault.times <= 0:
                del live.faults[operation]
        raise OSError(fault.error, os.strerror(fault.error))

    def _matches(self, driver: FakeDriver, live: _LiveDevice) -> bool:
        if live.override is not None:
            return live.override == driver.name
        pair = (live.spec.vendor, live.spec.device)
        return pair in driver.ids or pair in driver.dynamic_ids

    def _bind_file(self, name: str, text: str) -> None:
        live = self._live(text)
        driver = self.drivers[name]
        if not self._matches(driver, live):
            raise OSError(errno.ENODEV, os.strerror(errno.ENODEV))
        if live.driver is not None:
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY))
        self._fault(live, "bind", name)
        self._attach(live.spec.address, name)

    def _unbind_file(self, name: str, text: str) -> None:
        live = self._live(text)
        if live.driver != name:
            raise OSError(errno.ENODEV, os.strerror(errno.ENODEV))
        self._fault(live, "unbind")
        self._detach(live.spec.address)

    def _drivers_probe(self, text: str) -> None:
        live = self._live(text)
        if live.driver is not None:
            return
        self._probe(live)

    def _probe(self, live: _LiveDevice) -> None:
        for driver in self.drivers.values():
            if self._loaded(driver) and self._matches(driver, live):
                try:
                    self._fault(live, "bind", driver.name)
                except OSError:
                    return  # the probe failed; drivers_probe does not report it
                self._attach(live.spec.address, driver.name)
                return

    def _override(self, address: str) -> Any:
        def write(text: str) -> None:
            live = self._live(address)
            self._fault(live, "override")
            live.override = text.strip() or None
            self._set(
                self.tree.device_dir(address) / "driver_override",
                f"{live.override or '(null)'}\n",
            )

        return write

    def _new_id(self, name: str, text: str) -> None:
        fields = text.split()
        if len(fields) < 2:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        self.drivers[name].dynamic_ids.add((int(fields[0], 16), int(fields[1], 16)))
        for live in self.devices.values():
            if live.present and live.driver is None and self._matches(self.drivers[name], live):
                self._attach(live.spec.address, name)

    def _remove_id(self, name: str, text: str) -> None:
        fields = text.split()
        pair = (int(fields[0], 16), int(fields[1], 16))
        if pair not in self.drivers[name].dynamic_ids:
            raise OSError(errno.ENODEV, os.strerror(errno.ENODEV))
        self.drivers[name].dynamic_ids.discard(pair)

    def _attach(self, address: str, name: str) -> None:
        live = self.devices[address]
        live.driver = name
        path = self.tree.device_dir(address)
        folder = self.tree.driver_dir(name)
        (path / "driver").symlink_to(os.path.relpath(folder, path))
        (folder / address).symlink_to(os.path.relpath(path, folder))
        self._set(path / "uevent", self._uevent(address))
        self._refresh_vfio()

    def _detach(self, address: str) -> None:
        live = self.devices[address]
        assert live.driver is not None
        path = self.tree.device_dir(address)
        folder = self.tree.driver_dir(live.driver)
        self.fs.remove_object(os.fspath(path / "driver"))
        self.fs.remove_object(os.fspath(folder / address))
        live.driver = None
        self._set(path / "uevent", self._uevent(address))
        self._refresh_vfio()

    def _uevent(self, address: str) -> str:
        live = self.devices[address]
        return self.tree.uevent(attrs.evolve(live.spec, driver=live.driver))

    def _set(self, path: Path, text: str) -> None:
        """Change what a sysfs attribute reads, without running its side effect."""
        self.fs.get_object(os.fspath(path)).set_initial_contents(text)

    def _write_proc_modules(self) -> None:
        lines = "".join(
            f"{name} 65536 0 - Live 0x0000000000000000\n" for name in sorted(self.modules)
        )
        path = self.proc / "modules"
        if path.exists():
            self._set(path, lines)
        else:
            self.fs.create_file(os.fspath(path), contents=lines)

    def _refresh_vfio(self) -> None:
        """``/dev/vfio/<N>`` for every viable group with a device on vfio-pci; no others."""
        folder = self.dev / "vfio"
        if "vfio" in self.modules and not folder.exists():
            self.fs.create_dir(os.fspath(folder))
            self.fs.create_file(os.fspath(folder / "vfio"))
        groups: dict[int, list[_LiveDevice]] = {}
        for live in self.devices.values():
            if live.present and live.spec.iommu_group is not None:
                groups.setdefault(live.spec.iommu_group, []).append(live)
        for number, members in groups.items():
            node = folder / str(number)
            endpoints = [m for m in members if (m.spec.klass >> 8) != 0x0604]
            viable = all(m.driver in {None, VFIO, PCI_STUB} for m in endpoints)
            wanted = viable and any(m.driver == VFIO for m in endpoints)
            if wanted and not node.exists():
                self.fs.create_file(os.fspath(node))
            elif not wanted and node.exists():
                self.fs.remove_object(os.fspath(node))

    # --- SR-IOV ----------------------------------------------------------------------------

    def vfs_of(self, address: str) -> list[str]:
        """The addresses of the VFs of the PF at ``address`` now on the bus."""
        return sorted(
            vf for vf, live in self.devices.items() if live.present and live.spec.physfn == address
        )

    def _sriov_control(self, address: str, count: int) -> None:
        self.num_vfs[address] = count
        path = self.tree.device_dir(address) / "sriov_numvfs"
        self._control(path, lambda text: self._sriov_numvfs(address, text), f"{count}\n")

    def _sriov_numvfs(self, address: str, text: str) -> None:
        live = self._live(address)
        try:
            count = int(text.strip())
        except ValueError:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL)) from None
        if count < 0:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        if count > (live.spec.sriov_totalvfs or 0):
            raise OSError(errno.ERANGE, os.strerror(errno.ERANGE))
        current = self.num_vfs[address]
        if count == current:
            return
        if live.driver is None:
            raise OSError(errno.ENOENT, os.strerror(errno.ENOENT))
        if count and current:
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY))
        self._fault(live, "sriov")
        if count == 0:
            self._remove_vfs(address)
        else:
            self._create_vfs(live.spec, count)
        self.num_vfs[address] = count
        self._set(self.tree.device_dir(address) / "sriov_numvfs", f"{count}\n")

    def _create_vfs(self, pf: FakeDevice, count: int) -> None:
        domain, bus, slot = pf.address.split(":")
        device, function = slot.split(".")
        rid = (int(bus, 16) << 8) | (int(device, 16) << 3) | int(function)
        groups = [spec.iommu_group for spec in self.tree.devices.values()]
        group = max((g for g in groups if g is not None), default=-1) + 1
        for index in range(count):
            vf_rid = rid + 0x80 + index
            address = f"{domain}:{vf_rid >> 8:02x}:{(vf_rid >> 3) & 0x1F:02x}.{vf_rid & 7}"
            spec = FakeDevice(
                address,
                pf.vendor,
                pf.vf_device if pf.vf_device is not None else pf.device,
                pf.klass,
                driver=pf.vf_driver,
                iommu_group=None if pf.iommu_group is None else group + index,
                numa_node=pf.numa_node,
                parent=pf.parent,
                physfn=pf.address,
            )
            self.tree.add(spec)
            self.devices[address] = _LiveDevice(spec=spec, driver=spec.driver)
            self._control(
                self.tree.device_dir(address) / "driver_override", self._override(address)
            )
            if spec.driver is not None and spec.driver not in self.drivers:
                self.drivers[spec.driver] = FakeDriver(
                    spec.driver, frozenset({(spec.vendor, spec.device)})
                )
                self._register(self.drivers[spec.driver])
        self._refresh_vfio()

    def _remove_vfs(self, pf: str) -> None:
        for address in self.vfs_of(pf):
            group = self.devices[address].spec.iommu_group
            self.unplug(address)
            if group is not None:
                self.fs.remove_object(
                    os.fspath(self.tree.root / "kernel" / "iommu_groups" / str(group))
                )
            del self.devices[address]
            del self.tree.devices[address]
        pf_path = self.tree.device_dir(pf)
        for name in os.listdir(pf_path):
            if name.startswith("virtfn"):
                self.fs.remove_object(os.fspath(pf_path / name))


class FakeModprobe:
    """The ``modprobe`` port on a `FakeKernel`: loading changes ``/proc/modules``."""

    def __init__(self, kernel: FakeKernel, *, missing: Iterable[str] = ()) -> None:
        """Load modules into ``kernel``; those in ``missing`` are not installed."""
        self.kernel = kernel
        self.missing = {name.replace("-", "_") for name in missing}

    def load(self, module: str) -> None:
        """Load ``module``, or fail as modprobe does when it is not installed."""
        if module.replace("-", "_") in self.missing:
            raise OSError(errno.ENOENT, f"modprobe: FATAL: Module {module} not found")
        self.kernel.load_module(module)
