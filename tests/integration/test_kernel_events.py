"""Kernel PCI events arrive over real netlink from this machine's kernel."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from pcihost.uevents import KernelPciEvents, parse_uevent
from polling import wait_for


class TestParse:
    """parse_uevent."""

    def test_kernel_message_fields(self):
        """A kernel message gives its KEY=value fields."""
        message = (
            b"bind@/devices/pci0000:00/0000:00:03.0\0ACTION=bind\0SUBSYSTEM=pci\0"
            b"PCI_SLOT_NAME=0000:00:03.0\0"
        )
        assert parse_uevent(message) == {
            "ACTION": "bind",
            "SUBSYSTEM": "pci",
            "PCI_SLOT_NAME": "0000:00:03.0",
        }

    def test_udev_message_is_ignored(self):
        """A message without the action@devpath header is not the kernel's."""
        assert parse_uevent(b"libudev\0\xfe\xed\xca\xfe") is None


def _first_device() -> Path | None:
    devices = sorted(Path("/sys/bus/pci/devices").glob("*"))
    return devices[0] if devices else None


def test_synthetic_uevent_from_the_real_kernel_is_reported():
    """Writing 'change' to a device's uevent makes the kernel send an event we receive."""
    device = _first_device()
    if device is None or not os.access(device / "uevent", os.W_OK):
        pytest.skip("needs root and a PCI device with a writable uevent (real /sys)")
    seen: list[tuple[str, str]] = []
    events = KernelPciEvents(lambda action, slot: seen.append((action, slot)))
    if not events.open():
        pytest.skip("netlink uevents are not available here")
    stop = threading.Event()
    thread = threading.Thread(target=events.run, args=(stop,), daemon=True)
    thread.start()
    try:
        (device / "uevent").write_text("change")
        wait_for(lambda: ("change", device.name) in seen, timeout=5)
    finally:
        stop.set()
        thread.join(5)
