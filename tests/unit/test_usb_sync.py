"""UsbSync over in-memory stores: objects published, orphaned, deleted; claims answered."""

from __future__ import annotations

import attrs
import pytest

from pcicore.address import PciAddress
from pcicore.cluster_claim import ClaimEvent
from pcicore.conditions import set_condition
from pcicore.device import NodeName
from pcicore.usb import (
    HARVESTER_USB_FINALIZER,
    ORPHANED,
    UsbClaim,
    UsbClaimDecision,
    UsbDevice,
    UsbStatus,
)
from pcicore.usbids import UsbIds
from pcioperator.controllers.usb import UsbSync

NODE = NodeName("node1")
XHCI = PciAddress.parse("0000:00:14.0")
STICK = UsbDevice("2-4", 2, 4, 0x0951, 0x1666, 0, (0x08,), controller=XHCI)
KEYBOARD = UsbDevice("2-5", 2, 5, 0x0627, 0x0001, 0, (0x03,), controller=XHCI)
STICK_NAME = "node1-0951-1666-002004"
KEYBOARD_NAME = "node1-0627-0001-002005"
OTHER_NODE_CLAIM = "node2-0951-1666-001002"


class FakeBus:
    """The node's USB devices; a test plugs and unplugs them."""

    def __init__(self, *devices: UsbDevice) -> None:
        self.present = list(devices)

    def devices(self) -> list[UsbDevice]:
        return list(self.present)


class FakeObjects:
    """The node's USBDevices, by name, and how many writes reached them."""

    def __init__(self) -> None:
        self.objects: dict[str, UsbStatus | None] = {}
        self.writes = 0

    def observed(self) -> dict[str, UsbStatus | None]:
        return dict(self.objects)

    def create(self, name: str, status: UsbStatus) -> None:
        self.writes += 1
        self.objects[name] = status

    def write_status(self, name: str, status: UsbStatus) -> None:
        self.writes += 1
        self.objects[name] = status

    def delete(self, name: str) -> None:
        self.writes += 1
        self.objects.pop(name, None)


class FakeClaims:
    """USBDeviceClaims by name, with the Events recorded about them."""

    def __init__(self, *names: str, synced: bool = True) -> None:
        self.by_name = {name: UsbClaim(name, uid=f"uid-{name}") for name in names}
        self.events: list[tuple[str, ClaimEvent]] = []
        self.writes = 0
        self.filled = synced

    def synced(self) -> bool:
        return self.filled

    def claims(self) -> list[UsbClaim]:
        return list(self.by_name.values())

    def write_status(self, claim: UsbClaim, decision: UsbClaimDecision) -> None:
        self.writes += 1
        self.by_name[claim.name] = attrs.evolve(
            claim,
            node_name=decision.node_name,
            pci_address=decision.pci_address,
            conditions=set_condition(claim.conditions, decision.condition),
        )

    def emit(self, claim: UsbClaim, event: ClaimEvent) -> None:
        self.events.append((claim.name, event))

    def set_finalizers(self, claim: UsbClaim, finalizers) -> None:
        self.by_name[claim.name] = attrs.evolve(claim, finalizers=tuple(finalizers))

    def delete(self, name: str) -> None:
        del self.by_name[name]


@attrs.define
class World:
    """The fakes around one UsbSync."""

    bus: FakeBus
    objects: FakeObjects
    claims: FakeClaims
    controllers: set[PciAddress]
    sync: UsbSync


@pytest.fixture
def world() -> World:
    bus = FakeBus(STICK, KEYBOARD)
    objects = FakeObjects()
    claims = FakeClaims()
    controllers: set[PciAddress] = set()
    sync = UsbSync(
        node=NODE,
        bus=bus,
        ids=UsbIds(b"0951  Kingston Technology\n\t1666  DataTraveler\nC 08  Mass Storage\n"),
        store=objects,
        claims=claims,
        claimed_controllers=lambda: frozenset(controllers),
        now=lambda: "2026-11-30T20:00:00Z",
    )
    return World(bus, objects, claims, controllers, sync)


def enabled(world: World) -> dict[str, bool]:
    return {n: s.enabled for n, s in world.objects.objects.items() if s is not None}


class TestPublish:
    """USBDevice objects follow the node's devices."""

    def test_each_device_is_published_once(self, world):
        """Two devices, two objects with status; a second run writes nothing."""
        world.sync.reconcile()
        assert enabled(world) == {STICK_NAME: False, KEYBOARD_NAME: False}
        stick = world.objects.objects[STICK_NAME]
        assert stick is not None
        assert stick.description == "DataTraveler (Kingston Technology)"
        writes = world.objects.writes
        world.sync.reconcile()
        assert world.objects.writes == writes

    def test_nothing_happens_before_the_claims_are_read(self, world):
        """An unfilled claim cache would orphan-delete: the sync waits for it."""
        world.claims.filled = False
        world.sync.reconcile()
        assert world.objects.objects == {}

    def test_unplugged_unclaimed_device_is_deleted(self, world):
        """The keyboard leaves: its object goes."""
        world.sync.reconcile()
        world.bus.present.remove(KEYBOARD)
        world.sync.reconcile()
        assert set(world.objects.objects) == {STICK_NAME}


class TestClaims:
    """A USBDeviceClaim enables its device; bad situations are reported."""

    def test_claim_enables_and_is_answered(self, world):
        """Enabled on the object; nodeName, pciAddress, Ready True and one Event on the claim."""
        world.claims.by_name[STICK_NAME] = UsbClaim(STICK_NAME)
        world.sync.reconcile()
        assert enabled(world)[STICK_NAME]
        claim = world.claims.by_name[STICK_NAME]
        assert (claim.node_name, claim.pci_address) == ("node1", "0000:00:14.0")
        assert [(c.type, c.status.value, c.reason) for c in claim.conditions] == [
            ("Ready", "True", "Enabled")
        ]
        assert [event.reason for _, event in world.claims.events] == ["Enabled"]
        assert set(world.sync.enabled) == {STICK_NAME}

    def test_a_claim_is_reported_ready_only_once_its_device_is_advertised(self, world):
        """Whoever reads Ready=True (a VM's scheduling) finds the plugin already offering it."""
        advertised_when_reported: list[set[str]] = []
        write_status = world.claims.write_status

        def recording(claim, decision):
            advertised_when_reported.append(set(world.sync.enabled_usb()))
            write_status(claim, decision)

        world.claims.write_status = recording
        world.claims.by_name[STICK_NAME] = UsbClaim(STICK_NAME)
        world.sync.reconcile()
        assert advertised_when_reported == [{STICK_NAME}]

    def test_answered_claim_is_not_written_again(self, world):
        """Level-triggered: the next reconcile writes neither the claim nor the object."""
        world.claims.by_name[STICK_NAME] = UsbClaim(STICK_NAME)
        world.sync.reconcile()
        writes = (world.objects.writes, world.claims.writes, len(world.claims.events))
        world.sync.reconcile()
        assert (world.objects.writes, world.claims.writes, len(world.claims.events)) == writes

    def test_claim_of_another_node_is_left_alone(self, world):
        """A claim naming no device of this node is neither answered nor enabling."""
        world.claims.by_name[OTHER_NODE_CLAIM] = UsbClaim(OTHER_NODE_CLAIM)
        world.sync.reconcile()
        assert world.claims.by_name[OTHER_NODE_CLAIM].conditions == ()
        assert not any(enabled(world).values())

    def test_deleted_claim_disables(self, world):
        """Without its claim the device is disabled and no longer advertised."""
        world.claims.by_name[STICK_NAME] = UsbClaim(STICK_NAME)
        world.sync.reconcile()
        world.claims.delete(STICK_NAME)
        world.sync.reconcile()
        assert not enabled(world)[STICK_NAME]
        assert world.sync.enabled == {}

    def test_unplugged_claimed_device_is_orphaned_then_deleted_with_its_claim(self, world):
        """Orphaned (Ready False, Warning Event, Unhealthy) while claimed; gone after."""
        world.claims.by_name[STICK_NAME] = UsbClaim(STICK_NAME)
        world.sync.reconcile()
        world.bus.present.remove(STICK)
        world.sync.reconcile()
        stick = world.objects.objects[STICK_NAME]
        assert stick is not None
        assert (stick.status, stick.enabled) == (ORPHANED, True)
        ready = world.claims.by_name[STICK_NAME].conditions[0]
        assert (ready.status.value, ready.reason) == ("False", "DeviceOrphaned")
        assert world.claims.events[-1][1].warning
        world.claims.delete(STICK_NAME)
        world.sync.reconcile()
        assert STICK_NAME not in world.objects.objects

    def test_claimed_controller_refuses_the_claim(self, world):
        """A PCIDeviceClaim on the xHCI controller: not enabled, Ready False ControllerClaimed."""
        world.controllers.add(XHCI)
        world.claims.by_name[STICK_NAME] = UsbClaim(STICK_NAME)
        world.sync.reconcile()
        assert not enabled(world)[STICK_NAME]
        ready = world.claims.by_name[STICK_NAME].conditions[0]
        assert ready.reason == "ControllerClaimed"
        assert world.sync.enabled == {}


class TestHarvesterFinalizer:
    """A claim Harvester made is held by its controller's finalizer, which nothing else removes."""

    def test_deleted_harvester_claim_is_released_once_the_device_is_disabled(self, world):
        """Deleting: the device is disabled, and only Harvester's finalizer goes."""
        world.claims.by_name[STICK_NAME] = UsbClaim(STICK_NAME)
        world.sync.reconcile()
        world.claims.by_name[STICK_NAME] = UsbClaim(
            STICK_NAME, deleting=True, finalizers=(HARVESTER_USB_FINALIZER, "someone.else/keep")
        )
        world.sync.reconcile()
        assert not enabled(world)[STICK_NAME]
        assert world.claims.by_name[STICK_NAME].finalizers == ("someone.else/keep",)

    def test_claim_of_a_device_already_gone_is_released_by_its_node(self, world):
        """No USBDevice left, but the name is this node's: this agent releases it, not others."""
        gone = "node1-0951-1666-009009"
        for name in (gone, OTHER_NODE_CLAIM):
            world.claims.by_name[name] = UsbClaim(
                name, deleting=True, finalizers=(HARVESTER_USB_FINALIZER,)
            )
        world.sync.reconcile()
        assert world.claims.by_name[gone].finalizers == ()
        assert world.claims.by_name[OTHER_NODE_CLAIM].finalizers == (HARVESTER_USB_FINALIZER,)
