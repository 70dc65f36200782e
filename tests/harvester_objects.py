"""Objects as Harvester's PCI devices controller leaves them, for the take-over tests.

A device Harvester moved to ``vfio-pci``: its PCIDevice carries the original driver in an
annotation, and its claim carries Harvester's finalizer and an ownerReference to the PCIDevice.
Shared by the take-over tests on the fake kernel and on the real kernel in the QEMU guest.
"""

from __future__ import annotations

from pcicore.takeover import HARVESTER_FINALIZER
from pcioperator.kube.api import PCIDEVICECLAIMS, PCIDEVICES, KubeApi

ORIGINAL_DRIVER = "harvesterhci.io/pcideviceDriver"
"""Harvester's annotation on a PCIDevice: the driver the device had before its claim."""


def create_harvester_device(
    api: KubeApi, name: str, *, node: str, original_driver: str
) -> dict[str, object]:
    """Create the PCIDevice ``name`` as Harvester left it: labelled, with its driver annotation."""
    return api.create(
        PCIDEVICES,
        {
            "apiVersion": PCIDEVICES.api_version,
            "kind": PCIDEVICES.kind,
            "metadata": {
                "name": name,
                "labels": {"nodename": node},
                "annotations": {ORIGINAL_DRIVER: original_driver},
            },
            "spec": {},
        },
    )


def create_harvester_claim(
    api: KubeApi, name: str, *, node: str, address: str, original_driver: str, user: str
) -> None:
    """Create the PCIDevice ``name`` and its claim the way Harvester's controller writes them.

    The claim's status says the device is passed through from ``original_driver``.
    """
    device = create_harvester_device(api, name, node=node, original_driver=original_driver)
    api.create(
        PCIDEVICECLAIMS,
        {
            "apiVersion": PCIDEVICECLAIMS.api_version,
            "kind": PCIDEVICECLAIMS.kind,
            "metadata": {
                "name": name,
                "finalizers": [HARVESTER_FINALIZER],
                "ownerReferences": [
                    {
                        "apiVersion": PCIDEVICES.api_version,
                        "kind": PCIDEVICES.kind,
                        "name": name,
                        "uid": device["metadata"]["uid"],
                    }
                ],
            },
            "spec": {"address": address, "nodeName": node, "userName": user},
        },
    )
    api.patch(
        PCIDEVICECLAIMS,
        name,
        {"status": {"kernelDriverToUnbind": original_driver, "passthroughEnabled": True}},
        subresource="status",
    )
