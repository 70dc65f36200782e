"""What `kubectl pcidevices` shows and when it stops waiting, from API objects alone."""

from __future__ import annotations

import pytest

from pcidevices.kubectl.view import Outcome, claim_progress, device_rows, group_members, table


def device(node, address, group, class_id="0200", driver="igb"):
    name = f"{node}-{address.replace(':', '').replace('.', '')}"
    return {
        "metadata": {"name": name},
        "status": {
            "nodeName": node,
            "address": address,
            "classId": class_id,
            "vendorId": "8086",
            "deviceId": "1533",
            "description": "Ethernet controller: Intel Corporation I210",
            "kernelDriverInUse": driver,
            "iommuGroup": group,
            "resourceName": "intel.com/I210",
        },
    }


def claim(name, reason=None, status="False", user="alice"):
    body = {"metadata": {"name": name}, "spec": {"userName": user}}
    if reason:
        body["status"] = {
            "conditions": [{"type": "Ready", "status": status, "reason": reason, "message": "m"}]
        }
    return body


@pytest.mark.parametrize(
    ("reason", "status", "outcome"),
    [
        (None, None, Outcome.WAITING),
        ("InProgress", "False", Outcome.WAITING),
        ("DeviceBusy", "False", Outcome.WAITING),
        ("BoundToVfio", "True", Outcome.READY),
        ("HostDependsOnDevice", "False", Outcome.FAILED),
        ("IommuGroupIncomplete", "False", Outcome.FAILED),
        ("DenyListed", "False", Outcome.FAILED),
        ("BindFailed", "False", Outcome.FAILED),
        ("InvalidSpec", "False", Outcome.FAILED),
    ],
)
def test_claim_progress(reason, status, outcome):
    assert claim_progress(claim("n", reason, status)).outcome is outcome


def test_rows_join_claims_by_name_and_sort_by_node_then_address():
    devices = [device("b", "0000:01:00.0", "1"), device("a", "0000:03:00.0", "5")]
    devices.append(device("a", "0000:01:00.0", "1"))
    rows = device_rows(devices, [claim("a-000003000", "BoundToVfio", "True")])
    assert [(r.node, r.address) for r in rows] == [
        ("a", "0000:01:00.0"),
        ("a", "0000:03:00.0"),
        ("b", "0000:01:00.0"),
    ]
    assert (rows[1].claimed_by, rows[1].claim_state) == ("alice", "BoundToVfio")
    assert (rows[0].claimed_by, rows[0].claim_state) == ("", "")


def test_unhandled_claim_shows_pending():
    (row,) = device_rows([device("a", "0000:03:00.0", "5")], [claim("a-000003000")])
    assert row.claim_state == "Pending"


def test_group_members_skip_bridges_and_other_groups():
    devices = [
        device("a", "0000:01:00.1", "1"),
        device("a", "0000:00:01.0", "1", class_id="0604", driver="pcieport"),
        device("a", "0000:01:00.0", "1"),
        device("a", "0000:03:00.0", "5"),
    ]
    rows = device_rows(devices, [])
    target = next(r for r in rows if r.address == "0000:01:00.1")
    assert [r.address for r in group_members(target, rows)] == ["0000:01:00.1", "0000:01:00.0"]


def test_table_columns_and_node_column():
    rows = device_rows([device("a", "0000:03:00.0", "5", driver="")], [])
    header, line = table(rows, with_node=True).splitlines()
    assert header.split()[:2] == ["NODE", "ADDRESS"]
    assert line.split()[:6] == ["a", "0000:03:00.0", "8086:1533", "-", "5", "intel.com/I210"]
    assert line.endswith("Ethernet controller: Intel Corporation I210")
