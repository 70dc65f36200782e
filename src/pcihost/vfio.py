"""The `pcicore.resources.VfioNodes` adapter: which VFIO device nodes a host exposes.

Both roots are parameters, so tests point them at directories under ``tmp``:
- ``/dev/vfio/<group>`` exists once every endpoint of the IOMMU group is on ``vfio-pci``;
- with iommufd (Linux 6.2+), each vfio-bound device also has a character device
  ``/dev/vfio/devices/vfioN``, named in sysfs by ``<device>/vfio-dev/vfioN``, opened together
  with ``/dev/iommu``.
"""

from __future__ import annotations

from pathlib import Path

from pcicore.address import PciAddress
from pcicore.device import IommuGroup
from pcihost.paths import DEFAULT_DEV_ROOT, DEFAULT_SYSFS_ROOT


class HostVfioNodes:
    """VFIO nodes under ``dev_root`` (``/dev``), cdev names from ``sysfs_root`` (``/sys``)."""

    def __init__(
        self, dev_root: Path = DEFAULT_DEV_ROOT, sysfs_root: Path = DEFAULT_SYSFS_ROOT
    ) -> None:
        """Look for nodes below ``dev_root`` and cdev names below ``sysfs_root``."""
        self._vfio = dev_root / "vfio"
        self._iommu = dev_root / "iommu"
        self._devices = sysfs_root / "bus" / "pci" / "devices"

    def group_node_exists(self, group: IommuGroup) -> bool:
        """Whether ``<dev>/vfio/<group>`` exists."""
        return (self._vfio / str(int(group))).exists()

    def device_cdev(self, address: PciAddress) -> str | None:
        """The ``vfioN`` listed in ``<device>/vfio-dev/``, or ``None``."""
        try:
            names = [entry.name for entry in (self._devices / str(address) / "vfio-dev").iterdir()]
        except OSError:
            return None
        found = sorted(name for name in names if name.startswith("vfio") and name[4:].isdigit())
        return found[0] if found else None

    def iommufd_available(self) -> bool:
        """Whether ``<dev>/iommu`` exists."""
        return self._iommu.exists()
