"""The KubeVirt permitted-devices controller against a real kube-apiserver + etcd."""

from __future__ import annotations

import logging

import pytest
from kubevirt_objects import (
    CRD,
    NIC,
    OURS,
    SLOW,
    USER_ENTRY,
    annotation,
    delete_claim,
    kubevirt_body,
    make_claim,
    make_device,
    permitted,
    set_entries,
    settled,
)

from pcioperator.controllers.kubevirt import KUBEVIRTS, KubeVirtTarget, PermittedDevicesSync
from polling import wait_for

pytestmark = pytest.mark.kube


class TestPermittedDevices:
    """The CR's pciHostDevices follow the claims; users' entries are never touched."""

    def test_claim_adds_entry_and_deleting_it_removes_it(self, api, kubevirt, unique_name):
        """A claim adds an external entry beside the user's; deleting the claim removes it."""
        namespace, _ = kubevirt
        node = unique_name("node")
        make_device(api, node, "0000:03:00.0")
        claim = make_claim(api, node, "0000:03:00.0")
        wait_for(lambda: permitted(api, namespace) == [USER_ENTRY, OURS], timeout=SLOW)
        assert annotation(api, namespace) == (
            '[{"pciVendorSelector":"8086:1521","resourceName":"' + NIC + '"}]'
        )
        delete_claim(api, claim)
        wait_for(lambda: permitted(api, namespace) == [USER_ENTRY], timeout=SLOW)
        assert annotation(api, namespace) is None

    def test_entry_stays_while_another_claim_needs_it(self, api, kubevirt, unique_name):
        """Two claims of one kind on two nodes need one entry; it goes with the last claim."""
        namespace, controller = kubevirt
        nodes = [unique_name("node"), unique_name("node")]
        claims = []
        for node in nodes:
            make_device(api, node, "0000:03:00.0")
            claims.append(make_claim(api, node, "0000:03:00.0"))
        wait_for(lambda: permitted(api, namespace) == [USER_ENTRY, OURS], timeout=SLOW)
        delete_claim(api, claims[0])
        wait_for(lambda: controller.caches.claims.get(claims[0]) is None, timeout=SLOW)
        wait_for(lambda: settled(controller.sync), timeout=SLOW)
        assert permitted(api, namespace) == [USER_ENTRY, OURS]
        delete_claim(api, claims[1])
        wait_for(lambda: permitted(api, namespace) == [USER_ENTRY], timeout=SLOW)

    def test_second_reconcile_writes_nothing(self, api, kubevirt, unique_name):
        """Once the CR is in step, reconciling again makes no write at all."""
        namespace, controller = kubevirt
        node = unique_name("node")
        make_device(api, node, "0000:03:00.0")
        make_claim(api, node, "0000:03:00.0")
        wait_for(lambda: permitted(api, namespace) == [USER_ENTRY, OURS], timeout=SLOW)
        wait_for(lambda: settled(controller.sync), timeout=SLOW)
        before = controller.api.requests.copy()
        assert controller.sync.reconcile() is None
        after = controller.api.requests
        assert {verb: after[verb] - before[verb] for verb in ("create", "update", "patch")} == {
            "create": 0,
            "update": 0,
            "patch": 0,
        }
        assert not controller.sync.last_plan.changed

    def test_users_entry_with_same_resource_is_not_duplicated_nor_owned(
        self, api, make_namespace, start_controller, unique_name
    ):
        """A user's entry for the claimed resource serves; it is neither duplicated nor removed."""
        namespace = make_namespace()
        user_nic = {"pciVendorSelector": "8086:1521", "resourceName": NIC}
        api.create(KUBEVIRTS, kubevirt_body(namespace, entries=(USER_ENTRY, user_nic)), namespace)
        controller = start_controller(KubeVirtTarget(namespace=namespace))
        node = unique_name("node")
        make_device(api, node, "0000:03:00.0")
        claim = make_claim(api, node, "0000:03:00.0")
        wait_for(
            lambda: controller.sync.last_plan is not None and controller.sync.last_plan.blocked,
            timeout=SLOW,
        )
        assert permitted(api, namespace) == [USER_ENTRY, user_nic]
        delete_claim(api, claim)
        wait_for(lambda: controller.caches.claims.get(claim) is None, timeout=SLOW)
        wait_for(lambda: settled(controller.sync), timeout=SLOW)
        assert permitted(api, namespace) == [USER_ENTRY, user_nic]
        assert annotation(api, namespace) is None

    def test_dedicated_claim_gets_its_own_resource(self, api, kubevirt, unique_name):
        """A claim with disableResourcePooling permits the device's own resource name."""
        namespace, _ = kubevirt
        node = unique_name("node")
        make_device(api, node, "0000:03:00.1")
        make_claim(api, node, "0000:03:00.1", disableResourcePooling=True)
        dedicated = {**OURS, "resourceName": f"intel.com/{node}-000003001"}
        wait_for(lambda: permitted(api, namespace) == [USER_ENTRY, dedicated], timeout=SLOW)

    def test_user_edits_survive_and_removed_entry_comes_back(self, api, kubevirt, unique_name):
        """Our entry deleted by hand while claimed is re-added; users' later edits are kept."""
        namespace, _ = kubevirt
        node = unique_name("node")
        make_device(api, node, "0000:03:00.0")
        make_claim(api, node, "0000:03:00.0")
        wait_for(lambda: permitted(api, namespace) == [USER_ENTRY, OURS], timeout=SLOW)
        gpu = {"pciVendorSelector": "10DE:2236", "resourceName": "nvidia.com/A10"}
        set_entries(api, namespace, [USER_ENTRY, gpu])
        wait_for(lambda: permitted(api, namespace) == [USER_ENTRY, gpu, OURS], timeout=SLOW)

    def test_missing_cr_is_waited_for_without_errors(
        self, api, make_namespace, start_controller, unique_name
    ):
        """Without the CR the controller waits quietly; once it appears, it is filled in."""
        namespace = make_namespace()
        controller = start_controller(KubeVirtTarget(namespace=namespace))
        node = unique_name("node")
        make_device(api, node, "0000:03:00.0")
        claim = make_claim(api, node, "0000:03:00.0")
        wait_for(controller.caches.kubevirts.synced.is_set, timeout=SLOW)
        wait_for(lambda: controller.caches.claims.get(claim) is not None, timeout=SLOW)
        wait_for(lambda: len(controller.queue) == 0, timeout=SLOW)
        assert controller.queue.failures(PermittedDevicesSync.KEY) == 0
        api.create(KUBEVIRTS, kubevirt_body(namespace), namespace)
        wait_for(lambda: permitted(api, namespace) == [USER_ENTRY, OURS], timeout=SLOW)


class TestWithoutKubeVirt:
    """A cluster without KubeVirt is normal: said once, looked at again slowly, no error loop."""

    def test_absent_crd_is_logged_once_and_found_when_installed(  # noqa: PLR0917 - fixtures
        self, kube, kubevirt_crd, api, make_namespace, start_controller, unique_name, caplog
    ):
        """With the CRD gone the controller logs one line; once installed, it fills the CR."""
        result = kube.kubectl("delete", "--ignore-not-found", "--wait=true", "-f", str(CRD))
        assert result.returncode == 0, result.stderr
        try:
            namespace = make_namespace()
            caplog.set_level(logging.INFO, logger="pcioperator.controllers.kubevirt")
            controller = start_controller(KubeVirtTarget(namespace=namespace, absent_retry=0.3))
            lists = controller.api.requests["list"]
            wait_for(lambda: controller.api.requests["list"] >= lists + 3, timeout=SLOW)
            absent = [r for r in caplog.records if "KubeVirt API not available" in r.message]
            assert len(absent) == 1
            assert not controller.caches.kubevirts.synced.is_set()
            assert controller.queue.failures(PermittedDevicesSync.KEY) == 0
        finally:
            kube.install_crds([CRD])
        api.create(KUBEVIRTS, kubevirt_body(namespace), namespace)
        node = unique_name("node")
        make_device(api, node, "0000:03:00.0")
        make_claim(api, node, "0000:03:00.0")
        wait_for(lambda: permitted(api, namespace) == [USER_ENTRY, OURS], timeout=SLOW)
