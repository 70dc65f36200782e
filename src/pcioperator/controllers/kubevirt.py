"""Keeps the KubeVirt CR's permitted PCI host devices in step with the claims in the cluster.

KubeVirt lets a VM ask for a host device only when ``spec.configuration.permittedHostDevices
.pciHostDevices`` lists its resource (with ``externalResourceProvider: true`` when, as here, an
outside device plugin advertises it). This controller watches claims, PCIDevices and the CR,
and on any change runs one level-triggered reconcile: read the caches, plan with
`pcicore.permitted` (pure), and merge-patch the CR only when the plan changes something, with
the ``resourceVersion`` it read. What it owns is recorded in the annotation `MANAGED_ANNOTATION`,
so a restart (or a new leader) knows which entries it may remove.

Only the elected leader (`pcioperator.kube.leader`) writes; every replica keeps its caches warm.
A cluster without KubeVirt is normal: the controller says so once and looks again slowly.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any, Final

import attrs
import cattrs

from pcicore.address import PciAddress
from pcicore.device import NodeName
from pcicore.errors import InvalidPciAddressError
from pcicore.naming import ResourceName, object_name
from pcicore.permitted import (
    ClaimedKind,
    PermittedEntry,
    PermittedKey,
    PermittedPlan,
    plan_permitted,
    wanted_keys,
)
from pcioperator.kube.api import JsonObject, KubeApi, Resource
from pcioperator.kube.errors import ApiError, NotFoundError
from pcioperator.kube.informer import Informer
from pcioperator.kube.leader import LeaderElector
from pcioperator.kube.runner import Controller, ReconcileObserver
from pcioperator.kube.workqueue import Backoff, WorkQueue
from pcioperator.wire.claim import claim_from_object

log = logging.getLogger(__name__)

MANAGED_ANNOTATION: Final = "devices.harvesterhci.io/managed-pci-host-devices"
"""JSON list of ``{pciVendorSelector, resourceName}``: the entries this controller added."""

KUBEVIRTS: Final = Resource("kubevirt.io", "v1", "kubevirts", "KubeVirt", namespaced=True)
_NOT_SYNCED_RETRY: Final = 0.5


@attrs.frozen
class NamespacedCollection(Resource):
    """A namespaced resource whose list and watch stay in one namespace.

    `Informer` lists and watches ``resource.path()``; this fills in the namespace, so the
    controller needs to read KubeVirt CRs in their namespace only.

    Attributes:
        namespace: The namespace used when a call names none.
    """

    namespace: str = ""

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        """The URL path, in `namespace` unless another is given."""
        return super().path(namespace or self.namespace, name)


@attrs.frozen
class KubeVirtTarget:
    """Which KubeVirt CR to keep, and how patiently to look for it.

    Attributes:
        namespace: Its namespace (``kubevirt`` in a standard install).
        name: Its name (``kubevirt``).
        absent_retry: Seconds between looks for the KubeVirt API while it is not installed.
    """

    namespace: str = "kubevirt"
    name: str = "kubevirt"
    absent_retry: float = 30.0


def entry_from_wire(raw: object) -> PermittedEntry:
    """A ``pciHostDevices`` item as the domain sees it (anything malformed is a user's entry)."""
    item: dict[str, Any] = raw if isinstance(raw, dict) else {}
    return PermittedEntry(
        selector=str(item.get("pciVendorSelector") or ""),
        resource_name=ResourceName(str(item.get("resourceName") or "")),
        external=item.get("externalResourceProvider") is True,
    )


def entry_to_wire(key: PermittedKey) -> JsonObject:
    """The item this controller writes for ``key``."""
    return {
        "pciVendorSelector": key.selector,
        "resourceName": key.resource_name,
        "externalResourceProvider": True,
    }


def managed_from_wire(cr: JsonObject) -> frozenset[PermittedKey]:
    """The keys recorded in the CR's annotation (none if absent or unreadable)."""
    text = ((cr.get("metadata") or {}).get("annotations") or {}).get(MANAGED_ANNOTATION)
    if not text:
        return frozenset()
    try:
        items = json.loads(text)
        return frozenset(
            PermittedKey(str(item["pciVendorSelector"]).upper(), ResourceName(item["resourceName"]))
            for item in items
        )
    except (ValueError, TypeError, KeyError) as err:
        log.warning(
            "KubeVirt CR: annotation %s is not a JSON list of {pciVendorSelector, resourceName} "
            "(%s); treating every entry as a user's, so none is removed. Delete the annotation "
            "to let the controller start over",
            MANAGED_ANNOTATION,
            err,
        )
        return frozenset()


def managed_to_wire(keys: frozenset[PermittedKey]) -> str | None:
    """The annotation's value (``None`` removes it)."""
    if not keys:
        return None
    return json.dumps(
        [{"pciVendorSelector": k.selector, "resourceName": k.resource_name} for k in sorted(keys)],
        separators=(",", ":"),
    )


def pci_host_devices(cr: JsonObject) -> list[Any]:
    """The CR's ``permittedHostDevices.pciHostDevices`` as written."""
    spec = cr.get("spec") or {}
    permitted = (spec.get("configuration") or {}).get("permittedHostDevices") or {}
    items = permitted.get("pciHostDevices") or []
    return list(items) if isinstance(items, list) else []


def claimed_kinds(claims: Iterable[JsonObject], devices: Informer) -> list[ClaimedKind]:
    """The kind of every claimed device whose PCIDevice reports ids and a resourceName."""
    kinds: list[ClaimedKind] = []
    for obj in claims:
        try:
            claim = claim_from_object(obj)
            address = PciAddress.parse(claim.spec.address)
        except (cattrs.BaseValidationError, InvalidPciAddressError, KeyError, ValueError):
            continue
        device = devices.get(object_name(NodeName(claim.spec.node_name), address))
        status = (device or {}).get("status") or {}
        try:
            vendor_id = int(str(status["vendorId"]), 16)
            device_id = int(str(status["deviceId"]), 16)
        except (KeyError, ValueError):
            continue
        resource = status.get("resourceName")
        if not resource:
            continue
        kinds.append(
            ClaimedKind(
                address,
                vendor_id,
                device_id,
                ResourceName(str(resource)),
                dedicated=claim.spec.disable_resource_pooling,
            )
        )
    return kinds


class PermittedDevicesSync:
    """The reconcile of the KubeVirt CR's permitted PCI devices (one key: `KEY`)."""

    KEY: Final = "permitted-host-devices"

    def __init__(
        self,
        api: KubeApi,
        target: KubeVirtTarget,
        *,
        claims: Informer,
        devices: Informer,
        kubevirts: Informer,
        may_write: Callable[[], bool] = lambda: True,
    ) -> None:
        """Keep ``target`` in step with what ``claims`` and ``devices`` cache."""
        self.api = api
        self.target = target
        self.claims = claims
        self.devices = devices
        self.kubevirts = kubevirts
        self._may_write = may_write
        self._absent_logged = False
        self._written_from: str | None = None
        self.last_plan: PermittedPlan | None = None

    def reconcile(self) -> float | None:
        """Bring the CR in step; return when to look again (``None``: on the next change)."""
        if not all(i.synced.is_set() for i in (self.claims, self.devices, self.kubevirts)):
            return _NOT_SYNCED_RETRY
        cr = self.kubevirts.get(self.target.name)
        if cr is None:
            if not self._absent_logged:
                log.info(
                    "KubeVirt CR %s/%s does not exist; nothing to permit until it does",
                    self.target.namespace,
                    self.target.name,
                )
                self._absent_logged = True
            return None
        self._absent_logged = False
        version = str(cr["metadata"].get("resourceVersion", ""))
        if version == self._written_from:
            return _NOT_SYNCED_RETRY  # the cache has not seen our last write yet
        raw = pci_host_devices(cr)
        entries = [entry_from_wire(item) for item in raw]
        plan = plan_permitted(
            entries,
            managed_from_wire(cr),
            wanted_keys(claimed_kinds(self.claims.objects(), self.devices)),
        )
        self.last_plan = plan
        if not plan.changed or not self._may_write():
            return None
        items = [
            item for item, entry in zip(raw, entries, strict=True) if not plan.is_removed(entry)
        ]
        items.extend(entry_to_wire(key) for key in plan.add)
        patch = {
            "metadata": {
                "resourceVersion": version,
                "annotations": {MANAGED_ANNOTATION: managed_to_wire(plan.managed)},
            },
            "spec": {"configuration": {"permittedHostDevices": {"pciHostDevices": items}}},
        }
        try:
            self.api.patch(KUBEVIRTS, self.target.name, patch, namespace=self.target.namespace)
        except NotFoundError:
            return None  # deleted meanwhile: its informer brings us back if it returns
        self._written_from = version
        log.info(
            "KubeVirt CR %s/%s: permitted %s; removed %s",
            self.target.namespace,
            self.target.name,
            [key.resource_name for key in plan.add] or "nothing",
            sorted(key.resource_name for key in plan.remove) or "nothing",
        )
        return None


class KubeVirtController:
    """The cluster-level process: informers always, the reconcile worker only while leading."""

    def __init__(
        self,
        sync: PermittedDevicesSync,
        queue: WorkQueue[str],
        elector: LeaderElector,
        observer: ReconcileObserver | None = None,
    ) -> None:
        """Assemble the controller (see `pcidevices.wiring.controller` for the wiring)."""
        self.sync = sync
        self.queue = queue
        self.elector = elector
        self._controller: Controller[str] = Controller(
            "kubevirt", queue, lambda _key: sync.reconcile(), observer=observer
        )
        self.stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def ready(self) -> bool:
        """Whether the claim and device caches are filled (KubeVirt may be absent)."""
        return self.sync.claims.synced.is_set() and self.sync.devices.synced.is_set()

    def healthy(self) -> bool:
        """Whether every loop is alive."""
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    def start(self) -> None:
        """Start the informers, the worker and the election in background threads."""
        loops: dict[str, Callable[[threading.Event], None]] = {
            "claims-informer": self.sync.claims.run,
            "pcidevices-informer": self.sync.devices.run,
            "kubevirt-informer": self._run_kubevirt_informer,
            "worker": self._controller.run,
            "leader-election": self.elector.run,
        }
        for name, loop in loops.items():
            thread = threading.Thread(target=loop, args=(self.stopping,), name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop every loop; the election thread releases the Lease on its way out."""
        self.stopping.set()
        self.queue.shut_down()
        for informer in (self.sync.claims, self.sync.devices, self.sync.kubevirts):
            informer.interrupt()
        for thread in self._threads:
            thread.join(timeout)
            if thread.is_alive():
                log.warning("%s did not stop within %.0fs", thread.name, timeout)
        log.info("controller stopped")

    def _run_kubevirt_informer(self, stop: threading.Event) -> None:
        """Wait (quietly) until the KubeVirt API answers, then run its informer."""
        target = self.sync.target
        told = False
        while not stop.is_set():
            try:
                self.sync.api.list_objects(self.sync.kubevirts.resource)
                break
            except ApiError as err:
                if not told:
                    log.info(
                        "KubeVirt API not available (%s); is KubeVirt installed? looking again "
                        "every %.0fs",
                        err,
                        target.absent_retry,
                    )
                    told = True
                stop.wait(target.absent_retry)
        if not stop.is_set():
            log.info("KubeVirt API found; watching %s/%s", target.namespace, target.name)
            self.sync.kubevirts.run(stop)


def kubevirt_informer(
    api: KubeApi, target: KubeVirtTarget, on_change: Callable[[str], None]
) -> Informer:
    """An informer on the KubeVirt CRs of ``target``'s namespace, patient when the API is gone."""
    return Informer(
        api,
        NamespacedCollection(
            KUBEVIRTS.group,
            KUBEVIRTS.version,
            KUBEVIRTS.plural,
            KUBEVIRTS.kind,
            namespaced=True,
            namespace=target.namespace,
        ),
        on_change=on_change,
        backoff=Backoff(base=1.0, cap=target.absent_retry),
    )


__all__ = [
    "KUBEVIRTS",
    "MANAGED_ANNOTATION",
    "KubeVirtController",
    "KubeVirtTarget",
    "NamespacedCollection",
    "PermittedDevicesSync",
    "kubevirt_informer",
]
