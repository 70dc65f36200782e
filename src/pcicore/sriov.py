"""SR-IOV physical functions: which devices are PFs, what their objects say, how VFs change.

A physical function (PF) reports ``sriov_totalvfs`` > 0 in sysfs; writing ``sriov_numvfs``
creates that many virtual functions (VFs), each a PCI function of its own with a ``physfn`` link
back to the PF. The node agent publishes one ``SRIOVNetworkDevice`` per SR-IOV network PF
(class 0x02) of its node, named as Harvester names it (``<node>-<interface>``), and turns a
change of its ``spec.numVFs`` into writes planned here.

Kernel rules the plan follows (``drivers/pci/iov.c``, ``sriov_numvfs_store``):

- writing a non-zero count while VFs are enabled fails with ``EBUSY``: the count goes to 0
  first, then to the new value;
- a count above ``sriov_totalvfs`` fails with ``ERANGE``;
- going through 0 removes every VF, so a change is refused while any VF is claimed by a VM.

Everything here is pure: devices, claims and host protection in; names, plans, status out.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Final

import attrs

from pcicore.address import PciAddress
from pcicore.conditions import Condition, ConditionStatus
from pcicore.device import NodeName, PciDevice
from pcicore.naming import object_name
from pcicore.protection import Refusal

NETWORK_CLASS: Final = 0x02
"""The PCI base class of network controllers."""

# A Kubernetes object name (RFC 1123 subdomain): an interface name outside this alphabet
# (upper case, '_', '@') cannot be part of one.
_NAME: Final = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")
_NAME_MAX: Final = 253


class SriovState(enum.Enum):
    """``status.status`` of an SRIOVNetworkDevice, spelled as Harvester spells it."""

    ENABLED = "sriovNetworkDeviceEnabled"
    """The PF has at least one VF enabled."""
    DISABLED = "sriovNetworkDeviceDisabled"
    """The PF has no VF enabled."""


class SriovRefusalReason(enum.Enum):
    """Why a change of a PF's VF count is not made (the condition's reason)."""

    NOT_SRIOV = "NotSriovCapable"
    """The device reports no ``sriov_totalvfs``."""
    INVALID_COUNT = "InvalidVfCount"
    """The count is negative."""
    ABOVE_TOTAL = "AboveTotalVfs"
    """The count is above ``sriov_totalvfs``."""
    VF_CLAIMED = "VfClaimed"
    """A VF is claimed; changing the count would remove it from under its VM."""
    HOST_PROTECTED = "HostProtected"
    """The host depends on the PF (or policy protects it)."""
    PF_MISSING = "PhysicalFunctionMissing"
    """The PF is no longer on the bus."""


def is_sriov_pf(device: PciDevice) -> bool:
    """Whether ``device`` is a physical function that can have VFs."""
    total = device.sriov.total_vfs
    return device.sriov.physfn is None and total is not None and total > 0


def is_sriov_network_pf(device: PciDevice) -> bool:
    """Whether ``device`` is an SR-IOV PF of a network controller (class 0x02)."""
    return is_sriov_pf(device) and device.pci_class.base == NETWORK_CLASS


def sriov_device_name(node: NodeName, address: PciAddress, interface: str | None) -> str:
    """The SRIOVNetworkDevice name of the PF at ``address``: ``<node>-<interface>``.

    Harvester names the object after the PF's network interface (``node1-eno49``). A PF with
    no interface (no network driver bound) or whose interface name cannot be part of an object
    name is named as its PCIDevice is, ``<node>-<compact address>``, which is always valid.
    """
    if interface:
        name = f"{node}-{interface}"
        if len(name) <= _NAME_MAX and _NAME.fullmatch(name):
            return name
    return object_name(node, address)


@attrs.frozen
class SriovPf:
    """One SR-IOV PF of a node as its SRIOVNetworkDevice names it.

    Attributes:
        name: The SRIOVNetworkDevice's name.
        node: The node.
        device: The PF.
        interface: Its network interface (``None``: none bound).
    """

    name: str
    node: NodeName
    device: PciDevice
    interface: str | None

    @property
    def address(self) -> PciAddress:
        """The PF's address (``spec.address``)."""
        return self.device.address


def sriov_pfs(
    node: NodeName, devices: Iterable[PciDevice], interfaces: Mapping[PciAddress, str]
) -> tuple[SriovPf, ...]:
    """The SR-IOV network PFs among ``devices``, named with their ``interfaces``, by address."""
    pfs = (d for d in devices if is_sriov_network_pf(d))
    return tuple(
        SriovPf(
            sriov_device_name(node, d.address, interfaces.get(d.address)),
            node,
            d,
            interfaces.get(d.address),
        )
        for d in sorted(pfs, key=lambda d: str(d.address))
    )


def vfs_of(pf: PciAddress, devices: Iterable[PciDevice]) -> tuple[PciDevice, ...]:
    """The VFs of ``pf`` among ``devices``, by address."""
    return tuple(sorted((d for d in devices if d.sriov.physfn == pf), key=lambda d: str(d.address)))


def vf_parents(pfs: Iterable[SriovPf], devices: Iterable[PciDevice]) -> dict[PciAddress, str]:
    """Each VF's parent SRIOVNetworkDevice name (the value of its PCIDevice's label), by address."""
    names = {pf.address: pf.name for pf in pfs}
    return {
        d.address: names[d.sriov.physfn]
        for d in devices
        if d.sriov.physfn is not None and d.sriov.physfn in names
    }


@attrs.frozen
class SriovStatus:
    """What an SRIOVNetworkDevice's status reports.

    Attributes:
        state: Enabled when VFs exist.
        vf_addresses: The VFs' addresses, in address order.
        vf_pci_devices: The VFs' PCIDevice names, in the same order.
    """

    state: SriovState
    vf_addresses: tuple[str, ...] = ()
    vf_pci_devices: tuple[str, ...] = ()


def sriov_status(pf: SriovPf, devices: Iterable[PciDevice]) -> SriovStatus:
    """The status of ``pf``'s object, from the VFs on the bus now."""
    vfs = vfs_of(pf.address, devices)
    enabled = bool(vfs) or (pf.device.sriov.num_vfs or 0) > 0
    return SriovStatus(
        state=SriovState.ENABLED if enabled else SriovState.DISABLED,
        vf_addresses=tuple(str(vf.address) for vf in vfs),
        vf_pci_devices=tuple(object_name(pf.node, vf.address) for vf in vfs),
    )


@attrs.frozen
class SriovRefusal:
    """Why a VF count is not applied, in the words the user reads.

    Attributes:
        reason: Which rule refused it.
        message: What was found and what to do.
    """

    reason: SriovRefusalReason
    message: str


@attrs.frozen
class NumVfsPlan:
    """What to write to a PF's ``sriov_numvfs`` to reach a count.

    Attributes:
        writes: The counts to write, in order (empty: nothing to do, or refused).
        refusal: Why nothing is written (``None``: the writes may go ahead).
    """

    writes: tuple[int, ...] = ()
    refusal: SriovRefusal | None = None


def plan_num_vfs(
    pf: PciDevice | None,
    wanted: int,
    *,
    vfs: Sequence[PciDevice] = (),
    claimed: Collection[PciAddress] = frozenset(),
    protection: Refusal | None = None,
    address: PciAddress | str = "",
) -> NumVfsPlan:
    """The writes that take ``pf`` from its current VF count to ``wanted``, or why not.

    ``vfs`` are its VFs on the bus, ``claimed`` the addresses with a claim on them,
    ``protection`` the host's refusal of the PF (`pcicore.protection.HostProtection`).
    ``address`` names the PF in messages when ``pf`` is ``None`` (gone from the bus).
    A count already in place is never refused: nothing is written.
    """
    if pf is None:
        return NumVfsPlan(
            refusal=SriovRefusal(
                SriovRefusalReason.PF_MISSING,
                f"no PCI device at {address} on this node; it was removed or the address is "
                "wrong: check spec.address against `pcidevices scan`",
            )
        )
    current = pf.sriov.num_vfs or 0
    refusal = _count_refusal(pf, wanted)
    if refusal is None and wanted != current:
        refusal = _change_refusal(pf, wanted, vfs, claimed, protection)
        if refusal is None:
            both = current != 0 and wanted != 0  # the kernel answers EBUSY to that
            return NumVfsPlan(writes=(0, wanted) if both else (wanted,))
    return NumVfsPlan(refusal=refusal)


def _count_refusal(pf: PciDevice, wanted: int) -> SriovRefusal | None:
    """Why ``wanted`` VFs can never be set on ``pf``, or ``None``."""
    total = pf.sriov.total_vfs
    if total is None or total <= 0 or pf.sriov.physfn is not None:
        return SriovRefusal(
            SriovRefusalReason.NOT_SRIOV,
            f"{pf.address} is not an SR-IOV physical function (no sriov_totalvfs); "
            "only a PF can have VFs",
        )
    if wanted < 0:
        return SriovRefusal(
            SriovRefusalReason.INVALID_COUNT,
            f"numVFs {wanted} for {pf.address} is negative; set it between 0 and {total}",
        )
    if wanted > total:
        return SriovRefusal(
            SriovRefusalReason.ABOVE_TOTAL,
            f"numVFs {wanted} for {pf.address} is above its sriov_totalvfs ({total}); "
            f"set it between 0 and {total}",
        )
    return None


def _change_refusal(
    pf: PciDevice,
    wanted: int,
    vfs: Sequence[PciDevice],
    claimed: Collection[PciAddress],
    protection: Refusal | None,
) -> SriovRefusal | None:
    """Why the VF count of ``pf`` may not change now, or ``None``."""
    if protection is not None:
        return SriovRefusal(
            SriovRefusalReason.HOST_PROTECTED,
            f"not changing the VFs of {pf.address}: {protection.message}",
        )
    busy = sorted(str(vf.address) for vf in vfs if vf.address in claimed)
    if busy:
        return SriovRefusal(
            SriovRefusalReason.VF_CLAIMED,
            f"not changing the VFs of {pf.address} from {pf.sriov.num_vfs or 0} to {wanted}: "
            f"{', '.join(busy)} {'is' if len(busy) == 1 else 'are'} claimed and would be "
            "removed (the count goes through 0); delete those PCIDeviceClaims first",
        )
    return None


CONFIGURED: Final = "VFsConfigured"
"""The condition type saying whether ``spec.numVFs`` is what the PF has."""


@attrs.frozen
class ObservedSriovDevice:
    """One SRIOVNetworkDevice of this node as the cluster holds it.

    Attributes:
        name: The object's name.
        num_vfs: ``spec.numVFs`` (what the user asks for).
        generation: ``metadata.generation`` (conditions record the one they answer).
        status: Its status as last written (``None``: never written).
        conditions: Its ``status.conditions``.
    """

    name: str
    num_vfs: int = 0
    generation: int = 0
    status: SriovStatus | None = None
    conditions: tuple[Condition, ...] = ()


@attrs.frozen
class SriovObjectPlan:
    """Which SRIOVNetworkDevices to create and delete so that each PF has exactly one.

    Attributes:
        create: PFs with no object yet, by address.
        delete: Names of objects whose PF is gone, sorted.
    """

    create: tuple[SriovPf, ...] = ()
    delete: tuple[str, ...] = ()


def plan_sriov_objects(
    pfs: Sequence[SriovPf], observed: Iterable[ObservedSriovDevice]
) -> SriovObjectPlan:
    """Create an object for each PF without one; delete the objects of PFs gone from the bus."""
    names = {o.name for o in observed}
    wanted = {pf.name for pf in pfs}
    return SriovObjectPlan(
        create=tuple(pf for pf in pfs if pf.name not in names),
        delete=tuple(sorted(names - wanted)),
    )


def configured_condition(
    pf: PciDevice | None,
    plan: NumVfsPlan,
    *,
    failure: str | None,
    generation: int,
    now: str,
) -> Condition:
    """The `CONFIGURED` condition after carrying out ``plan`` (``failure``: a write failed)."""
    if plan.refusal is not None:
        reason, message = plan.refusal.reason.value, plan.refusal.message
    elif failure is not None:
        reason, message = "WriteFailed", failure
    else:
        count = 0 if pf is None else pf.sriov.num_vfs or 0
        return Condition(
            CONFIGURED,
            ConditionStatus.TRUE,
            "Configured",
            f"{count} VFs enabled, as spec.numVFs asks",
            now,
            generation,
        )
    return Condition(CONFIGURED, ConditionStatus.FALSE, reason, message, now, generation)


__all__ = [
    "CONFIGURED",
    "NETWORK_CLASS",
    "NumVfsPlan",
    "ObservedSriovDevice",
    "SriovObjectPlan",
    "SriovPf",
    "SriovRefusal",
    "SriovRefusalReason",
    "SriovState",
    "SriovStatus",
    "configured_condition",
    "is_sriov_network_pf",
    "is_sriov_pf",
    "plan_num_vfs",
    "plan_sriov_objects",
    "sriov_device_name",
    "sriov_pfs",
    "sriov_status",
    "vf_parents",
    "vfs_of",
]
