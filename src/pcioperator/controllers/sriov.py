"""Keeps this node's SRIOVNetworkDevices in step with its SR-IOV PFs, and applies ``numVFs``.

One key covers the whole node. A reconcile reads the bus and the PFs' interfaces (host ports),
the objects (the `pcicore.ports.SriovObjectStore` port) and the claimed addresses; asks
`pcicore.sriov` which objects to create or delete and what to write to each PF's
``sriov_numvfs``; writes that through the `pcicore.ports.SriovControl` port; and reports the VFs
and a ``VFsConfigured`` condition in each object's status, writing only what changed. When VFs
came or went it asks for a device sync, so their PCIDevices follow at once.

`KubeSriovStore` is the store port on the API server (reads from an `Informer`, writes with
`KubeApi`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Callable, Collection, Mapping, Sequence

import cattrs

from pcicore.address import PciAddress
from pcicore.conditions import Condition, find_condition, set_condition
from pcicore.device import NodeName, PciDevice
from pcicore.errors import SriovWriteError
from pcicore.ports import PciBus, SriovControl, SriovObjectStore
from pcicore.protection import Refusal
from pcicore.sriov import (
    CONFIGURED,
    ObservedSriovDevice,
    SriovPf,
    SriovStatus,
    configured_condition,
    is_sriov_network_pf,
    plan_num_vfs,
    plan_sriov_objects,
    sriov_pfs,
    sriov_status,
    vf_parents,
    vfs_of,
)
from pcihost.wirefields import format_timestamp
from pcioperator.kube.api import SRIOVNETWORKDEVICES, KubeApi
from pcioperator.kube.errors import ConflictError, NotFoundError
from pcioperator.kube.informer import Informer
from pcioperator.wire import sriov as wire

log = logging.getLogger(__name__)


def _now() -> str:
    return format_timestamp(dt.datetime.now(dt.UTC))


class SriovSync:
    """Reconciles one node's SRIOVNetworkDevices with its SR-IOV network PFs."""

    KEY = "sriov"

    def __init__(
        self,
        *,
        node: NodeName,
        bus: PciBus,
        control: SriovControl,
        store: SriovObjectStore,
        claimed: Callable[[], Collection[PciAddress]],
        protection: Callable[[PciDevice], Refusal | None] = lambda _device: None,
        on_vfs_changed: Callable[[], None] = lambda: None,
        now: Callable[[], str] = _now,
        rescan_interval: float = 30.0,
        informer: Informer | None = None,
    ) -> None:
        """Publish the PFs of ``bus`` on ``node`` into ``store``; write counts with ``control``.

        ``claimed`` gives the addresses claimed on this node, ``protection`` the host's refusal
        of a PF; ``on_vfs_changed`` is called after VFs were created or removed. ``informer``
        is the cache behind ``store``, held for the agent, which runs it.
        """
        self._node = node
        self._bus = bus
        self._control = control
        self._store = store
        self._claimed = claimed
        self._protection = protection
        self._on_vfs_changed = on_vfs_changed
        self._now = now
        self._rescan_interval = rescan_interval
        self.informer = informer

    def pfs(self, devices: Sequence[PciDevice]) -> tuple[SriovPf, ...]:
        """The SR-IOV network PFs among ``devices``, named."""
        addresses = [d.address for d in devices if is_sriov_network_pf(d)]
        interfaces = self._control.interfaces(addresses) if addresses else {}
        return sriov_pfs(self._node, devices, interfaces)

    def parents(self, devices: Sequence[PciDevice]) -> Mapping[PciAddress, str]:
        """Each VF's parent SRIOVNetworkDevice name (for the device sync's label)."""
        return vf_parents(self.pfs(devices), devices)

    def reconcile(self, _key: str = KEY) -> float:
        """Publish, apply counts, report; return when to look again."""
        devices = self._bus.devices()
        pfs = {pf.name: pf for pf in self.pfs(devices)}
        observed = list(self._store.observed())
        plan = plan_sriov_objects(list(pfs.values()), observed)
        for name in plan.delete:
            log.info("SR-IOV PF of %s is gone from the bus; deleting its object", name)
            self._store.delete(name)
        for pf in plan.create:
            count = pf.device.sriov.num_vfs or 0
            self._store.create(pf, count)
            observed.append(ObservedSriovDevice(pf.name, num_vfs=count, generation=1))
        targets = [(pfs[o.name], o) for o in observed if o.name in pfs]
        outcomes: dict[str, Condition] = {}
        changed = False
        for pf, obj in targets:
            condition, wrote = self._apply(pf, obj, devices)
            outcomes[obj.name] = condition
            changed = changed or wrote
        if changed:
            devices = self._bus.devices()
            self._on_vfs_changed()
        for pf, obj in targets:
            fresh = next((d for d in devices if d.address == pf.address), pf.device)
            status = sriov_status(SriovPf(pf.name, pf.node, fresh, pf.interface), devices)
            self._report(obj, status, outcomes[obj.name])
        return self._rescan_interval

    def _apply(
        self, pf: SriovPf, obj: ObservedSriovDevice, devices: Sequence[PciDevice]
    ) -> tuple[Condition, bool]:
        """Carry out the plan for one object: its condition, and whether anything was written."""
        device = pf.device
        plan = plan_num_vfs(
            device,
            obj.num_vfs,
            vfs=vfs_of(pf.address, devices),
            claimed=self._claimed(),
            protection=self._protection(device),
        )
        failure = None
        wrote = False
        for count in plan.writes:
            try:
                self._control.write_num_vfs(pf.address, count)
            except SriovWriteError as err:
                log.warning("%s: %s", obj.name, err)
                failure = str(err)
                break
            wrote = True
        if wrote:
            device = self._bus.device(pf.address) or device
        condition = configured_condition(
            device, plan, failure=failure, generation=obj.generation, now=self._now()
        )
        return condition, wrote

    def _report(self, obj: ObservedSriovDevice, status: SriovStatus, condition: Condition) -> None:
        conditions = set_condition(obj.conditions, condition)
        old = find_condition(obj.conditions, CONFIGURED)
        same_condition = old is not None and _same(old, condition)
        if obj.status == status and same_condition:
            return
        self._store.write_status(obj.name, status, conditions)


def _same(old: Condition, new: Condition) -> bool:
    """Whether a condition says the same (its time aside)."""
    return (old.status, old.reason, old.message, old.observed_generation) == (
        new.status,
        new.reason,
        new.message,
        new.observed_generation,
    )


def node_selector(node: str) -> str:
    """The label selector of one node's SRIOVNetworkDevices."""
    return f"{wire.NODE_LABEL}={node}"


class KubeSriovStore:
    """`pcicore.ports.SriovObjectStore` on the API server: one node's SRIOVNetworkDevices."""

    def __init__(self, api: KubeApi, informer: Informer) -> None:
        """Read the objects from ``informer`` (watching them by `node_selector`)."""
        self._api = api
        self._informer = informer

    def observed(self) -> list[ObservedSriovDevice]:
        """Every cached object with the CRD's shape (others are logged and skipped)."""
        found = []
        for obj in self._informer.objects():
            try:
                found.append(wire.observed_from_object(obj))
            except (cattrs.BaseValidationError, KeyError, ValueError) as err:
                log.warning("skipping malformed SRIOVNetworkDevice: %s", err)
        return found

    def create(self, pf: SriovPf, num_vfs: int) -> None:
        """One POST; an object that exists already is left as it is."""
        with contextlib.suppress(ConflictError):
            self._api.create(SRIOVNETWORKDEVICES, wire.sriov_manifest(pf, num_vfs))

    def delete(self, name: str) -> None:
        """One DELETE; NotFound means done."""
        with contextlib.suppress(NotFoundError):
            self._api.delete(SRIOVNETWORKDEVICES, name)

    def write_status(self, name: str, status: SriovStatus, conditions: Sequence[Condition]) -> None:
        """One merge patch of the status subresource."""
        body = wire.status_to_wire(status, tuple(conditions))
        with contextlib.suppress(NotFoundError):
            self._api.patch(SRIOVNETWORKDEVICES, name, {"status": body}, subresource="status")
