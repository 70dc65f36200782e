"""``pcidevices plugin``: the kubelet device plugin as a process of its own.

This is a composition root: it reads the configuration, builds the adapters and hands them to
`pciplugin.host.DevicePluginHost` through `DevicePluginModule`, the same module the agent
installs (the agent binds its claim engine as `ClaimedDevices`; standalone, `VfioBoundDevices`
stands in for it).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

import attrs
import injector

from pcicore.address import PciAddress
from pcicore.naming import DeviceNamer, ResourceName
from pcicore.pciids import PciIds
from pcicore.ports import PciBus
from pcicore.resources import ClaimedDevice, ClaimedDevices, VfioNodes
from pcihost.pciids_file import load_pci_ids
from pcihost.sysfs import SysfsPciBus
from pcihost.vfio import HostVfioNodes
from pciplugin.host import DevicePluginHost, PluginSettings

_log = logging.getLogger(__name__)


class VfioBoundDevices:
    """The standalone stand-in for the claim engine: what is on ``vfio-pci`` is claimed.

    A device seen on ``vfio-pci`` once stays claimed for the life of the process, so that
    unbinding or removing it shows as Unhealthy rather than making it silently disappear.
    Every device is pooled under its resourceName (no ``disableResourcePooling`` here).
    """

    def __init__(self, bus: PciBus, namer: DeviceNamer) -> None:
        """Watch ``bus``; name resources with ``namer``."""
        self._bus = bus
        self._namer = namer
        self._seen: dict[PciAddress, ResourceName] = {}

    def claimed(self) -> Sequence[ClaimedDevice]:
        """Every device on ``vfio-pci`` now or earlier in this process, in address order."""
        for device in self._bus.devices():
            if device.is_bound_to_vfio and device.address not in self._seen:
                self._seen[device.address] = self._namer.resource_name(device)
        return [ClaimedDevice(address, name) for address, name in sorted(self._seen.items())]


@attrs.frozen
class PluginConfig:
    """Where the standalone plugin finds the host.

    Attributes:
        sysfs: The sysfs mount point (``/sys``).
        dev_root: The ``/dev`` of the host (VFIO nodes are looked for there).
        settings: Device-plugins folder and intervals.
    """

    sysfs: Path
    dev_root: Path
    settings: PluginSettings


class DevicePluginModule(injector.Module):
    """The device plugin's wiring; the process provides the settings and the ports.

    Needs `PluginSettings`, `ClaimedDevices`, `PciBus` and `VfioNodes`; gives the
    `DevicePluginHost` (one per injector), which the process starts and stops.
    """

    @injector.singleton
    @injector.provider
    def host(
        self,
        settings: PluginSettings,
        claims: ClaimedDevices,
        bus: PciBus,
        vfio: VfioNodes,
    ) -> DevicePluginHost:
        """The node's device plugins."""
        return DevicePluginHost(settings, claims, bus, vfio)


class StandaloneModule(injector.Module):
    """The adapters of the standalone process."""

    def __init__(self, config: PluginConfig, ids: PciIds) -> None:
        """Provide from ``config``; name resources with ``ids``."""
        self._config = config
        self._ids = ids

    @injector.provider
    def settings(self) -> PluginSettings:
        """The plugin settings of the command line."""
        return self._config.settings

    @injector.singleton
    @injector.provider
    def bus(self) -> PciBus:
        """The host's PCI bus, read from sysfs."""
        return SysfsPciBus(self._config.sysfs)

    @injector.singleton
    @injector.provider
    def vfio(self) -> VfioNodes:
        """The host's VFIO nodes."""
        return HostVfioNodes(self._config.dev_root, self._config.sysfs)

    @injector.singleton
    @injector.provider
    def claims(self, bus: PciBus) -> ClaimedDevices:
        """Devices on vfio-pci, standing in for the claim engine."""
        return VfioBoundDevices(bus, DeviceNamer(self._ids))


def run(*, sysfs: Path, dev_root: Path, device_plugins_dir: Path, pci_ids: Path | None) -> int:
    """Serve until SIGTERM or SIGINT, then remove the sockets; return the exit code.

    Raises:
        pcicore.errors.PciDevicesError: ``sysfs`` is not a sysfs tree, or no ``pci.ids``.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    SysfsPciBus(sysfs).check()
    config = PluginConfig(sysfs, dev_root, PluginSettings(device_plugins_dir=device_plugins_dir))
    container = injector.Injector(
        [StandaloneModule(config, load_pci_ids(pci_ids)), DevicePluginModule()]
    )
    host = container.get(DevicePluginHost)
    stopping = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        _log.info("%s received: stopping", signal.Signals(signum).name)
        stopping.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        host.start()
        _log.info("device plugins serving in %s", device_plugins_dir)
        while not stopping.wait(1.0):
            pass
    finally:
        host.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
