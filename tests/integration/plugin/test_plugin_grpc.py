"""The device plugin over real unix sockets, driven by a kubelet stand-in."""

import time

import grpc
import pytest

from fakesys.edit import add_vfio_cdev, read_all_ones, rebind, remove, vfio_group_node
from pcicore.address import PciAddress
from pcicore.resources import dedicated_resource_name
from pciplugin._generated.v1beta1 import api_pb2
from plugin_node import GPU, NIC, claim

NIC_SOCKET = "pcidevices-intel.com_I350_GIGABIT_NETWORK_CONNECTION.sock"
ALL_HEALTHY = {"0000:01:00.0": "Healthy", "0000:01:00.1": "Healthy", "0000:81:00.0": "Healthy"}


def healthy_set(stream):
    """Wait until the stream shows every NIC healthy; return its health map."""
    stream.wait_for(lambda m: {d.ID: d.health for d in m.devices} == ALL_HEALTHY)
    return stream.health()


def allocate(stub, *ids):
    """Allocate ``ids`` for one container."""
    request = api_pb2.AllocateRequest(
        container_requests=[api_pb2.ContainerAllocateRequest(devices_ids=list(ids))]
    )
    return stub.Allocate(request, timeout=2)


class TestRegistration:
    """Serving sockets and registering with the kubelet."""

    @pytest.mark.usefixtures("host")
    def test_each_resource_registers(self, kubelet):
        """One registration per resource: v1beta1, socket basename, preferred allocation on."""
        found = kubelet.registered(2)
        assert set(found) == {NIC, GPU}
        nic = found[NIC]
        assert nic.version == "v1beta1"
        assert nic.endpoint == NIC_SOCKET
        assert nic.options.get_preferred_allocation_available
        assert not nic.options.pre_start_required
        assert (kubelet.folder / NIC_SOCKET).is_socket()

    @pytest.mark.usefixtures("host")
    def test_options(self, kubelet):
        """GetDevicePluginOptions says preferred allocation is available."""
        kubelet.registered(2)
        options = kubelet.dial(NIC_SOCKET).GetDevicePluginOptions(api_pb2.Empty(), timeout=2)
        assert options.get_preferred_allocation_available
        assert not options.pre_start_required

    @pytest.mark.usefixtures("host")
    def test_re_registers_after_kubelet_restart(self, kubelet):
        """Sockets deleted and kubelet.sock recreated: serving and registered again within 1 s."""
        kubelet.registered(2)
        kubelet.restart()
        started = time.monotonic()
        again = kubelet.registered(2, timeout=1.0)
        assert time.monotonic() - started < 1.0
        assert set(again) == {NIC, GPU}
        stream = kubelet.watch(NIC_SOCKET)
        assert healthy_set(stream) == ALL_HEALTHY

    def test_registers_when_the_kubelet_comes_up_later(self, make_host, kubelet):
        """A plugin started before the kubelet registers once kubelet.sock appears."""
        kubelet.stop()
        make_host().start()
        time.sleep(0.2)
        assert kubelet.registrations.empty()
        kubelet.start()
        assert set(kubelet.registered(2, timeout=1.0)) == {NIC, GPU}

    def test_stop_removes_the_sockets(self, host, kubelet):
        """After stop, no plugin socket is left in the folder."""
        kubelet.registered(2)
        host.stop()
        assert sorted(p.name for p in kubelet.folder.iterdir()) == ["kubelet.sock"]

    def test_unclaimed_resource_stops_serving(self, host, kubelet, claims):
        """When nothing of a resource is claimed any more, its socket goes away."""
        kubelet.registered(2)
        claims.claims = [c for c in claims.claims if c.resource_name != GPU]
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and (
            len(list(kubelet.folder.iterdir())) > 2 or GPU in host.servers
        ):
            time.sleep(0.02)
        assert sorted(p.name for p in kubelet.folder.iterdir()) == ["kubelet.sock", NIC_SOCKET]
        assert set(host.servers) == {NIC}

    def test_dedicated_claim_gets_its_own_resource(self, make_host, kubelet, claims):
        """disableResourcePooling: the device leaves the pool for <pool>-<compact address>."""
        claims.claims = [claim("0000:01:00.0"), claim("0000:81:00.0", dedicated=True)]
        make_host().start()
        own = dedicated_resource_name(NIC, PciAddress.parse("0000:81:00.0"))
        found = kubelet.registered(2)
        assert set(found) == {NIC, own}
        assert own == "intel.com/I350_GIGABIT_NETWORK_CONNECTION-000081000"
        pool = kubelet.watch(NIC_SOCKET).wait_for(lambda m: len(m.devices) > 0)
        assert [d.ID for d in pool.devices] == ["0000:01:00.0"]
        alone = kubelet.watch(found[own].endpoint).wait_for(lambda m: len(m.devices) > 0)
        assert [d.ID for d in alone.devices] == ["0000:81:00.0"]
        response = allocate(kubelet.dial(found[own].endpoint), "0000:81:00.0")
        assert response.container_responses[0].envs == {
            "PCI_RESOURCE_INTEL_COM_I350_GIGABIT_NETWORK_CONNECTION-000081000": "0000:81:00.0"
        }


class TestListAndWatch:
    """The advertised device set and its health."""

    @pytest.mark.usefixtures("host")
    def test_devices_with_numa_topology(self, kubelet):
        """Each device carries its own NUMA node; a device without one carries no topology."""
        kubelet.registered(2)
        message = kubelet.watch(NIC_SOCKET).wait_for(lambda m: len(m.devices) == 3)
        assert {d.ID: [n.ID for n in d.topology.nodes] for d in message.devices} == {
            "0000:01:00.0": [0],
            "0000:01:00.1": [0],
            "0000:81:00.0": [1],
        }
        gpu_socket = kubelet.folder / "pcidevices-nvidia.com_GA104_RTX_A4500_EMBEDDED_GPU.sock"
        gpu = kubelet.watch(gpu_socket.name).wait_for(lambda m: len(m.devices) == 1)
        assert not gpu.devices[0].HasField("topology")

    @pytest.mark.parametrize(
        "change",
        [
            pytest.param(lambda tree, _dev: rebind(tree, "0000:01:00.1", "igb"), id="unbound"),
            pytest.param(lambda tree, _dev: remove(tree, "0000:01:00.1"), id="removed"),
            pytest.param(lambda tree, _dev: read_all_ones(tree, "0000:01:00.1"), id="vendor-ffff"),
            pytest.param(
                lambda _tree, dev: vfio_group_node(dev, 13, present=False), id="group-node-gone"
            ),
        ],
    )
    @pytest.mark.usefixtures("host")
    def test_unhealthy_within_a_second(self, kubelet, node, change):
        """Unbinding, removal, vendor 0xffff or a missing /dev/vfio/<N>: Unhealthy within 1 s."""
        kubelet.registered(2)
        stream = kubelet.watch(NIC_SOCKET)
        healthy_set(stream)
        change(*node)
        started = time.monotonic()
        stream.wait_for(lambda m: any(d.health == "Unhealthy" for d in m.devices), timeout=1.0)
        assert time.monotonic() - started < 1.0
        assert stream.health() == {**ALL_HEALTHY, "0000:01:00.1": "Unhealthy"}

    @pytest.mark.usefixtures("host")
    def test_healthy_again_after_rebinding(self, kubelet, node):
        """A device back on vfio-pci is advertised Healthy again."""
        tree, _ = node
        kubelet.registered(2)
        stream = kubelet.watch(NIC_SOCKET)
        healthy_set(stream)
        rebind(tree, "0000:01:00.0", None)
        stream.wait_for(lambda m: m.devices[0].health == "Unhealthy")
        rebind(tree, "0000:01:00.0", "vfio-pci")
        assert healthy_set(stream) == ALL_HEALTHY


class TestAllocate:
    """Allocate: KubeVirt's env var and device specs, or a gRPC error naming the bad ids."""

    @pytest.mark.usefixtures("host")
    def test_env_and_device_specs(self, kubelet):
        """PCI_RESOURCE_<name> lists the addresses; /dev/vfio/vfio and each group, mrw."""
        kubelet.registered(2)
        response = allocate(kubelet.dial(NIC_SOCKET), "0000:01:00.0", "0000:81:00.0")
        (container,) = response.container_responses
        assert dict(container.envs) == {
            "PCI_RESOURCE_INTEL_COM_I350_GIGABIT_NETWORK_CONNECTION": "0000:01:00.0,0000:81:00.0"
        }
        assert [(d.container_path, d.host_path, d.permissions) for d in container.devices] == [
            ("/dev/vfio/vfio", "/dev/vfio/vfio", "mrw"),
            ("/dev/vfio/12", "/dev/vfio/12", "mrw"),
            ("/dev/vfio/40", "/dev/vfio/40", "mrw"),
        ]

    def test_iommufd_device_nodes(self, make_host, kubelet, node):
        """Where iommufd exposes vfio-dev/vfioN, /dev/iommu and /dev/vfio/devices/vfioN follow."""
        tree, dev = node
        add_vfio_cdev(tree, "0000:01:00.0", 3)
        (dev / "iommu").touch()
        make_host().start()
        kubelet.registered(2)
        response = allocate(kubelet.dial(NIC_SOCKET), "0000:01:00.0")
        paths = [d.host_path for d in response.container_responses[0].devices]
        assert paths == ["/dev/vfio/vfio", "/dev/vfio/12", "/dev/iommu", "/dev/vfio/devices/vfio3"]

    @pytest.mark.usefixtures("host")
    def test_unknown_ids_are_invalid_argument(self, kubelet):
        """Ids that are not devices of the resource: INVALID_ARGUMENT naming them."""
        kubelet.registered(2)
        with pytest.raises(grpc.RpcError) as caught:
            allocate(kubelet.dial(NIC_SOCKET), "0000:01:00.0", "0000:05:00.0", "../../etc")
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "0000:05:00.0, ../../etc" in caught.value.details()

    @pytest.mark.usefixtures("host")
    def test_unhealthy_ids_are_failed_precondition(self, kubelet, node):
        """A device off vfio-pci: FAILED_PRECONDITION naming it and the reason."""
        tree, _ = node
        kubelet.registered(2)
        stream = kubelet.watch(NIC_SOCKET)
        healthy_set(stream)
        rebind(tree, "0000:81:00.0", "igb")
        stream.wait_for(lambda m: m.devices[2].health == "Unhealthy")
        with pytest.raises(grpc.RpcError) as caught:
            allocate(kubelet.dial(NIC_SOCKET), "0000:81:00.0")
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "0000:81:00.0: bound to igb, not vfio-pci" in caught.value.details()


class TestPreferredAllocation:
    """GetPreferredAllocation over gRPC."""

    @staticmethod
    def prefer(stub, available, must, size):
        """The preferred ids for one container."""
        request = api_pb2.PreferredAllocationRequest(
            container_requests=[
                api_pb2.ContainerPreferredAllocationRequest(
                    available_deviceIDs=available,
                    must_include_deviceIDs=must,
                    allocation_size=size,
                )
            ]
        )
        response = stub.GetPreferredAllocation(request, timeout=2)
        return list(response.container_responses[0].deviceIDs)

    @pytest.mark.usefixtures("host")
    def test_prefers_one_numa_node(self, kubelet):
        """Two of three: the two on NUMA node 0, whatever order they were offered in."""
        kubelet.registered(2)
        stub = kubelet.dial(NIC_SOCKET)
        offered = ["0000:81:00.0", "0000:01:00.1", "0000:01:00.0"]
        assert self.prefer(stub, offered, [], 2) == ["0000:01:00.0", "0000:01:00.1"]

    @pytest.mark.usefixtures("host")
    def test_must_include_comes_first(self, kubelet):
        """A must-include device leads; the rest fill up in address order."""
        kubelet.registered(2)
        stub = kubelet.dial(NIC_SOCKET)
        offered = ["0000:01:00.0", "0000:01:00.1", "0000:81:00.0"]
        assert self.prefer(stub, offered, ["0000:81:00.0"], 2) == [
            "0000:81:00.0",
            "0000:01:00.0",
        ]

    @pytest.mark.usefixtures("host")
    def test_unknown_ids_are_invalid_argument(self, kubelet):
        """Offered ids the resource does not have: INVALID_ARGUMENT naming them."""
        kubelet.registered(2)
        with pytest.raises(grpc.RpcError) as caught:
            self.prefer(kubelet.dial(NIC_SOCKET), ["0000:01:00.0", "0000:09:00.0"], [], 1)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "0000:09:00.0" in caught.value.details()
