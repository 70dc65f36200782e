"""The node agent's run loop: two informers, one work queue, one worker, and the services.

Keys, not events, drive the work: any change to this node's PCIDevices queues ``devices``; any
change to a claim queues ``claims``; the claim controller queues ``devices`` after it moved
something, so ``kernelDriverInUse`` follows at once. One worker processes keys in turn, so a
device sync never races a bind.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from pcihost.uevents import KernelPciEvents
from pcioperator.controllers.claims import ClaimController
from pcioperator.controllers.devices import DeviceSync
from pcioperator.controllers.dra_slices import DraSliceSync
from pcioperator.controllers.sriov import SriovSync
from pcioperator.controllers.usb import UsbSync
from pcioperator.kube.informer import Informer
from pcioperator.kube.metrics import AgentMetrics, HealthServer
from pcioperator.kube.runner import Controller
from pcioperator.kube.threads import LoopThreads
from pcioperator.kube.workqueue import WorkQueue

log = logging.getLogger(__name__)

_CACHE_WAIT_SECONDS = 0.2


class Service(Protocol):
    """Something the agent starts with itself and stops last (the device plugin)."""

    def start(self) -> None:
        """Start in the background."""

    def stop(self) -> None:
        """Stop and clean up."""


class Agent:
    """Everything one node runs, started and stopped together."""

    def __init__(
        self,
        *,
        devices: DeviceSync,
        claims: ClaimController,
        claims_informer: Informer,
        metrics: AgentMetrics,
        queue: WorkQueue[str] | None = None,
        health: HealthServer | None = None,
        services: tuple[Service, ...] = (),
        kernel_events: KernelPciEvents | None = None,
        sriov: SriovSync | None = None,
        usb: UsbSync | None = None,
        dra: DraSliceSync | None = None,
    ) -> None:
        """Assemble the agent from its parts (see `pcidevices.wiring.agent` for the wiring)."""
        self.devices = devices
        self.claims = claims
        self.claims_informer = claims_informer
        self.metrics = metrics
        self.health = health
        self.services = services
        self.kernel_events = kernel_events
        self.sriov = sriov
        self.usb = usb
        self.dra = dra
        self.queue: WorkQueue[str] = queue if queue is not None else WorkQueue()
        self._loops = LoopThreads()
        self.stopping = self._loops.stopping
        self._services_stopped = False
        handlers: dict[str, Callable[[], float | None]] = {
            DeviceSync.KEY: self._sync_devices,
            ClaimController.KEY: self._reconcile_claims,
        }
        if sriov is not None:
            handlers[SriovSync.KEY] = sriov.reconcile
        if usb is not None:
            handlers[UsbSync.KEY] = usb.reconcile
        if dra is not None:
            handlers[DraSliceSync.KEY] = self._sync_dra
        self._controller: Controller[str] = Controller(
            "agent", self.queue, lambda key: handlers[key](), observer=metrics
        )

    def _sync_devices(self) -> float | None:
        delay = self.devices.reconcile()
        self.metrics.devices.set(len(self.devices.last_records))
        return delay

    def _reconcile_claims(self) -> float | None:
        delay = self.claims.reconcile()
        self.metrics.set_claim_phases(self.claims.phases)
        return delay

    def _sync_dra(self) -> float | None:
        dra = self.dra
        if dra is None:
            return None
        caches = [self.claims_informer] + ([dra.informer] if dra.informer is not None else [])
        if not all(informer.synced.is_set() for informer in caches):
            # A claim not yet cached would publish its device under DRA too: wait for it.
            return _CACHE_WAIT_SECONDS
        return dra.reconcile()

    def request_devices_sync(self) -> None:
        """Queue a device sync now (the claim controller calls it after moving a device)."""
        self.queue.add(DeviceSync.KEY)

    def alive_threads(self) -> list[str]:
        """Names of the agent's loops still running (empty once `stop` has finished)."""
        return self._loops.alive()

    def healthy(self) -> bool:
        """Whether every loop is alive."""
        return self._loops.healthy()

    def ready(self) -> bool:
        """Whether every cache has been filled once."""
        return all(informer.synced.is_set() for informer in self._informers())

    def _informers(self) -> list[Informer]:
        informers = [self.devices.informer, self.claims_informer]
        if self.sriov is not None and self.sriov.informer is not None:
            informers.append(self.sriov.informer)
        if self.usb is not None:
            informers.extend(self.usb.informers.values())
        if self.dra is not None and self.dra.informer is not None:
            informers.append(self.dra.informer)
        return informers

    def start(self) -> None:
        """Start the services, the informers and the worker in background threads."""
        if self.health is not None:
            self.health.start()
        for service in self.services:
            service.start()
        loops = {
            "pcidevices-informer": self.devices.informer.run,
            "claims-informer": self.claims_informer.run,
            "worker": self._controller.run,
        }
        if self.sriov is not None and self.sriov.informer is not None:
            loops["sriov-informer"] = self.sriov.informer.run
        if self.usb is not None:
            loops.update({name: informer.run for name, informer in self.usb.informers.items()})
        if self.dra is not None and self.dra.informer is not None:
            loops["dra-slices-informer"] = self.dra.informer.run
        if self.kernel_events is not None and self.kernel_events.open():
            loops["kernel-events"] = self.kernel_events.run
        self._loops.start(loops)
        self.queue.add(DeviceSync.KEY)
        self.queue.add(ClaimController.KEY)
        if self.sriov is not None:
            self.queue.add(SriovSync.KEY)
        if self.usb is not None:
            self.queue.add(UsbSync.KEY)
        if self.dra is not None:
            self.queue.add(DraSliceSync.KEY)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop everything and wait for the loops to end; calling it again is harmless."""
        self._loops.request_stop()
        self.queue.shut_down()
        for informer in self._informers():
            informer.interrupt()
        self._loops.join(timeout)
        if self._services_stopped:
            return  # a second stop only waits for loops the first one left running
        self._services_stopped = True
        for service in reversed(self.services):
            service.stop()
        if self.health is not None:
            self.health.stop()
        log.info("agent stopped")
