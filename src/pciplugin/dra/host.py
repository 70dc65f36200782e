"""Runs the kubelet DRA plugin of a node: the start/stop API a process hosts.

`start` first settles what a previous run left (`pcicore.dra_preparer.DraPreparer.start`:
claims cut short mid-prepare are rolled back, prepared ones are held and their files written
again), and only then listens, so the kubelet never reaches a plugin that is still recovering:
- ``<plugin dir>/dra.sock`` serves ``k8s.io.kubelet.pkg.apis.dra.v1.DRAPlugin`` and the
  optional ``v1.DRAResourceHealth`` (`pciplugin.dra.health`);
- ``<plugins_registry>/<driver>-reg.sock`` serves ``pluginregistration.Registration``; the
  kubelet's plugin watcher finds it (also after a kubelet restart: it walks the folder on
  start), asks `GetInfo` and connects to ``dra.sock``.
`stop` stops serving and removes both sockets, so the kubelet deregisters the driver.
"""

from __future__ import annotations

import logging
from concurrent import futures
from pathlib import Path
from typing import Final

import attrs
import grpc

from pcicore.dra import DRIVER_NAME
from pcicore.dra_preparer import DraPreparer
from pcihost.paths import DEFAULT_CDI_DIR, DEFAULT_DRA_PLUGIN_DIR, DEFAULT_PLUGINS_REGISTRY_DIR
from pciplugin.dra.health import SERVICE as HEALTH_SERVICE
from pciplugin.dra.health import DraHealthService
from pciplugin.dra.registration import RegistrationService
from pciplugin.dra.service import SUPPORTED_VERSION, DraPluginService

_log = logging.getLogger(__name__)

_WORKERS: Final = 4
_STOP_GRACE_SECONDS: Final = 0.5


@attrs.frozen
class DraPluginSettings:
    """Where the kubelet DRA plugin keeps its sockets and files.

    Attributes:
        plugin_dir: Its own folder: ``dra.sock``, the checkpoint, the engine's ledger and the
            device-metadata folder.
        registry_dir: The kubelet's plugin-registration folder.
        cdi_dir: Where CDI specs are written (the container runtime reads them there).
    """

    plugin_dir: Path = DEFAULT_DRA_PLUGIN_DIR
    registry_dir: Path = DEFAULT_PLUGINS_REGISTRY_DIR
    cdi_dir: Path = DEFAULT_CDI_DIR

    @property
    def socket(self) -> Path:
        """The DRA service's socket."""
        return self.plugin_dir / "dra.sock"

    @property
    def registration_socket(self) -> Path:
        """The registration socket the kubelet's plugin watcher finds."""
        return self.registry_dir / f"{DRIVER_NAME}-reg.sock"

    @property
    def checkpoint(self) -> Path:
        """The prepared claims."""
        return self.plugin_dir / "checkpoint.json"

    @property
    def ledger(self) -> Path:
        """The claim engine's ledger of the devices DRA moved (originals, claims)."""
        return self.plugin_dir / "claims.json"

    @property
    def metadata_dir(self) -> Path:
        """The device-metadata files (KEP-5304) that CDI mounts into containers."""
        return self.plugin_dir / "dra-device-metadata"


class DraPluginHost:
    """The kubelet DRA plugin of one node."""

    def __init__(self, settings: DraPluginSettings, preparer: DraPreparer) -> None:
        """Serve ``preparer`` at the sockets of ``settings`` (not yet started)."""
        self.settings = settings
        self.preparer = preparer
        self.service = DraPluginService(preparer)
        self.health = DraHealthService(preparer, self.service.lock)
        self.registration = RegistrationService(
            DRIVER_NAME, str(settings.socket), (SUPPORTED_VERSION, HEALTH_SERVICE)
        )
        self._server: grpc.Server | None = None

    def start(self) -> None:
        """Settle the previous run's work, then listen on both sockets."""
        for problem in self.preparer.start():
            _log.error("DRA plugin start-up: %s", problem)
        for claim in self.preparer.rolled_back:
            _log.info(
                "ResourceClaim %s (%s) was cut short mid-prepare: rolled back", claim, claim.uid
            )
        settings = self.settings
        self.health = DraHealthService(self.preparer, self.service.lock)  # streams of this run
        for path in (settings.socket, settings.registration_socket):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.unlink(missing_ok=True)  # a previous run's socket
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=_WORKERS))
        server.add_generic_rpc_handlers(
            [self.service.handler(), self.health.handler(), self.registration.handler()]
        )
        server.add_insecure_port(f"unix://{settings.socket}")
        server.add_insecure_port(f"unix://{settings.registration_socket}")
        server.start()
        self._server = server
        _log.info(
            "DRA plugin %s serving at %s, registration at %s",
            DRIVER_NAME,
            settings.socket,
            settings.registration_socket,
        )

    def stop(self) -> None:
        """Stop serving and remove both sockets (prepared claims stay prepared)."""
        self.health.stop()
        if self._server is not None:
            self._server.stop(_STOP_GRACE_SECONDS).wait(_STOP_GRACE_SECONDS * 4)
            self._server = None
        self.settings.registration_socket.unlink(missing_ok=True)
        self.settings.socket.unlink(missing_ok=True)
