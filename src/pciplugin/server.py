"""One resource's gRPC server on its own unix socket in the kubelet's device-plugins folder."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from concurrent import futures
from pathlib import Path
from typing import Any, Final, Protocol

import grpc

from pcicore.naming import ResourceName
from pcicore.resources import ResourcePool
from pciplugin.kubelet import RegistrationError, SocketIdentity, register, socket_identity
from pciplugin.service import DevicePluginService, PluginServicer, PoolFeed, method_handlers

_log = logging.getLogger(__name__)

SOCKET_PREFIX: Final = "pcidevices-"
# sun_path holds 108 bytes including the terminating NUL.
_SUN_PATH_MAX: Final = 107
_WORKERS: Final = 8
_STOP_GRACE_SECONDS: Final = 0.5
_RETRY_SECONDS: Final = 1.0


def socket_name(folder: Path, resource: ResourceName) -> str:
    """``pcidevices-<vendor>_<product>.sock``, or a hashed name when the path would not fit.

    The kubelet dials ``<folder>/<endpoint>``, so the whole path must fit a unix socket address.
    """
    readable = f"{SOCKET_PREFIX}{resource.replace('/', '_')}.sock"
    if len(str(folder / readable)) <= _SUN_PATH_MAX:
        return readable
    digest = hashlib.sha256(resource.encode()).hexdigest()[:16]
    return f"{SOCKET_PREFIX}{digest}.sock"


class NamedPool(Protocol):
    """A resource's device set: it knows the resource's name."""

    @property
    def name(self) -> ResourceName:
        """The resource."""
        ...


ServicerFactory = Callable[[ResourceName, PoolFeed[Any]], PluginServicer]
"""Builds the service that answers the kubelet for one resource from its feed."""


def pci_servicer(resource: ResourceName, feed: PoolFeed[ResourcePool]) -> PluginServicer:
    """The PCI (VFIO) service of a resource."""
    return DevicePluginService(resource, feed)


class ResourceServer:
    """Serves ``v1beta1.DevicePlugin`` for one resource and keeps it registered."""

    def __init__(
        self,
        folder: Path,
        pool: NamedPool,
        *,
        iommufd: bool = False,
        servicer: ServicerFactory = pci_servicer,
    ) -> None:
        """Serve ``pool`` on a socket in ``folder`` (not yet started), answered by ``servicer``."""
        self.resource = pool.name
        self.folder = folder
        self.endpoint = socket_name(folder, pool.name)
        self.socket = folder / self.endpoint
        self.feed: PoolFeed[Any] = PoolFeed(pool, iommufd=iommufd)
        self._service = servicer(pool.name, self.feed)
        self._server: grpc.Server | None = None
        self._served: SocketIdentity | None = None
        self.registered_with: SocketIdentity | None = None
        self._refused_by: SocketIdentity | None = None
        self._retry_at = 0.0

    def start(self) -> None:
        """Listen on the socket (replacing a stale file of a previous run)."""
        self.socket.unlink(missing_ok=True)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=_WORKERS))
        server.add_generic_rpc_handlers([method_handlers(self._service)])
        server.add_insecure_port(f"unix://{self.socket}")
        server.start()
        self._server = server
        self._served = socket_identity(self.socket)
        self.registered_with = None

    def serving(self) -> bool:
        """Whether our socket is still the file at our path (the kubelet deletes it on restart)."""
        return self._served is not None and socket_identity(self.socket) == self._served

    def ensure_registered(self, kubelet_socket: Path, timeout: float) -> None:
        """Re-listen if our socket was deleted; register if the kubelet has not seen us yet.

        Raises:
            pciplugin.kubelet.RegistrationError: the kubelet is there but did not accept us.
        """
        if not self.serving():
            _log.info("socket %s is gone (kubelet restart?): listening again", self.socket)
            self._shutdown()
            self.start()
        kubelet = socket_identity(kubelet_socket)
        if kubelet is None or kubelet == self.registered_with:
            return
        if kubelet == self._refused_by and time.monotonic() < self._retry_at:
            return  # refused by this very kubelet a moment ago: do not hammer it
        try:
            register(kubelet_socket, self.resource, self.endpoint, timeout)
        except RegistrationError:
            self._refused_by, self._retry_at = kubelet, time.monotonic() + _RETRY_SECONDS
            raise
        self.registered_with = kubelet
        _log.info("registered %s with the kubelet as %s", self.resource, self.endpoint)

    def publish(self, pool: NamedPool, *, iommufd: bool = False) -> None:
        """Advertise ``pool`` from now on."""
        self.feed.publish(pool, iommufd=iommufd)

    def stop(self) -> None:
        """End the streams, stop serving and remove the socket."""
        self.feed.close()
        self._shutdown()

    def _shutdown(self) -> None:
        if self._server is not None:
            self._server.stop(_STOP_GRACE_SECONDS).wait(_STOP_GRACE_SECONDS * 4)
            self._server = None
        if self._served is not None and socket_identity(self.socket) == self._served:
            self.socket.unlink(missing_ok=True)
        self._served = None
