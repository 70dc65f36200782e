"""Taking over claims Harvester's controller made, on the claim controller's in-memory fakes.

Harvester's claim on a device it moved carries its wrangler finalizer, says
``passthroughEnabled: true`` and records the original driver in ``kernelDriverToUnbind``; the
device is on ``vfio-pci`` and our ledger has never heard of it.
"""

from __future__ import annotations

import attrs

from fakeclaims import FakeClaimEvents, FakeClaimStore, FakeHost, a, claim, device
from pcicore.claim_binding import ClaimBinding
from pcicore.claim_report import FINALIZER
from pcicore.cluster_claim import ClaimStatus
from pcicore.device import DriverName
from pcicore.hostfacts import HostFacts
from pcicore.takeover import HARVESTER_FINALIZER
from pcioperator.controllers.claims import ClaimController

NIC = "0000:03:00.0"


def harvesters_claim(driver_to_unbind: str = "igb"):
    """Harvester's claim on NIC, as its controller leaves it."""
    return attrs.evolve(
        claim(NIC),
        finalizers=(HARVESTER_FINALIZER,),
        status=ClaimStatus(kernel_driver_to_unbind=driver_to_unbind, passthrough_enabled=True),
    )


def rig(store: FakeClaimStore) -> tuple[FakeHost, ClaimController]:
    """A host with NIC already on vfio-pci (igb is its real driver), and a controller."""
    fake = FakeHost(device(NIC, "vfio-pci", 5), facts=HostFacts())
    controller = ClaimController(
        store=store,
        events=FakeClaimEvents(),
        engine=fake.engine(None),
        ledger=fake,
        resource_name_of=lambda _address: "intel.com/I210",
        on_host_changed=lambda: None,
        now=lambda: "2026-01-01T00:00:00Z",
    )
    return fake, controller


class TestTakeOver:
    """A claim Harvester made keeps its device, learns its driver, and finishes deleting."""

    def test_take_over_records_harvesters_original_driver(self):
        """Nothing moves; the ledger and the claim say igb, not vfio-pci."""
        store = FakeClaimStore(harvesters_claim())
        fake, controller = rig(store)
        controller.reconcile()
        assert fake.driver(NIC) == "vfio-pci"
        assert fake.ledger.originals == {a(NIC): DriverName("igb")}
        name = claim(NIC).name
        assert store.objects[name].status.kernel_driver_to_unbind == "igb"
        assert store.objects[name].finalizers == (HARVESTER_FINALIZER, FINALIZER)

    def test_deleting_returns_the_device_to_harvesters_driver_and_lets_go(self):
        """Deletion: igb again, and neither finalizer holds the claim."""
        store = FakeClaimStore(harvesters_claim())
        fake, controller = rig(store)
        controller.reconcile()
        name = claim(NIC).name
        store.delete(name)
        controller.reconcile()
        assert fake.driver(NIC) == "igb"
        assert name not in store.objects

    def test_claim_recording_vfio_keeps_the_device_on_vfio(self):
        """A record that names vfio-pci is no original: the device stays, the claim still goes."""
        store = FakeClaimStore(harvesters_claim(driver_to_unbind="vfio-pci"))
        fake, controller = rig(store)
        controller.reconcile()
        name = claim(NIC).name
        store.delete(name)
        controller.reconcile()
        assert fake.driver(NIC) == "vfio-pci"
        assert name not in store.objects


class TestSkipVfioBinding:
    """A claim another component binds (Harvester's vGPU) is left alone."""

    def test_external_claim_moves_nothing_and_is_not_held(self):
        """Its device stays on its driver; no finalizer, no status, no ledger record."""
        external = attrs.evolve(claim(NIC), binding=ClaimBinding.EXTERNAL)
        store = FakeClaimStore(external)
        fake = FakeHost(device(NIC, "nvidia", 5), facts=HostFacts())
        controller = ClaimController(
            store=store,
            events=FakeClaimEvents(),
            engine=fake.engine(None),
            ledger=fake,
            resource_name_of=lambda _address: "nvidia.com/L40S",
            on_host_changed=lambda: None,
            now=lambda: "2026-01-01T00:00:00Z",
        )
        controller.reconcile()
        assert fake.driver(NIC) == "nvidia"
        assert store.objects[external.name] == external
        assert fake.ledger.originals == {}
