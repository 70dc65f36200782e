"""Keeps this node's USBDevices in step with its USB devices, and its USBDeviceClaims answered.

One key covers the whole node. A reconcile reads the USB devices (the `pcicore.ports.UsbBus`
port), the node's USBDevice objects (`pcicore.ports.UsbObjectStore`), every USBDeviceClaim
(`pcicore.ports.UsbClaimStore`) and the PCI host controllers claimed for PCI passthrough; asks
`pcicore.usb` what each object and each claim of the node should say; and writes only what
differs: objects created, statuses (``enabled``, ``orphaned``) rewritten, objects of unplugged
unclaimed devices deleted, each claim's ``nodeName``, ``pciAddress`` and ``Ready`` condition,
and an Event when a claim's reason changes. `UsbSync.enabled` is what the device plugin
advertises.

The claims are read only once their cache is filled: an empty cache would look like "no claim"
and delete every orphaned object.

`KubeUsbStore` and `KubeUsbClaimStore` are the store ports on the API server.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Callable, Collection, Mapping, Sequence

import cattrs

from pcicore.address import PciAddress
from pcicore.cluster_claim import ClaimEvent
from pcicore.device import NodeName
from pcicore.ports import UsbBus, UsbClaimStore, UsbObjectStore
from pcicore.usb import (
    UsbClaim,
    UsbClaimDecision,
    UsbStatus,
    decide_usb_claim,
    desired_usb_objects,
    plan_usb_writes,
    released_finalizers,
    usb_claim_set,
    usb_name_node,
    usb_statuses,
)
from pcicore.usbids import UsbIds
from pcihost.wirefields import format_timestamp
from pcioperator.kube.api import USBDEVICECLAIMS, USBDEVICES, JsonObject, KubeApi
from pcioperator.kube.errors import ConflictError, NotFoundError
from pcioperator.kube.events import EventRecorder
from pcioperator.kube.informer import Informer
from pcioperator.wire import usb as wire

log = logging.getLogger(__name__)


def _now() -> str:
    return format_timestamp(dt.datetime.now(dt.UTC))


class UsbSync:
    """Reconciles one node's USBDevices and the USBDeviceClaims naming them."""

    KEY = "usb"

    def __init__(
        self,
        *,
        node: NodeName,
        bus: UsbBus,
        ids: UsbIds,
        store: UsbObjectStore,
        claims: UsbClaimStore,
        claimed_controllers: Callable[[], Collection[PciAddress]] = frozenset,
        now: Callable[[], str] = _now,
        rescan_interval: float = 30.0,
        informers: Mapping[str, Informer] | None = None,
    ) -> None:
        """Publish the devices of ``bus`` on ``node`` into ``store``; answer ``claims``.

        ``claimed_controllers`` gives the PCI addresses of this node that PCIDeviceClaims name;
        ``informers`` are the caches behind the stores by loop name, held for the agent, which
        runs them.
        """
        self._node = node
        self._bus = bus
        self._ids = ids
        self._store = store
        self._claims = claims
        self._claimed_controllers = claimed_controllers
        self._now = now
        self._rescan_interval = rescan_interval
        self.informers: Mapping[str, Informer] = informers or {}
        self.enabled: Mapping[str, UsbStatus] = {}

    def reconcile(self, _key: str = KEY) -> float:
        """Publish, answer claims, record what is enabled; return when to look again."""
        if not self._claims.synced():
            return self._rescan_interval  # the claim informer queues us when it has filled
        present = usb_statuses(self._node, self._bus.devices(), self._ids)
        observed = self._store.observed()
        known = {**observed, **present}
        claims = [
            claim
            for claim in self._claims.claims()
            if claim.name in known or usb_name_node(claim.name) == self._node
        ]
        holds = usb_claim_set(claims, known, self._claimed_controllers())
        desired = desired_usb_objects(present, observed, enabled=holds.enabled, held=holds.held)
        # What the plugin advertises changes before any object says so: a claim reported Ready
        # (below) is one the kubelet can already be given.
        self.enabled = {name: status for name, status in desired.items() if status.enabled}
        writes = plan_usb_writes(desired, observed)
        for name in writes.delete:
            log.info("USB device %s left the node and no claim holds it: deleting it", name)
            self._store.delete(name)
        for name, status in writes.create:
            self._store.create(name, status)
        for name, status in writes.status:
            self._store.write_status(name, status)
        for claim in claims:
            if not claim.deleting and claim.name in desired:
                refused = claim.name in holds.controller_claimed
                self._answer(claim, desired[claim.name], controller_claimed=refused)
            kept = released_finalizers(claim)
            device = desired.get(claim.name)
            if kept is not None and (device is None or not device.enabled):
                log.info(
                    "USB claim %s: its device is disabled; removing Harvester's finalizer",
                    claim.name,
                )
                self._claims.set_finalizers(claim, kept)
        return self._rescan_interval

    def enabled_usb(self) -> Mapping[str, UsbStatus]:
        """What the device plugin advertises: the enabled devices as of the last reconcile."""
        return self.enabled

    def _answer(self, claim: UsbClaim, device: UsbStatus, *, controller_claimed: bool) -> None:
        decision = decide_usb_claim(
            claim, device, controller_claimed=controller_claimed, now=self._now()
        )
        if decision.changes(claim):
            self._claims.write_status(claim, decision)
        if decision.event is not None:
            self._claims.emit(claim, decision.event)


def node_selector(node: str) -> str:
    """The label selector of one node's USBDevices."""
    return f"{wire.NODE_LABEL}={node}"


class KubeUsbStore:
    """`pcicore.ports.UsbObjectStore` on the API server: one node's USBDevices."""

    def __init__(self, api: KubeApi, informer: Informer, node: str) -> None:
        """Read the objects from ``informer`` (watching them by `node_selector`)."""
        self._api = api
        self._informer = informer
        self._node = node

    def observed(self) -> dict[str, UsbStatus | None]:
        """Every cached object with the CRD's shape (others are logged and skipped)."""
        found: dict[str, UsbStatus | None] = {}
        for obj in self._informer.objects():
            try:
                found[obj["metadata"]["name"]] = wire.status_from_object(obj)
            except (cattrs.BaseValidationError, KeyError, TypeError) as err:
                log.warning("skipping malformed USBDevice: %s", err)
        return found

    def create(self, name: str, status: UsbStatus) -> None:
        """One POST (an existing object is kept), then the status."""
        with contextlib.suppress(ConflictError):
            self._api.create(USBDEVICES, wire.usb_device_manifest(name, self._node))
        self.write_status(name, status)

    def write_status(self, name: str, status: UsbStatus) -> None:
        """One merge patch of the status subresource."""
        body = {"status": wire.status_to_wire(status)}
        with contextlib.suppress(NotFoundError):
            self._api.patch(USBDEVICES, name, body, subresource="status")

    def delete(self, name: str) -> None:
        """One DELETE; NotFound means done."""
        with contextlib.suppress(NotFoundError):
            self._api.delete(USBDEVICES, name)


class KubeUsbClaimStore:
    """`pcicore.ports.UsbClaimStore` on the API server: every USBDeviceClaim, watched."""

    def __init__(self, api: KubeApi, informer: Informer, events: EventRecorder) -> None:
        """Read claims from ``informer``; record Events with ``events``."""
        self._api = api
        self.informer = informer
        self._events = events

    def synced(self) -> bool:
        """Whether the claim cache has been filled once."""
        return self.informer.synced.is_set()

    def claims(self) -> list[UsbClaim]:
        """Every cached claim with the CRD's shape (others are logged and skipped)."""
        return list(parsed_usb_claims(self.informer))

    def write_status(self, claim: UsbClaim, decision: UsbClaimDecision) -> None:
        """One merge patch of the status subresource."""
        body = {"status": wire.claim_status_to_wire(claim, decision)}
        with contextlib.suppress(NotFoundError):
            self._api.patch(USBDEVICECLAIMS, claim.name, body, subresource="status")

    def set_finalizers(self, claim: UsbClaim, finalizers: Sequence[str]) -> None:
        """Patch ``metadata.finalizers`` against the version read (a 409 retries later)."""
        body = {
            "metadata": {"finalizers": list(finalizers), "resourceVersion": claim.resource_version}
        }
        with contextlib.suppress(NotFoundError, ConflictError):
            self._api.patch(USBDEVICECLAIMS, claim.name, body)

    def emit(self, claim: UsbClaim, event: ClaimEvent) -> None:
        """Record ``event`` against ``claim``."""
        self._events.emit(
            USBDEVICECLAIMS,
            claim.name,
            claim.uid,
            warning=event.warning,
            reason=event.reason,
            message=event.message,
        )


def parsed_usb_claims(informer: Informer) -> list[UsbClaim]:
    """Every cached USBDeviceClaim that parses; malformed ones are logged and skipped."""
    found = []
    for obj in informer.objects():
        claim = usb_claim_or_none(obj)
        if claim is not None:
            found.append(claim)
    return found


def usb_claim_or_none(obj: JsonObject) -> UsbClaim | None:
    """The claim, or ``None`` (logged) when the object does not have the CRD's shape."""
    try:
        return wire.claim_from_object(obj)
    except (cattrs.BaseValidationError, KeyError, TypeError, ValueError) as err:
        log.warning("skipping malformed USBDeviceClaim: %s", err)
        return None
