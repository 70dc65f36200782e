"""Whether a claim's device is ours to move to ``vfio-pci``, or bound by someone else.

Harvester's vGPU support claims a mediated or SR-IOV GPU function with a PCIDeviceClaim that
carries the annotation ``pcidevices.harvesterhci.io/skip-vfio-binding: "true"``: the GPU's own
driver must keep the function (moving it to ``vfio-pci`` would destroy the vGPU). A claim
marked so is `ClaimBinding.EXTERNAL`: the claim engine neither unbinds nor binds the device, on
claim or on release, and records no original driver for it. Every other claim is
`ClaimBinding.VFIO`.

The annotation's value is read as Go's ``strconv.ParseBool`` reads it (Harvester's code is Go):
``1``, ``t``, ``T``, ``TRUE``, ``true``, ``True`` mean yes; anything else (or no annotation)
means no. Pure: the annotation's value in, the decision out.
"""

from __future__ import annotations

import enum
from typing import Final

_TRUE: Final = frozenset({"1", "t", "T", "TRUE", "true", "True"})


class ClaimBinding(enum.Enum):
    """Who binds a claimed device's driver."""

    VFIO = "vfio"
    """We move the device to ``vfio-pci`` and, on release, back to its original driver."""

    EXTERNAL = "external"
    """Another component keeps the device on its driver; we never rebind it."""


def claim_binding(skip_vfio_binding: str | None) -> ClaimBinding:
    """The binding of a claim whose skip-vfio-binding annotation is ``skip_vfio_binding``."""
    if skip_vfio_binding is not None and skip_vfio_binding.strip() in _TRUE:
        return ClaimBinding.EXTERNAL
    return ClaimBinding.VFIO


def moves_driver(binding: ClaimBinding) -> bool:
    """Whether the claim engine may unbind and rebind the device's driver for this claim."""
    return binding is ClaimBinding.VFIO


__all__ = ["ClaimBinding", "claim_binding", "moves_driver"]
