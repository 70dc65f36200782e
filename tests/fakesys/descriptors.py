"""Make pyfakefs's file descriptors safe for a multi-threaded agent in the test process.

Two things go wrong with pyfakefs's own descriptor table once several threads open files:

- It hands out a number by appending to a list and returning the list's new length minus
  one, with no lock: two threads opening at once can both get the same number, and the one
  that closes first closes the other's file (seen as the agent's bus scan failing with
  ``EBADF`` on a descriptor it had just opened).
- It numbers fake descriptors from 3 up, the numbers the test process's own files, pipes and
  sockets have. Any call that slips past the fake ``os`` with a fake number then closes a real
  descriptor: pytest's capture file or a server socket, found missing much later and far away.

`guard_descriptors` serialises the table's two writers and starts fake numbers where no real
descriptor is, so a slip fails at once with ``EBADF`` where it happens.
"""

from __future__ import annotations

import threading
from typing import Any

from pyfakefs.fake_filesystem import FakeFilesystem

FIRST_FAKE_DESCRIPTOR = 4096
"""Above any descriptor the test process opens for real."""


def guard_descriptors(fs: FakeFilesystem) -> None:
    """Give ``fs`` a thread-safe descriptor table numbered from `FIRST_FAKE_DESCRIPTOR`."""
    lock = threading.Lock()
    add_open_file = fs.add_open_file
    close_open_file = fs.close_open_file

    def locked_add(file_obj: Any, new_fd: int = -1) -> int:
        with lock:
            return add_open_file(file_obj, new_fd)

    def locked_close(file_des: int) -> None:
        with lock:
            close_open_file(file_des)

    with lock:
        missing = FIRST_FAKE_DESCRIPTOR - len(fs.open_files)
        if missing > 0:
            # A descriptor's number is its position in this list; `None` reads as closed.
            fs.open_files.extend([None] * missing)
        # Instance attributes shadow the methods for every caller inside pyfakefs.
        fs.add_open_file = locked_add  # type: ignore[method-assign]
        fs.close_open_file = locked_close  # type: ignore[method-assign]
