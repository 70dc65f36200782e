"""In-memory fakes of the DRA plugin's ports, which keep state.

`FakeResourceClaims` is the API server's ResourceClaims (`ResourceClaimSource`): claims as
values, allocated by the test as the scheduler would. `FakeCheckpoint` and `FakeClaimFiles` are
the plugin's checkpoint and its CDI/metadata files (`DraCheckpointStore`, `PreparedFilesStore`);
`FakeVfio` the host's VFIO nodes. With `fakeclaims.FakeHost` behind the claim engine, a
`DraPreparer` runs with no file, thread or network.
"""

from __future__ import annotations

from collections.abc import Sequence

from fakeclaims import FakeHost
from pcicore.address import PciAddress
from pcicore.backoff import Backoff
from pcicore.claim import ClaimMachine
from pcicore.device import IommuGroup
from pcicore.dra import DRIVER_NAME, device_name
from pcicore.dra_prepare import (
    AllocationResult,
    ClaimAllocation,
    DraCheckpoint,
    DraClaimRef,
    JsonDocument,
    PreparedFiles,
    claim_metadata_dir,
)
from pcicore.dra_preparer import DraPreparer, DraSettings
from pcicore.engine import ClaimEngine
from pcicore.errors import DraPrepareError
from pcicore.naming import DeviceNamer
from pcicore.pciids import PciIds
from pcicore.policy import GroupPolicy

NODE = "titan"
IDS = PciIds(b"8086  Intel Corporation\n\t1533  I210 Gigabit Network Connection\n")
METADATA_ROOT = "/var/lib/kubelet/plugins/pci.devices.harvesterhci.io/dra-device-metadata"


def ref(name: str = "vm-nic", uid: str = "uid-1", namespace: str = "vms") -> DraClaimRef:
    """A claim reference."""
    return DraClaimRef.parse(namespace, name, uid)


def result(address: str, request: str = "nic", pool: str = NODE) -> AllocationResult:
    """An allocation result of our driver for ``address``."""
    return AllocationResult(request, DRIVER_NAME, pool, device_name(PciAddress.parse(address)))


class FakeResourceClaims:
    """ResourceClaims by (namespace, name), as the API server holds them."""

    def __init__(self) -> None:
        """No claims."""
        self.claims: dict[tuple[str, str], ClaimAllocation] = {}
        self.reads = 0

    def allocate(
        self, claim: DraClaimRef, *results: AllocationResult, pod_claim: str | None = None
    ) -> None:
        """Create (or replace) ``claim`` with ``results`` as its allocation."""
        self.claims[(claim.namespace, claim.name)] = ClaimAllocation(
            claim, tuple(results), pod_claim
        )

    def unallocated(self, claim: DraClaimRef) -> None:
        """Create ``claim`` without an allocation."""
        self.claims[(claim.namespace, claim.name)] = ClaimAllocation(claim, None)

    def get(self, namespace: str, name: str) -> ClaimAllocation | None:
        """The claim, or ``None``."""
        self.reads += 1
        return self.claims.get((namespace, name))


class FakeCheckpoint:
    """The checkpoint, kept as a value."""

    def __init__(self) -> None:
        """Empty."""
        self.checkpoint = DraCheckpoint()
        self.saves = 0
        self._faults: list[bool] = []

    def fail_save(self, after: int = 0) -> None:
        """Make one save fail as a full disk would: the next, or the one after ``after`` saves."""
        self._faults = [False] * after + [True]

    def load(self) -> DraCheckpoint:
        return self.checkpoint

    def save(self, checkpoint: DraCheckpoint) -> None:
        if self._faults and self._faults.pop(0):
            raise DraPrepareError("cannot write the DRA checkpoint: No space left on device")
        self.saves += 1
        self.checkpoint = checkpoint


class FakeClaimFiles:
    """The CDI folder and the metadata folder as dictionaries of documents."""

    def __init__(self) -> None:
        """Empty folders."""
        self.specs: dict[str, JsonDocument] = {}
        self.metadata: dict[str, tuple[JsonDocument, ...]] = {}
        self.fail_writes = False

    def write(self, files: PreparedFiles) -> None:
        if self.fail_writes:
            raise DraPrepareError("cannot write /var/run/cdi/x.json: Read-only file system")
        self.metadata.update(files.metadata)
        self.specs.update(files.cdi_specs)

    def remove(self, claim: DraClaimRef) -> None:
        self.specs = {n: s for n, s in self.specs.items() if claim.uid not in n}
        folder = claim_metadata_dir(claim) + "/"
        self.metadata = {p: d for p, d in self.metadata.items() if not p.startswith(folder)}

    def prune(self, keep: Sequence[DraClaimRef]) -> None:
        uids = {c.uid for c in keep}
        folders = {claim_metadata_dir(c) + "/" for c in keep}
        self.specs = {n: s for n, s in self.specs.items() if any(u in n for u in uids)}
        self.metadata = {
            p: d for p, d in self.metadata.items() if any(p.startswith(f) for f in folders)
        }


class FakeVfio:
    """VFIO nodes: iommufd off unless a test turns it on."""

    def __init__(
        self, *, iommufd: bool = False, cdevs: dict[PciAddress, str] | None = None
    ) -> None:
        """Nodes as given."""
        self.iommufd = iommufd
        self.cdevs = cdevs or {}
        self.missing_groups: set[int] = set()

    def group_node_exists(self, group: IommuGroup) -> bool:
        return int(group) not in self.missing_groups

    def device_cdev(self, address: PciAddress) -> str | None:
        return self.cdevs.get(address)

    def iommufd_available(self) -> bool:
        return self.iommufd


class DraNode:
    """A `DraPreparer` on a `FakeHost`, with every other port faked."""

    def __init__(
        self,
        host: FakeHost,
        *,
        policy: GroupPolicy = GroupPolicy.STRICT,
        held: dict[PciAddress, str] | None = None,
        vfio: FakeVfio | None = None,
    ) -> None:
        """Wire a preparer on ``host``."""
        self.host = host
        self.claims = FakeResourceClaims()
        self.checkpoint = FakeCheckpoint()
        self.files = FakeClaimFiles()
        self.held = held or {}
        self.vfio = vfio or FakeVfio()
        self.policy = policy
        self.preparer = self.restart()

    def restart(self) -> DraPreparer:
        """A new preparer (a new process) on the same host, checkpoint and files."""
        engine = ClaimEngine(
            self.host,
            self.host,
            self.host,
            self.host,
            self.host,
            machine=ClaimMachine(Backoff(base=0.5, cap=8.0, max_attempts=4)),
        )
        self.preparer = DraPreparer(
            DraSettings(NODE, METADATA_ROOT, self.policy),
            claims=self.claims,
            checkpoint=self.checkpoint,
            engine=engine,
            ledger=self.host,
            files=self.files,
            bus=self.host,
            vfio=self.vfio,
            namer=DeviceNamer(IDS),
            clock=self.host,
            held=lambda: self.held,
        )
        return self.preparer
