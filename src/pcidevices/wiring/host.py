"""The host's adapters, bound once for every process: the shared part of each composition root.

`HostModule` binds every host port to its adapter — `PciBus`, `DriverControl`,
`HostFactsSource`, `LedgerStore`, `Clock`, `VfioNodes`, `SriovControl` — plus the `PciIds`
database, the `DeviceNamer`, the `HostProtection` policy and the one `ClaimEngine`. The bus, the
database and the namer come from its part `pcidevices.wiring.bus.BusModule`, which is all that
``pcidevices scan`` installs (it claims nothing, so it does not import the claim machinery). The
agent, the standalone device plugin and the node-admin commands install `HostModule`, each adding
only what is its own. Providers build objects from what they receive; nothing here reads a file (the
pci.ids file is read by the process's ``run`` and handed in).

The adapters a process may not use (driver binding, host facts, the state file, VFIO nodes) are
imported inside their providers; injector resolves a provider by its return type, which is
always a port here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import attrs
import injector

from pcicore.address import PciAddress
from pcicore.engine import ClaimEngine
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
from pcidevices.wiring.bus import BusModule, HostConfig

__all__ = ["EngineConfig", "HostConfig", "HostModule"]


@attrs.frozen
class EngineConfig:
    """The administrator's choices for the claim engine.

    Attributes:
        deny: Addresses or class prefixes never to hand over.
        held_elsewhere: The devices another path of this node holds (the DRA plugin's
            ResourceClaims, in an agent with ``--dra``), each with its holder: refused.
    """

    deny: DenyList = attrs.field(factory=DenyList)
    held_elsewhere: Callable[[], Mapping[PciAddress, str]] = dict


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
        """Bind the values given at start-up, and the bus (`BusModule`)."""
        binder.install(BusModule(self._config, self._ids))
        binder.bind(EngineConfig, to=self._engine)

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
        engine: EngineConfig,
    ) -> ClaimEngine:
        """The claim engine on the host's adapters."""
        return ClaimEngine(
            bus,
            driver,
            facts,
            ledger,
            clock,
            protection=protection,
            held_elsewhere=engine.held_elsewhere,
        )
