"""What the host itself depends on: the devices that must never be handed to a VM.

Passing through the management NIC or the controller of the root disk takes a node offline
An adapter (``pcihost.hostfacts``) gathers these facts from ``/proc`` and ``/sys``; the
policy in `pcicore.protection` decides with them. Tests build them by hand.

A fact that could not be read is not "nothing depends on it": the adapter names the input in
`HostFacts.unreadable`, and the policy then refuses every claim (it fails closed).
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
        unreadable: The inputs that could not be read, each with what went wrong
            (``/proc/net/route`` → ``Permission denied``); empty when every fact is known.
    """

    default_route_nics: Mapping[PciAddress, str] = attrs.field(factory=dict)
    addressed_nics: Mapping[PciAddress, str] = attrs.field(factory=dict)
    mounted_disk_controllers: Mapping[PciAddress, str] = attrs.field(factory=dict)
    boot_vga: frozenset[PciAddress] = frozenset()
    unreadable: Mapping[str, str] = attrs.field(factory=dict)

    @property
    def complete(self) -> bool:
        """Whether every input was read, so that an absent fact means "not used by the host"."""
        return not self.unreadable
