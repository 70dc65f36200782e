"""KubeVirt's permittedHostDevices.usb: which entries USB claims need, and the least change."""

from __future__ import annotations

from pcicore.naming import ResourceName
from pcicore.permitted import (
    PermittedDocument,
    PermittedEntry,
    PermittedKey,
    permitted_change,
    plan_document,
    plan_usb_document,
    usb_permitted_keys,
)
from pcicore.usb import UsbStatus
from pcioperator.controllers.kubevirt import change_to_wire, document_from_wire
from pcioperator.wire.kubevirt import MANAGED_USB_ANNOTATION

NAME = "node1-0951-1666-001002"
RESOURCE = ResourceName(f"kubevirt.io/{NAME}")
KEY = PermittedKey("0951:1666", RESOURCE)
STATUS = UsbStatus("0951", "1666", "node1", RESOURCE, "/dev/bus/usb/001/002", "stick")


class TestWantedKeys:
    """One entry per claimed USBDevice."""

    def test_claimed_device_needs_its_entry(self):
        """Selector vendor:product, the device's own resourceName."""
        assert usb_permitted_keys([NAME], {NAME: STATUS}) == {KEY}

    def test_claim_without_its_device_needs_none(self):
        """A claim naming no known USBDevice (or one without status yet) adds nothing."""
        assert usb_permitted_keys([NAME], {}) == frozenset()


class TestPlan:
    """The USB list obeys the same ownership rules as the PCI list."""

    def test_missing_entry_is_added_and_recorded(self):
        """A wanted key is appended and becomes ours."""
        document = PermittedDocument("1", (), frozenset())
        plan = plan_usb_document(document, frozenset({KEY}))
        assert (plan.add, plan.managed) == ((KEY,), frozenset({KEY}))

    def test_users_entry_for_the_resource_is_left_and_not_duplicated(self):
        """An entry we did not write (Harvester's) serves: nothing added, nothing removed."""
        users = PermittedEntry("0951:1666", RESOURCE, external=True)
        document = PermittedDocument("1", (), frozenset(), usb_entries=(users,))
        plan = plan_usb_document(document, frozenset({KEY}))
        assert not plan.changed
        assert plan.blocked == {KEY}

    def test_our_entry_goes_with_its_claim(self):
        """Our entry, no claim any more: removed, record emptied."""
        ours = PermittedEntry("0951:1666", RESOURCE, external=True)
        document = PermittedDocument("1", (), frozenset(), (ours,), frozenset({KEY}))
        plan = plan_usb_document(document, frozenset())
        change = permitted_change(document, plan_document(document, []), plan)
        assert change.usb is not None
        assert (change.usb.keep, change.usb.add, change.usb.managed) == ((), (), frozenset())

    def test_unchanged_usb_list_is_not_written(self):
        """No USB change: the patch leaves ``usb`` and its record alone."""
        document = PermittedDocument("1", (), frozenset())
        change = permitted_change(
            document, plan_document(document, []), plan_usb_document(document, frozenset())
        )
        assert change.usb is None


class TestWire:
    """The CR as read and as patched."""

    def test_round_trip_of_harvesters_entry_form(self):
        """Read Harvester's form; write ours in the same form, with our record."""
        cr = {
            "metadata": {"resourceVersion": "7"},
            "spec": {
                "configuration": {
                    "permittedHostDevices": {
                        "usb": [
                            {"resourceName": "x/y", "selectors": [{"vendor": "1", "product": "2"}]},
                            {"resourceName": "x/z", "selectors": []},
                        ]
                    }
                }
            },
        }
        document = document_from_wire(cr)
        assert [e.selector for e in document.usb_entries] == ["1:2", ""]
        plan = plan_usb_document(document, frozenset({KEY}))
        patch = change_to_wire(cr, permitted_change(document, plan_document(document, []), plan))
        usb = patch["spec"]["configuration"]["permittedHostDevices"]["usb"]
        assert usb[-1] == {
            "selectors": [{"vendor": "0951", "product": "1666"}],
            "resourceName": RESOURCE,
            "externalResourceProvider": True,
        }
        assert usb[:2] == cr["spec"]["configuration"]["permittedHostDevices"]["usb"]
        assert MANAGED_USB_ANNOTATION in patch["metadata"]["annotations"]
