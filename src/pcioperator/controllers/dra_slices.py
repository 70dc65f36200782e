"""Keeps this node's DRA ResourceSlices equal to its claimable PCI functions, writing only changes.

One key covers the node: a reconcile reads the bus, host protection and the functions that
PCIDeviceClaims hold (the device plugin's; dual mode), asks `pcicore.dra_slices` for the devices
and for the writes against the slices cached by an informer (field selector: this node, this
driver), and applies them. With nothing changed it makes no request, so an idle rescan costs
the API server nothing.

`DraSliceSync` is the reconcile, written against `pcicore.ports.ResourceSliceStore`;
`KubeSliceStore` is that port on the API server. A slice the API server refuses (a 4xx other
than a conflict) becomes a Warning Event on the Node naming the slice and the server's answer.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Collection, Sequence

from pcicore.address import PciAddress
from pcicore.device import NodeName, PciDevice
from pcicore.dra_slices import (
    MAX_DEVICES_PER_SLICE,
    CreateSlice,
    DeleteSlice,
    DraDevice,
    ObservedSlice,
    SliceContent,
    SliceWrite,
    UpdateSlice,
    desired_devices,
    plan_slice_writes,
)
from pcicore.errors import PciDevicesError
from pcicore.inventory import OwnerRef
from pcicore.naming import DeviceNamer
from pcicore.ports import PciBus, ResourceSliceStore
from pcioperator.controllers.devices import node_owner
from pcioperator.kube.api import NODES, RESOURCESLICES, KubeApi
from pcioperator.kube.errors import ConflictError, NotFoundError, PermanentApiError
from pcioperator.kube.events import EventRecorder
from pcioperator.kube.informer import Informer
from pcioperator.kube.runner import Controller
from pcioperator.kube.threads import LoopThreads
from pcioperator.kube.workqueue import WorkQueue
from pcioperator.wire.dra import observed_slice, slice_manifest, slices_of_node

log = logging.getLogger(__name__)


class DraUnavailableError(PciDevicesError):
    """The API server serves no ``resource.k8s.io/v1`` ResourceSlices (DRA is off or too old)."""


def check_resource_slices_served(api: KubeApi, node: NodeName) -> None:
    """Return if the API server serves ResourceSlices; one list of ``node``'s slices.

    Raises:
        DraUnavailableError: it answers 404 for them; the message says what to do.
    """
    try:
        api.list_objects(RESOURCESLICES, field_selector=slices_of_node(node))
    except NotFoundError as err:
        raise DraUnavailableError(
            f"the API server serves no {RESOURCESLICES.api_version} {RESOURCESLICES.plural}: "
            "DRA needs Kubernetes 1.34 or later with resource.k8s.io/v1 enabled; upgrade the "
            "cluster, or run the agent without --dra"
        ) from err


REJECTED_REASON = "ResourceSliceRejected"
"""The reason of the Event on the Node when the API server refuses a slice."""


class DraSliceSync:
    """Reconciles one node's ResourceSlices with its PCI bus."""

    KEY = "dra-slices"

    def __init__(
        self,
        *,
        node: NodeName,
        bus: PciBus,
        namer: DeviceNamer,
        store: ResourceSliceStore,
        claimed: Callable[[], Collection[PciAddress]],
        refused: Callable[[Sequence[PciDevice]], Collection[PciAddress]],
        informer: Informer | None = None,
        events: EventRecorder | None = None,
        rescan_interval: float = 30.0,
        max_devices: int = MAX_DEVICES_PER_SLICE,
    ) -> None:
        """Publish the functions of ``bus`` not ``claimed`` nor ``refused`` into ``store``.

        ``informer`` is the cache behind ``store``, held for the process that runs it.
        """
        self._node = node
        self._bus = bus
        self._namer = namer
        self._store = store
        self._claimed = claimed
        self._refused = refused
        self.informer = informer
        self._events = events
        self._rescan_interval = rescan_interval
        self._max_devices = max_devices
        self._owner: OwnerRef | None = None
        self.last_devices: list[DraDevice] = []

    def reconcile(self, _key: str = KEY) -> float:
        """Make the slices match the bus; return when to rescan."""
        devices = self._bus.devices()
        wanted = desired_devices(
            devices,
            self._namer.resource_name,
            refused=self._refused(devices),
            claimed=self._claimed(),
        )
        self.last_devices = wanted
        observed = self._store.observed()
        if self._owner is None:
            self._owner = self._store.node_owner()  # asked again next time while it is None
        for write in plan_slice_writes(
            self._node, wanted, observed, self._owner, self._max_devices
        ):
            self._apply(write)
        return self._rescan_interval

    def _apply(self, write: SliceWrite) -> None:
        try:
            match write:
                case CreateSlice(content=content, owner=owner):
                    self._store.create(content, owner)
                case UpdateSlice(content=content, owner=owner, resource_version=version):
                    self._store.update(content, owner, version)
                case DeleteSlice(name=name):
                    self._store.delete(name)
        except ConflictError:
            raise  # the cache is behind: the retry reads it again
        except PermanentApiError as err:
            self._rejected(write, err)
            raise

    def _rejected(self, write: SliceWrite, err: PermanentApiError) -> None:
        name = write.name if isinstance(write, DeleteSlice) else write.content.name
        message = (
            f"the API server refused ResourceSlice {name} of node {self._node}: {err}; "
            "check that resource.k8s.io/v1 is served and that the agent may write "
            "resourceslices for its node (deploy/agent/rbac.yaml, node-restriction.yaml)"
        )
        log.error("%s", message)
        if self._events is not None and self._owner is not None:
            self._events.emit(
                NODES,
                self._node,
                self._owner.uid,
                warning=True,
                reason=REJECTED_REASON,
                message=message,
            )


class KubeSliceStore:
    """`pcicore.ports.ResourceSliceStore` on the API server: one node's slices of our driver."""

    def __init__(self, api: KubeApi, informer: Informer, node: NodeName) -> None:
        """Read ``node``'s slices from ``informer`` (watching them by `slice_informer`)."""
        self._api = api
        self._informer = informer
        self._node = node

    def observed(self) -> list[ObservedSlice]:
        """Every cached slice."""
        return [observed_slice(obj) for obj in self._informer.objects()]

    def node_owner(self) -> OwnerRef | None:
        """A reference to the Node object (one GET), or ``None`` if it has none."""
        return node_owner(self._api, self._node, "ResourceSlices")

    # Each write is remembered by the informer at once, so the next reconcile reads it even
    # when the watch is slow (a loaded node): the pool is not rewritten over its own writes.

    def create(self, content: SliceContent, owner: OwnerRef | None) -> None:
        """One POST."""
        self._informer.remember(self._api.create(RESOURCESLICES, slice_manifest(content, owner)))

    def update(self, content: SliceContent, owner: OwnerRef | None, resource_version: str) -> None:
        """One PUT at ``resource_version`` (409 if the slice changed since)."""
        self._informer.remember(
            self._api.update(
                RESOURCESLICES, content.name, slice_manifest(content, owner, resource_version)
            )
        )

    def delete(self, name: str) -> None:
        """One DELETE; NotFound means done."""
        with contextlib.suppress(NotFoundError):
            self._api.delete(RESOURCESLICES, name)
        self._informer.forget(name)


def slice_informer(
    api: KubeApi, node: NodeName, on_change: Callable[[str], None] | None = None
) -> Informer:
    """An informer of this driver's ResourceSlices on ``node``."""
    return Informer(api, RESOURCESLICES, field_selector=slices_of_node(node), on_change=on_change)


class DraSlicePublisher:
    """The standalone process: the slice sync, its informers and one worker, started together.

    ``informers`` are every cache the sync reads (its slices, the claims); the sync runs on
    start, on every change they report (they queue `DraSliceSync.KEY`), and every rescan.
    """

    def __init__(
        self, sync: DraSliceSync, queue: WorkQueue[str], informers: Sequence[Informer]
    ) -> None:
        """Run ``sync`` over ``queue``, fed by ``informers``."""
        self.sync = sync
        self.queue = queue
        self.informers = tuple(informers)
        self._loops = LoopThreads()
        self._controller: Controller[str] = Controller("dra-slices", queue, sync.reconcile)

    def ready(self) -> bool:
        """Whether every cache has been filled once."""
        return all(informer.synced.is_set() for informer in self.informers)

    def start(self) -> None:
        """Start the informers and the worker in background threads."""
        loops: dict[str, Callable[[threading.Event], None]] = {
            f"{informer.resource.plural}-informer": informer.run for informer in self.informers
        }
        loops["worker"] = self._run_when_synced
        self._loops.start(loops)

    def _run_when_synced(self, stop: threading.Event) -> None:
        # A claim not yet in the cache would publish its device: wait for the caches first.
        while not stop.is_set() and not self.ready():
            stop.wait(0.05)
        self.queue.add(DraSliceSync.KEY)
        self._controller.run(stop)

    def alive_threads(self) -> list[str]:
        """Names of the loops still running."""
        return self._loops.alive()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the loops and wait for them."""
        self._loops.request_stop()
        self.queue.shut_down()
        for informer in self.informers:
            informer.interrupt()
        self._loops.join(timeout)
