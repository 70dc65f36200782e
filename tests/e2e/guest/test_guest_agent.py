"""Stage 2 on the real kernel: the agent and its device plugin against a real API server.

etcd and kube-apiserver (`tests/harness/kube.py`, lean profile, from the host's cache, which the
guest sees at the same path) run on the guest's loopback, started in the background while stage
1 runs (`e2e.guest.cluster`); the agent runs as `pcidevices agent` against the guest's real
`/sys`, with its device plugin registering at a kubelet stand-in over real unix sockets. A
PCIDeviceClaim for the free e1000e must reach `passthroughEnabled` with the NIC on vfio-pci, the
plugin must advertise it Healthy and `Allocate` must return the group's `/dev/vfio/<N>`, which
exists; deleting the claim must return the NIC and withdraw the resource. Then the NVMe SR-IOV PF
gets two VFs (`pcihost.sriov`, as the SR-IOV sync writes them): the agent must publish a
PCIDevice for each, with `physFn`, and the PF's `totalVFs`/`numVFs`; with no SRIOVNetworkDevice
(the PF is not a network controller); when the count drops to 0 the VFs' PCIDevices must go.
Last, USB: the agent publishes a USBDevice per device of the guest's USB bus; a USBDeviceClaim
enables the mass-storage stick, whose resource the plugin registers and allocates with its real
`/dev/bus/usb/BBB/DDD`; QEMU's `device_del` (`e2e.guest.hotplug`) unplugs it, the USBDevice turns
`orphaned` and the plugin reports it Unhealthy; deleting the claim deletes the orphan.
Every phase's duration goes to `stage2-timings.json` on the result share (TCG is slow).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.guest import hotplug, rawsysfs, vfio
from e2e.guest.cluster import STAGE2_CLUSTER
from e2e.layout import (
    FREE_NIC,
    GUEST_HOSTNAME,
    GUEST_USB_DEVICES,
    NVME_MAX_VFS,
    NVME_PF,
    NVME_VFS,
    USB_CONTROLLER,
)
from e2e.qemu import RESULT_MOUNT
from harness.kube import KubeCluster
from kubelet_standin import KubeletStandIn
from pcicore.address import PciAddress
from pcicore.naming import ResourceName
from pcicore.usb import usb_env_var
from pcihost.sriov import SysfsSriovControl
from pcihost.usb import QEMU_UID
from pcioperator.kube.api import (
    NODES,
    PCIDEVICECLAIMS,
    PCIDEVICES,
    SRIOVNETWORKDEVICES,
    USBDEVICECLAIMS,
    USBDEVICES,
    KubeApi,
)
from pcioperator.kube.errors import NotFoundError
from pciplugin._generated.v1beta1 import api_pb2
from polling import wait_for

CLUSTER_TIMEOUT = 600.0
"""Seconds the test waits for the background cluster on top of the time stage 1 took."""
TIMINGS: dict[str, float] = {}
_TIMINGS_FILE = Path(RESULT_MOUNT, "stage2-timings.json")


def _record() -> None:
    _TIMINGS_FILE.write_text(json.dumps({**STAGE2_CLUSTER.timings, **TIMINGS}, indent=2) + "\n")


class _Phase:
    """Time one phase into `TIMINGS` and the result share."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> None:
        self.started = time.monotonic()

    def __exit__(self, *exc: object) -> None:
        TIMINGS[self.name] = round(time.monotonic() - self.started, 1)
        _record()


@pytest.fixture(scope="module")
def cluster() -> Iterator[KubeCluster]:
    """The API server and etcd on the guest's loopback, CRDs installed (started at collection)."""
    try:
        yield STAGE2_CLUSTER.wait(CLUSTER_TIMEOUT)
    finally:
        _record()
        with _Phase("cluster_stop"):
            STAGE2_CLUSTER.stop(keep_logs=Path(RESULT_MOUNT, "stage2-cluster"))


@pytest.fixture
def kubelet() -> Iterator[KubeletStandIn]:
    """A kubelet stand-in in a short folder (unix socket paths stay below 108 bytes)."""
    standin = KubeletStandIn(Path(tempfile.mkdtemp(prefix="dp-", dir="/run")))
    standin.start()
    yield standin
    standin.stop()


def _devices(api: KubeApi) -> dict[str, dict]:
    items, _ = api.list_objects(PCIDEVICES, label_selector=f"nodename={GUEST_HOSTNAME}")
    # The agent creates each object, then writes its status (a subresource): wait for both.
    return {item["status"]["address"]: item for item in items if item.get("status")}


def _passthrough(api: KubeApi, name: str) -> dict | None:
    claim = api.get(PCIDEVICECLAIMS, name)
    return claim if (claim.get("status") or {}).get("passthroughEnabled") else None


def _pf_reports(api: KubeApi, count: int) -> dict | None:
    """The PF's PCIDevice status once it reports ``count`` VFs enabled."""
    status = _devices(api).get(NVME_PF, {}).get("status", {})
    return status if status.get("numVFs") == count else None


def _gone(api: KubeApi, name: str) -> bool:
    try:
        api.get(PCIDEVICECLAIMS, name)
    except NotFoundError:
        return True
    return False


def _allocate(
    kubelet: KubeletStandIn, endpoint: str, device: str
) -> api_pb2.ContainerAllocateResponse:
    request = api_pb2.AllocateRequest(
        container_requests=[api_pb2.ContainerAllocateRequest(devices_ids=[device])]
    )
    (container,) = kubelet.dial(endpoint).Allocate(request, timeout=60).container_responses
    return container


def _vfs_published_then_removed(api: KubeApi) -> None:
    """Two VFs of the NVMe PF get PCIDevices with `physFn`; at 0 VFs their PCIDevices go."""
    # QEMU's NVMe VFs are offline: nvme would bind and drop them half a second later
    # (test_guest_sriov.py); without autoprobe they come up, and stay, with no driver.
    pf_dir = rawsysfs.device_dir(NVME_PF)
    rawsysfs.write_attribute(pf_dir / "sriov_drivers_autoprobe", "0")
    try:
        with _Phase("vfs_published"):
            SysfsSriovControl().write_num_vfs(PciAddress.parse(NVME_PF), NVME_MAX_VFS)
            wait_for(lambda: set(NVME_VFS) <= set(_devices(api)), timeout=180, interval=1)
            pf = wait_for(lambda: _pf_reports(api, NVME_MAX_VFS), timeout=180, interval=1)
        assert pf["totalVFs"] == NVME_MAX_VFS
        for vf in NVME_VFS:
            status = _devices(api)[vf]["status"]
            assert status["physFn"] == NVME_PF
            assert status["iommuGroup"] == str(rawsysfs.iommu_group(vf))
            assert status["kernelDriverInUse"] == ""
        assert api.list_objects(SRIOVNETWORKDEVICES)[0] == []  # not a network PF
        with _Phase("vfs_removed"):
            SysfsSriovControl().write_num_vfs(PciAddress.parse(NVME_PF), 0)
            wait_for(lambda: not set(NVME_VFS) & set(_devices(api)), timeout=180, interval=1)
            wait_for(lambda: _pf_reports(api, 0), timeout=180, interval=1)
    finally:
        rawsysfs.write_attribute(pf_dir / "sriov_numvfs", "0")
        rawsysfs.write_attribute(pf_dir / "sriov_drivers_autoprobe", "1")


SYS_USB_DEVICES = Path("/sys/bus/usb/devices")
STICK = next(device for device in GUEST_USB_DEVICES if device.qemu_id == "usbstick")
"""The USB device stage 2 claims and unplugs (stage 1's unplug test takes the serial adapter)."""


def _usb_attribute(name: str, attr: str) -> str:
    return (SYS_USB_DEVICES / name / attr).read_text().strip()


def _usb_names_on_the_bus() -> set[str]:
    """`<node>-vvvv-pppp-BBBDDD` of every USB device in sysfs now (read without project code)."""
    names = set()
    for entry in SYS_USB_DEVICES.iterdir():
        if ":" in entry.name or entry.name.startswith("usb"):
            continue  # an interface, or a root hub
        vendor, product, bus, devnum = (
            _usb_attribute(entry.name, attr)
            for attr in ("idVendor", "idProduct", "busnum", "devnum")
        )
        names.add(f"{GUEST_HOSTNAME}-{vendor}-{product}-{int(bus):03d}{int(devnum):03d}")
    return names


def _usb_objects(api: KubeApi) -> dict[str, dict]:
    items, _ = api.list_objects(USBDEVICES, label_selector=f"nodename={GUEST_HOSTNAME}")
    return {item["metadata"]["name"]: item for item in items if item.get("status")}


def _usb_ready_reason(api: KubeApi, name: str) -> str | None:
    conditions = (api.get(USBDEVICECLAIMS, name).get("status") or {}).get("conditions") or []
    return next((c["reason"] for c in conditions if c["type"] == "Ready"), None)


def _registration_of(
    kubelet: KubeletStandIn, resource: str, timeout: float
) -> api_pb2.RegisterRequest:
    """The next registration of ``resource``, past older ones still queued.

    Under load a registration can reach the stand-in after the plugin's own deadline, and the
    plugin registers again: the queue then holds the earlier resource more than once.
    """
    deadline = time.monotonic() + timeout
    while True:
        registration = kubelet.next_registration(timeout=max(deadline - time.monotonic(), 0.1))
        if registration.resource_name == resource:
            return registration


def _usb_claimed_allocated_then_orphaned(api: KubeApi, kubelet: KubeletStandIn) -> None:
    """USBDevices published; the stick claimed, advertised, allocated; unplugged: orphaned."""
    with _Phase("usb_published"):
        wait_for(lambda: set(_usb_objects(api)) == _usb_names_on_the_bus(), timeout=180, interval=1)
    bus, devnum = (int(_usb_attribute(STICK.name, attr)) for attr in ("busnum", "devnum"))
    name = f"{GUEST_HOSTNAME}-{STICK.vendor_id}-{STICK.product_id}-{bus:03d}{devnum:03d}"
    node = f"/dev/bus/usb/{bus:03d}/{devnum:03d}"
    status = _usb_objects(api)[name]["status"]
    assert (status["devicePath"], status["pciAddress"]) == (node, USB_CONTROLLER)
    assert (status["vendorID"], status["productID"], status["enabled"]) == (
        STICK.vendor_id,
        STICK.product_id,
        False,
    )

    with _Phase("usb_claim_enabled"):
        api.create(
            USBDEVICECLAIMS,
            {
                "apiVersion": "devices.harvesterhci.io/v1beta1",
                "kind": "USBDeviceClaim",
                "metadata": {"name": name},
                "spec": {"userName": "e2e"},
            },
        )
        wait_for(lambda: _usb_ready_reason(api, name) == "Enabled", timeout=180, interval=1)
    assert api.get(USBDEVICES, name)["status"]["enabled"] is True
    claim = api.get(USBDEVICECLAIMS, name)["status"]
    assert (claim["nodeName"], claim["pciAddress"]) == (GUEST_HOSTNAME, USB_CONTROLLER)

    with _Phase("usb_plugin_registers_and_reports_healthy"):
        assert status["resourceName"] == f"kubevirt.io/{name}"
        registration = _registration_of(kubelet, status["resourceName"], timeout=120)
        stream = kubelet.watch(registration.endpoint)
        stream.wait_for(
            lambda message: {d.ID: d.health for d in message.devices} == {name: "Healthy"},
            timeout=120,
        )
    with _Phase("usb_allocate"):
        container = _allocate(kubelet, registration.endpoint, name)
    variable = usb_env_var(ResourceName(status["resourceName"]))
    assert dict(container.envs) == {variable: f"{bus}:{devnum}"}
    specs = {(d.container_path, d.host_path, d.permissions) for d in container.devices}
    assert specs == {(node, node, "mrw")}
    assert Path(node).is_char_device()
    assert (Path(node).stat().st_uid, Path(node).stat().st_gid) == (QEMU_UID, QEMU_UID)

    with _Phase("usb_unplug_to_orphaned"):
        hotplug.unplug(STICK.qemu_id)
        wait_for(
            lambda: api.get(USBDEVICES, name)["status"]["status"] == "orphaned",
            timeout=180,
            interval=1,
        )
        wait_for(lambda: _usb_ready_reason(api, name) == "DeviceOrphaned", timeout=180, interval=1)
        stream.wait_for(
            lambda message: {d.ID: d.health for d in message.devices} == {name: "Unhealthy"},
            timeout=120,
        )
    assert not (SYS_USB_DEVICES / STICK.name).exists()
    assert not Path(node).exists()
    assert f"delete USBDeviceClaim {name}" in api.get(USBDEVICES, name)["status"]["message"]

    with _Phase("usb_claim_deleted_to_orphan_deleted"):
        api.delete(USBDEVICECLAIMS, name)
        wait_for(lambda: name not in _usb_objects(api), timeout=180, interval=1)
    assert set(_usb_objects(api)) == _usb_names_on_the_bus()


def test_agent_claim_moves_the_free_nic_to_vfio_and_deletion_returns_it(cluster, kubelet, tmp_path):
    """Devices published; a claimed e1000e bound, advertised, allocatable; deletion returns it."""
    api = KubeApi(cluster.api_client)
    api.create(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": GUEST_HOSTNAME}})
    # Every function but PCI-to-PCI bridges (class 0604), which the agent does not publish.
    expected = {
        entry.name
        for entry in Path("/sys/bus/pci/devices").iterdir()
        if not (entry / "class").read_text().startswith("0x0604")
    }
    log = (tmp_path / "agent.log").open("w")
    agent = subprocess.Popen(
        [
            "pcidevices",
            "agent",
            "--node",
            GUEST_HOSTNAME,
            "--kubeconfig",
            str(cluster.kubeconfig),
            "--state-file",
            str(tmp_path / "claims.json"),
            "--metrics-address",
            "off",
            "--device-plugins-dir",
            str(kubelet.folder),
        ],
        stderr=log,
    )
    name = f"{GUEST_HOSTNAME}-{FREE_NIC.replace(':', '').replace('.', '')}"
    try:
        with _Phase("agent_publishes_devices"):
            wait_for(lambda: set(_devices(api)) == expected, timeout=300, interval=1)
        nic = _devices(api)[FREE_NIC]["status"]
        assert nic["kernelDriverInUse"] == "e1000e"

        with _Phase("claim_to_passthrough"):
            api.create(
                PCIDEVICECLAIMS,
                {
                    "apiVersion": "devices.harvesterhci.io/v1beta1",
                    "kind": "PCIDeviceClaim",
                    "metadata": {"name": name},
                    "spec": {"address": FREE_NIC, "nodeName": GUEST_HOSTNAME, "userName": "e2e"},
                },
            )
            claim = wait_for(lambda: _passthrough(api, name), timeout=180, interval=1)
        assert claim["status"]["kernelDriverToUnbind"] == "e1000e"
        assert rawsysfs.driver(FREE_NIC) == "vfio-pci"
        group = rawsysfs.iommu_group(FREE_NIC)
        assert vfio.group_status(group) == vfio.GroupStatus(viable=True, container_set=False)

        with _Phase("plugin_registers_and_reports_healthy"):
            registration = kubelet.next_registration(timeout=120)
            assert registration.resource_name == nic["resourceName"]
            stream = kubelet.watch(registration.endpoint)
            stream.wait_for(
                lambda message: {d.ID: d.health for d in message.devices} == {FREE_NIC: "Healthy"},
                timeout=120,
            )

        with _Phase("allocate"):
            container = _allocate(kubelet, registration.endpoint, FREE_NIC)
        # KubeVirt's rule for PCI_RESOURCE_<name>: upper case, "/" and "." become "_".
        variable = "PCI_RESOURCE_" + nic["resourceName"].upper().replace("/", "_").replace(".", "_")
        assert dict(container.envs) == {variable: FREE_NIC}
        specs = {(d.container_path, d.host_path, d.permissions) for d in container.devices}
        assert {
            ("/dev/vfio/vfio", "/dev/vfio/vfio", "mrw"),
            (f"/dev/vfio/{group}", f"/dev/vfio/{group}", "mrw"),
        } <= specs
        assert all(os.path.exists(host_path) for _, host_path, _ in specs), specs

        with _Phase("deletion_to_return"):
            api.delete(PCIDEVICECLAIMS, name)
            wait_for(lambda: _gone(api, name), timeout=180, interval=1)
        assert rawsysfs.driver(FREE_NIC) == "e1000e"
        assert rawsysfs.net_interfaces(FREE_NIC)
        with _Phase("resource_withdrawn"):
            wait_for(
                lambda: not (kubelet.folder / registration.endpoint).exists(),
                timeout=120,
                interval=0.5,
            )

        _vfs_published_then_removed(api)
        _usb_claimed_allocated_then_orphaned(api, kubelet)

        with _Phase("agent_sigterm"):
            agent.send_signal(signal.SIGTERM)
            assert agent.wait(timeout=60) == 0
    finally:
        if agent.poll() is None:
            agent.kill()
        log.close()
        print((tmp_path / "agent.log").read_text()[-3000:])  # noqa: T201 (in the guest's log)
        print(f"stage 2 timings: {STAGE2_CLUSTER.timings | TIMINGS}")  # noqa: T201
