"""Helpers of the webhook tests: claim bodies, devices with status, the API server's refusals."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
from kubernetes.client.exceptions import ApiException

from pcioperator.kube.api import PCIDEVICECLAIMS, PCIDEVICES, KubeApi

if TYPE_CHECKING:
    from collections.abc import Callable

TEST_LABEL = "pcidevices-webhook-test"
VALIDATING = "validate.pcideviceclaims.devices.harvesterhci.io"


class Webhook:
    """The registered webhooks of one test, and helpers to talk through them.

    Attributes:
        label: Value of `TEST_LABEL` that claims must carry to be reviewed.
        admin: `KubeApi` as the cluster admin.
    """

    def __init__(self, label: str, admin: KubeApi) -> None:
        """Helpers for claims labelled ``label``."""
        self.label = label
        self.admin = admin

    def claim_body(
        self, name: str, address: str, node: str, user_name: str | None = None
    ) -> dict[str, Any]:
        """A claim this test's webhooks review (``user_name`` None: no userName at all)."""
        spec: dict[str, Any] = {"address": address, "nodeName": node}
        if user_name is not None:
            spec["userName"] = user_name
        return {
            "apiVersion": PCIDEVICECLAIMS.api_version,
            "kind": PCIDEVICECLAIMS.kind,
            "metadata": {"name": name, "labels": {TEST_LABEL: self.label}},
            "spec": spec,
        }


def denial(message: str) -> str:
    """The text the API server answers when our validating webhook refuses."""
    return f'admission webhook "{VALIDATING}" denied the request: {message}'


def refusal(call: Callable[[], object]) -> str:
    """The API server's ``message`` when ``call`` is refused; fails the test if it is not."""
    try:
        call()
    except ApiException as err:
        return str(json.loads(err.body)["message"])
    pytest.fail("the API server accepted a request it should have refused")


def create_device(
    admin: KubeApi,
    node: str,
    address: str,
    *,
    name: str | None = None,
    iommu_group: str = "7",
    class_id: str = "0200",
    resource_name: str = "intel.com/I350_GIGABIT_NETWORK_CONNECTION",
    **extra: Any,
) -> str:
    """Create a PCIDevice with its status as the node agent would; return its name."""
    name = name or f"{node}-{address.replace(':', '').replace('.', '')}"
    admin.create(
        PCIDEVICES,
        {
            "apiVersion": PCIDEVICES.api_version,
            "kind": PCIDEVICES.kind,
            "metadata": {"name": name, "labels": {"nodename": node}},
        },
    )
    status = {
        "address": address,
        "vendorId": "8086",
        "deviceId": "1521",
        "classId": class_id,
        "iommuGroup": iommu_group,
        "nodeName": node,
        "resourceName": resource_name,
        "description": "Ethernet controller: Intel Corporation I350 Gigabit Network Connection",
        "kernelDriverInUse": "igb",
        **extra,
    }
    admin.patch(PCIDEVICES, name, {"status": status}, subresource="status")
    return name
