"""What the host itself depends on: the devices that must never be handed to a VM.

Passing through the management NIC or the controller of the root disk takes a node offline
(BRIEF section 5). An adapter (``pcihost.hostfacts``) gathers these facts from ``/proc`` and
``/sys``; the policy in `pcicore.policy` decides with them. Tests build them by hand.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from pcicore.address import PciAddress


@attrs.frozen
class HostFacts:
    """The PCI functions the running host depends on, each with the evidence.

    Attributes:
        default_route_nics: NICs carrying a default route, with the interface name(s).
        addressed_nics: NICs carrying any address or route of the node, with the interface.
        mounted_disk_controllers: Controllers of block devices with a mounted filesystem,
            with the mount (``/dev/nvme0n1p2 on /``).
        boot_vga: The boot console's GPU (``boot_vga`` reads 1).
    """

    default_route_nics: Mapping[PciAddress, str] = attrs.field(factory=dict)
    addressed_nics: Mapping[PciAddress, str] = attrs.field(factory=dict)
    mounted_disk_controllers: Mapping[PciAddress, str] = attrs.field(factory=dict)
    boot_vga: frozenset[PciAddress] = frozenset()
