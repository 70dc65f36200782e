"""Taking over the KubeVirt CR of a Harvester cluster, on a real kube-apiserver + etcd.

Harvester keeps its KubeVirt CR in ``harvester-system`` and writes its permitted entries itself:
lower-case ``pciVendorSelector``, ``externalResourceProvider: true``, no ownership record of
ours. The tests below build such a CR (in a namespace of their own, with a name of their own so
that other tests' CRs on the shared API server do not count) and start our controller without
telling it the namespace.
"""

from __future__ import annotations

import logging

import pytest
from kubevirt_objects import NIC, SLOW, kubevirt_body, make_claim, make_device, permitted

from pcioperator.controllers.kubevirt import KUBEVIRTS, KubeVirtTarget, PermittedDevicesSync
from polling import wait_for

pytestmark = pytest.mark.kube

HARVESTERS_NIC = {
    "pciVendorSelector": "8086:1521",
    "resourceName": NIC,
    "externalResourceProvider": True,
}
HARVESTERS_GPU = {
    "pciVendorSelector": "10de:2236",
    "resourceName": "nvidia.com/GA102GL_A10",
    "externalResourceProvider": True,
}


class TestFindsTheKubeVirtCR:
    """Without --kubevirt-namespace the controller keeps the CR it finds."""

    def test_cr_in_another_namespace_is_found_and_harvesters_entries_kept(
        self, api, make_namespace, start_controller, unique_name
    ):
        """A claim's entry lands in the CR found; Harvester's entries stay, none duplicated."""
        namespace, name = make_namespace(), unique_name("kubevirt")
        api.create(
            KUBEVIRTS,
            kubevirt_body(namespace, name, entries=(HARVESTERS_NIC, HARVESTERS_GPU)),
            namespace,
        )
        start_controller(KubeVirtTarget(name=name, absent_retry=0.3))
        node = unique_name("node")
        make_device(api, node, "0000:03:00.0")
        make_device(api, node, "0000:04:00.0", vendor="1af4", device="1041", resource="x.io/V")
        make_claim(api, node, "0000:03:00.0")
        make_claim(api, node, "0000:04:00.0")
        ours = {"pciVendorSelector": "1af4:1041", "resourceName": "x.io/V"}
        wait_for(
            lambda: (
                permitted(api, namespace, name)
                == [HARVESTERS_NIC, HARVESTERS_GPU, {**ours, "externalResourceProvider": True}]
            ),
            timeout=SLOW,
        )

    def test_upper_case_entry_of_ours_is_kept_as_written(
        self, api, make_namespace, start_controller, unique_name
    ):
        """An entry we recorded in upper case (an earlier release) is still ours: no rewrite."""
        namespace, name = make_namespace(), unique_name("kubevirt")
        upper = {"pciVendorSelector": "8086:15BC", "resourceName": "intel.com/E", **_EXT}
        body = kubevirt_body(namespace, name, entries=(upper,))
        body["metadata"]["annotations"] = {
            "devices.harvesterhci.io/managed-pci-host-devices": (
                '[{"pciVendorSelector":"8086:15BC","resourceName":"intel.com/E"}]'
            )
        }
        api.create(KUBEVIRTS, body, namespace)
        node = unique_name("node")
        make_device(api, node, "0000:00:1f.6", device="15bc", resource="intel.com/E")
        make_claim(api, node, "0000:00:1f.6")
        controller = start_controller(KubeVirtTarget(name=name, absent_retry=0.3))
        wait_for(lambda: controller.sync.last_plan is not None, timeout=SLOW)
        wait_for(lambda: len(controller.queue) == 0, timeout=SLOW)
        assert permitted(api, namespace, name) == [upper]
        assert not controller.sync.last_plan.changed

    def test_several_crs_keep_none_and_say_so_once(
        self, api, make_namespace, start_controller, unique_name, caplog
    ):
        """Two CRs fit: neither is written, and one warning names both."""
        name = unique_name("kubevirt")
        first, second = make_namespace(), make_namespace()
        for namespace in (first, second):
            api.create(KUBEVIRTS, kubevirt_body(namespace, name, entries=()), namespace)
        caplog.set_level(logging.INFO, logger="pcioperator.controllers.kubevirt")
        controller = start_controller(KubeVirtTarget(name=name, absent_retry=0.3))
        node = unique_name("node")
        make_device(api, node, "0000:03:00.0")
        make_claim(api, node, "0000:03:00.0")
        lists = controller.api.requests["list"]
        wait_for(lambda: controller.api.requests["list"] >= lists + 3, timeout=SLOW)
        said = [r.message for r in caplog.records if "several KubeVirt CRs fit" in r.message]
        assert len(said) == 1
        assert f"{first}/{name}" in said[0]
        assert f"{second}/{name}" in said[0]
        assert permitted(api, first, name) == permitted(api, second, name) == []
        assert controller.queue.failures(PermittedDevicesSync.KEY) == 0


_EXT = {"externalResourceProvider": True}
