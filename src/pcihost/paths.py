"""Where a real host keeps what pcidevices reads and writes: every default path, once.

Every adapter takes its root as a parameter (so tests and benchmarks pass a pyfakefs tree or a
tree on disk); these are only the defaults a real node uses, shared by the adapters, the
composition roots and the command line's ``--sysfs``/``--proc``/``--state-file``/... options.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

DEFAULT_SYSFS_ROOT: Final = Path("/sys")
"""The sysfs mount point (the PCI bus, drivers, IOMMU groups, loaded modules)."""

DEFAULT_PROC_ROOT: Final = Path("/proc")
"""The procfs mount point (routes, mounts, loaded modules)."""

DEFAULT_DEV_ROOT: Final = Path("/dev")
"""The device folder where VFIO creates ``vfio/<group>``."""

DEFAULT_STATE_FILE: Final = Path("/var/lib/pcidevices/claims.json")
"""The claim state file: claims and original drivers of this node (`pcihost.statefile`)."""

DEFAULT_DEVICE_PLUGINS_DIR: Final = Path("/var/lib/kubelet/device-plugins")
"""The kubelet's device-plugins folder (its ``kubelet.sock`` and the plugins' sockets)."""

PCI_IDS_LOCATIONS: Final = (
    "/usr/share/misc/pci.ids",
    "/usr/share/hwdata/pci.ids",
    "/usr/share/pci.ids",
    "/usr/local/share/pci.ids",
    "/usr/local/share/hwdata/pci.ids",
)
"""Where distributions install the ``pci.ids`` database, in the order they are tried."""

USB_IDS_LOCATIONS: Final = (
    "/usr/share/misc/usb.ids",
    "/usr/share/hwdata/usb.ids",
    "/var/lib/usbutils/usb.ids",
    "/usr/share/usb.ids",
)
"""Where distributions install the ``usb.ids`` database, in the order they are tried."""
DEFAULT_DRA_PLUGIN_DIR: Final = Path("/var/lib/kubelet/plugins/pci.devices.harvesterhci.io")
"""The DRA plugin's own folder: its ``dra.sock``, its checkpoint, its engine ledger and the
device-metadata files (the kubelet's convention: ``/var/lib/kubelet/plugins/<driver name>``)."""

DEFAULT_PLUGINS_REGISTRY_DIR: Final = Path("/var/lib/kubelet/plugins_registry")
"""Where the kubelet's plugin watcher looks for registration sockets (DRA, CSI)."""

DEFAULT_CDI_DIR: Final = Path("/var/run/cdi")
"""The CDI folder for specs that do not outlive a reboot (container runtimes read it)."""
