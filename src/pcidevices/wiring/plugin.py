"""``pcidevices plugin``: the kubelet device plugin as a process of its own.

This is a composition root: the host's adapters come from the shared
`pcidevices.wiring.host.HostModule`, and `DevicePluginModule` (which the agent installs too)
builds the `pciplugin.host.DevicePluginHost` from them. The agent binds the claims in the cluster
as `ClaimedDevices`; standalone, `VfioBoundDevices` stands in for them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import injector

from pcicore.address import PciAddress
from pcicore.naming import DeviceNamer, ResourceName
from pcicore.pciids import PciIds
from pcicore.ports import PciBus
from pcicore.resources import ClaimedDevice, ClaimedDevices, VfioNodes
from pcidevices.process import configure_logging, termination_signal
from pcidevices.wiring.host import HostConfig, HostModule
from pcihost.pciids_file import load_pci_ids
from pcihost.sysfs import SysfsPciBus
from pciplugin.host import DevicePluginHost, PluginSettings, UsbAdvertising

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


class DevicePluginModule(injector.Module):
    """The device plugin's wiring; the process provides the settings and the ports.

    Needs `PluginSettings`, `ClaimedDevices`, `PciBus`, `VfioNodes` and `UsbAdvertising`; gives the
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
        usb: UsbAdvertising,
    ) -> DevicePluginHost:
        """The node's device plugins."""
        return DevicePluginHost(settings, claims, bus, vfio, usb)


class StandaloneModule(injector.Module):
    """What the standalone process adds to the host's adapters: settings and `ClaimedDevices`."""

    def __init__(self, settings: PluginSettings) -> None:
        """Serve with ``settings``."""
        self._settings = settings

    def configure(self, binder: injector.Binder) -> None:
        """Bind the values given at start-up."""
        binder.bind(PluginSettings, to=self._settings)
        binder.bind(UsbAdvertising, to=UsbAdvertising())  # USB devices are the agent's

    @injector.singleton
    @injector.provider
    def claims(self, bus: PciBus, namer: DeviceNamer) -> ClaimedDevices:
        """Devices on vfio-pci, standing in for the claim engine."""
        return VfioBoundDevices(bus, namer)


def plugin_injector(host: HostConfig, settings: PluginSettings, ids: PciIds) -> injector.Injector:
    """The injector of one standalone device-plugin process."""
    return injector.Injector(
        [HostModule(host, ids=ids), StandaloneModule(settings), DevicePluginModule()]
    )


def run(*, sysfs: Path, dev_root: Path, device_plugins_dir: Path, pci_ids: Path | None) -> int:
    """Serve until SIGTERM or SIGINT, then remove the sockets; return the exit code.

    Raises:
        pcicore.errors.PciDevicesError: ``sysfs`` is not a sysfs tree, or no ``pci.ids``.
    """
    configure_logging()
    SysfsPciBus(sysfs).check()
    container = plugin_injector(
        HostConfig(sysfs=sysfs, dev_root=dev_root),
        PluginSettings(device_plugins_dir=device_plugins_dir),
        load_pci_ids(pci_ids),
    )
    host = container.get(DevicePluginHost)
    stop = termination_signal()
    try:
        host.start()
        _log.info("device plugins serving in %s", device_plugins_dir)
        stop.wait()
    finally:
        host.stop()
    return 0
