"""The committed DRA and plugin-registration stubs are what proto/generate.sh makes of them.

The .proto files are the kubelet's official ones; the stubs carry its method paths and field
numbers.
"""

import filecmp
import os
import subprocess
import sys
from pathlib import Path

from pciplugin._generated.dra.v1 import api_pb2 as dra_pb2
from pciplugin._generated.drahealth.v1 import api_pb2 as health_pb2
from pciplugin._generated.pluginregistration.v1 import api_pb2 as registration_pb2

REPO = Path(__file__).resolve().parents[3]
APIS = ("dra/v1", "pluginregistration/v1", "drahealth/v1")
FILES = ("api_pb2.py", "api_pb2.pyi", "api_pb2_grpc.py")


class TestDraGeneratedStubs:
    """proto/dra, proto/pluginregistration and src/pciplugin/_generated/."""

    def test_committed_stubs_match_a_fresh_generation(self, tmp_path):
        """Regenerating into a temporary directory yields byte-identical files."""
        env = {**os.environ, "PYTHON": sys.executable}
        subprocess.run(
            ["bash", str(REPO / "proto" / "generate.sh"), str(tmp_path)],
            check=True,
            env=env,
            timeout=120,
        )
        for api in APIS:
            fresh = tmp_path / "pciplugin" / "_generated" / api
            committed = REPO / "src" / "pciplugin" / "_generated" / api
            for name in FILES:
                assert filecmp.cmp(fresh / name, committed / name, shallow=False), (
                    f"{api}/{name} is stale: run proto/generate.sh and commit the result"
                )

    def test_the_protos_are_the_kubelets_own_files(self):
        """The .proto files keep the kubelet's package names (they fix the method paths)."""
        dra = (REPO / "proto" / "dra" / "v1" / "api.proto").read_text()
        health = (REPO / "proto" / "dra-health" / "v1" / "api.proto").read_text()
        assert 'option go_package = "k8s.io/kubelet/pkg/apis/dra-health/v1";' in health
        registration = (REPO / "proto" / "pluginregistration" / "v1" / "api.proto").read_text()
        assert "package k8s.io.kubelet.pkg.apis.dra.v1;" in dra
        assert 'option go_package = "k8s.io/kubelet/pkg/apis/dra/v1";' in dra
        assert "package pluginregistration; // This should have been v1." in registration

    def test_service_names_are_the_kubelets(self):
        """The kubelet calls /k8s.io.kubelet.pkg.apis.dra.v1.DRAPlugin/NodePrepareResources."""
        plugin = dra_pb2.DESCRIPTOR.services_by_name["DRAPlugin"]
        assert plugin.full_name == "k8s.io.kubelet.pkg.apis.dra.v1.DRAPlugin"
        assert [m.name for m in plugin.methods] == [
            "NodePrepareResources",
            "NodeUnprepareResources",
        ]
        registration = registration_pb2.DESCRIPTOR.services_by_name["Registration"]
        assert registration.full_name == "pluginregistration.Registration"
        assert [m.name for m in registration.methods] == ["GetInfo", "NotifyRegistrationStatus"]
        health = health_pb2.DESCRIPTOR.services_by_name["DRAResourceHealth"]
        assert health.full_name == "v1.DRAResourceHealth"
        assert health.methods_by_name["NodeWatchResources"].server_streaming

    def test_field_numbers_are_the_wire_contract(self):
        """A sample of the field numbers of the kubelet's DRA v1 and registration APIs."""

        def number(message, field):
            return message.DESCRIPTOR.fields_by_name[field].number

        assert number(dra_pb2.Claim, "namespace") == 1
        assert number(dra_pb2.Claim, "uid") == 2
        assert number(dra_pb2.Claim, "name") == 3
        assert number(dra_pb2.NodePrepareResourceResponse, "error") == 2
        assert number(dra_pb2.Device, "cdi_device_ids") == 4
        assert number(dra_pb2.Device, "share_id") == 5
        assert number(registration_pb2.PluginInfo, "supported_versions") == 4
        assert number(registration_pb2.RegistrationStatus, "error") == 2
        assert number(health_pb2.DeviceHealth, "health_check_timeout_seconds") == 4
        assert health_pb2.HealthStatus.Value("UNHEALTHY") == 2
