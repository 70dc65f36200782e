"""The ports through which the domain reaches the world, as ``typing.Protocol``s.

Adapters implement them (``pcioperator.sysfs.SysfsPciBus`` reads a real or fake ``/sys``);
tests implement them with fakes that keep state.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from pcicore.address import PciAddress
from pcicore.device import PciDevice


class PciBus(Protocol):
    """Reads a host's PCI bus."""

    def devices(self) -> Sequence[PciDevice]:
        """Every PCI function present now, in address order; vanished ones are left out."""
        ...

    def device(self, address: PciAddress) -> PciDevice | None:
        """The function at ``address`` now, or ``None`` if there is none (or it vanished)."""
        ...
