"""`DraPreparer`: prepares and unprepares ResourceClaims on this node, through ports.

The service layer of the kubelet DRA plugin, as `pcicore.engine.ClaimEngine` is the service
layer of a claim: it reads the claim (`ResourceClaimSource`), records it
(`DraCheckpointStore`), has the claim engine hold its devices on ``vfio-pci`` — the same engine,
group policy, host protection and rollback as a PCIDeviceClaim, on a ledger of its own — and
writes the container's files (`PreparedFilesStore`). Each decision is a pure function of
`pcicore.dra_prepare`. It is not thread-safe: the gRPC adapter calls it under one lock.

Order of writes, so that a crash at any point leaves nothing half-moved (see `start`):
prepare records the claim ``Preparing``, drives the engine, writes the files, then records it
``Prepared``; a failure drops the record and the engine returns what it moved. Unprepare records
``Unpreparing``, has the engine return the devices, removes the files, then drops the record.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import attrs

from pcicore.address import PciAddress
from pcicore.claim import Goal
from pcicore.dra_prepare import (
    AllocatedDevice,
    DraCheckpoint,
    DraClaimRef,
    PreparedClaim,
    PreparedFunction,
    PreparePhase,
    allocated_devices,
    check_free,
    engine_requests,
    prepare_failure,
    prepared_files,
    restart_plan,
)
from pcicore.engine import ClaimEngine, Outcome, until_settled
from pcicore.errors import DraPrepareError, PciDevicesError
from pcicore.naming import DeviceNamer
from pcicore.policy import GroupPolicy
from pcicore.ports import (
    Clock,
    DraCheckpointStore,
    LedgerStore,
    PciBus,
    PreparedFilesStore,
    ResourceClaimSource,
)
from pcicore.resources import AdvertisedDevice, VfioNodes, assess


@attrs.frozen
class PreparedDevice:
    """One device of a prepared claim, as the kubelet is told of it.

    Attributes:
        device: The allocated device (request, pool, name).
        cdi_ids: Its CDI device ids.
    """

    device: AllocatedDevice
    cdi_ids: tuple[str, ...]


@attrs.frozen
class DraSettings:
    """How the DRA plugin prepares devices on its node.

    Attributes:
        node: This node's name (the pool of our devices).
        metadata_root: The host folder of the device-metadata files (mounted into containers).
        policy: The IOMMU group policy (the agent's ``--group-policy``).
    """

    node: str
    metadata_root: str
    policy: GroupPolicy = GroupPolicy.STRICT


class DraPreparer:
    """Prepares the ResourceClaims the kubelet names, on the devices of this node."""

    def __init__(
        self,
        settings: DraSettings,
        *,
        claims: ResourceClaimSource,
        checkpoint: DraCheckpointStore,
        engine: ClaimEngine,
        ledger: LedgerStore,
        files: PreparedFilesStore,
        bus: PciBus,
        vfio: VfioNodes,
        namer: DeviceNamer,
        clock: Clock,
        held: Callable[[], Mapping[PciAddress, str]] = dict,
    ) -> None:
        """Prepare through these ports; ``ledger`` is ``engine``'s, ``held`` names other holders."""
        self.settings = settings
        self._claims = claims
        self._checkpoint = checkpoint
        self._engine = engine
        self._ledger = ledger
        self._files = files
        self._bus = bus
        self._vfio = vfio
        self._namer = namer
        self._clock = clock
        self._held = held
        self.rolled_back: tuple[DraClaimRef, ...] = ()
        """The claims the last `start` found cut short mid-prepare and rolled back."""

    # --- start ---------------------------------------------------------------------------

    def start(self) -> list[str]:
        """Settle what a previous run left, before the kubelet can call; return the problems.

        Claims cut short in a prepare are rolled back, prepared ones are held on ``vfio-pci``
        again (after a reboot they are not) and their files written again, files of no claim
        are removed, and devices the engine moved for no claim are returned.
        """
        plan = restart_plan(self._checkpoint.load())
        self.rolled_back = plan.rolled_back
        self._save(plan.checkpoint)
        outcomes = self._reconcile(plan.checkpoint)
        problems = []
        for claim in plan.checkpoint.claims.values():
            if claim.phase is not PreparePhase.PREPARED:
                continue
            failure = prepare_failure(claim.devices, outcomes)
            if failure is None:
                try:
                    self._write_files(claim)
                except PciDevicesError as err:
                    failure = str(err)
            if failure is not None:
                problems.append(f"ResourceClaim {claim.ref} ({claim.ref.uid}): {failure}")
        self._files.prune([c.ref for c in plan.checkpoint.claims.values()])
        problems += [
            f"{outcome.address}: {outcome.state.message}"
            for outcome in outcomes
            if outcome.state.goal is Goal.HOST
            and outcome.address not in _held_addresses(plan.checkpoint)
            and not outcome.returned
        ]
        return problems

    # --- prepare -------------------------------------------------------------------------

    def prepare(self, ref: DraClaimRef) -> list[PreparedDevice]:
        """Put the claim's devices on ``vfio-pci`` and write its files; idempotent.

        A claim prepared before is answered from the checkpoint (its devices held and files
        written again where they went missing), without reading the API.

        Raises:
            DraPrepareError: the claim cannot be prepared here; every device it moved is back.
            pcicore.errors.PciDevicesError: the API did not answer (nothing moved).
        """
        checkpoint = self._checkpoint.load()
        known = checkpoint.claims.get(ref.uid)
        if known is not None and known.phase is PreparePhase.UNPREPARING:
            raise DraPrepareError(
                f"ResourceClaim {ref} ({ref.uid}) is being unprepared; the kubelet retries "
                "NodeUnprepareResources until its devices are back"
            )
        if known is not None and known.phase is PreparePhase.PREPARED:
            claim = known
        else:
            allocation = self._claims.get(ref.namespace, ref.name)
            devices = allocated_devices(ref, allocation, self.settings.node)
            if not devices:
                return []
            check_free(ref, devices, checkpoint, {**self._moved_along(checkpoint), **self._held()})
            claim = PreparedClaim(
                ref,
                devices,
                PreparePhase.PREPARING,
                allocation.pod_claim_name if allocation else None,
            )
            checkpoint = checkpoint.with_claim(claim)
            self._save(checkpoint)
        if claim.phase is PreparePhase.PREPARED and self._usable(claim):
            return self._write_files(claim)  # the kubelet asks again: nothing moved since
        try:
            failure = prepare_failure(claim.devices, self._reconcile(checkpoint))
            if failure is not None:
                raise DraPrepareError(f"cannot prepare ResourceClaim {ref}: {failure}")
            answer = self._write_files(claim)
        except PciDevicesError:
            if claim.phase is PreparePhase.PREPARING:
                self._roll_back(ref)
            raise
        if claim.phase is not PreparePhase.PREPARED:
            self._save(checkpoint.with_claim(attrs.evolve(claim, phase=PreparePhase.PREPARED)))
        return answer

    # --- unprepare -----------------------------------------------------------------------

    def unprepare(self, ref: DraClaimRef) -> None:
        """Return the claim's devices to their original drivers and remove its files.

        A claim not prepared here (never, or already unprepared) is no error.

        Raises:
            DraPrepareError: a device could not be returned (the claim stays recorded, and the
                kubelet's retry tries again).
        """
        checkpoint = self._checkpoint.load()
        claim = checkpoint.claims.get(ref.uid)
        if claim is None:
            self._files.remove(ref)
            return
        leaving = checkpoint.with_claim(attrs.evolve(claim, phase=PreparePhase.UNPREPARING))
        self._save(leaving)
        outcomes = {o.address: o for o in self._reconcile(leaving)}
        originals = self._ledger.load().originals
        stuck = [
            f"{device.name} ({device.address}): "
            + (outcomes[device.address].state.message if device.address in outcomes else "")
            for device in claim.devices
            if device.address in originals
        ]
        if stuck:
            raise DraPrepareError(
                f"cannot return the devices of ResourceClaim {ref} to their drivers: "
                + "; ".join(stuck)
            )
        self._files.remove(ref)
        self._save(self._checkpoint.load().without(ref.uid))

    # --- health --------------------------------------------------------------------------

    def health(self) -> list[tuple[AllocatedDevice, AdvertisedDevice]]:
        """Each device of each prepared claim, judged as the device plugin judges its devices.

        Healthy only while it is on ``vfio-pci`` in an IOMMU group whose ``/dev/vfio/<N>``
        exists (`pcicore.resources.assess`); otherwise the reason says what is wrong.
        """
        found = []
        for claim in self._checkpoint.load().claims.values():
            if claim.phase is not PreparePhase.PREPARED:
                continue
            for allocated in claim.devices:
                device = self._bus.device(allocated.address)
                group = device.iommu_group if device is not None else None
                present = group is not None and self._vfio.group_node_exists(group)
                found.append(
                    (allocated, assess(allocated.address, device, group_node_present=present))
                )
        return found

    # --- internals -----------------------------------------------------------------------

    def _reconcile(self, checkpoint: DraCheckpoint) -> list[Outcome]:
        requests = engine_requests(checkpoint, self.settings.policy)
        return until_settled(lambda: self._engine.reconcile(requests), self._clock)

    def _usable(self, claim: PreparedClaim) -> bool:
        """Whether every device of ``claim`` is on vfio-pci with its group's VFIO node.

        The node exists only while every endpoint of the group is on vfio-pci, so this is the
        whole group's state, read without the engine's scan of the bus and the host's facts.
        """
        for allocated in claim.devices:
            found = self._bus.device(allocated.address)
            if found is None or not found.is_bound_to_vfio or found.iommu_group is None:
                return False
            if not self._vfio.group_node_exists(found.iommu_group):
                return False
        return True

    def _moved_along(self, checkpoint: DraCheckpoint) -> dict[PciAddress, str]:
        """The devices policy ``group`` moved to vfio-pci with a recorded claim's device.

        They are in no claim's devices, but that claim holds them: another claim given one would
        share its IOMMU group (the same ``/dev/vfio/<N>`` in two VMs).
        """
        moved = {}
        for address, record in self._ledger.load().claims.items():
            holder = checkpoint.holder_of(record.root)
            if address != record.root and holder is not None:
                moved[address] = (
                    f"ResourceClaim {holder.ref} (moved to vfio-pci with {record.root}, "
                    "in its IOMMU group)"
                )
        return moved

    def _roll_back(self, ref: DraClaimRef) -> None:
        checkpoint = self._checkpoint.load().without(ref.uid)
        self._save(checkpoint)
        self._reconcile(checkpoint)
        self._files.remove(ref)

    def _write_files(self, claim: PreparedClaim) -> list[PreparedDevice]:
        functions = [self._function(device) for device in claim.devices]
        files = prepared_files(
            claim.ref,
            claim.pod_claim_name,
            functions,
            iommufd=self._vfio.iommufd_available(),
            metadata_root=self.settings.metadata_root,
        )
        self._files.write(files)
        return [PreparedDevice(d, files.cdi_ids[d.name]) for d in claim.devices]

    def _function(self, device: AllocatedDevice) -> PreparedFunction:
        found = self._bus.device(device.address)
        if found is None or found.iommu_group is None:
            raise DraPrepareError(
                f"{device.name} ({device.address}) "
                + ("is gone from the bus" if found is None else "has no IOMMU group")
                + "; check the node's PCI devices (pcidevices status)"
            )
        return PreparedFunction(
            device=device,
            resource_name=self._namer.resource_name(found),
            iommu_group=found.iommu_group,
            vfio_cdev=self._vfio.device_cdev(device.address),
            numa_node=found.numa_node,
        )

    def _save(self, checkpoint: DraCheckpoint) -> None:
        if checkpoint != self._checkpoint.load():
            self._checkpoint.save(checkpoint)


def _held_addresses(checkpoint: DraCheckpoint) -> set[PciAddress]:
    return {d.address for c in checkpoint.claims.values() for d in c.devices}
