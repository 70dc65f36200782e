"""Keeps the KubeVirt CR's permitted PCI host devices in step with the claims in the cluster.

KubeVirt lets a VM ask for a host device only when ``spec.configuration.permittedHostDevices
.pciHostDevices`` lists its resource (with ``externalResourceProvider: true`` when, as here, an
outside device plugin advertises it). This controller watches claims, PCIDevices and the CR,
and on any change runs one level-triggered reconcile (`PermittedDevicesSync`): read through the
ports `pcicore.ports.ClaimedDeviceKinds` and `pcicore.ports.PermittedDevicesStore`, plan with
`pcicore.permitted` (pure), and merge-patch the CR only when the plan changes something, with
the ``resourceVersion`` it read. What it owns is recorded in the annotation `MANAGED_ANNOTATION`,
so a restart (or a new leader) knows which entries it may remove.

The module also holds the ports' adapters on the informers (`KubeClaimedDeviceKinds`,
`KubeVirtPermittedStore`), the wire form of the entries and the annotation, and the process
(`KubeVirtController`: the threads of the informers, the worker and the election).

Only the elected leader (`pcioperator.kube.leader`) writes; every replica keeps its caches warm.
A cluster without KubeVirt is normal: the controller says so once and looks again slowly.

Which CR: the one named by ``--kubevirt-namespace``/``--kubevirt-name`` when given, else the
cluster's only KubeVirt CR, found by listing them once at start-up (`KubeVirtLocation`;
Harvester's is ``harvester-system/kubevirt``, a standard install's ``kubevirt/kubevirt``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Final

import attrs
import cattrs

from pcicore.address import PciAddress
from pcicore.device import NodeName
from pcicore.errors import InvalidPciAddressError
from pcicore.naming import ResourceName, object_name, object_name_as_written
from pcicore.permitted import (
    ClaimedAddress,
    DeviceKind,
    KubeVirtChoice,
    KubeVirtRef,
    PermittedChange,
    PermittedDocument,
    PermittedKey,
    PermittedPlan,
    choose_kubevirt,
    claimed_kinds,
    permitted_change,
    plan_document,
    plan_usb_document,
    usb_permitted_keys,
)
from pcicore.ports import ClaimedDeviceKinds, ClaimedUsbKinds, PermittedDevicesStore
from pcioperator.controllers.usb import parsed_usb_claims
from pcioperator.kube.api import JsonObject, KubeApi, Resource
from pcioperator.kube.errors import ApiError, NotFoundError
from pcioperator.kube.informer import Informer
from pcioperator.kube.leader import LeaderElector
from pcioperator.kube.runner import Controller, ReconcileObserver
from pcioperator.kube.threads import Loop, LoopThreads
from pcioperator.kube.workqueue import Backoff, WorkQueue
from pcioperator.wire import usb as usb_wire
from pcioperator.wire.claim import claim_from_object
from pcioperator.wire.kubevirt import (
    MANAGED_ANNOTATION,
    MANAGED_USB_ANNOTATION,
    entry_from_wire,
    entry_to_wire,
    managed_from_wire,
    managed_to_wire,
    pci_host_devices,
    usb_entry_from_wire,
    usb_entry_to_wire,
)

log = logging.getLogger(__name__)


KUBEVIRTS: Final = Resource("kubevirt.io", "v1", "kubevirts", "KubeVirt", namespaced=True)
ALL_KUBEVIRTS: Final = Resource("kubevirt.io", "v1", "kubevirts", "KubeVirt")
"""The KubeVirt CRs of every namespace (a list across namespaces: only to find the CR)."""
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
        namespace: Its namespace (``None``: find it; ``harvester-system`` in Harvester,
            ``kubevirt`` in a standard install).
        name: Its name (``None``: find it; ``kubevirt`` in both).
        absent_retry: Seconds between looks for the KubeVirt API, or for a CR to keep, while
            there is none.
    """

    namespace: str | None = None
    name: str | None = None
    absent_retry: float = 30.0


class KubeVirtLocation:
    """Where the kept KubeVirt CR is: as given, or as found (`choose_kubevirt`).

    Given a namespace, the controller watches it at once and keeps the one CR there (or the
    one named); given none, it lists the CRs of every namespace until one fits, then watches
    that CR's namespace.
    """

    def __init__(self, target: KubeVirtTarget) -> None:
        """Keep ``target``'s CR."""
        self.target = target
        self._namespace = target.namespace

    @property
    def namespace(self) -> str | None:
        """The namespace watched (``None`` until found)."""
        return self._namespace

    def choose(self, found: list[JsonObject]) -> KubeVirtChoice:
        """Pick the CR to keep out of the KubeVirt CRs ``found``; watch its namespace."""
        refs = (
            KubeVirtRef(str(obj["metadata"].get("namespace", "")), str(obj["metadata"]["name"]))
            for obj in found
        )
        choice = choose_kubevirt(refs, self.target.namespace, self.target.name)
        if choice.chosen is not None and self._namespace is None:
            self._namespace = choice.chosen.namespace
        return choice

    def __str__(self) -> str:
        """``namespace/name``, with ``*`` for what is still to be found."""
        return f"{self._namespace or '*'}/{self.target.name or '*'}"


@attrs.frozen
class LocatedCollection(Resource):
    """The KubeVirt CRs of the kept CR's namespace, once `KubeVirtLocation` knows it.

    `Informer` lists and watches ``resource.path()``; the namespace is filled in from the
    location, so the informer must not run before the CR is found.

    Attributes:
        location: Where the kept CR is.
    """

    location: KubeVirtLocation | None = None

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        """The URL path, in the kept CR's namespace unless another is given."""
        watched = self.location.namespace if self.location is not None else None
        return super().path(namespace or watched, name)


def resource_version(cr: JsonObject) -> str:
    """The CR's ``resourceVersion``."""
    return str(cr["metadata"].get("resourceVersion", ""))


def document_from_wire(cr: JsonObject) -> PermittedDocument:
    """The CR's permitted lists and ownership records, as the domain sees them."""
    return PermittedDocument(
        version=resource_version(cr),
        entries=tuple(entry_from_wire(item) for item in pci_host_devices(cr)),
        managed=managed_from_wire(cr),
        usb_entries=tuple(usb_entry_from_wire(item) for item in pci_host_devices(cr, "usb")),
        usb_managed=managed_from_wire(cr, MANAGED_USB_ANNOTATION),
    )


def change_to_wire(cr: JsonObject, change: PermittedChange) -> JsonObject:
    """The merge patch of ``cr`` that writes ``change`` (kept items exactly as found)."""
    raw = pci_host_devices(cr)
    items = [raw[position] for position in change.keep]
    items.extend(entry_to_wire(key) for key in change.add)
    annotations = {MANAGED_ANNOTATION: managed_to_wire(change.managed)}
    permitted: JsonObject = {"pciHostDevices": items}
    if change.usb is not None:
        raw_usb = pci_host_devices(cr, "usb")
        usb = [raw_usb[position] for position in change.usb.keep]
        usb.extend(usb_entry_to_wire(key) for key in change.usb.add)
        permitted["usb"] = usb
        annotations[MANAGED_USB_ANNOTATION] = managed_to_wire(change.usb.managed)
    return {
        "metadata": {"resourceVersion": change.version, "annotations": annotations},
        "spec": {"configuration": {"permittedHostDevices": permitted}},
    }


# --- The ports on the API server ------------------------------------------------------------


@attrs.frozen
class KubeVirtCaches:
    """The informers the controller reads: claims, PCIDevices, KubeVirt CRs, USB objects.

    Attributes:
        claims: Every PCIDeviceClaim in the cluster.
        devices: Every PCIDevice in the cluster.
        kubevirts: The KubeVirt CRs of the target's namespace (see `kubevirt_informer`).
        usb_claims: Every USBDeviceClaim (``None``: USB entries are not kept).
        usb_devices: Every USBDevice (with ``usb_claims``).
    """

    claims: Informer
    devices: Informer
    kubevirts: Informer
    usb_claims: Informer | None = None
    usb_devices: Informer | None = None

    def all(self) -> tuple[Informer, ...]:
        """Every informer, in the order above."""
        usb = tuple(i for i in (self.usb_claims, self.usb_devices) if i is not None)
        return (self.claims, self.devices, self.kubevirts, *usb)


def claimed_from_wire(obj: JsonObject) -> ClaimedAddress | None:
    """The device a claim object asks for (``None`` if the claim does not parse)."""
    try:
        claim = claim_from_object(obj)
        address = PciAddress.parse(claim.spec.address)
    except (cattrs.BaseValidationError, InvalidPciAddressError, KeyError, ValueError):
        return None
    node = NodeName(claim.spec.node_name)
    written = object_name_as_written(node, claim.spec.address)
    return ClaimedAddress(
        node,
        address,
        dedicated=claim.spec.disable_resource_pooling,
        written_name=None if written == object_name(node, address) else written,
    )


def kind_from_wire(obj: JsonObject | None) -> DeviceKind | None:
    """The kind a PCIDevice reports (``None`` without ids or a resourceName)."""
    status = (obj or {}).get("status") or {}
    try:
        vendor_id = int(str(status["vendorId"]), 16)
        device_id = int(str(status["deviceId"]), 16)
    except (KeyError, ValueError):
        return None
    resource = status.get("resourceName")
    if not resource:
        return None
    return DeviceKind(vendor_id, device_id, ResourceName(str(resource)))


class _CachedKinds(Mapping[str, DeviceKind]):
    """The kinds of the cached PCIDevices, each parsed only when looked up."""

    def __init__(self, devices: Informer) -> None:
        self._devices = devices

    def __getitem__(self, name: str) -> DeviceKind:
        kind = kind_from_wire(self._devices.get(name))
        if kind is None:
            raise KeyError(name)
        return kind

    def __iter__(self) -> Iterator[str]:
        return (
            str(obj["metadata"]["name"])
            for obj in self._devices.objects()
            if kind_from_wire(obj) is not None
        )

    def __len__(self) -> int:
        return sum(1 for _ in self)


class KubeClaimedDeviceKinds:
    """`pcicore.ports.ClaimedDeviceKinds` on the claim and PCIDevice informers."""

    def __init__(self, caches: KubeVirtCaches) -> None:
        """Read the claims and PCIDevices of ``caches``."""
        self._claims = caches.claims
        self._devices = caches.devices

    def synced(self) -> bool:
        """Whether both informers have listed once."""
        return self._claims.synced.is_set() and self._devices.synced.is_set()

    def claimed(self) -> list[ClaimedAddress]:
        """The device of every cached claim that parses."""
        found = (claimed_from_wire(obj) for obj in self._claims.objects())
        return [claimed for claimed in found if claimed is not None]

    def kinds(self) -> Mapping[str, DeviceKind]:
        """The cached PCIDevices' kinds, looked up by name."""
        return _CachedKinds(self._devices)


class KubeClaimedUsbKinds:
    """`pcicore.ports.ClaimedUsbKinds` on the USBDeviceClaim and USBDevice informers."""

    def __init__(self, claims: Informer, devices: Informer) -> None:
        """Read every USBDeviceClaim from ``claims`` and every USBDevice from ``devices``."""
        self.claims = claims
        self.devices = devices

    def synced(self) -> bool:
        """Whether both informers have listed once."""
        return self.claims.synced.is_set() and self.devices.synced.is_set()

    def wanted(self) -> frozenset[PermittedKey]:
        """One entry per live claim whose USBDevice reports its ids and resourceName."""
        live = [c.name for c in parsed_usb_claims(self.claims) if not c.deleting]
        statuses = {}
        for name in live:
            obj = self.devices.get(name)
            try:
                status = None if obj is None else usb_wire.status_from_object(obj)
            except (cattrs.BaseValidationError, TypeError):
                status = None
            if status is not None:
                statuses[name] = status
        return usb_permitted_keys(live, statuses)


class KubeVirtPermittedStore:
    """`pcicore.ports.PermittedDevicesStore` on the KubeVirt CR's informer and a merge patch."""

    def __init__(self, api: KubeApi, target: KubeVirtTarget, kubevirts: Informer) -> None:
        """Read the kept CR from ``kubevirts`` (see `kubevirt_informer`); write it with ``api``.

        ``target`` is what the controller was told; where the CR is comes from the informer's
        `KubeVirtLocation`, which the controller fills in when it finds the CR.
        """
        self._api = api
        self._kubevirts = kubevirts
        self.location = location_of(kubevirts, target)

    def _cached(self) -> tuple[KubeVirtRef | None, JsonObject | None]:
        """The kept CR among the cached ones of the watched namespace (none, or several: none)."""
        if self.location.namespace is None:
            return None, None
        ref = self.location.choose(self._kubevirts.objects()).chosen
        return ref, None if ref is None else self._kubevirts.get(ref.name)

    def synced(self) -> bool:
        """Whether the KubeVirt informer has listed once."""
        return self._kubevirts.synced.is_set()

    def read(self) -> PermittedDocument | None:
        """The cached CR's list (``None`` when there is no CR)."""
        _, cr = self._cached()
        return None if cr is None else document_from_wire(cr)

    def write(self, change: PermittedChange) -> bool:
        """One merge patch guarded by the ``resourceVersion`` the change was planned from."""
        ref, cr = self._cached()
        if ref is None or cr is None or resource_version(cr) != change.version:
            return False  # gone, or moved on: the informer has queued a new reconcile
        patch = change_to_wire(cr, change)
        try:
            self._api.patch(KUBEVIRTS, ref.name, patch, namespace=ref.namespace)
        except NotFoundError:
            return False  # deleted meanwhile: its informer brings us back if it returns
        return True


# --- The reconcile ---------------------------------------------------------------------------


class PermittedDevicesSync:
    """The reconcile of the KubeVirt CR's permitted PCI devices (one key: `KEY`)."""

    KEY: Final = "permitted-host-devices"

    def __init__(
        self,
        target: KubeVirtTarget,
        *,
        claims: ClaimedDeviceKinds,
        permitted: PermittedDevicesStore,
        may_write: Callable[[], bool] = lambda: True,
        usb: ClaimedUsbKinds | None = None,
    ) -> None:
        """Keep ``permitted`` (the CR ``target``) in step with what ``claims`` (and ``usb``) ask."""
        self.target = target
        # Where the CR is, for the log (a store on the API server knows once it is found).
        self.where = (
            permitted.location
            if isinstance(permitted, KubeVirtPermittedStore)
            else KubeVirtLocation(target)
        )
        self._claims = claims
        self._permitted = permitted
        self._may_write = may_write
        self._usb = usb
        self._absent_logged = False
        self._written_from: str | None = None
        self.last_plan: PermittedPlan | None = None
        self.last_usb_plan: PermittedPlan | None = None

    def reconcile(self) -> float | None:
        """Bring the CR in step; return when to look again (``None``: on the next change)."""
        usb_synced = self._usb is None or self._usb.synced()
        if not (self._claims.synced() and self._permitted.synced() and usb_synced):
            return _NOT_SYNCED_RETRY
        document = self._permitted.read()
        if document is None:
            if not self._absent_logged:
                log.info(
                    "KubeVirt CR %s does not exist; nothing to permit until it does", self.where
                )
                self._absent_logged = True
            return None
        self._absent_logged = False
        if document.version == self._written_from:
            return _NOT_SYNCED_RETRY  # the cache has not seen our last write yet
        plan = plan_document(document, claimed_kinds(self._claims.claimed(), self._claims.kinds()))
        usb = None if self._usb is None else plan_usb_document(document, self._usb.wanted())
        self.last_plan = plan
        self.last_usb_plan = usb
        changed = plan.changed or (usb is not None and usb.changed)
        if not changed or not self._may_write():
            return None
        if not self._permitted.write(permitted_change(document, plan, usb)):
            return None
        self._written_from = document.version
        added = [*plan.add, *(usb.add if usb else ())]
        removed = [*plan.remove, *(usb.remove if usb else ())]
        log.info(
            "KubeVirt CR %s: permitted %s; removed %s",
            self.where,
            [key.resource_name for key in added] or "nothing",
            sorted(key.resource_name for key in removed) or "nothing",
        )
        return None


class KubeVirtController:
    """The cluster-level process: informers always, the reconcile worker only while leading."""

    def __init__(
        self,
        sync: PermittedDevicesSync,
        caches: KubeVirtCaches,
        *,
        api: KubeApi,
        queue: WorkQueue[str],
        elector: LeaderElector,
        observer: ReconcileObserver | None = None,
    ) -> None:
        """Assemble the controller (see `pcidevices.wiring.controller` for the wiring)."""
        self.sync = sync
        self.caches = caches
        self.api = api
        self.queue = queue
        self.elector = elector
        self._controller: Controller[str] = Controller(
            "kubevirt", queue, lambda _key: sync.reconcile(), observer=observer
        )
        self._loops = LoopThreads()
        self.stopping = self._loops.stopping

    def ready(self) -> bool:
        """Whether the claim and device caches are filled (KubeVirt may be absent)."""
        return self.caches.claims.synced.is_set() and self.caches.devices.synced.is_set()

    def healthy(self) -> bool:
        """Whether every loop is alive."""
        return self._loops.healthy()

    def start(self) -> None:
        """Start the informers, the worker and the election in background threads."""
        loops: dict[str, Loop] = {
            "claims-informer": self.caches.claims.run,
            "pcidevices-informer": self.caches.devices.run,
            "kubevirt-informer": self._run_kubevirt_informer,
            "worker": self._controller.run,
            "leader-election": self.elector.run,
        }
        if self.caches.usb_claims is not None:
            loops["usb-claims-informer"] = self.caches.usb_claims.run
        if self.caches.usb_devices is not None:
            loops["usbdevices-informer"] = self.caches.usb_devices.run
        self._loops.start(loops)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop every loop; the election thread releases the Lease on its way out."""
        self._loops.request_stop()
        self.queue.shut_down()
        for informer in self.caches.all():
            informer.interrupt()
        self._loops.join(timeout)
        log.info("controller stopped")

    def _run_kubevirt_informer(self, stop: threading.Event) -> None:
        """Wait (quietly) until the KubeVirt API answers and the CR is found; then watch it."""
        target = self.sync.target
        location = location_of(self.caches.kubevirts, target)
        told = ""
        while not stop.is_set():
            try:
                message = self._look_for_kubevirt(location)
            except ApiError as err:
                message = f"KubeVirt API not available ({err}); is KubeVirt installed?"
            if message is None:
                break
            if message != told:  # each new state is said once, not on every look
                log.warning("%s; looking again every %.0fs", message, target.absent_retry)
                told = message
            stop.wait(target.absent_retry)
        if not stop.is_set():
            log.info("KubeVirt API found; keeping the KubeVirt CR %s", location)
            self.caches.kubevirts.run(stop)

    def _look_for_kubevirt(self, location: KubeVirtLocation) -> str | None:
        """One look for the kept CR's namespace: ``None`` when it is known, else what is wrong."""
        if location.namespace is not None:
            self.api.list_objects(KUBEVIRTS, namespace=location.namespace)
            return None
        found, _ = self.api.list_objects(ALL_KUBEVIRTS)
        choice = location.choose(found)
        if choice.chosen is not None:
            return None
        if choice.ambiguous:
            return (
                f"several KubeVirt CRs fit ({', '.join(map(str, choice.candidates))}); keeping "
                "none. Name the one to keep with --kubevirt-namespace and --kubevirt-name"
            )
        return (
            f"no KubeVirt CR {location} in the cluster; nothing to permit until KubeVirt is "
            "deployed (or name it with --kubevirt-namespace and --kubevirt-name)"
        )


def location_of(kubevirts: Informer, target: KubeVirtTarget) -> KubeVirtLocation:
    """The location the informer of `kubevirt_informer` watches (a new one for other informers)."""
    resource = kubevirts.resource
    if isinstance(resource, LocatedCollection) and resource.location is not None:
        return resource.location
    return KubeVirtLocation(target)


def kubevirt_informer(
    api: KubeApi, target: KubeVirtTarget, on_change: Callable[[str], None]
) -> Informer:
    """An informer on the KubeVirt CRs of the kept CR's namespace, patient when the API is gone.

    It carries the `KubeVirtLocation` of ``target``: the controller fills it in (finding the
    CR when ``target`` does not name it) before it runs the informer.
    """
    return Informer(
        api,
        LocatedCollection(
            KUBEVIRTS.group,
            KUBEVIRTS.version,
            KUBEVIRTS.plural,
            KUBEVIRTS.kind,
            namespaced=True,
            location=KubeVirtLocation(target),
        ),
        on_change=on_change,
        backoff=Backoff(base=1.0, cap=target.absent_retry),
    )


__all__ = [
    "ALL_KUBEVIRTS",
    "KUBEVIRTS",
    "MANAGED_ANNOTATION",
    "KubeClaimedDeviceKinds",
    "KubeClaimedUsbKinds",
    "KubeVirtCaches",
    "KubeVirtController",
    "KubeVirtLocation",
    "KubeVirtPermittedStore",
    "KubeVirtTarget",
    "LocatedCollection",
    "NamespacedCollection",
    "PermittedDevicesSync",
    "kubevirt_informer",
    "location_of",
]
