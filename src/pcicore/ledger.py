"""The ledger: which devices are claimed, and which driver each moved device came from.

It outlives the process (``pcihost.statefile`` keeps it in a JSON file), so that a device
can be returned to its driver after a crash or a reboot, and a claimed device can be bound
again after the host restarts. It is a value: every change returns a new ledger.

Rules that make crashes harmless: a device's original driver is recorded *before* it is moved
and dropped only *after* it is back; a claim is recorded before the move and dropped before the
return. So a device on ``vfio-pci`` with an original driver and no claim is an orphan to return.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from pcicore.address import PciAddress
from pcicore.device import DriverName
from pcicore.policy import GroupPolicy


@attrs.frozen
class ClaimRecord:
    """One device wanted on ``vfio-pci``.

    Attributes:
        address: The device.
        policy: The group policy it was claimed with.
        resource_name: The resourceName the device plugin advertises it under, if known.
        claimed_with: The device whose group claim pulled this one in, or ``None`` when it
            was claimed itself.
    """

    address: PciAddress
    policy: GroupPolicy = GroupPolicy.STRICT
    resource_name: str | None = None
    claimed_with: PciAddress | None = None

    @property
    def root(self) -> PciAddress:
        """The address the claim was made on (itself, or the device that pulled it in)."""
        return self.claimed_with or self.address


def _frozen_map(value: Mapping[PciAddress, object]) -> Mapping[PciAddress, object]:
    return dict(sorted(value.items()))


@attrs.frozen
class Ledger:
    """Claims and original drivers of one node.

    Attributes:
        claims: The devices wanted on ``vfio-pci``.
        originals: For every device a claim moved (or is moving), its driver before that
            (``None``: it had none).
    """

    claims: Mapping[PciAddress, ClaimRecord] = attrs.field(factory=dict, converter=_frozen_map)
    originals: Mapping[PciAddress, DriverName | None] = attrs.field(
        factory=dict, converter=_frozen_map
    )

    def claim(self, record: ClaimRecord) -> Ledger:
        """With ``record`` added (or replacing the record of the same address)."""
        return attrs.evolve(self, claims={**self.claims, record.address: record})

    def unclaim(self, addresses: set[PciAddress]) -> Ledger:
        """Without the claims on ``addresses``."""
        return attrs.evolve(
            self, claims={a: r for a, r in self.claims.items() if a not in addresses}
        )

    def remember(self, address: PciAddress, driver: DriverName | None) -> Ledger:
        """With ``driver`` as the original of ``address``, unless one is recorded already."""
        if address in self.originals:
            return self
        return attrs.evolve(self, originals={**self.originals, address: driver})

    def forget(self, address: PciAddress) -> Ledger:
        """Without the original driver of ``address`` (it is back on it)."""
        return attrs.evolve(
            self, originals={a: d for a, d in self.originals.items() if a != address}
        )

    def group_of(self, address: PciAddress) -> set[PciAddress]:
        """Every claimed address made by the same claim as ``address`` (itself included)."""
        record = self.claims.get(address)
        root = record.root if record is not None else address
        return {a for a, r in self.claims.items() if r.root == root} | {address}
