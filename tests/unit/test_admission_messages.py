"""What the admission webhook tells the user when it refuses, and two inputs it must not trust.

`test_admission.py` checks which requests are refused; these check that each refusal names the
values the user has to change and the way out, and that a PCIDevice reporting no valid address,
or a claim holding none, is handled without letting the claim through or failing the review.
"""

from __future__ import annotations

from admission_facts import ADDRESS, DEVICE, GROUP, NAME, NIC_CLASS, NODE, POOL, SPEC, create
from pcicore.admission import (
    ClaimSpecFacts,
    DeviceFacts,
    VmiFacts,
    review_create,
    review_delete,
    review_requested_by,
    review_update,
)


class TestCreateRefusals:
    """`review_create`: the refusal names what to write instead."""

    def test_unparsable_address_refusal_shows_the_form_to_write(self):
        """'nic0': the message gives the dddd:bb:dd.f form, an example and where to copy it."""
        verdict = review_create(create(spec=ClaimSpecFacts("nic0", NODE, "alice")))
        assert verdict.message == (
            'spec.address "nic0" is not a PCI address; write it as dddd:bb:dd.f, '
            "e.g. 0000:00:1f.6, as in the PCIDevice's status.address"
        )

    def test_misnamed_claim_shows_the_address_as_the_user_wrote_it(self):
        """Short address ``03:00.0`` and a wrong name: the message quotes ``03:00.0``."""
        verdict = review_create(
            create(claim_name="nic", spec=ClaimSpecFacts("03:00.0", NODE, "alice"))
        )
        assert not verdict.allowed
        assert 'spec.address "03:00.0"' in verdict.message
        assert f'name the claim "{NAME}"' in verdict.message

    def test_device_reporting_no_valid_address_does_not_match_any_claim(self):
        """A PCIDevice whose status.address is not an address matches no claim's address."""
        broken = DeviceFacts(
            name=NAME, address="garbage", node_name=NODE, iommu_group=GROUP, pci_class=NIC_CLASS
        )
        verdict = review_create(create(device=broken))
        assert not verdict.allowed
        assert 'which is at "garbage"' in verdict.message

    def test_protected_group_member_refusal_says_to_claim_another_group(self):
        """A host-protected mate: the message ends with the way out."""
        mate = DeviceFacts(
            name="titan-000003001",
            address="0000:03:00.1",
            node_name=NODE,
            iommu_group=GROUP,
            pci_class=NIC_CLASS,
            host_protected=True,
        )
        verdict = review_create(create(node_devices=[DEVICE, mate]))
        assert not verdict.allowed
        assert verdict.message.endswith("; claim a device in another IOMMU group")

    def test_protected_device_without_a_reason_says_so_and_to_claim_another(self):
        """Host-protected with no reason given: the message says none was reported."""
        protected = DeviceFacts(
            name=NAME, address=ADDRESS, node_name=NODE, iommu_group=GROUP, host_protected=True
        )
        assert review_create(create(device=protected)).message == (
            f'PCIDevice "{NAME}" ({ADDRESS}) is host-protected by node "{NODE}": no reason '
            "reported; claim another device"
        )

    def test_usb_controller_refusal_lists_the_enabled_usb_devices(self):
        """Two enabled USBDevices behind it: both named, sorted, and the claims to delete."""
        verdict = review_create(create(enabled_usb=("titan-usb-2", "titan-usb-1")))
        assert verdict.message == (
            f'PCIDevice "{NAME}" ({ADDRESS}) is the USB host controller of enabled USBDevice(s) '
            "titan-usb-1, titan-usb-2: passing it through takes every USB device behind it; "
            "delete their USBDeviceClaims first"
        )


class TestOtherRefusals:
    """Updates, deletes and the creator record."""

    def test_changed_address_is_shown_quoted_both_ways(self):
        """Text values are quoted in the immutability message (booleans are not)."""
        verdict = review_update(SPEC, ClaimSpecFacts("0000:04:00.0", NODE, "alice"))
        assert verdict.message == (
            'spec is immutable: spec.address changed from "0000:03:00.0" to "0000:04:00.0"; '
            "delete the claim and create a new one"
        )

    def test_delete_refusal_names_the_vm_and_how_to_free_the_claim(self):
        """A running VMI uses the device: the message names it, its node and the way out."""
        vmi = VmiFacts("ns", "vm", NODE, "Running", (POOL,))
        verdict = review_delete(NAME, SPEC, DEVICE, [vmi])
        assert verdict.message == (
            f'PCIDeviceClaim "{NAME}" is in use: VirtualMachineInstance "ns/vm" on node '
            f'"{NODE}" uses its device (hostDevices deviceName "{POOL}"); stop that VM, or '
            "remove the host device from it, then delete the claim"
        )

    def test_delete_of_a_claim_holding_no_valid_address_is_still_reviewed(self):
        """An old claim whose spec.address does not parse: its pool name still blocks the delete."""
        vmi = VmiFacts("ns", "vm", NODE, "Running", (POOL,))
        verdict = review_delete(NAME, ClaimSpecFacts("nic0", NODE, "alice"), DEVICE, [vmi])
        assert not verdict.allowed

    def test_changed_creator_refusal_names_the_recorded_one(self):
        """The message shows who is recorded, and where the record comes from."""
        assert review_requested_by("alice", "mallory").message == (
            "the record of who created this claim (alice) cannot be changed; it is set from the "
            "authenticated user when the claim is created"
        )

    def test_added_creator_refusal_says_none_was_recorded(self):
        """No record before: the message says 'none'."""
        assert "created this claim (none) cannot" in review_requested_by(None, "x").message
