"""The ports through which the domain reaches the world, as ``typing.Protocol``s.

Adapters implement them (``pcihost.sysfs.SysfsPciBus`` reads a real or fake ``/sys``);
tests implement them with fakes that keep state.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from pcicore.address import PciAddress
from pcicore.claim import Action, Observation
from pcicore.cluster_claim import ClaimEvent, ClaimStatus, ClusterClaim
from pcicore.device import PciDevice
from pcicore.hostfacts import HostFacts
from pcicore.ledger import Ledger


class PciBus(Protocol):
    """Reads a host's PCI bus."""

    def devices(self) -> Sequence[PciDevice]:
        """Every PCI function present now, in address order; vanished ones are left out."""
        ...

    def device(self, address: PciAddress) -> PciDevice | None:
        """The function at ``address`` now, or ``None`` if there is none (or it vanished)."""
        ...


# --- Ports of the claim engine (issue 4) ---------------------------------------------------


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
