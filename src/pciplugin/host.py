"""Runs every resource's plugin server on a node: the start/stop API a process hosts.

One background thread keeps the servers in step with the world:
- every ``health_interval`` it reads the claimed devices (`ClaimedDevices`), the bus
  (`PciBus`) and the VFIO nodes (`VfioNodes`) — and, in the agent, the enabled USB devices and
  their device nodes (`UsbAdvertising`) — starts a server for each new resource, publishes
  each resource's devices (ListAndWatch streams send the set when it changed) and stops servers
  of resources no longer claimed;
- every ``socket_interval`` it checks the sockets: a kubelet restart deletes the plugin sockets
  and makes a new ``kubelet.sock``, so a server whose socket is gone listens again, and a
  server not yet registered with the current ``kubelet.sock`` registers.

The standalone ``pcidevices plugin`` and the agent both build one through
`pcidevices.wiring.plugin.DevicePluginModule` and call `start` and `stop`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Self

import attrs

from pcicore.errors import PciDevicesError
from pcicore.naming import ResourceName
from pcicore.ports import EnabledUsbDevices, PciBus, UsbNodes
from pcicore.resources import ClaimedDevices, ResourcePool, VfioNodes, observe_pools
from pcicore.usb import UsbPool
from pcihost.paths import DEFAULT_DEVICE_PLUGINS_DIR
from pciplugin.kubelet import KUBELET_SOCKET
from pciplugin.server import ResourceServer
from pciplugin.usb import UsbServicerFactory, observe_usb_pools

_log = logging.getLogger(__name__)


@attrs.frozen
class PluginSettings:
    """How the device plugin runs.

    Attributes:
        device_plugins_dir: The kubelet's device-plugins folder (sockets live there).
        health_interval: Seconds between reads of the claimed devices' state.
        socket_interval: Seconds between checks of the sockets (kubelet restarts).
        register_timeout: Seconds to wait for the kubelet to answer a registration.
    """

    device_plugins_dir: Path = DEFAULT_DEVICE_PLUGINS_DIR
    health_interval: float = 0.2
    socket_interval: float = 0.1
    register_timeout: float = 1.0


class _NoUsbNodes:
    """No USB device nodes: the stand-in when USB is not served."""

    def exists(self, _device_path: str) -> bool:
        return False

    def hand_over(self, device_path: str) -> None:
        raise PciDevicesError(f"USB is not served by this plugin; cannot hand over {device_path}")


@attrs.frozen
class UsbAdvertising:
    """Where the plugin finds the USB devices to advertise (none: USB is not served).

    Attributes:
        enabled: The enabled USB devices of the node (the agent's USB controller).
        nodes: The host's USB device nodes.
    """

    enabled: EnabledUsbDevices | None = None
    nodes: UsbNodes = attrs.field(factory=_NoUsbNodes)


class DevicePluginHost:
    """The device plugins of one node, kept in step by a background thread."""

    def __init__(
        self,
        settings: PluginSettings,
        claims: ClaimedDevices,
        bus: PciBus,
        vfio: VfioNodes,
        usb: UsbAdvertising | None = None,
    ) -> None:
        """Advertise the devices ``claims`` names, as ``bus`` and ``vfio`` show them.

        With ``usb``, also each enabled USB device, as its device node shows it.
        """
        self.settings = settings
        self._claims = claims
        self._bus = bus
        self._vfio = vfio
        self._usb = usb if usb is not None and usb.enabled is not None else None
        self._servers: dict[ResourceName, ResourceServer] = {}
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_health = 0.0

    @property
    def servers(self) -> Mapping[ResourceName, ResourceServer]:
        """The running server of each advertised resource."""
        return dict(self._servers)

    def start(self) -> None:
        """Serve and register every claimed resource now, then keep them in step.

        Raises:
            pcicore.errors.PciDevicesError: the first read of the host failed (a wrong --sysfs).
        """
        if self._thread is not None:
            return
        self.settings.device_plugins_dir.mkdir(parents=True, exist_ok=True)
        self._stopping.clear()
        self._refresh()
        self._check_sockets()
        self._thread = threading.Thread(target=self._run, name="device-plugins", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread and every server; remove the sockets."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        for server in self._servers.values():
            server.stop()
        self._servers.clear()

    def __enter__(self) -> Self:
        """Start; `stop` on leaving the block."""
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        """Stop."""
        self.stop()

    def _run(self) -> None:
        while not self._stopping.wait(self.settings.socket_interval):
            try:
                if time.monotonic() >= self._next_health:
                    self._refresh()
                self._check_sockets()
            except Exception:  # noqa: BLE001 - a logged, retried round must not end the thread
                # Keep serving what we have; the next round retries. A dead loop would leave
                # the kubelet with a stale device set and no re-registration.
                _log.exception("device plugin round failed; retrying")

    def _refresh(self) -> None:
        self._next_health = time.monotonic() + self.settings.health_interval
        pools = observe_pools(self._claims.claimed(), self._bus, self._vfio)
        iommufd = self._vfio.iommufd_available()
        usb_pools: dict[ResourceName, UsbPool] = {}
        if self._usb is not None and self._usb.enabled is not None:
            usb_pools = observe_usb_pools(self._usb.enabled.enabled_usb(), self._usb.nodes)
        for name in [name for name in self._servers if name not in pools | usb_pools]:
            _log.info("resource %s is no longer claimed: stopping its plugin", name)
            self._servers[name].stop()
            del self._servers[name]
        for name, pool in pools.items():
            server = self._servers.get(name)
            if server is None:
                self._start_server(pool, iommufd=iommufd)
            else:
                server.publish(pool, iommufd=iommufd)
        for name, usb_pool in usb_pools.items():
            server = self._servers.get(name)
            if server is None and self._usb is not None:
                servicer = UsbServicerFactory(self._usb.nodes)
                self._serve(
                    ResourceServer(self.settings.device_plugins_dir, usb_pool, servicer=servicer)
                )
            elif server is not None:
                server.publish(usb_pool)

    def _start_server(self, pool: ResourcePool, *, iommufd: bool) -> None:
        self._serve(ResourceServer(self.settings.device_plugins_dir, pool, iommufd=iommufd))

    def _serve(self, server: ResourceServer) -> None:
        server.start()
        self._servers[server.resource] = server
        _log.info("serving %s on %s", server.resource, server.socket)

    def _check_sockets(self) -> None:
        kubelet = self.settings.device_plugins_dir / KUBELET_SOCKET
        for server in self._servers.values():
            try:
                server.ensure_registered(kubelet, self.settings.register_timeout)
            except PciDevicesError as err:
                _log.warning("%s", err)
