"""``pcidevices dra-plugin`` as a process: the whole wiring against the real API server.

The process reads an on-disk sysfs tree whose NIC is already on vfio-pci (an on-disk tree has no
kernel to bind with; the bind path is tested on the fake kernel and in QEMU), reads the
ResourceClaim from the real kube-apiserver through the counted `KubeApi`, writes its CDI spec,
and on SIGTERM exits 0 leaving no socket.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import grpc
import pytest

from dra_kube import allocate, create_claim, make_namespace
from fakesys.edit import vfio_group_node
from fakesys.tree import FakeDevice, SysfsTree
from pcicore.dra import DRIVER_NAME
from pcioperator.kube.api import KubeApi
from pciplugin._generated.dra.v1 import api_pb2, api_pb2_grpc

pytestmark = pytest.mark.kube

NIC = "0000:01:00.0"
PCI_IDS = b"8086  Intel Corporation\n\t1521  I350 Gigabit Network Connection\n"


def wait_for_socket(path, process, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            _, stderr = process.communicate(timeout=10)
            pytest.fail(f"dra-plugin did not listen on {path}: {stderr}")
        time.sleep(0.1)


def test_the_standalone_plugin_prepares_a_real_claim_and_stops_cleanly(
    kube, short_dir, unique_name
):
    """Prepare answers the CDI ids and writes the spec; SIGTERM: exit 0, sockets gone."""
    tree = SysfsTree(short_dir / "sys").add(
        FakeDevice(NIC, device=0x1521, driver="vfio-pci", iommu_group=12)
    )
    for folder in ("class/net", "class/block"):
        (tree.root / folder).mkdir(parents=True, exist_ok=True)
    dev = short_dir / "dev"
    vfio_group_node(dev, 12)
    (short_dir / "pci.ids").write_bytes(PCI_IDS)
    api = KubeApi(kube.api_client)
    namespace = make_namespace(api, unique_name("dra"))
    uid = create_claim(api, namespace, "vm-nic", ["nic"])
    allocate(api, namespace, "vm-nic", [("nic", "pci-0000-01-00-0")])
    argv = [
        sys.executable, "-c", "import sys; from pcidevices.cli import main; sys.exit(main())",
        "dra-plugin", "--node", "titan", "--kubeconfig", str(kube.kubeconfig),
        "--sysfs", str(tree.root), "--proc", "/proc", "--dev-root", str(dev),
        "--state-file", str(short_dir / "claims.json"),
        "--dra-plugin-dir", str(short_dir / "plugin"),
        "--plugins-registry-dir", str(short_dir / "reg"),
        "--cdi-dir", str(short_dir / "cdi"), "--pci-ids", str(short_dir / "pci.ids"),
    ]  # fmt: skip
    process = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    try:
        socket = short_dir / "plugin" / "dra.sock"
        wait_for_socket(short_dir / "reg" / f"{DRIVER_NAME}-reg.sock", process)
        with grpc.insecure_channel(f"unix://{socket}") as channel:
            stub = api_pb2_grpc.DRAPluginStub(channel)
            claim = api_pb2.Claim(namespace=namespace, name="vm-nic", uid=uid)
            answer = stub.NodePrepareResources(
                api_pb2.NodePrepareResourcesRequest(claims=[claim]), timeout=60
            ).claims[uid]
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert answer.error == ""
    assert answer.devices[0].cdi_device_ids[0] == f"{DRIVER_NAME}/vfio={uid}-pci-0000-01-00-0"
    spec = json.loads((short_dir / "cdi" / f"{DRIVER_NAME}-vfio_{uid}.json").read_text())
    assert spec["devices"][0]["containerEdits"]["env"] == [
        f"PCI_RESOURCE_INTEL_COM_I350_GIGABIT_NETWORK_CONNECTION={NIC}"
    ]
    assert process.returncode == 0, stderr
    assert list((short_dir / "reg").iterdir()) == []
    assert not socket.exists()
