"""The claim controller on in-memory fakes: a host, a claim store and an event sink.

The real engine runs on `fakeclaims.FakeHost`; the controller reads and writes claims through
`fakeclaims.FakeClaimStore`. Tests assert on the host's drivers, the ledger, the claims' status
and finalizers, and the Events recorded.
"""

from __future__ import annotations

import errno

import pytest

from fakeclaims import (
    FakeClaimEvents,
    FakeClaimStore,
    FakeHost,
    a,
    claim,
    device,
)
from pcicore.claim_report import (
    FINALIZER,
    READY,
    RECHECK_SETTLED,
    RETRY_UNSETTLED,
    UNSYNCED_RETRY,
)
from pcicore.conditions import find_condition
from pcicore.device import DriverName
from pcicore.hostfacts import HostFacts
from pcicore.ledger import ClaimRecord, Ledger
from pcicore.policy import GroupPolicy
from pcicore.protection import DenyList, HostProtection
from pcioperator.controllers.claims import ClaimController
from pcioperator.kube.errors import ConflictError, TemporaryApiError

NIC = "0000:03:00.0"
GPU = "0000:01:00.0"
AUDIO = "0000:01:00.1"
MGMT = "0000:00:1f.6"


def host() -> FakeHost:
    return FakeHost(
        device(NIC, "igb", 5),
        device(GPU, "nouveau", 1, 0x030000),
        device(AUDIO, "snd_hda_intel", 1, 0x040300),
        device(MGMT, "e1000e", 3),
        facts=HostFacts(default_route_nics={a(MGMT): "eno1"}),
    )


class Rig:
    """A controller wired to fakes, and what the tests look at."""

    def __init__(
        self,
        fake_host: FakeHost,
        store: FakeClaimStore,
        *,
        policy: GroupPolicy = GroupPolicy.STRICT,
        protection: HostProtection | None = None,
        held_elsewhere: dict | None = None,
    ) -> None:
        self.host = fake_host
        self.store = store
        self.events = FakeClaimEvents()
        self.host_changes = 0
        self.controller = ClaimController(
            store=store,
            events=self.events,
            engine=fake_host.engine(protection, held_elsewhere=held_elsewhere),
            ledger=fake_host,
            resource_name_of=lambda _address: "intel.com/I210",
            on_host_changed=self._changed,
            policy=policy,
            now=lambda: "2026-01-01T00:00:00Z",
        )

    def _changed(self) -> None:
        self.host_changes += 1

    def reconcile(self) -> float | None:
        return self.controller.reconcile()

    def ready(self, address: str):
        name = claim(address).name
        return find_condition(self.store.objects[name].status.conditions, READY)

    def status(self, address: str):
        return self.store.objects[claim(address).name].status


class TestBinding:
    """A claim moves its device and reports it."""

    def test_claim_binds_its_device_holds_it_with_a_finalizer_and_reports_ready(self):
        """vfio-pci on the host; passthroughEnabled, Ready True, finalizer, one Normal Event."""
        rig = Rig(host(), FakeClaimStore(claim(NIC)))
        assert rig.reconcile() == RECHECK_SETTLED
        assert rig.host.driver(NIC) == "vfio-pci"
        name = claim(NIC).name
        assert rig.store.objects[name].finalizers == (FINALIZER,)
        assert rig.status(NIC).passthrough_enabled
        assert rig.status(NIC).kernel_driver_to_unbind == "igb"
        assert (rig.ready(NIC).status.value, rig.ready(NIC).reason) == ("True", "BoundToVfio")
        assert rig.events.reasons(name) == ["BoundToVfio"]
        assert [s.conditions[0].reason for _, s in rig.store.statuses] == [
            "InProgress",
            "BoundToVfio",
        ]

    def test_second_reconcile_with_nothing_changed_writes_nothing(self):
        """Level-triggered: no status write, no finalizer patch, no Event, no kernel write."""
        rig = Rig(host(), FakeClaimStore(claim(NIC)))
        rig.reconcile()
        before = (dict(rig.store.objects), len(rig.store.statuses), len(rig.events.events))
        writes = len(rig.host.writes)
        rig.reconcile()
        assert (dict(rig.store.objects), len(rig.store.statuses), len(rig.events.events)) == before
        assert len(rig.host.writes) == writes

    def test_claim_on_the_management_nic_is_refused_and_not_held(self):
        """HostDependsOnDevice with the evidence; the NIC stays; the claim is retried slowly."""
        rig = Rig(host(), FakeClaimStore(claim(MGMT)))
        assert rig.reconcile() == RETRY_UNSETTLED
        assert rig.host.driver(MGMT) == "e1000e"
        assert rig.ready(MGMT).reason == "HostDependsOnDevice"
        assert "default route (eno1)" in rig.ready(MGMT).message

    def test_misnamed_claim_is_invalid_and_moves_nothing(self):
        """A claim named after another device is InvalidSpec; its device stays; no finalizer."""
        wrong = claim(NIC, name="titan-000001000")
        rig = Rig(host(), FakeClaimStore(wrong))
        rig.reconcile()
        stored = rig.store.objects[wrong.name]
        assert stored.status.conditions[0].reason == "InvalidSpec"
        assert stored.finalizers == ()
        assert rig.host.driver(NIC) == "igb"
        assert rig.controller.phases == {wrong.name: "InvalidSpec"}


class TestBusyDevice:
    """A busy device is reported and requeued; the controller never waits."""

    def test_busy_device_is_requeued_after_its_backoff_and_shows_device_busy(self):
        """EBUSY twice: DeviceBusy attempt 1, then 2, each requeued at its backoff; then bound."""
        fake = host()
        fake.fail(NIC, "bind", errno.EBUSY, times=4)  # probe + bind per attempt
        rig = Rig(fake, FakeClaimStore(claim(NIC)))

        assert rig.reconcile() == 0.5
        assert rig.ready(NIC).reason == "DeviceBusy"
        assert "retry 1 of 3" in rig.ready(NIC).message
        assert not rig.status(NIC).passthrough_enabled

        fake.time += 0.5
        assert rig.reconcile() == 1.0
        assert "retry 2 of 3" in rig.ready(NIC).message

        fake.time += 1.0
        assert rig.reconcile() == RECHECK_SETTLED
        assert rig.ready(NIC).reason == "BoundToVfio"
        assert fake.slept == []
        assert rig.events.reasons(claim(NIC).name) == ["DeviceBusy", "BoundToVfio"]

    def test_busy_member_of_a_group_claim_holds_the_claim_at_device_busy(self):
        """Policy group: the audio function is busy; the GPU claim shows it and is not Ready."""
        fake = host()
        fake.fail(AUDIO, "unbind", errno.EBUSY, times=1)
        rig = Rig(fake, FakeClaimStore(claim(GPU)), policy=GroupPolicy.GROUP)
        assert rig.reconcile() == 0.5
        assert rig.ready(GPU).reason == "DeviceBusy"
        assert AUDIO in rig.ready(GPU).message
        assert not rig.status(GPU).passthrough_enabled
        fake.time += 0.5
        rig.reconcile()
        assert (fake.driver(GPU), fake.driver(AUDIO)) == ("vfio-pci", "vfio-pci")
        assert rig.status(GPU).passthrough_enabled
        assert rig.status(GPU).group_members == (AUDIO,)


class TestRestartAndDeletion:
    """Restarts never release devices; deletion releases them only once they are back."""

    def _bound_before_restart(self) -> FakeHost:
        fake = host()
        fake.ledger = Ledger(
            claims={a(NIC): ClaimRecord(a(NIC))}, originals={a(NIC): DriverName("igb")}
        )
        fake._set(a(NIC), DriverName("vfio-pci"))
        return fake

    def test_restart_with_an_unsynced_cache_releases_nothing(self):
        """Agent restarted, claim cache not listed yet: the bound device stays, ledger kept.

        An empty partial view must not read as "no claims": that would hand every passed-
        through device back to the host under running VMs.
        """
        fake = self._bound_before_restart()
        ledger = fake.ledger
        bound = claim(NIC)
        store = FakeClaimStore(bound, synced=False)
        rig = Rig(fake, store)
        assert rig.reconcile() == UNSYNCED_RETRY
        assert fake.driver(NIC) == "vfio-pci"
        assert fake.ledger == ledger
        assert fake.writes == []
        store.is_synced = True
        rig.reconcile()
        assert fake.driver(NIC) == "vfio-pci"
        assert fake.writes == []
        assert rig.status(NIC).passthrough_enabled

    def test_deleted_claim_returns_its_device_then_lets_go(self):
        """Deletion: the device goes back to igb, the finalizer is removed, Event ReturnedToHost."""
        rig = Rig(host(), FakeClaimStore(claim(NIC)))
        rig.reconcile()
        name = claim(NIC).name
        rig.store.delete(name)
        rig.reconcile()
        assert rig.host.driver(NIC) == "igb"
        assert name not in rig.store.objects
        assert rig.events.reasons(name)[-1] == "ReturnedToHost"
        assert rig.host.ledger == Ledger()

    def test_failed_return_keeps_the_finalizer_and_the_original_driver(self):
        """The igb driver refuses the device back (EINVAL): the claim stays, ReturnFailed shown.

        Releasing the claim anyway would forget where the device came from and leave it on
        vfio-pci with nothing to show for it.
        """
        fake = host()
        rig = Rig(fake, FakeClaimStore(claim(NIC)))
        rig.reconcile()
        name = claim(NIC).name
        fake.fail(NIC, "bind", errno.EINVAL)
        rig.store.delete(name)
        assert rig.reconcile() == RETRY_UNSETTLED
        held = rig.store.objects[name]
        assert held.finalizers == (FINALIZER,)
        assert held.status.conditions[0].reason == "ReturnFailed"
        assert fake.ledger.originals == {a(NIC): DriverName("igb")}
        rig.reconcile()  # the fault was one-off: the next run returns it and lets go
        assert fake.driver(NIC) == "igb"
        assert name not in rig.store.objects

    def test_deny_entry_added_after_the_bind_keeps_the_device_until_the_claim_is_deleted(self):
        """Restarted with a deny entry: the bound NIC stays, Ready True with reason DenyListed."""
        fake = host()
        rig = Rig(fake, FakeClaimStore(claim(NIC)))
        rig.reconcile()
        denied = Rig(
            fake,
            rig.store,
            protection=HostProtection(DenyList(addresses=frozenset({a(NIC)}))),
        )
        denied.reconcile()
        assert fake.driver(NIC) == "vfio-pci"
        assert rig.status(NIC).passthrough_enabled
        assert (rig.ready(NIC).status.value, rig.ready(NIC).reason) == ("True", "DenyListed")
        assert "until this claim is deleted" in rig.ready(NIC).message
        assert denied.events.reasons(claim(NIC).name) == ["DenyListed"]
        rig.store.delete(claim(NIC).name)
        denied.reconcile()
        assert fake.driver(NIC) == "igb"
        assert rig.store.objects == {}


class TestApiFaults:
    """A write to the API fails mid-reconcile: nothing is lost, the retry converges.

    The runner retries a reconcile that raised, with backoff; these tests play that retry.
    """

    def test_conflict_adding_the_finalizer_moves_nothing_until_a_fresh_read(self):
        """409 on the finalizer: the device is not moved without the finalizer that holds it."""
        rig = Rig(host(), FakeClaimStore(claim(NIC)))
        rig.store.faults["set_finalizers"] = [ConflictError("claim changed since it was read")]
        with pytest.raises(ConflictError):
            rig.reconcile()
        assert rig.host.driver(NIC) == "igb"
        assert rig.host.ledger == Ledger()
        rig.reconcile()
        assert rig.host.driver(NIC) == "vfio-pci"
        assert rig.store.objects[claim(NIC).name].finalizers == (FINALIZER,)
        assert rig.status(NIC).passthrough_enabled

    def test_status_write_failing_after_the_bind_keeps_the_device_and_reports_on_retry(self):
        """500 on the status after the bind: the device stays claimed; the retry reports it."""
        rig = Rig(host(), FakeClaimStore(claim(NIC)))
        server_error = TemporaryApiError("internal error", status=500)
        rig.store.faults["write_status"] = [None, server_error]  # accepted, then the outcome
        with pytest.raises(TemporaryApiError):
            rig.reconcile()
        assert rig.host.driver(NIC) == "vfio-pci"
        assert a(NIC) in rig.host.ledger.claims
        assert not rig.status(NIC).passthrough_enabled
        rig.reconcile()
        assert rig.host.driver(NIC) == "vfio-pci"
        assert rig.status(NIC).passthrough_enabled
        assert rig.status(NIC).kernel_driver_to_unbind == "igb"

    def test_finalizer_removal_failing_after_the_return_holds_the_claim_and_reports_once(self):
        """500 removing the finalizer: the claim waits, the device is back, one Event in all."""
        rig = Rig(host(), FakeClaimStore(claim(NIC)))
        rig.reconcile()
        name = claim(NIC).name
        rig.store.delete(name)
        rig.store.faults["set_finalizers"] = [TemporaryApiError("no answer")]
        with pytest.raises(TemporaryApiError):
            rig.reconcile()
        assert rig.host.driver(NIC) == "igb"
        assert rig.store.objects[name].finalizers == (FINALIZER,)
        rig.reconcile()
        assert name not in rig.store.objects
        assert rig.host.driver(NIC) == "igb"
        assert rig.events.reasons(name).count("ReturnedToHost") == 1


class TestDualMode:
    """A device a DRA ResourceClaim holds is refused to PCIDeviceClaims (and left alone)."""

    def test_claim_on_a_device_a_resource_claim_holds_is_refused_and_moves_nothing(self):
        """Ready False, HeldByResourceClaim naming the holder; the DRA pod keeps its device."""
        fake = host()
        fake._set(a(NIC), DriverName("vfio-pci"))  # prepared by the DRA plugin
        rig = Rig(
            fake,
            FakeClaimStore(claim(NIC)),
            held_elsewhere={a(NIC): "ResourceClaim vms/gpu-claim (DRA)"},
        )
        rig.reconcile()
        ready = rig.ready(NIC)
        assert (ready.status.value, ready.reason) == ("False", "HeldByResourceClaim")
        assert "ResourceClaim vms/gpu-claim" in ready.message
        assert fake.driver(NIC) == "vfio-pci"
        assert fake.writes == []
        assert fake.ledger == Ledger()

    def test_group_claim_with_a_member_a_resource_claim_holds_is_refused_whole(self):
        """GPU + audio moved together: the audio function held by DRA refuses the GPU too."""
        fake = host()
        rig = Rig(
            fake,
            FakeClaimStore(claim(GPU)),
            policy=GroupPolicy.GROUP,
            held_elsewhere={a(AUDIO): "ResourceClaim vms/audio (DRA)"},
        )
        rig.reconcile()
        assert rig.ready(GPU).reason == "HeldByResourceClaim"
        assert (fake.driver(GPU), fake.driver(AUDIO)) == ("nouveau", "snd_hda_intel")
        assert fake.ledger == Ledger()
