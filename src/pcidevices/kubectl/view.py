"""What the kubectl plugin shows and decides, from API objects alone (no I/O).

`device_rows` joins PCIDevices with their claims into lspci-like rows; `claim_progress` reads a
claim's Ready condition and says whether waiting on it is over, and how.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import attrs

from pcicore.claim import Reason

# Reasons after which waiting for Ready is pointless: the claim needs the user, not time.
_STUCK: Final = frozenset(
    {
        Reason.ROLLED_BACK.value,
        Reason.DEVICE_VANISHED.value,
        Reason.MODULES_MISSING.value,
        Reason.BIND_FAILED.value,
        Reason.RETURN_FAILED.value,
        Reason.GROUP_INCOMPLETE.value,
        Reason.NO_IOMMU.value,
        Reason.HOST_DEPENDS_ON_DEVICE.value,
        Reason.DENY_LISTED.value,
        Reason.HELD_ELSEWHERE.value,
        "InvalidSpec",
    }
)
_PCI_BRIDGE_CLASS: Final = "0604"


@attrs.frozen
class DeviceRow:
    """One PCI function as `kubectl pcidevices ls` shows it.

    Attributes:
        node: The node.
        address: ``dddd:bb:dd.f``.
        class_id: Class and subclass, 4 hex digits.
        vendor_id: 4 hex digits.
        device_id: 4 hex digits.
        description: ``<class>: <vendor> <device>`` from pci.ids.
        driver: The driver bound now (``""`` for none).
        iommu_group: The IOMMU group (``""`` without an IOMMU).
        resource_name: The kubelet resource KubeVirt schedules on.
        claimed_by: The claim's user (``""`` when unclaimed).
        claim_state: The claim's Ready reason (``""`` when unclaimed or not yet handled).
        name: The PCIDevice's (and its claim's) object name.
    """

    node: str
    address: str
    class_id: str
    vendor_id: str
    device_id: str
    description: str
    driver: str
    iommu_group: str
    resource_name: str
    claimed_by: str
    claim_state: str
    name: str

    @property
    def is_bridge(self) -> bool:
        """Whether this is a PCI-to-PCI bridge (never passed through)."""
        return self.class_id == _PCI_BRIDGE_CLASS

    def as_dict(self) -> dict[str, str]:
        """The row with camelCase keys, for ``-o json|yaml``."""
        return {
            "name": self.name,
            "nodeName": self.node,
            "address": self.address,
            "classId": self.class_id,
            "vendorId": self.vendor_id,
            "deviceId": self.device_id,
            "description": self.description,
            "kernelDriverInUse": self.driver,
            "iommuGroup": self.iommu_group,
            "resourceName": self.resource_name,
            "claimedBy": self.claimed_by,
            "claimState": self.claim_state,
        }


def ready_condition(claim: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The claim's ``Ready`` condition, if the agent wrote one."""
    for condition in (claim.get("status") or {}).get("conditions") or ():
        if condition.get("type") == "Ready":
            return condition  # type: ignore[no-any-return]
    return None


def device_rows(
    devices: Iterable[Mapping[str, Any]], claims: Iterable[Mapping[str, Any]]
) -> list[DeviceRow]:
    """Rows of ``devices``, each with its claim (same name) if any, by node then address."""
    by_name = {claim["metadata"]["name"]: claim for claim in claims}
    rows = []
    for device in devices:
        name = device["metadata"]["name"]
        status = device.get("status") or {}
        claim = by_name.get(name)
        claimed_by = ""
        state = ""
        if claim is not None:
            claimed_by = (claim.get("spec") or {}).get("userName") or "(unknown)"
            condition = ready_condition(claim)
            state = str(condition.get("reason", "")) if condition else "Pending"
        rows.append(
            DeviceRow(
                node=str(status.get("nodeName", "")),
                address=str(status.get("address", "")),
                class_id=str(status.get("classId", "")),
                vendor_id=str(status.get("vendorId", "")),
                device_id=str(status.get("deviceId", "")),
                description=str(status.get("description", "")),
                driver=str(status.get("kernelDriverInUse", "")),
                iommu_group=str(status.get("iommuGroup", "")),
                resource_name=str(status.get("resourceName", "")),
                claimed_by=claimed_by,
                claim_state=state,
                name=name,
            )
        )
    return sorted(rows, key=lambda row: (row.node, row.address))


def table(rows: Sequence[DeviceRow], *, with_node: bool) -> str:
    """Rows as aligned columns, one device a line, the description last (as lspci puts it)."""
    header = ["ADDRESS", "IDS", "DRIVER", "IOMMU", "RESOURCE NAME", "CLAIMED BY", "DESCRIPTION"]
    lines = [
        [
            row.address,
            f"{row.vendor_id}:{row.device_id}",
            row.driver or "-",
            row.iommu_group or "-",
            row.resource_name or "-",
            f"{row.claimed_by} ({row.claim_state})" if row.claimed_by else "-",
            row.description,
        ]
        for row in rows
    ]
    if with_node:
        header.insert(0, "NODE")
        for line, row in zip(lines, rows, strict=True):
            line.insert(0, row.node)
    widths = [max(len(cell) for cell in column) for column in zip(header, *lines, strict=True)]
    return "".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        + "\n"
        for line in [header, *lines]
    )


def group_members(target: DeviceRow, node_rows: Iterable[DeviceRow]) -> list[DeviceRow]:
    """``target`` and the other non-bridge devices of its IOMMU group on its node."""
    others = [
        row
        for row in node_rows
        if row.iommu_group == target.iommu_group and row.name != target.name and not row.is_bridge
    ]
    return [target, *sorted(others, key=lambda row: row.address)]


class Outcome(enum.Enum):
    """Where waiting on a claim stands."""

    WAITING = "waiting"
    READY = "ready"
    FAILED = "failed"


@attrs.frozen
class Progress:
    """A claim's state as the plugin reports it.

    Attributes:
        outcome: Whether to keep waiting.
        reason: The Ready condition's reason (``Pending`` before the agent saw the claim).
        message: Its message.
    """

    outcome: Outcome
    reason: str
    message: str


def claim_progress(claim: Mapping[str, Any]) -> Progress:
    """Whether a claim is bound (Ready), stuck on something only the user can fix, or moving."""
    condition = ready_condition(claim)
    if condition is None:
        return Progress(Outcome.WAITING, "Pending", "waiting for the node's agent to see the claim")
    reason = str(condition.get("reason", ""))
    message = str(condition.get("message", ""))
    if condition.get("status") == "True":
        return Progress(Outcome.READY, reason, message)
    if reason in _STUCK:
        return Progress(Outcome.FAILED, reason, message)
    return Progress(Outcome.WAITING, reason, message)
