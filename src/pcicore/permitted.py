"""Which PCI devices KubeVirt must permit, and how to change its list without trampling users.

KubeVirt lets a VM use a host device only when the KubeVirt CR lists it under
``spec.configuration.permittedHostDevices.pciHostDevices``; for devices advertised by an
external device plugin (ours) the entry says ``externalResourceProvider: true``. The controller
keeps that list in step with the claims in the cluster. It owns only the entries it added,
recorded by key (selector and resourceName) in an annotation on the CR so the record survives
restarts. An entry is ours only while it is exactly what we wrote; anything else — an entry a
user wrote, or one of ours a user edited — is never changed, and a user's entry for a
resourceName stops us from adding a duplicate of it.

The controller reads the CR as a `PermittedDocument`, the claims as `ClaimedAddress`es and the
PCIDevices as `DeviceKind`s; `claimed_kinds` joins them, `plan_permitted` decides, and
`permitted_change` says what to write. `choose_kubevirt` picks the cluster's KubeVirt CR when
the controller is not told which one to keep. Everything here is pure: entries in, plan out.

Selectors are compared without regard to case (KubeVirt matches ``pciVendorSelector`` that way,
and Harvester writes it in lower case); the selectors we write are lower case, as Harvester's.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

import attrs

from pcicore.address import PciAddress
from pcicore.device import NodeName
from pcicore.naming import ResourceName, object_name
from pcicore.resources import dedicated_resource_name
from pcicore.usb import UsbStatus


@attrs.frozen(order=True)
class PermittedKey:
    """What identifies one permitted entry: the device kind and the resource it is offered as.

    Attributes:
        selector: ``vvvv:dddd`` in lower-case hex (KubeVirt's ``pciVendorSelector``).
        resource_name: The extended resource the device plugin advertises.
    """

    selector: str
    resource_name: ResourceName

    @classmethod
    def of(cls, vendor_id: int, device_id: int, resource_name: ResourceName) -> PermittedKey:
        """The key of a device kind offered as ``resource_name``."""
        return cls(f"{vendor_id:04x}:{device_id:04x}", resource_name)


@attrs.frozen
class PermittedEntry:
    """One ``pciHostDevices`` entry as found on the KubeVirt CR.

    Attributes:
        selector: ``pciVendorSelector`` as written (any case).
        resource_name: ``resourceName``.
        external: ``externalResourceProvider``.
    """

    selector: str
    resource_name: ResourceName
    external: bool = False

    @property
    def key(self) -> PermittedKey:
        """The entry's key, its selector normalised to lower case."""
        return PermittedKey(self.selector.lower(), self.resource_name)


@attrs.frozen
class ClaimedKind:
    """A claimed device's kind, read from its claim and its PCIDevice.

    Attributes:
        address: The device.
        vendor_id: PCI vendor id.
        device_id: PCI device id.
        resource_name: The resourceName its PCIDevice reports (the pool, or already the
            device's own name when pooling is disabled).
        dedicated: The claim sets ``disableResourcePooling``.
        node: The node the device is on (names the per-device resource as Harvester does).
    """

    address: PciAddress
    vendor_id: int
    device_id: int
    resource_name: ResourceName
    dedicated: bool = False
    node: NodeName | None = None

    @property
    def key(self) -> PermittedKey:
        """The entry KubeVirt needs for this device (per-device resource when dedicated)."""
        name = (
            dedicated_resource_name(self.resource_name, self.address, self.node)
            if self.dedicated
            else self.resource_name
        )
        return PermittedKey.of(self.vendor_id, self.device_id, name)


@attrs.frozen
class ClaimedAddress:
    """A device a claim in the cluster asks for.

    Attributes:
        node: The node the device is on.
        address: The device.
        dedicated: The claim sets ``disableResourcePooling``.
        written_name: The PCIDevice name Harvester derives from the address as the claim
            writes it (`pcicore.naming.object_name_as_written`); differs from
            `pcicore.naming.object_name` only for a short address such as ``00:1f.6``.
    """

    node: NodeName
    address: PciAddress
    dedicated: bool = False
    written_name: str | None = None

    @property
    def device_names(self) -> tuple[str, ...]:
        """The names its PCIDevice may have, ours first."""
        ours = object_name(self.node, self.address)
        if self.written_name is None or self.written_name == ours:
            return (ours,)
        return (ours, self.written_name)


@attrs.frozen
class DeviceKind:
    """What a device's PCIDevice object reports about its kind.

    Attributes:
        vendor_id: PCI vendor id.
        device_id: PCI device id.
        resource_name: The pool resourceName of its kind.
    """

    vendor_id: int
    device_id: int
    resource_name: ResourceName


def claimed_kinds(
    claims: Iterable[ClaimedAddress], kinds: Mapping[str, DeviceKind]
) -> list[ClaimedKind]:
    """The kind of every claimed device, found by its object name in ``kinds``.

    A claim whose device has no PCIDevice (or one that does not report its kind yet) needs no
    entry until it does: the device plugin cannot advertise it either. A claim on a short
    address finds the PCIDevice under either name (`ClaimedAddress.device_names`).
    """
    found: list[ClaimedKind] = []
    for claim in claims:
        kind = next(
            (kinds[name] for name in claim.device_names if name in kinds),
            None,
        )
        if kind is not None:
            found.append(
                ClaimedKind(
                    claim.address,
                    kind.vendor_id,
                    kind.device_id,
                    kind.resource_name,
                    dedicated=claim.dedicated,
                    node=claim.node,
                )
            )
    return found


def wanted_keys(claimed: Iterable[ClaimedKind]) -> frozenset[PermittedKey]:
    """Every entry the claims in the cluster need."""
    return frozenset(kind.key for kind in claimed)


@attrs.frozen
class PermittedPlan:
    """How to change the permitted list, and what we own afterwards.

    Attributes:
        add: Entries to append (each ``externalResourceProvider: true``), sorted.
        remove: Keys of our entries to delete (every entry that is ours with such a key).
        managed: The keys we own afterwards (the annotation's new value).
        previously_managed: The keys the annotation recorded before.
        blocked: Wanted keys not added because a user's entry has the same resourceName.
    """

    add: tuple[PermittedKey, ...]
    remove: frozenset[PermittedKey]
    managed: frozenset[PermittedKey]
    previously_managed: frozenset[PermittedKey]
    blocked: frozenset[PermittedKey] = frozenset()

    @property
    def changed(self) -> bool:
        """Whether the CR needs a write (the list or the ownership record differs)."""
        return bool(self.add or self.remove) or self.managed != self.previously_managed

    def is_removed(self, entry: PermittedEntry) -> bool:
        """Whether ``entry`` of the current list is dropped by this plan."""
        return is_ours(entry, self.previously_managed) and entry.key in self.remove


def is_ours(entry: PermittedEntry, managed: frozenset[PermittedKey]) -> bool:
    """Whether ``entry`` is one we wrote and nobody changed since."""
    return entry.external and entry.key in managed


def plan_permitted(
    current: Iterable[PermittedEntry],
    managed: frozenset[PermittedKey],
    wanted: frozenset[PermittedKey],
) -> PermittedPlan:
    """Compare the CR's entries with what claims need; return the least change.

    Adds each wanted key that is missing, unless an entry we do not own already offers its
    resourceName (then the user's entry serves, and we do not claim it). Removes our entries
    that are no longer wanted or that a user's entry now duplicates. Forgets recorded keys whose
    entry is gone or was edited (no longer ours).
    """
    entries = list(current)
    ours = {entry.key for entry in entries if is_ours(entry, managed)}
    users_names = {entry.resource_name for entry in entries if not is_ours(entry, managed)}
    blocked = frozenset(key for key in wanted if key.resource_name in users_names)
    keep = (wanted - blocked) & ours
    add = tuple(sorted(wanted - blocked - ours))
    remove = frozenset(ours - keep)
    return PermittedPlan(
        add=add,
        remove=remove,
        managed=frozenset(keep | set(add)),
        previously_managed=managed,
        blocked=blocked,
    )


@attrs.frozen
class PermittedDocument:
    """The KubeVirt CR's permitted PCI and USB host devices and our record of which are ours.

    Attributes:
        version: The CR's ``resourceVersion`` when read (a write is refused if it moved on).
        entries: ``pciHostDevices``, in order.
        managed: The keys our ownership record lists.
        usb_entries: ``usb``, in order (a selector ``vvvv:pppp`` when the entry has exactly
            one ``{vendor, product}`` selector, else empty: a user's entry).
        usb_managed: The USB keys our ownership record lists.
    """

    version: str
    entries: tuple[PermittedEntry, ...]
    managed: frozenset[PermittedKey]
    usb_entries: tuple[PermittedEntry, ...] = ()
    usb_managed: frozenset[PermittedKey] = frozenset()


@attrs.frozen
class PermittedChange:
    """The new permitted list, as a change of the list it was planned from.

    The entries kept are named by position so that the writer can write each back exactly as
    it found it, fields it does not model included.

    Attributes:
        version: The ``resourceVersion`` of the document it was planned from.
        keep: Positions of the current entries that stay, in order.
        add: Entries to append after them (each ``externalResourceProvider: true``).
        managed: The keys we own afterwards (the ownership record's new value).
    """

    version: str
    keep: tuple[int, ...]
    add: tuple[PermittedKey, ...]
    managed: frozenset[PermittedKey]
    usb: UsbChange | None = None


@attrs.frozen
class UsbChange:
    """The new ``usb`` list, as a change of the list it was planned from.

    Attributes:
        keep: Positions of the current entries that stay, in order.
        add: Entries to append (``externalResourceProvider: true``, one selector each).
        managed: The USB keys we own afterwards.
    """

    keep: tuple[int, ...]
    add: tuple[PermittedKey, ...]
    managed: frozenset[PermittedKey]


def usb_permitted_keys(
    claims: Collection[str], devices: Mapping[str, UsbStatus]
) -> frozenset[PermittedKey]:
    """The ``usb`` entries the live USBDeviceClaims need: one per claimed USBDevice.

    Harvester's entry: ``resourceName`` the device's, one selector ``{vendor, product}``.
    A claim whose USBDevice is unknown (or has no status yet) needs none.
    """
    found = set()
    for name in claims:
        status = devices.get(name)
        if status is not None and status.resource_name:
            selector = f"{status.vendor_id}:{status.product_id}".lower()
            found.add(PermittedKey(selector, ResourceName(status.resource_name)))
    return frozenset(found)


def plan_usb_document(
    document: PermittedDocument, wanted: frozenset[PermittedKey]
) -> PermittedPlan:
    """`plan_permitted` for the ``usb`` list: the same ownership rules as the PCI list."""
    return plan_permitted(document.usb_entries, document.usb_managed, wanted)


def plan_document(document: PermittedDocument, claimed: Iterable[ClaimedKind]) -> PermittedPlan:
    """`plan_permitted` for a document and the claimed devices' kinds."""
    return plan_permitted(document.entries, document.managed, wanted_keys(claimed))


def permitted_change(
    document: PermittedDocument, plan: PermittedPlan, usb: PermittedPlan | None = None
) -> PermittedChange:
    """What to write to carry out ``plan`` (and the ``usb`` plan) on ``document``.

    That is its entries minus the removed ones, in their places, then the added ones; the
    ``usb`` list is written only when its plan changes something.
    """
    keep = tuple(
        position for position, entry in enumerate(document.entries) if not plan.is_removed(entry)
    )
    usb_change = None
    if usb is not None and usb.changed:
        usb_keep = tuple(
            position
            for position, entry in enumerate(document.usb_entries)
            if not usb.is_removed(entry)
        )
        usb_change = UsbChange(usb_keep, usb.add, usb.managed)
    return PermittedChange(document.version, keep, plan.add, plan.managed, usb_change)


@attrs.frozen(order=True)
class KubeVirtRef:
    """Where a KubeVirt CR is.

    Attributes:
        namespace: Its namespace (Harvester's is ``harvester-system``).
        name: Its name (``kubevirt`` in both Harvester and a standard install).
    """

    namespace: str
    name: str

    def __str__(self) -> str:
        """``namespace/name``."""
        return f"{self.namespace}/{self.name}"


@attrs.frozen
class KubeVirtChoice:
    """Which KubeVirt CR to keep, out of those in the cluster.

    Attributes:
        chosen: The CR (``None`` when none fits, or when several do).
        candidates: Every CR that fits what the controller was told, sorted; more than one
            means it must be told which (``--kubevirt-namespace``/``--kubevirt-name``).
    """

    chosen: KubeVirtRef | None
    candidates: tuple[KubeVirtRef, ...] = ()

    @property
    def ambiguous(self) -> bool:
        """Whether several CRs fit, so none is kept."""
        return len(self.candidates) > 1


def choose_kubevirt(
    found: Iterable[KubeVirtRef], namespace: str | None = None, name: str | None = None
) -> KubeVirtChoice:
    """The KubeVirt CR to keep: the only one that fits ``namespace`` and ``name`` (``None``: any).

    KubeVirt runs from one CR per cluster, so a controller that is not told where it is finds
    it; with several that fit it keeps none rather than guess.
    """
    fits = tuple(
        sorted(
            ref
            for ref in found
            if (namespace is None or ref.namespace == namespace)
            and (name is None or ref.name == name)
        )
    )
    return KubeVirtChoice(fits[0] if len(fits) == 1 else None, fits)


__all__ = [
    "ClaimedAddress",
    "ClaimedKind",
    "DeviceKind",
    "KubeVirtChoice",
    "KubeVirtRef",
    "PermittedChange",
    "PermittedDocument",
    "PermittedEntry",
    "PermittedKey",
    "PermittedPlan",
    "choose_kubevirt",
    "claimed_kinds",
    "is_ours",
    "permitted_change",
    "plan_document",
    "plan_permitted",
    "wanted_keys",
]
