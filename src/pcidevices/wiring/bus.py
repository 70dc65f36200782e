"""The host's PCI bus and the names of its devices: the part of the host wiring every process has.

`BusModule` binds the `PciBus` port (the sysfs reader), the `PciIds` database and the
`DeviceNamer`. `pcidevices.wiring.host.HostModule` installs it with the rest of the host.
``pcidevices scan`` needs only the reader and the namer and builds them itself, without
``injector`` (see `pcidevices.wiring.scan`).
"""

from __future__ import annotations

from pathlib import Path

import attrs
import injector

from pcicore.naming import DeviceNamer
from pcicore.pciids import PciIds
from pcicore.ports import PciBus
from pcihost.paths import (
    DEFAULT_DEV_ROOT,
    DEFAULT_PROC_ROOT,
    DEFAULT_STATE_FILE,
    DEFAULT_SYSFS_ROOT,
)
from pcihost.sysfs import SysfsPciBus


@attrs.frozen
class HostConfig:
    """Where this process finds the host.

    Attributes:
        sysfs: The sysfs mount point.
        proc: The proc mount point (host facts, loaded modules).
        dev_root: The ``/dev`` where VFIO nodes appear.
        state_file: Where claimed devices and original drivers are recorded.
        topology: Whether the bus reader resolves each device's bridges (``scan`` needs not).
    """

    sysfs: Path = DEFAULT_SYSFS_ROOT
    proc: Path = DEFAULT_PROC_ROOT
    dev_root: Path = DEFAULT_DEV_ROOT
    state_file: Path = DEFAULT_STATE_FILE
    topology: bool = True


class BusModule(injector.Module):
    """The bus reader, the ``pci.ids`` database and the namer, from a `HostConfig`."""

    def __init__(self, config: HostConfig, ids: PciIds | None = None) -> None:
        """Read the bus at ``config``; ``ids`` is needed only by processes that name devices."""
        self._config = config
        self._ids = ids

    def configure(self, binder: injector.Binder) -> None:
        """Bind the values given at start-up."""
        binder.bind(HostConfig, to=self._config)
        if self._ids is not None:
            binder.bind(PciIds, to=self._ids)

    @injector.singleton
    @injector.provider
    def sysfs_bus(self, config: HostConfig) -> SysfsPciBus:
        """The bus reader below the sysfs root."""
        return SysfsPciBus(config.sysfs, topology=config.topology)

    @injector.singleton
    @injector.provider
    def bus(self, bus: SysfsPciBus) -> PciBus:
        """The `PciBus` port: the sysfs bus reader."""
        return bus

    @injector.singleton
    @injector.provider
    def namer(self, ids: PciIds) -> DeviceNamer:
        """Object names, resourceNames and descriptions from ``pci.ids``."""
        return DeviceNamer(ids)
