"""The kubelet DRA plugin on the guest's real kernel: prepare = vfio bind + CDI, unprepare = return.

The plugin runs in-process with the real host adapters (``/sys``, ``/proc``, ``/dev``, modprobe)
and serves real gRPC on unix sockets; the test is the kubelet, through the generated stubs of
the kubelet's own .proto. There is no API server in stage 1, so the ResourceClaims come from
memory (`dra_fakes.FakeResourceClaims`), allocated as the scheduler would; the real API server
path is tested in tests/integration/dra. Every check is on what the kernel shows: the driver
link, ``driver_override``, ``/dev/vfio/<N>`` and its ``VFIO_GROUP_GET_STATUS`` verdict, and that
every device node the CDI spec names exists as a character device.
"""

from __future__ import annotations

import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import grpc
import pytest

from dra_fakes import FakeResourceClaims, ref, result
from e2e.guest import rawsysfs, vfio
from e2e.layout import FREE_NIC, MGMT_NIC, SHARED_PAIR
from pcicore.dra import DRIVER_NAME
from pcicore.dra_preparer import DraPreparer, DraSettings
from pcicore.engine import ClaimEngine
from pcicore.naming import DeviceNamer
from pcicore.policy import GroupPolicy
from pcicore.protection import HostProtection
from pcihost.binding import Modprobe, SysfsDriverControl, SystemClock
from pcihost.dra_files import ClaimFiles, DraCheckpointFile
from pcihost.hostfacts import HostFactsReader
from pcihost.pciids_file import load_pci_ids
from pcihost.statefile import ClaimStateFile
from pcihost.sysfs import SysfsPciBus
from pcihost.vfio import HostVfioNodes
from pciplugin._generated.dra.v1 import api_pb2, api_pb2_grpc
from pciplugin.dra.host import DraPluginHost, DraPluginSettings

VIABLE = vfio.GroupStatus(viable=True, container_set=False)
NODE = "e2e-guest"
TIMEOUT = 120.0


class Killed(BaseException):
    """The plugin process dies here."""


class DyingControl:
    """The real driver control, dying at its ``at``-th write."""

    def __init__(self, real: SysfsDriverControl, at: int) -> None:
        self.real, self.at, self.count = real, at, 0

    def observe(self, address):
        return self.real.observe(address)

    def apply(self, action):
        self.count += 1
        if self.count == self.at:
            raise Killed
        self.real.apply(action)


@pytest.fixture
def folder():
    path = Path(tempfile.mkdtemp(prefix="dra", dir="/run"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def preparer(folder: Path, claims, *, policy=GroupPolicy.STRICT, control=None) -> DraPreparer:
    """A preparer on the real host, wired as pcidevices.wiring.dra_plugin wires it."""
    settings = settings_of(folder)
    bus = SysfsPciBus(Path("/sys"))
    ledger = ClaimStateFile(settings.ledger)
    engine = ClaimEngine(
        bus,
        control or SysfsDriverControl(Modprobe(), sysfs=Path("/sys"), proc=Path("/proc")),
        HostFactsReader(sysfs=Path("/sys"), proc=Path("/proc")),
        ledger,
        SystemClock(),
        protection=HostProtection(),
    )
    return DraPreparer(
        DraSettings(NODE, str(settings.metadata_dir), policy),
        claims=claims,
        checkpoint=DraCheckpointFile(settings.checkpoint),
        engine=engine,
        ledger=ledger,
        files=ClaimFiles(settings.cdi_dir, settings.metadata_dir),
        bus=bus,
        vfio=HostVfioNodes(Path("/dev"), Path("/sys")),
        namer=DeviceNamer(load_pci_ids()),
        clock=SystemClock(),
    )


def settings_of(folder: Path) -> DraPluginSettings:
    return DraPluginSettings(
        plugin_dir=folder / "plugin", registry_dir=folder / "reg", cdi_dir=folder / "cdi"
    )


@pytest.fixture
def plugin(folder):
    """A started plugin, its claims, and a kubelet stub."""
    claims = FakeResourceClaims()
    host = DraPluginHost(settings_of(folder), preparer(folder, claims))
    host.start()
    channel = grpc.insecure_channel(f"unix://{host.settings.socket}")
    yield host, claims, api_pb2_grpc.DRAPluginStub(channel)
    channel.close()
    host.stop()


def claim_of(claim_ref) -> list[api_pb2.Claim]:
    return [api_pb2.Claim(namespace=claim_ref.namespace, name=claim_ref.name, uid=claim_ref.uid)]


def prepare(stub, claim_ref) -> api_pb2.NodePrepareResourceResponse:
    request = api_pb2.NodePrepareResourcesRequest(claims=claim_of(claim_ref))
    return stub.NodePrepareResources(request, timeout=TIMEOUT).claims[claim_ref.uid]


def unprepare(stub, claim_ref) -> api_pb2.NodeUnprepareResourceResponse:
    request = api_pb2.NodeUnprepareResourcesRequest(claims=claim_of(claim_ref))
    return stub.NodeUnprepareResources(request, timeout=TIMEOUT).claims[claim_ref.uid]


def spec_nodes(folder: Path, uid: str) -> list[str]:
    spec = json.loads((folder / "cdi" / f"{DRIVER_NAME}-vfio_{uid}.json").read_text())
    return [
        node["path"]
        for device in spec["devices"]
        for node in device["containerEdits"]["deviceNodes"]
    ]


def override(address: str) -> str:
    return (rawsysfs.device_dir(address) / "driver_override").read_text().strip()


def test_prepare_binds_the_free_nic_and_its_cdi_nodes_exist_unprepare_returns_it(
    plugin, folder, record_property
):
    """e1000e → vfio-pci (group viable, every CDI node a char device) → e1000e; repeats no-op."""
    _host, claims, stub = plugin
    group = rawsysfs.iommu_group(FREE_NIC)
    interfaces = rawsysfs.net_interfaces(FREE_NIC)
    claims.allocate(ref(), result(FREE_NIC, pool=NODE))

    started = time.perf_counter()
    answer = prepare(stub, ref())
    record_property("first_prepare_ms", round((time.perf_counter() - started) * 1000, 1))

    assert answer.error == ""
    assert [d.device_name for d in answer.devices] == ["pci-0000-00-03-0"]
    assert rawsysfs.driver(FREE_NIC) == "vfio-pci"
    assert vfio.group_status(group) == VIABLE
    nodes = spec_nodes(folder, "uid-1")
    assert nodes[:2] == ["/dev/vfio/vfio", f"/dev/vfio/{group}"]
    assert all(Path(node).is_char_device() for node in nodes), nodes
    assert prepare(stub, ref()) == answer

    assert unprepare(stub, ref()).error == ""
    assert rawsysfs.driver(FREE_NIC) == "e1000e"
    assert override(FREE_NIC) == "(null)"
    assert rawsysfs.net_interfaces(FREE_NIC) == interfaces
    assert not (folder / "cdi" / f"{DRIVER_NAME}-vfio_uid-1.json").exists()
    assert unprepare(stub, ref()).error == ""


def test_half_the_shared_group_is_refused_both_together_are_prepared(plugin):
    """Strict: one e1000 alone is refused naming the other; both in one claim move and return."""
    _host, claims, stub = plugin
    first, second = SHARED_PAIR
    group = rawsysfs.iommu_group(first)
    claims.allocate(ref("half", "uid-2"), result(first, pool=NODE))
    refused = prepare(stub, ref("half", "uid-2"))
    assert "IommuGroupIncomplete" in refused.error
    assert f"{second} (e1000)" in refused.error
    assert [rawsysfs.driver(a) for a in SHARED_PAIR] == ["e1000", "e1000"]

    claims.allocate(ref("pair", "uid-3"), result(first, pool=NODE), result(second, pool=NODE))
    assert prepare(stub, ref("pair", "uid-3")).error == ""
    assert [rawsysfs.driver(a) for a in SHARED_PAIR] == ["vfio-pci", "vfio-pci"]
    assert vfio.group_status(group) == VIABLE
    assert unprepare(stub, ref("pair", "uid-3")).error == ""
    assert [rawsysfs.driver(a) for a in SHARED_PAIR] == ["e1000", "e1000"]


def test_the_management_nic_is_refused_and_keeps_its_driver(plugin):
    """The NIC of the default route: the claim's error names it; virtio-pci and eth0 stay."""
    _host, claims, stub = plugin
    claims.allocate(ref("mgmt", "uid-4"), result(MGMT_NIC, pool=NODE))
    refused = prepare(stub, ref("mgmt", "uid-4"))
    assert "HostDependsOnDevice" in refused.error
    assert "pci-0000-00-02-0" in refused.error
    assert rawsysfs.driver(MGMT_NIC) == "virtio-pci"


@pytest.mark.parametrize("at", [1, 2, 3])
def test_a_plugin_killed_mid_prepare_returns_the_nic_on_start(folder, at):
    """Killed at the ``at``-th sysfs write of a prepare: the next start puts e1000e back."""
    claims = FakeResourceClaims()
    claims.allocate(ref(), result(FREE_NIC, pool=NODE))
    real = SysfsDriverControl(Modprobe(), sysfs=Path("/sys"), proc=Path("/proc"))
    dying = preparer(folder, claims, control=DyingControl(real, at))
    with pytest.raises(Killed):
        dying.prepare(ref())
    assert preparer(folder, claims).start() == []
    assert rawsysfs.driver(FREE_NIC) == "e1000e"
    assert override(FREE_NIC) == "(null)"
    assert not (folder / "cdi").exists() or list((folder / "cdi").iterdir()) == []


def test_prepare_latency_on_the_real_kernel(plugin, record_property):
    """Five prepare/unprepare cycles of the free NIC: figures recorded, nothing asserted on time."""
    _host, claims, stub = plugin
    prepares, unprepares = [], []
    for cycle in range(5):
        claim_ref = ref(uid=f"lat-{cycle}")
        claims.allocate(claim_ref, result(FREE_NIC, pool=NODE))
        started = time.perf_counter()
        assert prepare(stub, claim_ref).error == ""
        prepares.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        assert unprepare(stub, claim_ref).error == ""
        unprepares.append((time.perf_counter() - started) * 1000)
        assert rawsysfs.driver(FREE_NIC) == "e1000e"
    record_property("prepare_ms", [round(v, 1) for v in prepares])
    record_property("prepare_ms_median", round(statistics.median(prepares), 1))
    record_property("unprepare_ms", [round(v, 1) for v in unprepares])
    print(f"DRA prepare ms: {prepares}; unprepare ms: {unprepares}")  # noqa: T201 - the figures
