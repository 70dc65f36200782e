"""The names pcidevices uses under Dynamic Resource Allocation (``resource.k8s.io/v1``).

One driver name for every PCI function this project hands out through DRA, one pool per node,
and one device name per function, derived from its address so that the node's plugin finds the
function again from an allocation result without any other lookup.
"""

from __future__ import annotations

import re
from typing import Final

from pcicore.address import PciAddress
from pcicore.errors import InvalidDraDeviceNameError

DRIVER_NAME: Final = "pci.devices.harvesterhci.io"
"""The DRA driver name: in ResourceSlices, DeviceClass selectors and the kubelet registration."""

_DEVICE_PREFIX: Final = "pci-"
_DEVICE_NAME: Final = re.compile(r"pci-([0-9a-f]{4})-([0-9a-f]{2})-([01][0-9a-f])-([0-7])")


def device_name(address: PciAddress) -> str:
    """The DRA device name of the function at ``address``: ``pci-0000-03-00-0``.

    A DNS label (lower case, digits and ``-``), as ``resource.k8s.io`` requires, and unique
    within a node's pool because the address is.
    """
    return (
        f"{_DEVICE_PREFIX}{address.domain:04x}-{address.bus:02x}-"
        f"{address.device:02x}-{address.function:x}"
    )


def address_of(name: str) -> PciAddress:
    """The PCI address a device name of ours stands for; the inverse of `device_name`.

    Raises:
        InvalidDraDeviceNameError: ``name`` is not a name `device_name` produces.
    """
    match = _DEVICE_NAME.fullmatch(name)
    if match is None:
        raise InvalidDraDeviceNameError(name)
    domain, bus, device, function = match.groups()
    return PciAddress.parse(f"{domain}:{bus}:{device}.{function}")
