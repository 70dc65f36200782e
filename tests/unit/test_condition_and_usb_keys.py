"""`set_condition` keeps the other conditions, and USB permitted selectors are lower-case hex."""

from __future__ import annotations

from pcicore.conditions import Condition, ConditionStatus, set_condition
from pcicore.naming import ResourceName
from pcicore.permitted import PermittedKey, usb_permitted_keys
from pcicore.usb import UsbStatus


def condition(type_: str, status: ConditionStatus, when: str = "t0") -> Condition:
    return Condition(type_, status, "Why", "what", when)


def test_setting_one_condition_keeps_the_others_in_place():
    """Ready, Configured, Bound: replacing Configured keeps Ready and Bound, in order."""
    old = (
        condition("Ready", ConditionStatus.TRUE),
        condition("Configured", ConditionStatus.TRUE),
        condition("Bound", ConditionStatus.FALSE),
    )
    new = condition("Configured", ConditionStatus.FALSE, "t1")
    assert set_condition(old, new) == (old[0], new, old[2])


def test_a_new_condition_type_is_added_after_the_others():
    """A type not there yet is appended; the others are unchanged."""
    old = (condition("Ready", ConditionStatus.TRUE), condition("Bound", ConditionStatus.TRUE))
    new = condition("Configured", ConditionStatus.TRUE, "t1")
    assert set_condition(old, new) == (*old, new)


def test_usb_selector_is_lower_case_hex():
    """KubeVirt matches ``vvvv:pppp`` in lower case: a Logitech receiver is ``046d:c52b``."""
    status = UsbStatus("046d", "c52b", "node1", "kubevirt.io/receiver", "/dev/bus/usb/1/2", "rx")
    assert usb_permitted_keys({"rx"}, {"rx": status}) == frozenset(
        {PermittedKey("046d:c52b", ResourceName("kubevirt.io/receiver"))}
    )
