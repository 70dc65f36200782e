"""In-memory fakes of the claim engine's and claim controller's ports, which keep state.

`FakeHost` is a whole host behind the engine's ports (`PciBus`, `DriverControl`,
`HostFactsSource`, `LedgerStore`, `Clock`): devices with drivers and ``driver_override``, the
kernel's answers to each write (errnos injected with `FakeHost.fail`), a ledger and a clock
that only moves when a test moves it. `FakeClaimStore` and `FakeClaimEvents` are the cluster
side (`ClaimStore`, `ClaimEvents`): claims as values, kept as the API server would keep them.
Tests assert on their state, not on calls; no file, thread or network is touched.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Mapping, Sequence

import attrs

from pcicore.address import PciAddress
from pcicore.backoff import Backoff
from pcicore.claim import (
    Action,
    BindDriver,
    ClaimMachine,
    LoadModules,
    Observation,
    Probe,
    SetOverride,
    Unbind,
    Wait,
)
from pcicore.cluster_claim import ClaimEvent, ClaimStatus, ClusterClaim
from pcicore.device import DriverName, IommuGroup, NodeName, PciClass, PciDevice
from pcicore.engine import ClaimEngine
from pcicore.errors import DriverWriteError
from pcicore.hostfacts import HostFacts
from pcicore.ledger import Ledger
from pcicore.naming import object_name
from pcicore.protection import HostProtection

NODE = NodeName("titan")


def a(text: str) -> PciAddress:
    """Parse ``text``."""
    return PciAddress.parse(text)


def device(address: str, driver: str | None, group: int | None, klass: int = 0x020000) -> PciDevice:
    """A PCI function at ``address`` on ``driver`` in IOMMU ``group``."""
    return PciDevice(
        address=a(address),
        vendor_id=0x8086,
        device_id=0x1533,
        pci_class=PciClass.from_code(klass),
        driver=DriverName(driver) if driver else None,
        iommu_group=IommuGroup(group) if group is not None else None,
    )


class FakeHost:
    """A host's PCI driver core, ledger and clock, in memory."""

    def __init__(self, *devices: PciDevice, facts: HostFacts | None = None) -> None:
        """A host with ``devices``, each on its driver; its native driver is that one."""
        self._devices = {d.address: d for d in devices}
        self.native = {d.address: d.driver for d in devices}
        self.overrides: dict[PciAddress, DriverName | None] = {}
        self.host_facts = facts or HostFacts()
        self.ledger = Ledger()
        self.time = 1000.0
        self.slept: list[float] = []
        self.writes: list[Action] = []
        self._faults: dict[tuple[PciAddress, str], list[int]] = {}
        self._inert: set[tuple[PciAddress, DriverName]] = set()

    # --- test controls -------------------------------------------------------------------

    def fail(self, address: str, operation: str, error: int, times: int = 1) -> None:
        """Make the next ``times`` ``operation`` writes (unbind, bind, override) fail.

        ``error`` 0 lets that call succeed: queue it before a fault meant for a later call.
        """
        self._faults.setdefault((a(address), operation), []).extend([error] * times)

    def does_not_drive(self, address: str, driver: str) -> None:
        """Make ``driver`` accept every bind of ``address`` (no errno) and leave it unbound."""
        self._inert.add((a(address), DriverName(driver)))

    def unplug(self, address: str) -> None:
        """Remove the device from the bus (hot-unplug): it reads as gone from now on."""
        del self._devices[a(address)]

    def driver(self, address: str) -> str | None:
        """The driver ``address`` is bound to now."""
        return self._devices[a(address)].driver

    def engine(
        self,
        protection: HostProtection | None = None,
        max_attempts: int = 4,
        held_elsewhere: Mapping[PciAddress, str] | None = None,
        max_steps: int = 64,
    ) -> ClaimEngine:
        """A claim engine on this host; ``held_elsewhere`` as the DRA plugin would report."""
        return ClaimEngine(
            self,
            self,
            self,
            self,
            self,
            protection=protection,
            held_elsewhere=lambda: held_elsewhere or {},
            machine=ClaimMachine(Backoff(base=0.5, cap=8.0, max_attempts=max_attempts)),
            max_steps=max_steps,
        )

    # --- PciBus ----------------------------------------------------------------------------

    def devices(self) -> Sequence[PciDevice]:
        """Every device, in address order."""
        return [self._devices[k] for k in sorted(self._devices)]

    def device(self, address: PciAddress) -> PciDevice | None:
        """The device at ``address``."""
        return self._devices.get(address)

    # --- DriverControl ---------------------------------------------------------------------

    def observe(self, address: PciAddress) -> Observation:
        """Device, override, modules (always loaded)."""
        return Observation(self._devices.get(address), self.overrides.get(address))

    def apply(self, action: Action) -> None:
        """Do what the kernel does for ``action``, or raise its errno."""
        self.writes.append(action)
        match action:
            case LoadModules() | Wait():
                return
            case Unbind(address=address, driver=driver):
                self._unbind(address, driver)
            case SetOverride(address=address, driver=driver):
                self._fault(address, "override")
                self.overrides[address] = driver
            case Probe(address=address):
                self._probe(address)
            case BindDriver(address=address, driver=driver):
                self._bind(address, driver)

    def _unbind(self, address: PciAddress, driver: DriverName) -> None:
        if self._devices[address].driver != driver:
            self._refuse(address, "unbind", errno.ENODEV)
        self._fault(address, "unbind")
        self._set(address, None)

    def _probe(self, address: PciAddress) -> None:
        if self._devices[address].driver is not None:
            return
        wanted = self.overrides.get(address) or self.native[address]
        try:
            self._fault(address, "bind")
        except DriverWriteError:
            return  # drivers_probe does not report a failed probe
        if wanted is not None and (address, wanted) in self._inert:
            return
        self._set(address, wanted)

    def _bind(self, address: PciAddress, driver: DriverName) -> None:
        override = self.overrides.get(address)
        if override is not None and override != driver:
            self._refuse(address, "bind", errno.ENODEV)
        if self._devices[address].driver is not None:
            self._refuse(address, "bind", errno.EBUSY)
        self._fault(address, "bind")
        if (address, driver) in self._inert:
            return
        self._set(address, driver)

    def _set(self, address: PciAddress, driver: DriverName | None) -> None:
        self._devices[address] = attrs.evolve(self._devices[address], driver=driver)

    def _fault(self, address: PciAddress, operation: str) -> None:
        queued = self._faults.get((address, operation))
        if queued and (error := queued.pop(0)):
            self._refuse(address, operation, error)

    @staticmethod
    def _refuse(address: PciAddress, operation: str, error: int) -> None:
        raise DriverWriteError(
            f"{address}/{operation}", error, f"{operation} failed: {os.strerror(error)}"
        )

    # --- HostFactsSource, LedgerStore, Clock -----------------------------------------------

    def facts(self) -> HostFacts:
        """What the host depends on."""
        return self.host_facts

    def load(self) -> Ledger:
        """The ledger."""
        return self.ledger

    def save(self, ledger: Ledger) -> None:
        """Replace the ledger."""
        self.ledger = ledger

    def now(self) -> float:
        """The fake time."""
        return self.time

    def sleep(self, seconds: float) -> None:
        """Remember the sleep and advance (the engine must never call it)."""
        self.slept.append(seconds)
        self.time += seconds


def claim(address: str, *, name: str | None = None, node: str = NODE) -> ClusterClaim:
    """A new claim on ``address`` of ``node``, named after its device unless ``name``."""
    return ClusterClaim(
        name=name or object_name(NodeName(node), a(address)),
        uid=f"uid-{address}",
        resource_version="1",
        generation=1,
        deleting=False,
        finalizers=(),
        address=address,
        node=NodeName(node),
    )


class FakeClaimStore:
    """A node's claims as an API server keeps them: versions, finalizers, deletion."""

    def __init__(self, *claims: ClusterClaim, synced: bool = True) -> None:
        """A cache holding ``claims``; ``synced`` False is a cache not listed yet."""
        self.objects = {c.name: c for c in claims}
        self.is_synced = synced
        self.statuses: list[tuple[str, ClaimStatus]] = []
        self.faults: dict[str, list[Exception | None]] = {}
        """Per write method, what its next calls answer: an error raised, or None (written)."""

    def _answer(self, method: str) -> None:
        """Raise the fault queued for this call of ``method``, if any (the API failed it)."""
        queued = self.faults.get(method)
        if queued:
            fault = queued.pop(0)
            if fault is not None:
                raise fault

    def synced(self) -> bool:
        """Whether the cache was filled."""
        return self.is_synced

    def claims(self) -> Sequence[ClusterClaim]:
        """Every claim (an unsynced cache shows none: it has not listed yet)."""
        return list(self.objects.values()) if self.is_synced else []

    def write_status(self, claim: ClusterClaim, status: ClaimStatus) -> None:
        """Replace the status; a gone claim is no error."""
        self._answer("write_status")
        current = self.objects.get(claim.name)
        if current is None:
            return
        self.statuses.append((claim.name, status))
        self._store(attrs.evolve(current, status=status))

    def set_finalizers(self, claim: ClusterClaim, finalizers: tuple[str, ...]) -> None:
        """Replace finalizers at the version read; a deleted claim with none left goes."""
        self._answer("set_finalizers")
        current = self.objects.get(claim.name)
        if current is None:
            return
        if current.resource_version != claim.resource_version:
            raise AssertionError(f"conflict: {claim.name} changed since it was read")
        self._store(attrs.evolve(current, finalizers=finalizers))

    def delete(self, name: str) -> None:
        """What ``kubectl delete`` does: gone at once, or marked while finalizers hold it."""
        current = self.objects[name]
        if not current.finalizers:
            del self.objects[name]
            return
        self._store(attrs.evolve(current, deleting=True))

    def _store(self, claim: ClusterClaim) -> None:
        claim = attrs.evolve(claim, resource_version=str(int(claim.resource_version) + 1))
        if claim.deleting and not claim.finalizers:
            del self.objects[claim.name]
        else:
            self.objects[claim.name] = claim


class FakeClaimEvents:
    """Events recorded, in order."""

    def __init__(self) -> None:
        """No events yet."""
        self.events: list[tuple[str, ClaimEvent]] = []

    def emit(self, claim: ClusterClaim, event: ClaimEvent) -> None:
        """Record ``event``."""
        self.events.append((claim.name, event))

    def reasons(self, name: str) -> list[str]:
        """The reasons recorded for claim ``name``, in order."""
        return [event.reason for each, event in self.events if each == name]


# The host of the claim engine's tests: two NICs in groups of their own, a GPU with its audio
# function in one group.
NIC = "0000:03:00.0"
OTHER_NIC = "0000:04:00.0"
GPU = "0000:01:00.0"
AUDIO = "0000:01:00.1"


def two_nics_and_a_gpu() -> FakeHost:
    """A fresh `FakeHost` with `NIC`, `OTHER_NIC`, `GPU` and `AUDIO` on their drivers."""
    return FakeHost(
        device(NIC, "igb", 5),
        device(OTHER_NIC, "e1000e", 6),
        device(GPU, "nouveau", 1, 0x030000),
        device(AUDIO, "snd_hda_intel", 1, 0x040300),
    )
