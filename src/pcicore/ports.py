"""The ports through which the domain reaches the world, as ``typing.Protocol``s.

Adapters implement them (``pcihost.sysfs.SysfsPciBus`` reads a real or fake ``/sys``);
tests implement them with fakes that keep state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

# Only the type checker reads these: a Protocol's signatures are never evaluated at run time, so
# importing the ports costs next to nothing (``pcidevices scan`` is start-up bound), and
# `pcicore.permitted` can import `pcicore.resources`, which imports this module.
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from pcicore.address import PciAddress
    from pcicore.claim import Action, Observation
    from pcicore.cluster_claim import ClaimEvent, ClaimStatus, ClusterClaim
    from pcicore.conditions import Condition
    from pcicore.device import PciDevice
    from pcicore.dra_prepare import ClaimAllocation, DraCheckpoint, DraClaimRef, PreparedFiles
    from pcicore.dra_slices import ObservedSlice, SliceContent
    from pcicore.hostfacts import HostFacts
    from pcicore.inventory import (
        DesiredDevice,
        MetadataPatch,
        ObservedDevice,
        OwnerRef,
        StatusFields,
    )
    from pcicore.ledger import Ledger
    from pcicore.permitted import (
        ClaimedAddress,
        DeviceKind,
        PermittedChange,
        PermittedDocument,
        PermittedKey,
    )
    from pcicore.sriov import ObservedSriovDevice, SriovPf, SriovStatus
    from pcicore.usb import UsbClaim, UsbClaimDecision, UsbDevice, UsbStatus


class PciBus(Protocol):
    """Reads a host's PCI bus."""

    def devices(self) -> Sequence[PciDevice]:
        """Every PCI function present now, in address order; vanished ones are left out."""
        ...

    def device(self, address: PciAddress) -> PciDevice | None:
        """The function at ``address`` now, or ``None`` if there is none (or it vanished)."""
        ...


# The host: the claim engine's ports ---------------------------------------------------------------


class DriverControl(Protocol):
    """Observes and changes which kernel driver a PCI function is bound to."""

    def observe(self, address: PciAddress) -> Observation:
        """What the host shows now about ``address``: device, driver override, modules."""
        ...

    def apply(self, action: Action) -> None:
        """Perform one step of a claim.

        Raises:
            DriverWriteError: the kernel refused the write (the errno says why).
            ModuleLoadError: a module could not be loaded.
        """
        ...


class HostFactsSource(Protocol):
    """Tells which devices the host itself depends on (network, disks, console)."""

    def facts(self) -> HostFacts:
        """The host's dependencies now."""
        ...


class LedgerStore(Protocol):
    """Keeps the claims and the original drivers across restarts and reboots."""

    def load(self) -> Ledger:
        """The ledger as last saved (empty when never saved)."""
        ...

    def save(self, ledger: Ledger) -> None:
        """Replace the saved ledger, atomically."""
        ...


class Clock(Protocol):
    """Time for retries and backoff; tests pass one that does not sleep."""

    def now(self) -> float:
        """Monotonic seconds."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds``."""
        ...


# The cluster: claims ---------------------------------------------------------------------------


class ClaimStore(Protocol):
    """This node's PCIDeviceClaims: read from a cache of the cluster, written back to it."""

    def synced(self) -> bool:
        """Whether the cache holds every claim (until then, an absent claim proves nothing)."""
        ...

    def claims(self) -> Sequence[ClusterClaim]:
        """Every claim whose ``spec.nodeName`` is this node, deleted ones included.

        Claims too malformed to read at all are left out (and logged by the adapter).
        """
        ...

    def write_status(self, claim: ClusterClaim, status: ClaimStatus) -> None:
        """Replace ``claim``'s status with ``status``; a claim gone meanwhile is no error."""
        ...

    def set_finalizers(self, claim: ClusterClaim, finalizers: tuple[str, ...]) -> None:
        """Replace ``claim``'s finalizers, only if it is still at ``claim.resource_version``.

        A claim gone meanwhile is no error. A claim changed meanwhile raises the adapter's
        conflict error: the caller's reconcile fails and is retried with a fresh read.
        """
        ...


class ClaimEvents(Protocol):
    """Records Events about claims (a failure to record one is logged, never raised)."""

    def emit(self, claim: ClusterClaim, event: ClaimEvent) -> None:
        """Record that ``event`` happened to ``claim``."""
        ...


# The cluster: devices and KubeVirt --------------------------------------------------------------


class DeviceObjectStore(Protocol):
    """This node's PCIDevice objects: as last observed, and the writes that change them."""

    def observed(self) -> Sequence[ObservedDevice]:
        """Every object of this node as last observed (a cache: no request to the cluster)."""
        ...

    def node_owner(self) -> OwnerRef | None:
        """The owner reference to this node's Node object, or ``None`` while it has none."""
        ...

    def create(self, device: DesiredDevice, owner: OwnerRef | None) -> ObservedDevice | None:
        """Create the object of ``device`` with its status, owned by ``owner``.

        Returns ``None`` once created; if an object of that name exists already although it was
        not observed (its node label was removed, say), creates nothing and returns it.
        """
        ...

    def patch_metadata(self, name: str, patch: MetadataPatch) -> None:
        """Merge ``patch`` into the metadata of object ``name``."""
        ...

    def patch_status(self, name: str, fields: StatusFields) -> None:
        """Write ``fields`` into the status of object ``name``; other fields stay."""
        ...

    def delete(self, name: str) -> None:
        """Delete object ``name``; one already gone is not an error."""
        ...


class ResourceSliceStore(Protocol):
    """This node's ResourceSlices of our DRA driver: as last observed, and the writes to them."""

    def observed(self) -> Sequence[ObservedSlice]:
        """Every slice of this driver on this node as last observed (a cache: no request)."""
        ...

    def node_owner(self) -> OwnerRef | None:
        """The owner reference to this node's Node object, or ``None`` while it has none."""
        ...

    def create(self, content: SliceContent, owner: OwnerRef | None) -> None:
        """Create a slice holding ``content``, owned by ``owner``."""
        ...

    def update(self, content: SliceContent, owner: OwnerRef | None, resource_version: str) -> None:
        """Replace slice ``content.name`` if it is still at ``resource_version``."""
        ...

    def delete(self, name: str) -> None:
        """Delete slice ``name``; one already gone is not an error."""
        ...


class ClaimedDeviceKinds(Protocol):
    """What the claims in the whole cluster ask for, and the kinds their devices report."""

    def synced(self) -> bool:
        """Whether the claims and the PCIDevices have been observed once."""
        ...

    def claimed(self) -> Sequence[ClaimedAddress]:
        """The device of every claim (claims that do not parse are left out)."""
        ...

    def kinds(self) -> Mapping[str, DeviceKind]:
        """The kind of every PCIDevice that reports one, by object name."""
        ...


class PermittedDevicesStore(Protocol):
    """The KubeVirt CR's list of permitted PCI host devices, with our ownership record."""

    def synced(self) -> bool:
        """Whether the CR has been looked for once."""
        ...

    def read(self) -> PermittedDocument | None:
        """The list as last observed, or ``None`` when there is no KubeVirt CR."""
        ...

    def write(self, change: PermittedChange) -> bool:
        """Write the new list and ownership record; return whether it wrote.

        It writes nothing when the CR is gone or moved on since ``change`` was planned (a newer
        read then plans again).
        """
        ...


class SriovControl(Protocol):
    """A node's SR-IOV physical functions: their interfaces, and their VF counts."""

    def interfaces(self, addresses: Sequence[PciAddress]) -> Mapping[PciAddress, str]:
        """The network interface of each of ``addresses`` that has one."""
        ...

    def write_num_vfs(self, address: PciAddress, count: int) -> None:
        """Write ``count`` to the PF's ``sriov_numvfs`` (one write, as the kernel takes it).

        Raises:
            SriovWriteError: the kernel refused it; ``errno`` is its answer.
        """
        ...


class SriovObjectStore(Protocol):
    """This node's SRIOVNetworkDevice objects."""

    def observed(self) -> Sequence[ObservedSriovDevice]:
        """Every object of this node, as last seen."""
        ...

    def create(self, pf: SriovPf, num_vfs: int) -> None:
        """Create the object of ``pf`` with ``spec.numVFs`` = ``num_vfs`` (exists: done)."""
        ...

    def delete(self, name: str) -> None:
        """Delete an object (gone: done)."""
        ...

    def write_status(self, name: str, status: SriovStatus, conditions: Sequence[Condition]) -> None:
        """Replace the object's status and conditions."""
        ...


# The kubelet DRA plugin ------------------------------------------------------------------------


class ResourceClaimSource(Protocol):
    """Reads ResourceClaims (``resource.k8s.io``) from the cluster."""

    def get(self, namespace: str, name: str) -> ClaimAllocation | None:
        """The claim of that name as the API server has it now, or ``None`` if there is none.

        Raises:
            DraPrepareError: the object is not a ResourceClaim this plugin can read.
            pcicore.errors.PciDevicesError: the API did not answer (the adapter's error).
        """
        ...


class DraCheckpointStore(Protocol):
    """Keeps the DRA plugin's prepared claims across restarts and reboots."""

    def load(self) -> DraCheckpoint:
        """The checkpoint as last saved (empty when never saved)."""
        ...

    def save(self, checkpoint: DraCheckpoint) -> None:
        """Replace the saved checkpoint, atomically."""
        ...


class PreparedFilesStore(Protocol):
    """The CDI specs and device-metadata files of prepared claims."""

    def write(self, files: PreparedFiles) -> None:
        """Write (or replace, atomically each) every file of ``files``.

        Raises:
            DraPrepareError: a file could not be written (the path and the error say why).
        """
        ...

    def remove(self, claim: DraClaimRef) -> None:
        """Remove every file of ``claim`` (none there: nothing to do).

        Raises:
            DraPrepareError: a file could not be removed.
        """
        ...

    def prune(self, keep: Sequence[DraClaimRef]) -> None:
        """Remove every file of ours that belongs to none of the claims in ``keep``."""
        ...


# USB passthrough ---------------------------------------------------------------------------------


class UsbBus(Protocol):
    """Reads a host's USB devices."""

    def devices(self) -> Sequence[UsbDevice]:
        """Every USB device present now (root hubs aside)."""
        ...


class UsbObjectStore(Protocol):
    """This node's USBDevice objects."""

    def observed(self) -> Mapping[str, UsbStatus | None]:
        """Every object of this node by name, with its status as last written (``None``: none)."""
        ...

    def create(self, name: str, status: UsbStatus) -> None:
        """Create the object and write its status (exists: its status is written)."""
        ...

    def write_status(self, name: str, status: UsbStatus) -> None:
        """Replace the object's status (gone: done)."""
        ...

    def delete(self, name: str) -> None:
        """Delete the object (gone: done)."""
        ...


class UsbClaimStore(Protocol):
    """The USBDeviceClaims of the cluster, and the status of those of this node."""

    def synced(self) -> bool:
        """Whether the claims have been read once (before that, none would mean none exist)."""
        ...

    def claims(self) -> Sequence[UsbClaim]:
        """Every USBDeviceClaim."""
        ...

    def write_status(self, claim: UsbClaim, decision: UsbClaimDecision) -> None:
        """Write ``status.nodeName``, ``status.pciAddress`` and the ``Ready`` condition."""
        ...

    def emit(self, claim: UsbClaim, event: ClaimEvent) -> None:
        """Record an Event about ``claim``."""
        ...

    def set_finalizers(self, claim: UsbClaim, finalizers: Sequence[str]) -> None:
        """Replace the claim's finalizers, against the version read."""
        ...


class EnabledUsbDevices(Protocol):
    """The USB devices of this node that claims enable (what the device plugin advertises)."""

    def enabled_usb(self) -> Mapping[str, UsbStatus]:
        """Each enabled device's status, by USBDevice name."""
        ...


class UsbNodes(Protocol):
    """USB device nodes (``/dev/bus/usb/BBB/DDD``) of the host."""

    def exists(self, device_path: str) -> bool:
        """Whether the node is there."""
        ...

    def hand_over(self, device_path: str) -> None:
        """Make the node usable by the VM's QEMU (its owner).

        Raises:
            PciDevicesError: the node is gone or cannot be changed; the message says why.
        """
        ...


class ClaimedUsbKinds(Protocol):
    """The USB devices the USBDeviceClaims of the cluster ask KubeVirt to permit."""

    def synced(self) -> bool:
        """Whether the claims and USBDevices have been read once."""
        ...

    def wanted(self) -> frozenset[PermittedKey]:
        """The ``usb`` entries the live claims need."""
        ...
