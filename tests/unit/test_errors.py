"""The words of the domain's errors, in full, and the bad value each carries (`pcicore.errors`).

An error is read by someone who has to act on it: it names the bad value (shortened when it
may be hostile input of any length) and says what to do. Each is raised here the way the code
raises it, so that the value it names is the one the caller gave.
"""

from __future__ import annotations

import pytest

from dra_fakes import NODE, ref, result
from fakeclaims import FakeHost, a, device
from pcicore.address import PciAddress
from pcicore.device import parse_driver_name, parse_node_name
from pcicore.dra import address_of
from pcicore.dra_prepare import ClaimAllocation, DraCheckpoint, allocated_devices, check_free
from pcicore.dra_slices import MAX_DEVICES_PER_SLICE, chunk
from pcicore.engine import ClaimRequest
from pcicore.errors import (
    ClaimNotAllocatedError,
    ClaimReplacedError,
    DeviceHeldError,
    DeviceNotFoundError,
    InvalidDenyEntryError,
    InvalidDraDeviceNameError,
    InvalidDriverNameError,
    InvalidNodeNameError,
    InvalidPciAddressError,
    InvalidSliceSizeError,
    InvalidUsbDeviceNameError,
)
from pcicore.protection import DenyList
from pcicore.usb import UsbDeviceName

NIC = "0000:03:00.0"

# The three parsers of names that come from users or the API, with the error each raises.
NAME_PARSERS = [
    pytest.param(PciAddress.parse, InvalidPciAddressError, id="pci-address"),
    pytest.param(address_of, InvalidDraDeviceNameError, id="dra-device-name"),
    pytest.param(UsbDeviceName.parse, InvalidUsbDeviceNameError, id="usb-device-name"),
]


class TestLongTextsAreShortened:
    """A bad name is quoted whole up to 64 characters; a longer one is cut, never dropped."""

    @pytest.mark.parametrize(("parse", "error"), NAME_PARSERS)
    def test_a_text_of_64_characters_is_quoted_whole(self, parse, error):
        """The limit itself still shows the whole text, so nothing a user typed is hidden."""
        text = "x" * 64
        with pytest.raises(error) as caught:
            parse(text)
        assert f"{text!r}:" in str(caught.value)
        assert caught.value.text == text

    @pytest.mark.parametrize(("parse", "error"), NAME_PARSERS)
    def test_a_longer_text_shows_its_first_61_characters_and_an_ellipsis(self, parse, error):
        """65 characters and more: 61 of them and ``...``, 64 in all; the error keeps all 65."""
        text = "0123456789" * 6 + "abcde"
        with pytest.raises(error) as caught:
            parse(text)
        shown = "'012345678901234567890123456789012345678901234567890123456789a...':"
        assert shown in str(caught.value)
        assert "bcde" not in str(caught.value)
        assert caught.value.text == text


class TestNamesAndValues:
    """A value that is not what it should be: the form expected and where to find a good one."""

    def test_a_bad_pci_address_says_both_forms_and_where_to_copy_one(self):
        """The two accepted forms, an example, and the two commands that list addresses."""
        with pytest.raises(InvalidPciAddressError) as caught:
            PciAddress.parse("0000:03:00.8")
        assert str(caught.value) == (
            "invalid PCI address '0000:03:00.8': expected dddd:bb:dd.f (for example "
            "0000:00:1f.6) or bb:dd.f; copy the address from `pcidevices scan` or `lspci -D`"
        )

    def test_a_foreign_dra_device_name_says_whose_it_may_be(self):
        """The form this driver publishes, and the two usual reasons for another name."""
        with pytest.raises(InvalidDraDeviceNameError) as caught:
            address_of("gpu-0")
        assert str(caught.value) == (
            "invalid DRA device name 'gpu-0': expected pci-dddd-bb-dd-f as this driver's "
            "ResourceSlices publish (for example pci-0000-03-00-0); the allocation names a "
            "device of another driver or an old slice"
        )

    def test_a_bad_usb_device_name_says_to_name_the_claim_after_its_device(self):
        """The form, an example, and the command that lists the USBDevices to name it after."""
        with pytest.raises(InvalidUsbDeviceNameError) as caught:
            UsbDeviceName.parse("../x")
        assert str(caught.value) == (
            "invalid USB device name '../x': expected <node>-<vendor>-<product>-<bus><device> "
            "(for example node1-0951-1666-001002); name the USBDeviceClaim after its USBDevice "
            "(`kubectl get usbdevices`)"
        )

    def test_a_bad_node_name_says_where_the_name_is_passed(self):
        """The alphabet Kubernetes allows, and the option and variable that set the name."""
        with pytest.raises(InvalidNodeNameError) as caught:
            parse_node_name("Node_1")
        assert str(caught.value) == (
            "invalid node name 'Node_1': a node name is lower-case letters, digits, '-' and "
            "'.' (RFC 1123); pass the node's name with --node or NODE_NAME"
        )
        assert caught.value.text == "Node_1"

    def test_a_bad_driver_name_keeps_the_value_as_given(self):
        """The caller's hint ends the message; the error carries the value, even a non-text."""
        with pytest.raises(InvalidDriverNameError) as caught:
            parse_driver_name(7, "fix the claim")
        assert str(caught.value) == (
            "invalid kernel driver name 7: expected letters, digits, '_', '.' or '-' (at most "
            "64, as under /sys/bus/pci/drivers); fix the claim"
        )
        assert caught.value.text == 7

    def test_a_bad_deny_entry_names_both_accepted_forms(self):
        """An entry that is neither an address nor a hex class: both forms, and to fix it."""
        with pytest.raises(InvalidDenyEntryError) as caught:
            DenyList.parse(["eth0"])
        assert str(caught.value) == (
            "--deny 'eth0' is neither a PCI address (0000:03:00.0) nor a class prefix in hex "
            "(03, 0200, 010802); fix or remove that --deny entry"
        )
        assert caught.value.text == "eth0"

    def test_a_slice_size_out_of_range_says_the_range(self):
        """Zero devices per slice: the range the API accepts and the default."""
        with pytest.raises(InvalidSliceSizeError) as caught:
            chunk([], 0)
        assert str(caught.value) == (
            "invalid number of devices per ResourceSlice 0: resource.k8s.io/v1 accepts "
            f"1 to {MAX_DEVICES_PER_SLICE}; pass a value in that range (or leave the default, "
            f"{MAX_DEVICES_PER_SLICE})"
        )
        assert caught.value.value == 0

    def test_a_device_gone_from_the_bus_is_named_with_how_to_list_devices(self):
        """A claim on a device that was unplugged names its address, for the caller too."""
        host = FakeHost(device(NIC, "igb", 5))
        host.unplug(NIC)
        with pytest.raises(DeviceNotFoundError) as caught:
            host.engine().bind(ClaimRequest(a(NIC)))
        assert str(caught.value) == (
            "no PCI device at 0000:03:00.0 on this host; list the devices with `pcidevices scan`"
        )
        assert caught.value.address == a(NIC)


class TestResourceClaimErrors:
    """The DRA plugin's errors, which the kubelet shows in the pod's events."""

    def test_an_unallocated_claim_says_the_kubelet_retries(self):
        """Nothing to do but wait for the scheduler: the message says so."""
        with pytest.raises(ClaimNotAllocatedError) as caught:
            allocated_devices(ref(), ClaimAllocation(ref(), None), NODE)
        assert str(caught.value) == (
            "ResourceClaim vms/vm-nic has no status.allocation: the scheduler has not allocated "
            "it yet; the kubelet retries once the pod is scheduled with it"
        )

    def test_a_deleted_claim_says_to_delete_the_pod(self):
        """The claim asked for is gone: its uid, that it no longer exists, and the way out."""
        with pytest.raises(ClaimReplacedError) as caught:
            allocated_devices(ref(), None, NODE)
        assert str(caught.value) == (
            "ResourceClaim vms/vm-nic with uid uid-1 no longer exists: it was deleted (and "
            "recreated); delete the pod so that it is scheduled again with the current claim"
        )

    def test_a_recreated_claim_names_both_uids(self):
        """The name now holds another object: the uid asked for and the uid found."""
        claim = ClaimAllocation(ref(uid="uid-2"), (result(NIC),))
        with pytest.raises(ClaimReplacedError) as caught:
            allocated_devices(ref(), claim, NODE)
        assert str(caught.value) == (
            "ResourceClaim vms/vm-nic with uid uid-1 now has uid uid-2: it was deleted (and "
            "recreated); delete the pod so that it is scheduled again with the current claim"
        )

    def test_a_device_held_by_a_pci_device_claim_says_where_to_release_it(self):
        """The device, the claim, its holder, and that the kubelet's retry then succeeds."""
        (device_of_claim,) = allocated_devices(ref(), ClaimAllocation(ref(), (result(NIC),)), NODE)
        holder = "a PCIDeviceClaim (device plugin) on 0000:03:00.0"
        with pytest.raises(DeviceHeldError) as caught:
            check_free(ref(), [device_of_claim], DraCheckpoint(), {a(NIC): holder})
        assert str(caught.value) == (
            "device pci-0000-03-00-0 (0000:03:00.0) of ResourceClaim vms/vm-nic is held by a "
            "PCIDeviceClaim (device plugin) on 0000:03:00.0; release it there (or delete that "
            "PCIDeviceClaim) and the kubelet's retry prepares it"
        )
