"""Which driver a device goes back to, when Harvester's controller moved it before we ran.

A device Harvester's controller put on ``vfio-pci`` is on ``vfio-pci`` when our agent first sees
it, and our ledger has no record of it; taking ``vfio-pci`` as its original driver would leave
it there for good once its claim is deleted. Harvester recorded the real one in two places: the
PCIDevice annotation ``harvesterhci.io/pcideviceDriver`` (the same key we use) and the claim's
``status.kernelDriverToUnbind``. `original_driver` decides from all of them. Pure: the records
in, the driver out.
"""

from __future__ import annotations

from pcicore.device import VFIO_DRIVER, DriverName


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


__all__ = ["original_driver"]
