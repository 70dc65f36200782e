"""Which driver a device goes back to, when Harvester's controller moved it before we ran.

A device Harvester's controller put on ``vfio-pci`` is on ``vfio-pci`` when our agent first sees
it, and our ledger has no record of it; taking ``vfio-pci`` as its original driver would leave
it there for good once its claim is deleted. Harvester recorded the real one in two places: the
PCIDevice annotation ``harvesterhci.io/pcideviceDriver`` (the same key we use) and the claim's
``status.kernelDriverToUnbind``. `original_driver` decides from all of them.

Harvester's claims also carry its controller's finalizer (`HARVESTER_FINALIZER`), which nothing
removes once Harvester's controller is gone: `finalizers_after_release` drops it together with
ours once we have returned the device, so such a claim finishes deleting.

Pure: the records in, the decision out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from pcicore.device import VFIO_DRIVER, DriverName

HARVESTER_FINALIZER: Final = "wrangler.cattle.io/PCIDeviceClaimOnRemove"
"""The finalizer Harvester's controller (wrangler ``OnRemove``) puts on every claim."""


def _usable(driver: str | None) -> DriverName | None:
    """``driver`` when it names a driver to go back to (not empty, not ``vfio-pci``)."""
    text = (driver or "").strip()
    return DriverName(text) if text and text != VFIO_DRIVER else None


def original_driver(
    current: DriverName | None,
    *,
    ours: DriverName | None = None,
    device_annotation: str | None = None,
    claim_driver_to_unbind: str | None = None,
) -> DriverName | None:
    """The driver the device had before any claim moved it (``None``: none known).

    In order: our ledger's record (``ours``); the driver bound now when that is not
    ``vfio-pci`` (nothing has moved it); Harvester's PCIDevice annotation; Harvester's claim
    status. A device on ``vfio-pci`` with none of these has no known original driver.
    """
    if ours is not None:
        return ours
    if current is not None and current != VFIO_DRIVER:
        return current
    return _usable(device_annotation) or _usable(claim_driver_to_unbind)


def finalizers_after_release(finalizers: Sequence[str], ours: str) -> tuple[str, ...] | None:
    """A deleted claim's finalizers once we have released its device (``None``: no change).

    Ours and Harvester's go (Harvester's controller, which would remove its own, no longer
    runs); any other stays, in order. Nothing to remove gives ``None``, so no patch is sent.
    """
    gone = {ours, HARVESTER_FINALIZER}
    kept = tuple(name for name in finalizers if name not in gone)
    return None if len(kept) == len(finalizers) else kept


__all__ = ["HARVESTER_FINALIZER", "finalizers_after_release", "original_driver"]
