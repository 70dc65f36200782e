"""USB rules: Harvester's names and texts, orphans, claim decisions, KubeVirt's USB contract."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pcicore.address import PciAddress
from pcicore.admission import (
    ClaimSpecFacts,
    CreateRequest,
    DeviceFacts,
    VmiFacts,
    review_create,
)
from pcicore.conditions import Condition, ConditionStatus
from pcicore.device import IommuGroup, NodeName, PciClass
from pcicore.errors import InvalidUsbDeviceNameError
from pcicore.resources import Health, UnhealthyDeviceError, UnknownDeviceError
from pcicore.usb import (
    HARVESTER_USB_FINALIZER,
    ORPHANED,
    READY,
    UsbClaim,
    UsbClaimReason,
    UsbDevice,
    UsbDeviceName,
    UsbPool,
    UsbStatus,
    allocate_usb,
    assess_usb,
    decide_usb_claim,
    desired_usb_objects,
    parse_device_path,
    plan_usb_writes,
    released_finalizers,
    review_usb_claim_create,
    review_usb_claim_delete,
    usb_class_type,
    usb_description,
    usb_device_name,
    usb_env_var,
    usb_pools,
    usb_resource_name,
    usb_status,
    usb_statuses,
)
from pcicore.usbids import UsbIds

NODE = NodeName("node1")
IDS = UsbIds(
    b"# comment\n"
    b"0951  Kingston Technology\n"
    b"\t1666  DataTraveler 100 G3/G4/SE9 G2/50 Kyson\n"
    b"\t1666  a second entry for the same id\n"
    b"1000  Speed Tech Corp.\n"
    b"C 03  Human Interface Device\n"
    b"\t01  Boot Interface Subclass\n"
    b"C 08  Mass Storage\n"
    b"C 09  Hub\n"
    b"AT 0101  USB Streaming\n"
)
XHCI = PciAddress.parse("0000:00:14.0")
STICK = UsbDevice("2-4", 2, 4, 0x0951, 0x1666, 0, (0x08,), controller=XHCI)
NOW = "2026-11-30T20:00:00Z"
LATER = "2026-11-30T21:00:00Z"


class TestNames:
    """The strings a Harvester cluster already holds."""

    def test_object_name_as_harvester_names_it(self):
        """``<node>-vvvv-pppp-BBBDDD``, the enhancement's own example."""
        device = UsbDevice("2-1", 2, 4, 0x0951, 0x1666)
        assert usb_device_name(NodeName("jacknode"), device) == "jacknode-0951-1666-002004"

    def test_resource_name_is_kubevirt_io_and_the_name(self):
        """One resource per device: ``kubevirt.io/<name>``."""
        assert usb_resource_name("jacknode-0951-1666-002004") == (
            "kubevirt.io/jacknode-0951-1666-002004"
        )

    def test_env_var_is_kubevirts_usb_resource_variable(self):
        """``USB_RESOURCE_`` + upper case, ``/`` and ``.`` as ``_`` (``-`` stays)."""
        resource = usb_resource_name("node1-0951-1666-002004")
        assert usb_env_var(resource) == "USB_RESOURCE_KUBEVIRT_IO_NODE1-0951-1666-002004"

    def test_device_path_has_three_digit_decimals(self):
        """Bus 2, device 104 is ``/dev/bus/usb/002/104``."""
        assert UsbDevice("2-1", 2, 104, 1, 2).device_path == "/dev/bus/usb/002/104"

    @given(
        node=st.from_regex(r"[a-z0-9]([-a-z0-9.]{0,30}[a-z0-9])?", fullmatch=True),
        bus=st.integers(0, 999),
        dev=st.integers(0, 999),
        vendor=st.integers(0, 0xFFFF),
        product=st.integers(0, 0xFFFF),
    )
    def test_every_name_parses_back(self, node, bus, dev, vendor, product):
        """A name made from any node and device parses back to the same parts."""
        name = usb_device_name(NodeName(node), UsbDevice("1-1", bus, dev, vendor, product))
        assert UsbDeviceName.parse(name) == UsbDeviceName(node, vendor, product, bus, dev)

    @pytest.mark.parametrize(
        "text",
        ["node1-0951-1666-00200", "node1-0951-1666", "Node1-0951-1666-002004", "../x", ""],
        ids=["short-number", "no-number", "upper-case-node", "path", "empty"],
    )
    def test_other_names_are_refused_with_the_fix(self, text):
        """A name that is not a USB device's is refused, saying what the form is."""
        with pytest.raises(InvalidUsbDeviceNameError, match="node1-0951-1666-001002"):
            UsbDeviceName.parse(text)


class TestDescription:
    """``description`` as Harvester's ``usbid.Describe`` writes it."""

    @pytest.mark.parametrize(
        ("vendor", "product", "own", "expected"),
        [
            (0x0951, 0x1666, None, "DataTraveler 100 G3/G4/SE9 G2/50 Kyson (Kingston Technology)"),
            (0x1000, 0x1111, None, "Unknown (Speed Tech Corp.)"),
            (0x1002, 0x1222, None, "Unknown 1002:1222"),
            (
                0x0951,
                0x1666,
                "DataTraveler 3.0",
                "DataTraveler 100 G3/G4/SE9 G2/50 Kyson (Kingston Technology) [DataTraveler 3.0]",
            ),
            (0x1002, 0x1222, "  ", "Unknown 1002:1222"),
        ],
        ids=["known", "unknown-product", "unknown-vendor", "own-product-string", "blank-string"],
    )
    def test_description(self, vendor, product, own, expected):
        """Names from usb.ids (first entry wins), then the device's own product string."""
        device = UsbDevice("1-1", 1, 2, vendor, product, product=own)
        assert usb_description(IDS, device) == expected


class TestClassType:
    """``classType``: the device's class, or its first interface's."""

    @pytest.mark.parametrize(
        ("device_class", "interfaces", "expected"),
        [
            (0x09, (0x09,), "Hub"),
            (0x00, (0x08, 0x03), "Mass Storage"),
            (0x00, (), "Class 00"),
            (0xEF, (0x03,), "Class ef"),
        ],
        ids=["device-class", "per-interface", "no-interface", "unnamed"],
    )
    def test_class_type(self, device_class, interfaces, expected):
        """Class 00 defers to the first interface; an unnamed class is shown by number."""
        device = UsbDevice("1-1", 1, 2, 1, 2, device_class, interfaces)
        assert usb_class_type(IDS, device) == expected


def status(name="node1-0951-1666-002004", **changes) -> UsbStatus:
    return attrs.evolve(usb_statuses(NODE, [STICK], IDS)[name], **changes)


class TestObjects:
    """Which USBDevices exist and what they say."""

    def test_status_fields(self):
        """Every field as Harvester fills it."""
        assert usb_status(NODE, STICK, IDS) == UsbStatus(
            vendor_id="0951",
            product_id="1666",
            node_name="node1",
            resource_name="kubevirt.io/node1-0951-1666-002004",
            device_path="/dev/bus/usb/002/004",
            description="DataTraveler 100 G3/G4/SE9 G2/50 Kyson (Kingston Technology)",
            pci_address="0000:00:14.0",
            class_type="Mass Storage",
        )

    def test_new_device_is_created_not_enabled(self):
        """A device with no object is created, disabled."""
        present = usb_statuses(NODE, [STICK], IDS)
        writes = plan_usb_writes(desired_usb_objects(present, {}, enabled=(), held=()), {})
        assert writes.create == (("node1-0951-1666-002004", status()),)
        assert not writes.status
        assert not writes.delete

    def test_claimed_device_is_enabled(self):
        """A live claim of the same name enables it: one status write."""
        present = usb_statuses(NODE, [STICK], IDS)
        name = "node1-0951-1666-002004"
        desired = desired_usb_objects(present, {name: status()}, enabled={name}, held={name})
        assert plan_usb_writes(desired, {name: status()}).status == ((name, status(enabled=True)),)

    def test_nothing_changed_writes_nothing(self):
        """A second run over the same state plans no write."""
        present = usb_statuses(NODE, [STICK], IDS)
        observed = {"node1-0951-1666-002004": status()}
        desired = desired_usb_objects(present, observed, enabled=(), held=())
        assert plan_usb_writes(desired, observed).empty

    def test_unplugged_unclaimed_device_is_deleted(self):
        """Nobody holds it: its object goes."""
        observed = {"node1-0951-1666-002004": status()}
        desired = desired_usb_objects({}, observed, enabled=(), held=())
        assert plan_usb_writes(desired, observed).delete == ("node1-0951-1666-002004",)

    def test_unplugged_claimed_device_is_orphaned_with_the_fix(self):
        """A claim holds it: it stays, ``status: orphaned``, still enabled, a message says why."""
        name = "node1-0951-1666-002004"
        observed = {name: status(enabled=True)}
        desired = desired_usb_objects({}, observed, enabled={name}, held={name})
        (written,) = plan_usb_writes(desired, observed).status
        assert written[1].status == ORPHANED
        assert written[1].enabled
        assert "left node node1" in written[1].message
        assert f"delete USBDeviceClaim {name}" in written[1].message

    def test_orphan_that_comes_back_is_normal_again(self):
        """The same device path present again clears ``orphaned`` and the message."""
        name = "node1-0951-1666-002004"
        observed = {name: status(enabled=True, status=ORPHANED, message="gone")}
        present = usb_statuses(NODE, [STICK], IDS)
        desired = desired_usb_objects(present, observed, enabled={name}, held={name})
        assert desired[name] == status(enabled=True)

    def test_orphan_is_deleted_once_its_claim_goes(self):
        """No claim any more: the orphaned object is deleted."""
        name = "node1-0951-1666-002004"
        observed = {name: status(enabled=True, status=ORPHANED, message="gone")}
        desired = desired_usb_objects({}, observed, enabled=(), held=())
        assert plan_usb_writes(desired, observed).delete == (name,)

    @given(
        devices=st.lists(
            st.builds(
                UsbDevice,
                st.just("1-1"),
                st.integers(1, 4),
                st.integers(1, 20),
                st.integers(0, 0xFFFF),
                st.integers(0, 0xFFFF),
            ),
            max_size=6,
        ),
        claims=st.sets(st.integers(0, 5)),
        gone=st.sets(st.integers(0, 5)),
    )
    def test_applying_the_plan_converges(self, devices, claims, gone):
        """For any devices, claims and unplugs: after the writes, a new plan is empty."""
        before = usb_statuses(NODE, devices, IDS)
        names = sorted(before)
        held = {names[i] for i in claims if i < len(names)}
        observed: dict[str, UsbStatus | None] = dict(before)
        present = {n: s for i, (n, s) in enumerate(sorted(before.items())) if i not in gone}
        desired = desired_usb_objects(present, observed, enabled=held, held=held)
        writes = plan_usb_writes(desired, observed)
        after = {**observed, **dict(writes.create), **dict(writes.status)}
        for name in writes.delete:
            del after[name]
        again = desired_usb_objects(present, after, enabled=held, held=held)
        assert plan_usb_writes(again, after).empty
        assert set(after) == set(present) | (held & set(before))


class TestClaimDecision:
    """What the agent writes on a claim of its node."""

    def claim(self, *conditions: Condition) -> UsbClaim:
        return UsbClaim("node1-0951-1666-002004", generation=2, conditions=conditions)

    def test_enabled_claim(self):
        """Ready True, the node and the controller's address; an Event the first time."""
        decision = decide_usb_claim(self.claim(), status(), controller_claimed=False, now=NOW)
        assert (decision.node_name, decision.pci_address) == ("node1", "0000:00:14.0")
        assert decision.condition.status is ConditionStatus.TRUE
        assert decision.condition.reason == "Enabled"
        assert "kubevirt.io/node1-0951-1666-002004" in decision.condition.message
        assert decision.enables
        assert decision.event is not None
        assert not decision.event.warning

    def test_same_decision_again_keeps_time_and_writes_nothing(self):
        """Level-triggered: the second reconcile neither writes nor records an Event."""
        first = decide_usb_claim(self.claim(), status(), controller_claimed=False, now=NOW)
        claim = attrs.evolve(
            self.claim(first.condition), node_name="node1", pci_address="0000:00:14.0"
        )
        again = decide_usb_claim(claim, status(), controller_claimed=False, now=LATER)
        assert again.condition.last_transition_time == NOW
        assert again.event is None
        assert not again.changes(claim)

    def test_orphaned_device(self):
        """Ready False ``DeviceOrphaned`` with the device's message, and a Warning Event."""
        gone = status(status=ORPHANED, message="the USB device left; delete the claim")
        decision = decide_usb_claim(self.claim(), gone, controller_claimed=False, now=NOW)
        assert decision.condition.reason == UsbClaimReason.DEVICE_ORPHANED.value
        assert decision.condition.message == gone.message
        assert decision.event is not None
        assert decision.event.warning

    def test_controller_claimed_for_pci_passthrough(self):
        """Refused while a PCIDeviceClaim names the controller: not enabled, the fix named."""
        decision = decide_usb_claim(self.claim(), status(), controller_claimed=True, now=NOW)
        assert decision.condition.reason == "ControllerClaimed"
        assert "0000:00:14.0" in decision.condition.message
        assert "PCIDeviceClaim" in decision.condition.message
        assert not decision.enables

    def test_flip_changes_transition_time(self):
        """Enabled then orphaned: a new transition time and a new Event."""
        first = decide_usb_claim(self.claim(), status(), controller_claimed=False, now=NOW)
        gone = status(status=ORPHANED, message="gone")
        second = decide_usb_claim(
            self.claim(first.condition), gone, controller_claimed=False, now=LATER
        )
        assert second.condition.last_transition_time == LATER
        assert second.condition.type == READY
        assert second.event is not None


class TestAllocate:
    """KubeVirt's USB contract for Allocate."""

    def pool(self, *devices) -> UsbPool:
        return UsbPool(usb_resource_name("node1-0951-1666-002004"), devices)

    def test_env_and_device_node(self):
        """``USB_RESOURCE_…`` = ``bus:device`` in decimal; the node handed over ``mrw``."""
        device = assess_usb("node1-0951-1666-002004", status(), node_present=True)
        allocation = allocate_usb(self.pool(device), ["node1-0951-1666-002004"])
        assert allocation.envs == {"USB_RESOURCE_KUBEVIRT_IO_NODE1-0951-1666-002004": "2:4"}
        assert [(n.path, n.permissions) for n in allocation.device_nodes] == [
            ("/dev/bus/usb/002/004", "mrw")
        ]

    def test_unknown_id_is_refused(self):
        """An id the resource does not have is named."""
        device = assess_usb("node1-0951-1666-002004", status(), node_present=True)
        with pytest.raises(UnknownDeviceError, match="other"):
            allocate_usb(self.pool(device), ["other"])

    def test_missing_node_is_unhealthy_and_refused(self):
        """No device node: Unhealthy, and Allocate says why and which claim to check."""
        device = assess_usb("node1-0951-1666-002004", status(), node_present=False)
        assert device.health is Health.UNHEALTHY
        with pytest.raises(UnhealthyDeviceError, match=r"missing.*USBDeviceClaim"):
            allocate_usb(self.pool(device), ["node1-0951-1666-002004"])

    def test_orphaned_device_is_unhealthy(self):
        """An orphaned device is Unhealthy with its message, even if a node has the path."""
        gone = status(status=ORPHANED, message="left the node")
        device = assess_usb("node1-0951-1666-002004", gone, node_present=True)
        assert (device.health, device.reason) == (Health.UNHEALTHY, "left the node")


class TestAdmission:
    """The webhook's rules for USBDeviceClaims."""

    def test_present_device_may_be_claimed(self):
        """A USBDevice that can be enabled: allowed."""
        verdict = review_usb_claim_create(
            "node1-0951-1666-002004", status(), controller_claimed=False
        )
        assert verdict.allowed

    def test_delete_refused_while_a_running_vmi_on_its_node_uses_it(self):
        """In use by a running VM on the device's node: refused, naming the VM and the fix."""
        vmi = VmiFacts(
            "default", "vm1", "node1", "Running", ("kubevirt.io/node1-0951-1666-002004",)
        )
        verdict = review_usb_claim_delete("node1-0951-1666-002004", status(), [vmi])
        assert not verdict.allowed
        assert '"default/vm1"' in verdict.message
        assert "stop that VM" in verdict.message

    @pytest.mark.parametrize(
        "vmi",
        [
            VmiFacts(
                "default", "vm1", "node1", "Succeeded", ("kubevirt.io/node1-0951-1666-002004",)
            ),
            VmiFacts("default", "vm1", "node2", "Running", ("kubevirt.io/node1-0951-1666-002004",)),
            VmiFacts("default", "vm1", "node1", "Running", ("kubevirt.io/other",)),
        ],
        ids=["stopped", "other-node", "other-device"],
    )
    def test_delete_allowed_when_no_running_vm_uses_it(self, vmi):
        """A finished VM, another node's VM, or another device: the claim may go."""
        assert review_usb_claim_delete("node1-0951-1666-002004", status(), [vmi]).allowed


class TestPciClaimOfAUsbController:
    """The converse rule: a USB host controller with enabled USB devices is not claimable."""

    def request(self, enabled_usb=()):
        device = DeviceFacts(
            name="node1-000000140",
            address="0000:00:14.0",
            node_name="node1",
            resource_name="intel.com/XHCI",
            iommu_group=IommuGroup(3),
            pci_class=PciClass(0x0C, 0x03),
        )
        spec = ClaimSpecFacts(address="0000:00:14.0", node_name="node1", user_name="u")
        return CreateRequest(
            "node1-000000140", spec, "u", device, node_devices=[device], enabled_usb=enabled_usb
        )

    def test_refused_while_a_usb_device_behind_it_is_enabled(self):
        """The denial names the enabled USBDevices and what to do."""
        verdict = review_create(self.request(("node1-0951-1666-001002",)))
        assert not verdict.allowed
        assert "node1-0951-1666-001002" in verdict.message
        assert "delete their USBDeviceClaims first" in verdict.message

    def test_allowed_with_none_enabled(self):
        """No enabled USB device behind it: the ordinary rules decide (here: allowed)."""
        assert review_create(self.request()).allowed


class TestDevicePath:
    """A devicePath read from the cluster is parsed before any use."""

    @pytest.mark.parametrize(
        "text",
        ["/dev/bus/usb/001/002/../../../../etc/passwd", "/dev/bus/usb/1/2", "/etc/passwd", ""],
        ids=["traversal", "short-numbers", "elsewhere", "empty"],
    )
    def test_other_paths_are_not_device_paths(self, text):
        """Anything but /dev/bus/usb/BBB/DDD is refused, and such a device is Unhealthy."""
        assert parse_device_path(text) is None
        device = assess_usb("node1-0951-1666-002004", status(device_path=text), node_present=True)
        assert device.health is Health.UNHEALTHY
        assert "is not /dev/bus/usb/BBB/DDD" in device.reason

    @given(bus=st.integers(0, 999), dev=st.integers(0, 999))
    def test_every_device_path_parses_back(self, bus, dev):
        """The path made from any bus and device number gives them back."""
        assert parse_device_path(UsbDevice("1-1", bus, dev, 1, 2).device_path) == (bus, dev)


class TestEdgesAndWords:
    """Limits, fields no other test reads, and each refusal word for word."""

    NAME = "node1-0951-1666-002004"

    def test_name_of_exactly_253_characters_parses_and_254_does_not(self):
        """Kubernetes' object-name limit is the USBDevice name's."""
        suffix = "-0951-1666-002004"
        assert UsbDeviceName.parse("n" * (253 - len(suffix)) + suffix)
        with pytest.raises(InvalidUsbDeviceNameError):
            UsbDeviceName.parse("n" * (254 - len(suffix)) + suffix)

    def test_device_not_behind_a_pci_controller_has_an_empty_pci_address(self):
        """No controller known: pciAddress is empty, as Harvester leaves it."""
        loose = attrs.evolve(STICK, controller=None)
        assert usb_status(NODE, loose, IDS).pci_address == ""

    def test_unplugged_claimed_device_stays_enabled_while_orphaned(self):
        """Orphaned, its claim still there: the object keeps enabled true (the VM holds it)."""
        desired = desired_usb_objects(
            {}, {self.NAME: status(enabled=True)}, enabled={self.NAME}, held={self.NAME}
        )
        assert desired[self.NAME].orphaned
        assert desired[self.NAME].enabled

    def test_orphan_whose_claim_is_being_deleted_is_disabled(self):
        """Gone and held only by a deleting claim: enabled false, so its finalizer can go."""
        desired = desired_usb_objects(
            {}, {self.NAME: status(enabled=True)}, enabled=(), held={self.NAME}
        )
        assert desired[self.NAME].orphaned
        assert not desired[self.NAME].enabled

    def test_live_claim_keeps_harvesters_finalizer(self):
        """Only a deleted claim loses Harvester's finalizer; a live one is left alone."""
        claim = UsbClaim(self.NAME, finalizers=(HARVESTER_USB_FINALIZER, "other"))
        assert released_finalizers(claim) is None
        deleted = attrs.evolve(claim, deleting=True)
        assert released_finalizers(deleted) == ("other",)

    def test_controller_claimed_decision_in_full(self):
        """The condition's words, the claim's generation, and an Event with the same words."""
        claim = UsbClaim(self.NAME, generation=2)
        decision = decide_usb_claim(claim, status(), controller_claimed=True, now=NOW)
        assert decision.condition.message == (
            f"the USB host controller 0000:00:14.0 of {self.NAME} is claimed for PCI "
            "passthrough (a PCIDeviceClaim names it), so its USB devices leave the node; delete "
            "that PCIDeviceClaim or this USBDeviceClaim"
        )
        assert decision.condition.observed_generation == 2
        assert decision.event is not None
        assert decision.event.message == decision.condition.message

    def test_create_refusals_in_full(self):
        """A bad name, no USBDevice, an orphan, a claimed controller: each says what to do."""
        bad = review_usb_claim_create("stick", status(), controller_claimed=False)
        with pytest.raises(InvalidUsbDeviceNameError) as caught:
            UsbDeviceName.parse("stick")
        assert bad.message == str(caught.value)
        assert review_usb_claim_create(self.NAME, None, controller_claimed=False).message == (
            f'no USBDevice "{self.NAME}": a USBDeviceClaim is named after the USBDevice it '
            "enables; pick one from `kubectl get usbdevices`"
        )
        gone = status(status=ORPHANED, message="it left")
        assert review_usb_claim_create(self.NAME, gone, controller_claimed=False).message == (
            f'USBDevice "{self.NAME}" is orphaned (it left); claim the device under its current '
            "name from `kubectl get usbdevices`"
        )
        assert review_usb_claim_create(self.NAME, status(), controller_claimed=True).message == (
            f'the USB host controller 0000:00:14.0 of USBDevice "{self.NAME}" is claimed for PCI '
            "passthrough on node node1; delete that PCIDeviceClaim first"
        )

    def test_delete_without_a_usb_device_is_allowed_and_a_refusal_ends_with_the_fix(self):
        """No USBDevice: nothing can use the claim. In use: the message ends with the way out."""
        assert review_usb_claim_delete(self.NAME, None, []).allowed
        vmi = VmiFacts("default", "vm1", "node1", "Running", (f"kubevirt.io/{self.NAME}",))
        message = review_usb_claim_delete(self.NAME, status(), [vmi]).message
        assert message.endswith("host device from it, then delete the claim")

    @pytest.mark.parametrize(
        ("changes", "present"),
        [
            ({"status": ORPHANED, "message": "gone"}, True),
            ({"device_path": "/tmp/x"}, True),
            ({}, False),
        ],
        ids=["orphaned", "bad-path", "missing-node"],
    )
    def test_unhealthy_device_keeps_its_id_and_path(self, changes, present):
        """An unhealthy device is still listed under its name and path, so the kubelet sees it."""
        device = assess_usb(self.NAME, status(**changes), node_present=present)
        assert (device.id, device.device_path) == (self.NAME, status(**changes).device_path)

    def test_pool_devices_are_ordered_by_id_and_allocated_comma_separated(self):
        """Two devices of one resource: listed by id; the env var joins bus:device with ','."""
        other = status(device_path="/dev/bus/usb/002/005")
        second = assess_usb("node1-0951-1666-002005", other, node_present=True)
        first = assess_usb(self.NAME, status(), node_present=True)
        resource = "kubevirt.io/sticks"
        (pool,) = usb_pools(
            [second, first], {self.NAME: resource, "node1-0951-1666-002005": resource}
        ).values()
        assert [d.id for d in pool.devices] == [self.NAME, "node1-0951-1666-002005"]
        allocation = allocate_usb(pool, [self.NAME, "node1-0951-1666-002005"])
        assert list(allocation.envs.values()) == ["2:4,2:5"]

    def test_refusing_an_unhealthy_device_names_the_usb_device_claim(self):
        """Allocate of a missing node says which kind of claim to check."""
        device = assess_usb(self.NAME, status(), node_present=False)
        pool = UsbPool(usb_resource_name(self.NAME), (device,))
        with pytest.raises(UnhealthyDeviceError) as caught:
            allocate_usb(pool, [self.NAME])
        assert " USBDeviceClaim " in f" {caught.value} ".replace('"', " ")
