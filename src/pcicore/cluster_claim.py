"""A PCIDeviceClaim as the domain sees it: the values the cluster ports carry.

The claim store (`pcicore.ports.ClaimStore`) reads a node's claims as `ClusterClaim` values and
writes a `ClaimStatus` back; the event sink (`pcicore.ports.ClaimEvents`) records a
`ClaimEvent`. The wire form (camelCase, ``metadata``) stays in the adapter that implements
them; the decisions in `pcicore.claim_report` see only these values.
"""

from __future__ import annotations

import attrs

from pcicore.claim_binding import ClaimBinding
from pcicore.conditions import Condition
from pcicore.device import NodeName


@attrs.frozen
class ClaimStatus:
    """What a claim reports: Harvester's two fields, plus our conditions and group members.

    Attributes:
        kernel_driver_to_unbind: The device's original driver (empty when not known yet).
        passthrough_enabled: Whether the device is on ``vfio-pci`` for the claim.
        conditions: Standard conditions; ``Ready`` says where the claim stands and why.
        group_members: The other devices the claim moved with its device.
    """

    kernel_driver_to_unbind: str = ""
    passthrough_enabled: bool = False
    conditions: tuple[Condition, ...] = ()
    group_members: tuple[str, ...] = ()


@attrs.frozen
class ClusterClaim:
    """One PCIDeviceClaim of this node, as read from the cluster.

    Attributes:
        name: The object's name (it must be the PCIDevice's name).
        uid: The object's uid (Events refer to it).
        resource_version: The version read (a finalizer change is made against it).
        generation: ``metadata.generation`` (conditions record the one they were computed from).
        deleting: Whether the claim was deleted and its finalizers hold it.
        finalizers: ``metadata.finalizers``.
        address: ``spec.address`` exactly as written: untrusted until
            `pcicore.claim_report.parse_claim` has parsed it.
        node: ``spec.nodeName``.
        status: The status as last written.
        binding: Who binds its device's driver: `ClaimBinding.EXTERNAL` for a claim marked
            to skip vfio binding (Harvester's vGPU claims), which the agent leaves alone.
    """

    name: str
    uid: str
    resource_version: str
    generation: int
    deleting: bool
    finalizers: tuple[str, ...]
    address: str
    node: NodeName
    status: ClaimStatus = ClaimStatus()
    binding: ClaimBinding = ClaimBinding.VFIO


@attrs.frozen
class ClaimEvent:
    """Something that happened to a claim, for ``kubectl describe`` and ``kubectl get events``.

    Attributes:
        reason: One CamelCase word (the condition's reason).
        message: What happened and what to do.
        warning: Whether it needs a person's attention (Kubernetes event type ``Warning``).
    """

    reason: str
    message: str
    warning: bool
