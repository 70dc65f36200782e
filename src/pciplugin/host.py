"""Runs every resource's plugin server on a node: the start/stop API a process hosts.

One background thread keeps the servers in step with the world:
- every ``health_interval`` it reads the claimed devices (`ClaimedDevices`), the bus
  (`PciBus`) and the VFIO nodes (`VfioNodes`), starts a server for each new resource, publishes
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
from pcicore.ports import PciBus
from pcicore.resources import ClaimedDevices, ResourcePool, VfioNodes, observe_pools
from pcihost.paths import DEFAULT_DEVICE_PLUGINS_DIR
from pciplugin.kubelet import KUBELET_SOCKET
from pciplugin.server import ResourceServer

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


class DevicePluginHost:
    """The device plugins of one node, kept in step by a background thread."""

    def __init__(
        self,
        settings: PluginSettings,
        claims: ClaimedDevices,
        bus: PciBus,
        vfio: VfioNodes,
    ) -> None:
        """Advertise the devices ``claims`` names, as ``bus`` and ``vfio`` show them."""
        self.settings = settings
        self._claims = claims
        self._bus = bus
        self._vfio = vfio
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
        for name in [name for name in self._servers if name not in pools]:
            _log.info("resource %s is no longer claimed: stopping its plugin", name)
            self._servers[name].stop()
            del self._servers[name]
        for name, pool in pools.items():
            server = self._servers.get(name)
            if server is None:
                self._start_server(pool, iommufd=iommufd)
            else:
                server.publish(pool, iommufd=iommufd)

    def _start_server(self, pool: ResourcePool, *, iommufd: bool) -> None:
        server = ResourceServer(self.settings.device_plugins_dir, pool, iommufd=iommufd)
        server.start()
        self._servers[pool.name] = server
        _log.info("serving %s on %s", pool.name, server.socket)

    def _check_sockets(self) -> None:
        kubelet = self.settings.device_plugins_dir / KUBELET_SOCKET
        for server in self._servers.values():
            try:
                server.ensure_registered(kubelet, self.settings.register_timeout)
            except PciDevicesError as err:
                _log.warning("%s", err)
