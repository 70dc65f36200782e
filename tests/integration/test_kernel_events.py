"""Kernel PCI events arrive over real netlink from this machine's kernel."""

from __future__ import annotations

import logging
import os
import select
import socket
import threading
from pathlib import Path

import pytest

from pcihost.uevents import NETLINK_KOBJECT_UEVENT, KernelPciEvents, parse_uevent
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

    def test_value_containing_an_equals_sign_is_kept_whole(self):
        """Only the first ``=`` separates key and value (``MODALIAS`` and paths may hold more)."""
        message = b"change@/devices/x\0DEVLINKS=/dev/a=b\0"
        assert parse_uevent(message) == {"DEVLINKS": "/dev/a=b"}

    def test_bytes_that_are_not_text_never_raise(self):
        """A key that is not ASCII or a value that is not UTF-8 is decoded with replacements.

        The reader thread must not die on one odd message from some driver.
        """
        message = b"change@/devices/x\0K\xffEY=v\xfe\xffalue\0"
        assert parse_uevent(message) == {"K\ufffdEY": "v\ufffd\ufffdalue"}


def _why_no_synthetic_event(device: Path | None) -> str | None:
    """Why this machine cannot make the kernel send a uevent, or ``None`` when it can."""
    if device is None:
        return "this machine's /sys/bus/pci/devices lists no PCI device"
    if os.access(device / "uevent", os.W_OK):
        return None
    if os.statvfs(device).f_flag & os.ST_RDONLY:
        return "/sys is mounted read-only here (a container without a writable sysfs)"
    return f"{device / 'uevent'} is not writable by uid {os.geteuid()} (run as root)"


def _why_no_netlink() -> str | None:
    """Why no kernel uevent socket can be bound here, or ``None`` when one can."""
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_KOBJECT_UEVENT)
    except OSError as err:
        return str(err)
    with sock:
        try:
            sock.bind((0, 1))
        except OSError as err:
            return str(err)
    return None


def _first_device() -> Path | None:
    devices = sorted(Path("/sys/bus/pci/devices").glob("*"))
    return devices[0] if devices else None


def _kernel_message(action: str, subsystem: str, slot: str) -> bytes:
    return (
        f"{action}@/devices/pci0000:00/{slot}\0ACTION={action}\0SUBSYSTEM={subsystem}\0"
        f"PCI_SLOT_NAME={slot}\0"
    ).encode()


class TestDelivery:
    """`KernelPciEvents.run` reports PCI events and nothing else, on any machine.

    A socket pair stands in for the netlink socket.
    """

    def test_pci_events_are_reported_and_others_are_dropped(self):
        """The five relevant actions on a PCI device reach the callback, in order.

        A USB event, a network one, an irrelevant action (``online``) and a udev message do
        not, and none of them stops the events after it.
        """
        seen: list[tuple[str, str]] = []
        events = KernelPciEvents(lambda action, slot: seen.append((action, slot)))
        ours, kernel = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        events._socket = ours
        stop = threading.Event()
        thread = threading.Thread(target=events.run, args=(stop,), daemon=True)
        thread.start()
        try:
            kernel.send(_kernel_message("add", "usb", "1-1"))
            kernel.send(_kernel_message("add", "net", "eth0"))
            kernel.send(_kernel_message("online", "pci", "0000:00:02.0"))
            kernel.send(b"libudev\0\xfe\xed\xca\xfe")
            for action in ("bind", "unbind", "add", "remove", "change"):
                kernel.send(_kernel_message(action, "pci", "0000:00:03.0"))
            wait_for(lambda: len(seen) >= 5, timeout=5)
        finally:
            stop.set()
            thread.join(5)
            kernel.close()
        assert seen == [
            (action, "0000:00:03.0") for action in ("bind", "unbind", "add", "remove", "change")
        ]
        assert events._socket is None  # closed when the loop ends

    def test_usb_device_events_reach_their_own_callback(self):
        """A USB device plugged or unplugged is reported to ``on_usb``; its interface is not."""
        usb: list[str] = []
        pci: list[tuple[str, str]] = []
        events = KernelPciEvents(lambda a, s: pci.append((a, s)), on_usb=usb.append)
        ours, kernel = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        events._socket = ours
        stop = threading.Event()
        thread = threading.Thread(target=events.run, args=(stop,), daemon=True)
        thread.start()
        try:
            kernel.send(
                b"add@/devices/pci0000:00/0000:00:04.0/usb1/1-1/1-1:1.0\0ACTION=add\0"
                b"SUBSYSTEM=usb\0DEVTYPE=usb_interface\0"
            )
            for action in ("add", "remove"):
                kernel.send(
                    f"{action}@/devices/pci0000:00/0000:00:04.0/usb1/1-1\0ACTION={action}\0"
                    "SUBSYSTEM=usb\0DEVTYPE=usb_device\0".encode()
                )
            wait_for(lambda: len(usb) >= 2, timeout=5)
        finally:
            stop.set()
            thread.join(5)
            kernel.close()
        assert usb == ["add", "remove"]
        assert pci == []

    def test_events_after_an_idle_wait_are_still_reported(self, monkeypatch):
        """A quiet spell (the wait times out with nothing to read) does not end the loop."""
        seen: list[tuple[str, str]] = []
        events = KernelPciEvents(lambda action, slot: seen.append((action, slot)))
        ours, kernel = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        events._socket = ours
        waits: list[int] = []
        real_select = select.select

        def quiet_once(read, write, error, timeout):
            waits.append(1)
            if len(waits) == 1:
                return ([], [], [])  # the first wait ends on its timeout, with nothing read
            return real_select(read, write, error, timeout)

        monkeypatch.setattr("pcihost.uevents.select.select", quiet_once)
        stop = threading.Event()
        thread = threading.Thread(target=events.run, args=(stop,), daemon=True)
        thread.start()
        try:
            kernel.send(_kernel_message("bind", "pci", "0000:00:03.0"))
            wait_for(lambda: seen, timeout=5)
        finally:
            stop.set()
            thread.join(5)
            kernel.close()
        assert seen == [("bind", "0000:00:03.0")]

    def test_pci_event_without_a_slot_name_is_reported_with_an_empty_slot(self):
        """No ``PCI_SLOT_NAME``: still reported (the agent rescans), with the slot empty."""
        seen: list[tuple[str, str]] = []
        events = KernelPciEvents(lambda action, slot: seen.append((action, slot)))
        ours, kernel = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        events._socket = ours
        stop = threading.Event()
        thread = threading.Thread(target=events.run, args=(stop,), daemon=True)
        thread.start()
        try:
            kernel.send(b"remove@/devices/pci0000:00/0000:00:03.0\0ACTION=remove\0SUBSYSTEM=pci\0")
            wait_for(lambda: seen, timeout=5)
        finally:
            stop.set()
            thread.join(5)
            kernel.close()
        assert seen == [("remove", "")]

    def test_run_before_open_returns_at_once(self):
        """Without a subscription there is nothing to read: `run` returns, it does not fail."""
        events = KernelPciEvents(lambda _action, _slot: None)
        events.run(threading.Event())
        assert events._socket is None


class TestOpen:
    """`KernelPciEvents.open` subscribes, or says why not and lets the agent rely on rescans."""

    def test_unavailable_netlink_is_logged_and_reported_as_false(self, monkeypatch, caplog):
        """No netlink (another network namespace, no permission): False and one info line."""

        def refuse(*_args):
            raise PermissionError(1, "Operation not permitted")

        monkeypatch.setattr("pcihost.uevents.socket.socket", refuse)
        caplog.set_level(logging.INFO, logger="pcihost.uevents")
        events = KernelPciEvents(lambda _action, _slot: None)
        assert events.open() is False
        expected = (
            "kernel device events unavailable ([Errno 1] Operation not permitted); "
            "relying on rescans"
        )
        assert [r.getMessage() for r in caplog.records] == [expected]

    def test_open_subscribes_where_this_machine_allows_a_uevent_socket(self):
        """Where a netlink uevent socket can be bound here, `open` succeeds.

        The check is made independently of the adapter, so an adapter that asks for the
        wrong socket fails here instead of skipping the real-kernel test below.
        """
        reason = _why_no_netlink()
        if reason is not None:
            pytest.skip(f"no netlink uevent socket on this machine: {reason}")
        events = KernelPciEvents(lambda _action, _slot: None)
        assert events.open() is True
        assert events._socket is not None
        events._socket.close()


def test_synthetic_uevent_from_the_real_kernel_is_reported():
    """Writing 'change' to a device's uevent makes the kernel send an event we receive.

    Skipped, with the reason, where the kernel cannot be asked for an event (no PCI device,
    read-only /sys, not root); `TestDelivery` covers the reporting everywhere.
    """
    device = _first_device()
    reason = _why_no_synthetic_event(device)
    if reason is not None:
        pytest.skip(f"cannot make the kernel send a uevent: {reason}")
    assert device is not None
    seen: list[tuple[str, str]] = []
    events = KernelPciEvents(lambda action, slot: seen.append((action, slot)))
    netlink = _why_no_netlink()
    if netlink is not None:
        pytest.skip(f"no netlink uevent socket on this machine: {netlink}")
    assert events.open()
    stop = threading.Event()
    thread = threading.Thread(target=events.run, args=(stop,), daemon=True)
    thread.start()
    try:
        (device / "uevent").write_text("change")
        wait_for(lambda: ("change", device.name) in seen, timeout=5)
    finally:
        stop.set()
        thread.join(5)
