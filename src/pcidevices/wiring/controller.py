"""``pcidevices controller``: the cluster-level controller's composition root.

It runs once per cluster (one leader among the Deployment's replicas) and keeps the KubeVirt CR's
permitted PCI host devices in step with the claims (`pcioperator.controllers.kubevirt`).
`ControllerModule` only builds objects from what it is given; `run` reads the kubeconfig,
installs the signal handlers and serves the probes.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import Annotated

import attrs
import injector
from kubernetes import client as k8s_client

from pcidevices.process import (
    CountedApiModule,
    configure_logging,
    load_api_client,
    termination_signal,
)
from pcioperator.controllers.kubevirt import (
    KubeClaimedDeviceKinds,
    KubeClaimedUsbKinds,
    KubeVirtCaches,
    KubeVirtController,
    KubeVirtPermittedStore,
    KubeVirtTarget,
    PermittedDevicesSync,
    kubevirt_informer,
)
from pcioperator.kube.api import (
    PCIDEVICECLAIMS,
    PCIDEVICES,
    USBDEVICECLAIMS,
    USBDEVICES,
    KubeApi,
)
from pcioperator.kube.informer import Informer
from pcioperator.kube.leader import LeaderElector, LeaseSettings
from pcioperator.kube.metrics import AgentMetrics, HealthServer
from pcioperator.kube.schema import check_installed_schema
from pcioperator.kube.workqueue import WorkQueue

log = logging.getLogger(__name__)


def default_identity() -> str:
    """This replica's name in the Lease: ``$POD_NAME``, else ``<hostname>-<pid>``."""
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


@attrs.frozen
class ControllerConfig:
    """How the cluster controller runs.

    Attributes:
        target: The KubeVirt CR to keep.
        lease: The Lease the replicas compete for, and its timing.
        metrics_address: Host and port of /metrics, /healthz, /readyz (``None``: off).
    """

    target: KubeVirtTarget
    lease: LeaseSettings
    metrics_address: tuple[str, int] | None = ("0.0.0.0", 9090)  # noqa: S104 - a pod's port


ControllerQueue = Annotated[WorkQueue[str], "the controller's work queue"]
"""The key of the controller's one work queue."""


class ControllerModule(injector.Module):
    """The controller's wiring. Builds objects only; nothing here reads files or the network."""

    def __init__(self, config: ControllerConfig) -> None:
        """Wire a controller for ``config`` (the API: `CountedApiModule`)."""
        self._config = config

    def configure(self, binder: injector.Binder) -> None:
        """Bind the values given at start-up."""
        binder.bind(ControllerConfig, to=self._config)

    @injector.singleton
    @injector.provider
    def queue(self) -> ControllerQueue:
        """The one work queue."""
        return WorkQueue()

    @injector.singleton
    @injector.provider
    def elector(
        self, config: ControllerConfig, api: KubeApi, queue: ControllerQueue
    ) -> LeaderElector:
        """The candidacy for the Lease; a new leader reconciles at once."""
        return LeaderElector(
            api,
            config.lease,
            on_started_leading=lambda: queue.add(PermittedDevicesSync.KEY),
        )

    @injector.singleton
    @injector.provider
    def caches(
        self, config: ControllerConfig, api: KubeApi, queue: ControllerQueue
    ) -> KubeVirtCaches:
        """The informers; any change queues the one reconcile."""

        def changed(_name: str) -> None:
            queue.add(PermittedDevicesSync.KEY)

        return KubeVirtCaches(
            claims=Informer(api, PCIDEVICECLAIMS, on_change=changed),
            devices=Informer(api, PCIDEVICES, on_change=changed),
            kubevirts=kubevirt_informer(api, config.target, changed),
            usb_claims=Informer(api, USBDEVICECLAIMS, on_change=changed),
            usb_devices=Informer(api, USBDEVICES, on_change=changed),
        )

    @injector.singleton
    @injector.provider
    def sync(
        self,
        config: ControllerConfig,
        api: KubeApi,
        caches: KubeVirtCaches,
        elector: LeaderElector,
    ) -> PermittedDevicesSync:
        """The reconcile, writing only while this replica leads."""
        return PermittedDevicesSync(
            config.target,
            claims=KubeClaimedDeviceKinds(caches),
            permitted=KubeVirtPermittedStore(api, config.target, caches.kubevirts),
            may_write=elector.leading.is_set,
            usb=(
                KubeClaimedUsbKinds(caches.usb_claims, caches.usb_devices)
                if caches.usb_claims is not None and caches.usb_devices is not None
                else None
            ),
        )

    @injector.singleton
    @injector.provider
    def controller(
        self,
        sync: PermittedDevicesSync,
        caches: KubeVirtCaches,
        api: KubeApi,
        queue: ControllerQueue,
        elector: LeaderElector,
        metrics: AgentMetrics,
    ) -> KubeVirtController:
        """The whole controller process."""
        return KubeVirtController(
            sync, caches, api=api, queue=queue, elector=elector, observer=metrics
        )


def controller_injector(
    config: ControllerConfig, api_client: k8s_client.ApiClient
) -> injector.Injector:
    """The injector of one controller process."""
    return injector.Injector([ControllerModule(config), CountedApiModule(api_client)])


def run(config: ControllerConfig, kubeconfig: Path | None) -> int:
    """Run the controller until SIGTERM or SIGINT; return the exit status."""
    configure_logging()
    api_client = load_api_client(kubeconfig)
    check_installed_schema(KubeApi(api_client))  # refuse CRDs that would drop our fields
    inj = controller_injector(config, api_client)
    controller = inj.get(KubeVirtController)
    health = None
    if config.metrics_address is not None:
        health = HealthServer(
            config.metrics_address, inj.get(AgentMetrics), controller.healthy, controller.ready
        )
    stop = termination_signal()
    if health is not None:
        health.start()
    controller.start()
    log.info(
        "controller %s running; KubeVirt CR %s/%s; lease %s/%s",
        config.lease.identity,
        config.target.namespace,
        config.target.name,
        config.lease.namespace,
        config.lease.name,
    )
    stop.wait()
    controller.stop()
    if health is not None:
        health.stop()
    return 0
