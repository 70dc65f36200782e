"""The kubelet DRA plugin reading real ResourceClaims from the real API server.

A ResourceClaim is created in the harness's kube-apiserver and its ``status.allocation`` written
through the status subresource, as the scheduler writes it; the plugin, on real gRPC sockets and
the fake kernel, reads it through `KubeResourceClaims` (the adapter the wiring uses) when the
kubelet's call names it. The Kubernetes client and TLS use the real filesystem (pyfakefs skips
them), the plugin's sysfs writes land in the fake kernel.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import grpc
import pytest
from pyfakefs.fake_filesystem_unittest import Patcher

from dra_fakes import ref
from dra_kube import allocate, create_claim, make_namespace
from dra_node import CDI, dra_settings, make_plugin, mirror
from fakesys.background import stop_before_report
from fakesys.descriptors import guard_descriptors
from fakesys.hosts import FREE_NIC, GPU, workstation
from pcicore.dra import DRIVER_NAME
from pcioperator.controllers.resourceclaims import KubeResourceClaims
from pcioperator.kube.api import KubeApi
from pcioperator.wire.resourceclaim import RESOURCECLAIMS
from pciplugin._generated.dra.v1 import api_pb2, api_pb2_grpc

pytestmark = pytest.mark.kube

REAL_FS_MODULES = ["kubernetes", "urllib3", "ssl", "certifi", "http", "socket", "harness"]
TIMEOUT = 30.0


@pytest.fixture
def fake_fs(kube, short_dir) -> Iterator[object]:
    with Patcher(additional_skip_names=REAL_FS_MODULES) as patcher:
        guard_descriptors(patcher.fs)
        patcher.fs.add_real_directory(str(kube.pki))
        mirror(patcher.fs, short_dir)
        yield patcher.fs


@pytest.fixture
def namespace(kube, unique_name) -> str:
    return make_namespace(KubeApi(kube.api_client), unique_name("dra"))


@pytest.fixture
def plugin(request, kube, fake_fs, short_dir):
    host = workstation(fake_fs)
    api = KubeApi(kube.api_client)
    plugin = make_plugin(host, dra_settings(short_dir), KubeResourceClaims(api))
    plugin.start()
    stop_before_report(request, plugin.stop)
    yield host, api, plugin
    plugin.stop()


def call(plugin, method: str, namespace: str, name: str, uid: str):
    claim = api_pb2.Claim(namespace=namespace, name=name, uid=uid)
    with grpc.insecure_channel(f"unix://{plugin.settings.socket}") as channel:
        stub = api_pb2_grpc.DRAPluginStub(channel)
        if method == "prepare":
            request = api_pb2.NodePrepareResourcesRequest(claims=[claim])
            return stub.NodePrepareResources(request, timeout=TIMEOUT).claims[uid]
        request = api_pb2.NodeUnprepareResourcesRequest(claims=[claim])
        return stub.NodeUnprepareResources(request, timeout=TIMEOUT).claims[uid]


class TestRealResourceClaims:
    """The allocation the plugin prepares is the one the API server holds."""

    def test_an_allocated_claim_is_prepared_and_unprepared(self, plugin, namespace):
        """The scheduler's allocation of the free NIC: bound, CDI spec, then returned."""
        host, api, dra = plugin
        uid = create_claim(api, namespace, "vm-nic", ["nic"])
        allocate(api, namespace, "vm-nic", [("nic", "pci-0000-03-00-0")])
        answer = call(dra, "prepare", namespace, "vm-nic", uid)
        assert answer.error == ""
        assert [d.device_name for d in answer.devices] == ["pci-0000-03-00-0"]
        assert host.driver(FREE_NIC) == "vfio-pci"
        spec = json.loads((CDI / f"{DRIVER_NAME}-vfio_{uid}.json").read_text())
        assert spec["devices"][0]["containerEdits"]["env"] == [
            "PCI_RESOURCE_INTEL_COM_I210_GIGABIT_NETWORK_CONNECTION=0000:03:00.0"
        ]
        again = call(dra, "prepare", namespace, "vm-nic", uid)
        assert again == answer
        assert call(dra, "unprepare", namespace, "vm-nic", uid).error == ""
        assert host.driver(FREE_NIC) == "igb"
        assert call(dra, "unprepare", namespace, "vm-nic", uid).error == ""

    def test_an_unallocated_claim_is_an_error_and_moves_nothing(self, plugin, namespace):
        """No status.allocation yet: the claim's error says so."""
        host, api, dra = plugin
        uid = create_claim(api, namespace, "later", ["nic"])
        answer = call(dra, "prepare", namespace, "later", uid)
        assert "no status.allocation" in answer.error
        assert host.kernel.writes == []

    def test_a_claim_recreated_under_its_name_is_not_prepared(self, plugin, namespace):
        """The kubelet's uid is the old claim's: refused, naming both uids."""
        host, api, dra = plugin
        old = create_claim(api, namespace, "vm-gpu", ["gpu"])
        api.delete(RESOURCECLAIMS, "vm-gpu", namespace)
        new = create_claim(api, namespace, "vm-gpu", ["gpu"])
        allocate(api, namespace, "vm-gpu", [("gpu", "pci-0000-01-00-0")])
        answer = call(dra, "prepare", namespace, "vm-gpu", old)
        assert f"now has uid {new}" in answer.error
        assert host.driver(GPU) == "nouveau"

    def test_a_claim_gone_from_the_api_is_an_error(self, plugin, namespace):
        """Deleted before the kubelet's call: the error says delete the pod."""
        _host, _api, dra = plugin
        answer = call(dra, "prepare", namespace, "gone", ref().uid)
        assert "no longer exists" in answer.error
