"""The kernel's device events for the PCI bus and USB devices (``NETLINK_KOBJECT_UEVENT``).

The agent rescans on a timer anyway; these events make a hot-plug, unplug, bind or unbind show
up in the cluster at once instead of at the next rescan (for USB: a device plugged in or
unplugged, ``SUBSYSTEM=usb``, ``DEVTYPE=usb_device``; its interfaces' events are not needed).
Where the socket cannot be opened (no permission, another network namespace), the agent simply
relies on the timer.
"""

from __future__ import annotations

import logging
import select
import socket
import threading
from collections.abc import Callable, Mapping
from typing import Final

log = logging.getLogger(__name__)

NETLINK_KOBJECT_UEVENT: Final = 15
_KERNEL_GROUP: Final = 1
RELEVANT_ACTIONS: Final = frozenset({"add", "remove", "bind", "unbind", "change"})


def parse_uevent(message: bytes) -> Mapping[str, str] | None:
    """The fields of one kernel uevent (``ACTION``, ``SUBSYSTEM``, …), or ``None`` if malformed.

    A kernel message is ``action@devpath`` then ``KEY=value`` fields, NUL-separated; messages
    from udev (``libudev`` header) are not the kernel's and are ignored.
    """
    parts = message.split(b"\0")
    if not parts or b"@" not in parts[0]:
        return None
    fields: dict[str, str] = {}
    for part in parts[1:]:
        key, sep, value = part.partition(b"=")
        if sep:
            fields[key.decode("ascii", "replace")] = value.decode("utf-8", "replace")
    return fields


class KernelPciEvents:
    """Calls ``on_event(action, slot)`` for each kernel event about a PCI device.

    With ``on_usb``, also ``on_usb(action)`` for a USB device added or removed.
    """

    def __init__(
        self,
        on_event: Callable[[str, str], None],
        on_usb: Callable[[str], None] | None = None,
    ) -> None:
        """Report PCI events to ``on_event``, USB device events to ``on_usb``."""
        self._on_event = on_event
        self._on_usb = on_usb
        self._socket: socket.socket | None = None

    def open(self) -> bool:
        """Subscribe to the kernel's events; return whether that worked."""
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_KOBJECT_UEVENT)
            sock.bind((0, _KERNEL_GROUP))
        except OSError as err:
            log.info("kernel device events unavailable (%s); relying on rescans", err)
            return False
        self._socket = sock
        return True

    def run(self, stop: threading.Event) -> None:
        """Read events until ``stop`` is set (call `open` first)."""
        sock = self._socket
        if sock is None:
            return
        try:
            while not stop.is_set():
                ready, _, _ = select.select([sock], [], [], 0.5)
                if not ready:
                    continue
                fields = parse_uevent(sock.recv(65536))
                if fields is None:
                    continue
                action = fields.get("ACTION", "")
                if fields.get("SUBSYSTEM") == "usb":
                    if self._on_usb is not None and fields.get("DEVTYPE") == "usb_device":
                        self._on_usb(action)
                    continue
                if fields.get("SUBSYSTEM") != "pci":
                    continue
                if action in RELEVANT_ACTIONS:
                    self._on_event(action, fields.get("PCI_SLOT_NAME", ""))
        finally:
            sock.close()
            self._socket = None
