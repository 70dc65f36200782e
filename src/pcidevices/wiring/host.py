"""The host's adapters, bound once for every process: the shared part of each composition root.

`HostModule` binds every host port to its adapter — `PciBus`, `DriverControl`,
`HostFactsSource`, `LedgerStore`, `Clock`, `VfioNodes` — plus the `PciIds` database, the
`DeviceNamer`, the `HostProtection` policy and the one `ClaimEngine`. The agent, the standalone
device plugin, ``pcidevices scan`` and the node-admin commands all install it, each adding only
what is its own. Providers build objects from what they receive; nothing here reads a file (the
pci.ids file is read by the process's ``run`` and handed in).

The adapters the one-shot ``pcidevices scan`` never uses (driver binding, host facts, the state
file, VFIO nodes) are imported inside their providers, so its start-up does not pay for them;
injector resolves a provider by its return type, which is always a port here.
"""

from __future__ import annotations

from pathlib import Path

import attrs
import injector

from pcicore.engine import ClaimEngine
from pcicore.naming import DeviceNamer
from pcicore.pciids import PciIds
from pcicore.ports import (
    Clock,
    DriverControl,
    HostFactsSource,
    LedgerStore,
    PciBus,
    SriovControl,
)
from pcicore.protection import DenyList, HostProtection
from pcicore.resources import VfioNodes
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


@attrs.frozen
class EngineConfig:
    """The administrator's choices for the claim engine.

    Attributes:
        deny: Addresses or class prefixes never to hand over.
    """

    deny: DenyList = attrs.field(factory=DenyList)


class HostModule(injector.Module):
    """Every host port bound once, from a `HostConfig` (and `PciIds`, when the process names)."""

    def __init__(
        self,
        config: HostConfig,
        engine: EngineConfig | None = None,
        ids: PciIds | None = None,
    ) -> None:
        """Bind the host at ``config``; ``ids`` is needed only by processes that name devices."""
        self._config = config
        self._engine = engine or EngineConfig()
        self._ids = ids

    def configure(self, binder: injector.Binder) -> None:
        """Bind the values given at start-up."""
        binder.bind(HostConfig, to=self._config)
        binder.bind(EngineConfig, to=self._engine)
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
    def driver_control(self, config: HostConfig) -> DriverControl:
        """Driver binding through sysfs, loading modules with the system's ``modprobe``."""
        from pcihost.binding import Modprobe, SysfsDriverControl  # noqa: PLC0415 - see the docstring

        return SysfsDriverControl(Modprobe(), sysfs=config.sysfs, proc=config.proc)

    @injector.singleton
    @injector.provider
    def sriov_control(self, config: HostConfig) -> SriovControl:
        """PFs' interfaces and their ``sriov_numvfs``, through sysfs."""
        from pcihost.sriov import SysfsSriovControl  # noqa: PLC0415 - see the docstring

        return SysfsSriovControl(config.sysfs)

    @injector.singleton
    @injector.provider
    def host_facts(self, config: HostConfig) -> HostFactsSource:
        """Routes, addresses, mounts and the boot GPU, from ``/proc`` and ``/sys``."""
        from pcihost.hostfacts import HostFactsReader  # noqa: PLC0415 - see the docstring

        return HostFactsReader(sysfs=config.sysfs, proc=config.proc)

    @injector.singleton
    @injector.provider
    def ledger(self, config: HostConfig) -> LedgerStore:
        """The claim state file."""
        from pcihost.statefile import ClaimStateFile  # noqa: PLC0415 - see the docstring

        return ClaimStateFile(config.state_file)

    @injector.singleton
    @injector.provider
    def clock(self) -> Clock:
        """The process's monotonic clock."""
        from pcihost.binding import SystemClock  # noqa: PLC0415 - see the docstring

        return SystemClock()

    @injector.singleton
    @injector.provider
    def vfio(self, config: HostConfig) -> VfioNodes:
        """The host's VFIO device nodes."""
        from pcihost.vfio import HostVfioNodes  # noqa: PLC0415 - see the docstring

        return HostVfioNodes(config.dev_root, config.sysfs)

    @injector.singleton
    @injector.provider
    def namer(self, ids: PciIds) -> DeviceNamer:
        """Object names, resourceNames and descriptions from ``pci.ids``."""
        return DeviceNamer(ids)

    @injector.singleton
    @injector.provider
    def protection(self, engine: EngineConfig) -> HostProtection:
        """Which devices the host refuses to hand over."""
        return HostProtection(engine.deny)

    @injector.singleton
    @injector.provider
    def engine(
        self,
        bus: PciBus,
        driver: DriverControl,
        facts: HostFactsSource,
        ledger: LedgerStore,
        clock: Clock,
        protection: HostProtection,
    ) -> ClaimEngine:
        """The claim engine on the host's adapters."""
        return ClaimEngine(
            bus,
            driver,
            facts,
            ledger,
            clock,
            protection=protection,
        )
