"""The cluster's view of a node's devices: what a ``PCIDevice`` object says, as domain values.

``pcidevices scan`` prints these and the agent writes them; both go through `DeviceCatalog`, so
the two can never disagree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import attrs

from pcicore.address import PciAddress
from pcicore.device import DriverName, NodeName, PciDevice
from pcicore.naming import DeviceNamer, ResourceName, object_name


@attrs.frozen
class DeviceRecord:
    """Everything a ``PCIDevice`` object holds about one function on one node.

    Attributes:
        name: The object name (``<node>-<compact address>``).
        node: The node the device is on.
        device: The device as the host reports it.
        resource_name: The resourceName KubeVirt schedules on.
        description: ``<class>: <vendor> <device>``.
        original_driver: The driver the device had before any claim moved it (the
            ``harvesterhci.io/pcideviceDriver`` annotation); ``None`` when it had none.
        protection: Why the host refuses to hand it over (``""``: it does not refuse;
            ``None``: not evaluated, as in a plain scan).
        parent_sriov: For an SR-IOV VF whose PF is published, the PF's SRIOVNetworkDevice
            name (the ``harvesterhci.io/parent-sriov-network-device`` label); else ``None``.
    """

    name: str
    node: NodeName
    device: PciDevice
    resource_name: ResourceName
    description: str
    original_driver: DriverName | None
    protection: str | None = None
    parent_sriov: str | None = None


class DeviceCatalog:
    """Turns a host's devices into the records the cluster holds for them."""

    def __init__(self, node: NodeName, namer: DeviceNamer) -> None:
        """Build records for devices on ``node`` named with ``namer``."""
        self._node = node
        self._namer = namer

    def record(
        self, device: PciDevice, original_drivers: Mapping[PciAddress, DriverName] | None = None
    ) -> DeviceRecord:
        """The record of one device.

        ``original_drivers`` holds the drivers that claims moved devices away from; a device
        not in it is on its original driver now.
        """
        original = (
            device.driver
            if original_drivers is None
            else original_drivers.get(device.address, device.driver)
        )
        # Positional, in the fields' order: a scan builds thousands of records, and passing
        # these six by keyword cost about 2,900 more instructions per record (callgrind).
        return DeviceRecord(
            object_name(self._node, device.address),  # name
            self._node,  # node
            device,
            self._namer.resource_name(device),
            self._namer.description(device),
            original,  # original_driver
        )

    def records(
        self,
        devices: Iterable[PciDevice],
        original_drivers: Mapping[PciAddress, DriverName] | None = None,
    ) -> list[DeviceRecord]:
        """The records of many devices, in the order given."""
        return [self.record(device, original_drivers) for device in devices]
