"""Unplug a device of the guest the way a user pulls it out: QEMU's `device_del`, asked of the host.

The guest cannot reach QEMU's monitor; the host can. A request is a file on the result share
(`e2e.qemu.HOTPLUG_DIR`), which the host's `run_in_guest` loop answers through QMP while QEMU
runs (`e2e.qemu.serve_hotplug`). For a USB device, QEMU detaches it from its port at once, and
the guest kernel sees a disconnect as from a real unplug.
"""

import json
import time
from pathlib import Path

from e2e.qemu import HOTPLUG_DIR, RESULT_MOUNT

REQUESTS = Path(RESULT_MOUNT, HOTPLUG_DIR)


class UnplugError(Exception):
    """QEMU refused the `device_del`, or the host never answered."""


def unplug(qemu_id: str, timeout: float = 120.0) -> None:
    """Ask the host to `device_del` the device QEMU knows as ``qemu_id``; wait for the answer.

    Returns once QEMU accepted the command; the guest kernel notices the disconnect on its own
    time, so a caller waits for the state it expects (the device's sysfs entry gone).

    Raises:
        UnplugError: QEMU answered with an error, or no answer came within ``timeout``.
    """
    response = REQUESTS / f"{qemu_id}.response"
    response.unlink(missing_ok=True)
    pending = REQUESTS / f"{qemu_id}.pending"
    pending.write_text(qemu_id)
    pending.rename(REQUESTS / f"{qemu_id}.request")  # whole, or not there: the host polls
    deadline = time.monotonic() + timeout
    while not response.exists():
        if time.monotonic() > deadline:
            raise UnplugError(f"the host did not answer the unplug of {qemu_id} in {timeout} s")
        time.sleep(0.2)
    reply = json.loads(response.read_text())
    if "error" in reply:
        raise UnplugError(f"QEMU refused device_del {qemu_id}: {reply['error']}")
