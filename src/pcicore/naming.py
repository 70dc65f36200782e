"""Names the cluster knows devices by: object names, descriptions and resourceNames.

These rules are a compatibility contract with ``devices.harvesterhci.io/v1beta1``: existing
clusters, UIs and KubeVirt VMs use the exact strings, so they are reproduced byte for byte.
"""

from __future__ import annotations

import re
from typing import Final, NewType

from pcicore.address import PciAddress
from pcicore.device import NodeName, PciDevice
from pcicore.pciids import PciIds

ResourceName = NewType("ResourceName", str)
"""A kubelet extended-resource name (``intel.com/I350_GIGABIT_NETWORK_CONNECTION``)."""

# The kubelet's unix socket path limit (sun_path) is 108 bytes; KubeVirt derives a socket name
# from the resourceName, so names that would overflow it are shortened.
_SOCKET_PATH_LIMIT: Final = 108
_SOCKET_PREFIX: Final = "/var/lib/kubelet/device-plugins/kubevirt-"

_NOT_ALPHANUMERIC: Final = re.compile(r"[^A-Za-z0-9]")
# Every ASCII character a resource name may not hold: all but A-Z, a-z, 0-9, "_" and ".".
_NOT_RESOURCE_BYTES: Final = bytes(
    c for c in range(128) if not (chr(c).isascii() and (chr(c).isalnum() or chr(c) in "_."))
)
# A DNS label (each part of the vendor domain) holds at most 63 characters (RFC 1123).
_DNS_LABEL_MAX: Final = 63


def object_name(node: NodeName, address: PciAddress) -> str:
    """The name of a PCIDevice (and of a claim on it): ``<node>-<address without : and .>``."""
    return f"{node}-{address.compact}"


def object_name_as_written(node: NodeName, written: str) -> str:
    """The object name Harvester derives from an address *as written*: only ``:`` and ``.`` go.

    A full address gives `object_name`; the short form ``bb:dd.f`` (domain 0000), which older
    Harvester agents wrote into PCIDevices and its samples into claims, keeps its shortness:
    ``00:1f.6`` on ``titan`` is ``titan-001f6``, not ``titan-0000001f6``.

    Raises:
        InvalidPciAddressError: ``written`` is not a PCI address.
    """
    address = PciAddress.parse(written)
    if written.count(":") == 1:
        return f"{node}-{address.compact[4:]}"  # the four digits of domain 0000 were not written
    return object_name(node, address)


def vendor_domain(vendor_name: str | None) -> str:
    """The vendor part of a resourceName (``intel.com``, ``amd.com``, ``unknown.com``)."""
    if not vendor_name:
        return "unknown.com"
    if "[" in vendor_name:
        inside = vendor_name.split("[", 1)[1].split("]", 1)[0]
        word = inside.split("/", 1)[0]
    else:
        word = vendor_name.split(" ", 1)[0]
    label = _NOT_ALPHANUMERIC.sub("", word).lower()[:_DNS_LABEL_MAX]
    # A name with no letter or digit in that word (``[]``, ``:``) would give ``.com``, which
    # the kubelet refuses: such a vendor is as good as unknown.
    return f"{label}.com" if label else "unknown.com"


def _product(device_name: str) -> str:
    text = device_name.strip().upper().replace("/", "_").replace(".", "_")
    # Each run of whitespace becomes one "_" (the text has none at either end after strip();
    # split() and the regular expression's \s agree on what whitespace is).
    text = "_".join(text.split())
    # Keep A-Z, a-z, 0-9, "_" and "." only: non-ASCII goes in the encoding, the rest in
    # translate() (both in C; a regular expression tested each character in turn).
    text = text.encode("ascii", "ignore").translate(None, _NOT_RESOURCE_BYTES).decode("ascii")
    # Both ends: the kubelet takes a name that starts and ends with a letter or digit only.
    return text.strip("_.-")


# What `_SOCKET_PREFIX` + ``/<vendor>-<product>.sock`` adds to the vendor and product.
_SOCKET_PATH_OVERHEAD: Final = len(f"{_SOCKET_PREFIX}/-.sock")


def _fits_socket_path(vendor: str, product: str) -> bool:
    return _SOCKET_PATH_OVERHEAD + len(vendor) + len(product) <= _SOCKET_PATH_LIMIT


def resource_name(vendor_name: str | None, device_name: str | None, device_id: int) -> ResourceName:
    """The resourceName under which KubeVirt schedules this kind of device."""
    return _resource_name_under(vendor_domain(vendor_name), device_name, device_id)


def _resource_name_under(vendor: str, device_name: str | None, device_id: int) -> ResourceName:
    if device_name is None:
        return ResourceName(f"{vendor}/{device_id:04x}")
    product = _product(device_name) or f"{device_id:04x}"
    if _fits_socket_path(vendor, product):
        return ResourceName(f"{vendor}/{product}")
    shortened = product.replace("VIRTUAL_FUNCTION", "VF")
    if shortened != product and _fits_socket_path(vendor, shortened):
        return ResourceName(f"{vendor}/{shortened}")
    return ResourceName(f"{vendor}/{device_id:04x}")


def description(
    class_name: str | None, vendor_name: str | None, device_name: str | None, device: PciDevice
) -> str:
    """``<class>: <vendor> <device>``.

    Unknown names become ``Class CCSS``, ``Vendor VVVV`` and ``Device DDDD``.
    """
    klass = class_name or f"Class {device.pci_class.class_id}"
    vendor = vendor_name or f"Vendor {device.vendor_hex}"
    product = device_name or f"Device {device.device_hex}"
    return f"{klass}: {vendor} {product}"


class DeviceNamer:
    """Derives every cluster-facing name of a device from one ``pci.ids`` database."""

    def __init__(self, ids: PciIds) -> None:
        """Name devices with the names in ``ids``."""
        self._ids = ids
        # A host has thousands of functions but few distinct kinds; names depend on ids only.
        self._resource_names: dict[tuple[int, int], ResourceName] = {}
        self._descriptions: dict[tuple[int, int, int, int], str] = {}
        # A host with thousands of kinds still has a few hundred vendors and classes at most.
        self._vendor_domains: dict[int, str] = {}
        self._class_names: dict[tuple[int, int], str | None] = {}

    def resource_name(self, device: PciDevice) -> ResourceName:
        """The device's resourceName (see `resource_name`)."""
        key = (device.vendor_id, device.device_id)
        name = self._resource_names.get(key)
        if name is None:
            vendor_id = device.vendor_id
            domain = self._vendor_domains.get(vendor_id)
            if domain is None:
                domain = self._vendor_domains[vendor_id] = vendor_domain(
                    self._ids.vendor(vendor_id)
                )
            name = self._resource_names[key] = _resource_name_under(
                domain, self._ids.device(vendor_id, device.device_id), device.device_id
            )
        return name

    def class_name(self, device: PciDevice) -> str | None:
        """The subclass name, else the class name, else ``None``."""
        klass = device.pci_class
        key = (klass.base, klass.sub)
        try:
            return self._class_names[key]
        except KeyError:
            pass
        name = self._class_names[key] = self._ids.subclass_name(
            klass.base, klass.sub
        ) or self._ids.class_name(klass.base)
        return name

    def description(self, device: PciDevice) -> str:
        """The device's one-line description (see `description`)."""
        klass = device.pci_class
        key = (device.vendor_id, device.device_id, klass.base, klass.sub)
        text = self._descriptions.get(key)
        if text is None:
            text = self._descriptions[key] = description(
                self.class_name(device),
                self._ids.vendor(device.vendor_id),
                self._ids.device(device.vendor_id, device.device_id),
                device,
            )
        return text
