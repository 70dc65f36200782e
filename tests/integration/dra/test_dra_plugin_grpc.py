"""The kubelet DRA plugin over real gRPC on real unix sockets, binding on the fake kernel.

The kubelet's side is played with the *generated* stubs of the kubelet's own .proto files
(``api_pb2_grpc``), so the plugin's hand-written method tables are checked against them. The
ResourceClaims come from `dra_fakes.FakeResourceClaims`; see test_dra_plugin_kube.py for the
real API server.
"""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest

from dra_fakes import FakeResourceClaims, ref, result
from dra_node import CDI, dra_settings, make_plugin, mirror
from fakesys.background import stop_before_report
from fakesys.edit import remove
from fakesys.hosts import FREE_NIC, MGMT_NIC, workstation
from pcicore.dra import DRIVER_NAME
from pciplugin._generated.dra.v1 import api_pb2, api_pb2_grpc
from pciplugin._generated.drahealth.v1 import api_pb2 as health_pb2
from pciplugin._generated.drahealth.v1 import api_pb2_grpc as health_grpc
from pciplugin._generated.pluginregistration.v1 import api_pb2 as reg_pb2
from pciplugin._generated.pluginregistration.v1 import api_pb2_grpc as reg_grpc

SPEC = CDI / f"{DRIVER_NAME}-vfio_uid-1.json"
TIMEOUT = 30.0


class Kubelet:
    """The kubelet's calls, through the generated stubs."""

    def __init__(self, socket: Path) -> None:
        self.channel = grpc.insecure_channel(f"unix://{socket}")
        self.stub = api_pb2_grpc.DRAPluginStub(self.channel)

    @staticmethod
    def _claims(*refs):
        return [api_pb2.Claim(namespace=r.namespace, name=r.name, uid=r.uid) for r in refs]

    def prepare(self, *refs) -> dict[str, api_pb2.NodePrepareResourceResponse]:
        request = api_pb2.NodePrepareResourcesRequest(claims=self._claims(*refs))
        return dict(self.stub.NodePrepareResources(request, timeout=TIMEOUT).claims)

    def unprepare(self, *refs) -> dict[str, api_pb2.NodeUnprepareResourceResponse]:
        request = api_pb2.NodeUnprepareResourcesRequest(claims=self._claims(*refs))
        return dict(self.stub.NodeUnprepareResources(request, timeout=TIMEOUT).claims)


@pytest.fixture
def node(request, short_dir, fs):
    """A started plugin on the workstation, its claims, and the kubelet's client."""
    mirror(fs, short_dir)
    host = workstation(fs)
    claims = FakeResourceClaims()
    settings = dra_settings(short_dir)
    started = []

    def start():
        plugin = make_plugin(host, settings, claims)
        plugin.start()
        started.append(plugin)
        stop_before_report(request, plugin.stop)
        return plugin

    plugin = start()
    kubelet = Kubelet(settings.socket)
    yield host, claims, plugin, kubelet, start
    kubelet.channel.close()
    for plugin in started:
        plugin.stop()


class TestRegistration:
    """What the kubelet's plugin watcher learns from the registration socket."""

    def test_get_info_names_the_driver_its_socket_and_dra_v1(self, node):
        """Type DRAPlugin, our driver name, dra.sock, the services the 1.37 kubelet picks."""
        _host, _claims, plugin, _kubelet, _start = node
        with grpc.insecure_channel(f"unix://{plugin.settings.registration_socket}") as channel:
            stub = reg_grpc.RegistrationStub(channel)
            info = stub.GetInfo(reg_pb2.InfoRequest(), timeout=TIMEOUT)
            stub.NotifyRegistrationStatus(
                reg_pb2.RegistrationStatus(plugin_registered=True), timeout=TIMEOUT
            )
        assert info.type == "DRAPlugin"
        assert info.name == DRIVER_NAME
        assert info.endpoint == str(plugin.settings.socket)
        assert list(info.supported_versions) == ["v1.DRAPlugin", "v1.DRAResourceHealth"]
        assert plugin.registration.wait_registered(1.0) is True
        assert plugin.settings.registration_socket.name == f"{DRIVER_NAME}-reg.sock"


class TestPrepareOverGrpc:
    """NodePrepareResources / NodeUnprepareResources, as the kubelet sends them."""

    def test_prepare_binds_and_answers_the_cdi_ids_unprepare_returns(self, node):
        """The free NIC moves to vfio-pci and back; the spec appears and goes."""
        host, claims, _plugin, kubelet, _start = node
        claims.allocate(ref(), result(FREE_NIC))
        answer = kubelet.prepare(ref())["uid-1"]
        assert answer.error == ""
        (device,) = answer.devices
        assert (device.pool_name, device.device_name) == ("titan", "pci-0000-03-00-0")
        assert list(device.request_names) == ["nic"]
        assert list(device.cdi_device_ids) == [
            f"{DRIVER_NAME}/vfio=uid-1-pci-0000-03-00-0",
            f"{DRIVER_NAME}/metadata=uid-1_nic",
        ]
        assert host.driver(FREE_NIC) == "vfio-pci"
        assert host.kernel.vfio_groups() == {5}
        spec = json.loads(SPEC.read_text())
        nodes = [n["path"] for n in spec["devices"][0]["containerEdits"]["deviceNodes"]]
        assert nodes == ["/dev/vfio/vfio", "/dev/vfio/5"]

        assert kubelet.unprepare(ref())["uid-1"].error == ""
        assert host.driver(FREE_NIC) == "igb"
        assert not SPEC.exists()

    def test_repeated_calls_answer_the_same_and_write_nothing_more(self, node):
        """Prepare twice, unprepare twice: same answers; the second of each writes no sysfs."""
        host, claims, _plugin, kubelet, _start = node
        claims.allocate(ref(), result(FREE_NIC))
        first = kubelet.prepare(ref())
        writes = len(host.kernel.writes)
        assert writes > 0  # the first one moved the device through sysfs
        assert kubelet.prepare(ref()) == first
        assert len(host.kernel.writes) == writes
        assert kubelet.unprepare(ref())["uid-1"].error == ""
        writes = len(host.kernel.writes)
        assert kubelet.unprepare(ref())["uid-1"].error == ""
        assert len(host.kernel.writes) == writes
        assert host.driver(FREE_NIC) == "igb"

    def test_each_claim_gets_its_own_error(self, node):
        """The management NIC is refused with the fix; the other claim of the call prepares."""
        host, claims, _plugin, kubelet, _start = node
        claims.allocate(ref(), result(FREE_NIC))
        claims.allocate(ref("mgmt", "uid-2"), result(MGMT_NIC))
        answers = kubelet.prepare(ref(), ref("mgmt", "uid-2"))
        assert answers["uid-1"].error == ""
        error = answers["uid-2"].error
        assert "pci-0000-00-1f-6" in error
        assert "HostDependsOnDevice" in error
        assert "\n" not in error
        assert host.driver(MGMT_NIC) == "e1000e"
        assert host.driver(FREE_NIC) == "vfio-pci"

    def test_a_claim_the_kubelet_names_badly_is_refused_by_name(self, node):
        """A uid that could reach a path is refused in the claim's error, nothing moves."""
        host, _claims, _plugin, kubelet, _start = node
        bad = api_pb2.Claim(namespace="vms", name="x", uid="../../etc")
        request = api_pb2.NodePrepareResourcesRequest(claims=[bad])
        answer = kubelet.stub.NodePrepareResources(request, timeout=TIMEOUT).claims["../../etc"]
        assert "invalid ResourceClaim uid" in answer.error
        assert host.kernel.writes == []

    def test_a_restarted_plugin_still_has_the_claim_prepared(self, node):
        """Stop and start the plugin: the device stays bound, the kubelet's retry is answered."""
        host, claims, plugin, kubelet, start = node
        claims.allocate(ref(), result(FREE_NIC))
        first = kubelet.prepare(ref())
        plugin.stop()
        start()
        assert host.driver(FREE_NIC) == "vfio-pci"
        assert SPEC.exists()
        assert kubelet.prepare(ref()) == first
        assert kubelet.unprepare(ref())["uid-1"].error == ""
        assert host.driver(FREE_NIC) == "igb"


class TestHealthStream:
    """NodeWatchResources: the health of prepared devices, as the kubelet watches it."""

    def test_a_prepared_device_is_healthy_until_it_is_gone(self, node):
        """Empty list first; the prepared NIC Healthy; hot-removed, Unhealthy with the reason."""
        host, claims, _plugin, kubelet, _start = node
        stub = health_grpc.DRAResourceHealthStub(kubelet.channel)
        stream = stub.NodeWatchResources(health_pb2.NodeWatchResourcesRequest(), timeout=TIMEOUT)
        assert list(next(stream).devices) == []
        claims.allocate(ref(), result(FREE_NIC))
        assert kubelet.prepare(ref())["uid-1"].error == ""
        seen = next(stream)
        (device,) = seen.devices
        assert (device.device.pool_name, device.device.device_name) == (
            "titan",
            "pci-0000-03-00-0",
        )
        assert device.health == health_pb2.HEALTHY
        remove(host.tree, FREE_NIC)
        (device,) = next(stream).devices
        assert device.health == health_pb2.UNHEALTHY
        assert device.message == "device is gone from the bus"
        stream.cancel()
