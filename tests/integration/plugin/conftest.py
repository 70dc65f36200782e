"""A live device plugin over an on-disk sysfs, and the kubelet stand-in it registers with.

The stand-in (`kubelet_standin.KubeletStandIn`) serves ``v1beta1.Registration`` on real unix
sockets with the generated stubs and dials the plugin back, as the kubelet does.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from fakesys.edit import vfio_group_node
from fakesys.tree import SysfsTree
from kubelet_standin import KubeletStandIn
from pcihost.sysfs import SysfsPciBus
from pcihost.vfio import HostVfioNodes
from pciplugin.host import DevicePluginHost, PluginSettings
from plugin_node import DEVICES, GPU, FakeClaims, claim


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
