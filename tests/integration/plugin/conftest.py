"""A kubelet stand-in on real unix sockets, and a live device plugin over an on-disk sysfs.

The stand-in serves ``v1beta1.Registration`` on ``kubelet.sock`` with the *generated* stubs
(``api_pb2_grpc``), records each registration and dials back to the plugin's endpoint, as the
kubelet does, so the plugin's hand-written method table is checked against the generated one.
"""

from __future__ import annotations

import queue
import shutil
import tempfile
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from fakesys.edit import vfio_group_node
from fakesys.tree import FakeDevice, SysfsTree
from pcicore.address import PciAddress
from pcicore.naming import ResourceName
from pcicore.resources import ClaimedDevice
from pcioperator.sysfs import SysfsPciBus
from pciplugin._generated.v1beta1 import api_pb2, api_pb2_grpc
from pciplugin.host import DevicePluginHost, PluginSettings
from pciplugin.vfio import HostVfioNodes

NIC = ResourceName("intel.com/I350_GIGABIT_NETWORK_CONNECTION")
GPU = ResourceName("nvidia.com/GA104_RTX_A4500_EMBEDDED_GPU")
WAIT = 2.0  # generous upper bound for waits; assertions on latency use their own limits

# Node: NUMA 0 has two NIC functions below root port 00:01.0, NUMA 1 one NIC below 80:01.0;
# a GPU without NUMA information sits on the root bus.
DEVICES = (
    FakeDevice("0000:00:01.0", klass=0x060400, numa_node=0, iommu_group=1, driver="pcieport"),
    FakeDevice("0000:80:01.0", klass=0x060400, numa_node=1, iommu_group=2, driver="pcieport"),
    FakeDevice(
        "0000:01:00.0", device=0x1521, driver="vfio-pci", iommu_group=12, numa_node=0,
        parent="0000:00:01.0",
    ),
    FakeDevice(
        "0000:01:00.1", device=0x1521, driver="vfio-pci", iommu_group=13, numa_node=0,
        parent="0000:00:01.0",
    ),
    FakeDevice(
        "0000:81:00.0", device=0x1521, driver="vfio-pci", iommu_group=40, numa_node=1,
        parent="0000:80:01.0",
    ),
    FakeDevice(
        "0000:05:00.0", vendor=0x10DE, device=0x2232, klass=0x030000, driver="vfio-pci",
        iommu_group=50, numa_node=-1,
    ),
)  # fmt: skip


class FakeClaims:
    """The `ClaimedDevices` port, as a list the test edits."""

    def __init__(self, claims):
        """Claim ``claims``."""
        self.claims = list(claims)

    def claimed(self):
        """Every claim now."""
        return list(self.claims)


def claim(address, resource=NIC, *, dedicated=False):
    """A claim on ``address``."""
    return ClaimedDevice(PciAddress.parse(address), resource, dedicated)


class Stream:
    """A ListAndWatch stream read on a thread; each message kept with its arrival time."""

    def __init__(self, stub):
        """Open the stream on ``stub`` and start reading it."""
        self._call = stub.ListAndWatch(api_pb2.Empty())
        self.messages: queue.Queue[tuple[float, api_pb2.ListAndWatchResponse]] = queue.Queue()
        self.latest: api_pb2.ListAndWatchResponse | None = None
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        try:
            for message in self._call:
                self.messages.put((time.monotonic(), message))
        except grpc.RpcError:
            pass

    def wait_for(self, predicate, timeout=WAIT):
        """The first message (from now on, or already queued) satisfying ``predicate``."""
        deadline = time.monotonic() + timeout
        while True:
            if self.latest is not None and predicate(self.latest):
                return self.latest
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"no matching ListAndWatch message within {timeout}s: {self.latest}")
            try:
                _, self.latest = self.messages.get(timeout=remaining)
            except queue.Empty:
                continue

    def health(self):
        """``{id: health}`` of the latest message."""
        assert self.latest is not None
        return {device.ID: device.health for device in self.latest.devices}

    def cancel(self):
        """End the stream."""
        self._call.cancel()
        self._thread.join(WAIT)


class KubeletStandIn(api_pb2_grpc.RegistrationServicer):
    """Serves Registration on ``<folder>/kubelet.sock``; dials plugins back on request."""

    def __init__(self, folder: Path):
        """Serve in ``folder`` (not yet started)."""
        self.folder = folder
        self.registrations: queue.Queue[api_pb2.RegisterRequest] = queue.Queue()
        self._server: grpc.Server | None = None
        self._channels: list[grpc.Channel] = []
        self._streams: list[Stream] = []

    def Register(self, request, _context):  # noqa: N802 - the generated servicer's name
        """Record ``request`` and accept it."""
        self.registrations.put(request)
        return api_pb2.Empty()

    def start(self):
        """Listen on kubelet.sock."""
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        api_pb2_grpc.add_RegistrationServicer_to_server(self, server)
        server.add_insecure_port(f"unix://{self.folder / 'kubelet.sock'}")
        server.start()
        self._server = server

    def stop(self):
        """Close the client side, stop serving, remove kubelet.sock."""
        for stream in self._streams:
            stream.cancel()
        for channel in self._channels:
            channel.close()
        self._streams.clear()
        self._channels.clear()
        if self._server is not None:
            self._server.stop(0).wait(WAIT)
            self._server = None
        (self.folder / "kubelet.sock").unlink(missing_ok=True)

    def restart(self):
        """What a kubelet restart does: stop, delete every socket in the folder, start again."""
        self.stop()
        for path in self.folder.glob("*.sock"):
            path.unlink()
        self.start()

    def next_registration(self, timeout=WAIT):
        """The next registration received."""
        return self.registrations.get(timeout=timeout)

    def registered(self, count, timeout=WAIT):
        """The next ``count`` registrations, keyed by resource name."""
        found = {}
        for _ in range(count):
            request = self.next_registration(timeout)
            found[request.resource_name] = request
        return found

    def dial(self, endpoint):
        """A generated DevicePlugin client on ``<folder>/<endpoint>``."""
        channel = grpc.insecure_channel(f"unix://{self.folder / endpoint}")
        self._channels.append(channel)
        return api_pb2_grpc.DevicePluginStub(channel)

    def watch(self, endpoint):
        """A ListAndWatch stream on ``endpoint``."""
        stream = Stream(self.dial(endpoint))
        self._streams.append(stream)
        return stream


@pytest.fixture
def short_tmp():
    """A short temporary folder: unix socket paths must stay below 108 bytes."""
    path = Path(tempfile.mkdtemp(prefix="dp", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def node(short_tmp):
    """The on-disk sysfs tree and /dev of the node, every group's VFIO node present."""
    tree = SysfsTree(short_tmp / "sys").add(*DEVICES)
    dev = short_tmp / "dev"
    for spec in DEVICES:
        if spec.driver == "vfio-pci":
            vfio_group_node(dev, spec.iommu_group)
    return tree, dev


@pytest.fixture
def kubelet(short_tmp):
    """A running kubelet stand-in on ``<tmp>/dp/kubelet.sock``."""
    folder = short_tmp / "dp"
    folder.mkdir()
    standin = KubeletStandIn(folder)
    standin.start()
    yield standin
    standin.stop()


@pytest.fixture
def claims():
    """Both NUMA-0 NICs and the NUMA-1 NIC pooled, the GPU in its own pool."""
    return FakeClaims(
        [claim("0000:01:00.0"), claim("0000:01:00.1"), claim("0000:81:00.0"),
         claim("0000:05:00.0", GPU)]
    )  # fmt: skip


@pytest.fixture
def make_host(node, kubelet, claims):
    """Build (not start) a plugin host over the node; every host built is stopped afterwards."""
    tree, dev = node
    built = []

    def make(**overrides):
        settings = PluginSettings(device_plugins_dir=kubelet.folder, **overrides)
        host = DevicePluginHost(
            settings, claims, SysfsPciBus(tree.root), HostVfioNodes(dev, tree.root)
        )
        built.append(host)
        return host

    yield make
    for host in built:
        host.stop()


@pytest.fixture
def host(make_host):
    """A started plugin host with default settings."""
    started = make_host()
    started.start()
    return started
