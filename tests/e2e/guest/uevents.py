"""The guest kernel's uevents, read on a netlink socket without any project code.

Since Linux 4.14 the driver core announces every bind and unbind of a device with a ``bind`` or
``unbind`` uevent (``KOBJ_BIND``/``KOBJ_UNBIND``), and a network driver letting go of a NIC
removes its interface (``remove`` of ``.../<address>/net/<name>``). A socket opened before an
action collects every such event in its receive buffer, so draining it afterwards tells whether
the kernel moved a device in between, however briefly.
"""

from __future__ import annotations

import socket
from typing import Self

_NETLINK_KOBJECT_UEVENT = 15
_KERNEL_GROUP = 1
_RECEIVE_BUFFER = 4 * 1024 * 1024
MOVES = frozenset({"bind", "unbind", "add", "remove"})
"""The actions a driver move causes on the device or its children."""


class UeventMonitor:
    """A kernel uevent socket, bound now, drained on demand."""

    def __init__(self) -> None:
        """Open and bind the socket: events from now on are kept until `drain`."""
        self._socket = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_KOBJECT_UEVENT)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RECEIVE_BUFFER)
        self._socket.bind((0, _KERNEL_GROUP))

    def drain(self) -> list[tuple[str, str]]:
        """The ``(action, devpath)`` of every event received since the last drain.

        Raises:
            OSError: ``ENOBUFS`` when the kernel dropped events (the buffer overflowed), so the
                list would be incomplete.
        """
        events = []
        while True:
            try:
                message = self._socket.recv(65536, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return events
            action, _, devpath = message.split(b"\0", 1)[0].decode().partition("@")
            events.append((action, devpath))

    def moves_of(self, address: str) -> list[tuple[str, str]]:
        """Drain, keeping the bind/unbind/add/remove events of the device or its children."""
        return [
            (action, devpath)
            for action, devpath in self.drain()
            if action in MOVES and f"/{address}" in devpath
        ]

    def close(self) -> None:
        """Close the socket."""
        self._socket.close()

    def __enter__(self) -> Self:
        """The monitor itself."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the socket."""
        self.close()
