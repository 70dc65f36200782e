"""The DRA plugin driven by Kubernetes' own kubelet DRA client code (the Go harness).

``harness kubelet-dra prepare|unprepare`` runs the kubelet's ``pkg/kubelet/cm/dra/plugin``
(DRAPluginManager: the plugin watcher's GetInfo + NotifyRegistrationStatus on the registration
socket, service negotiation, connection, call timeout) against the plugin's real sockets; the
plugin binds on the fake kernel. The harness binary comes from tests/harness (built once, cached);
``$PCIDEVICES_KUBELET_DRA_HARNESS`` may name another build that has the sub-command.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from pyfakefs.fake_filesystem_unittest import Patcher

from dra_fakes import FakeResourceClaims, ref, result
from dra_node import CDI, dra_settings, make_plugin, mirror
from fakesys.background import stop_before_report
from fakesys.descriptors import guard_descriptors
from fakesys.hosts import FREE_NIC, MGMT_NIC, workstation
from harness.kube import ensure_binary
from pcicore.dra import DRIVER_NAME

pytestmark = pytest.mark.kube


@pytest.fixture(scope="module")
def harness() -> Path:
    configured = os.environ.get("PCIDEVICES_KUBELET_DRA_HARNESS")
    return Path(configured) if configured else ensure_binary()


@pytest.fixture
def fake_fs(short_dir):
    """A fake filesystem for the plugin; the harness is a real process (subprocess skipped)."""
    with Patcher(additional_skip_names=["subprocess", "harness"]) as patcher:
        guard_descriptors(patcher.fs)
        mirror(patcher.fs, short_dir)
        yield patcher.fs


@pytest.fixture
def node(request, short_dir, fake_fs):
    host = workstation(fake_fs)
    claims = FakeResourceClaims()
    plugin = make_plugin(host, dra_settings(short_dir), claims)
    plugin.start()
    stop_before_report(request, plugin.stop)
    yield host, claims, plugin
    plugin.stop()


def kubelet_dra(harness: Path, verb: str, plugin, claim) -> subprocess.CompletedProcess[str]:
    """One call of the kubelet's DRA client, found through the registration socket."""
    return subprocess.run(
        [
            str(harness),
            "kubelet-dra",
            verb,
            "--registration",
            str(plugin.settings.registration_socket),
            "--driver",
            DRIVER_NAME,
            "--namespace",
            claim.namespace,
            "--name",
            claim.name,
            "--uid",
            claim.uid,
            "--node",
            "titan",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


class TestKubeletsOwnClient:
    """The kubelet's DRA manager registers, prepares and unprepares through our sockets."""

    def test_prepare_and_unprepare_through_the_kubelets_client(self, harness, node):
        """Registered as v1.DRAPlugin; the device moves and returns; repeats are answered."""
        host, claims, plugin = node
        claims.allocate(ref(), result(FREE_NIC))
        done = kubelet_dra(harness, "prepare", plugin, ref())
        assert done.returncode == 0, done.stderr
        answer = json.loads(done.stdout)["claims"]["uid-1"]
        (device,) = answer["devices"]
        assert device["deviceName"] == "pci-0000-03-00-0"
        assert device["cdiDeviceIds"][0] == f"{DRIVER_NAME}/vfio=uid-1-pci-0000-03-00-0"
        assert host.driver(FREE_NIC) == "vfio-pci"
        assert (CDI / f"{DRIVER_NAME}-vfio_uid-1.json").exists()
        assert plugin.registration.registered is True

        again = kubelet_dra(harness, "prepare", plugin, ref())
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout) == json.loads(done.stdout)

        for _ in range(2):
            gone = kubelet_dra(harness, "unprepare", plugin, ref())
            assert gone.returncode == 0, gone.stderr
            assert host.driver(FREE_NIC) == "igb"
        assert not (CDI / f"{DRIVER_NAME}-vfio_uid-1.json").exists()

    def test_a_refused_claim_reaches_the_kubelet_as_its_error(self, harness, node):
        """The management NIC: the kubelet gets the claim's one-line error naming the device."""
        host, claims, plugin = node
        claims.allocate(ref(), result(MGMT_NIC))
        refused = kubelet_dra(harness, "prepare", plugin, ref())
        assert refused.returncode == 1
        assert "pci-0000-00-1f-6" in refused.stderr
        assert "HostDependsOnDevice" in refused.stderr
        assert host.driver(MGMT_NIC) == "e1000e"
