"""The committed gRPC stubs are exactly what proto/generate.sh produces from the .proto."""

import filecmp
import os
import subprocess
import sys
from pathlib import Path

from pciplugin._generated.v1beta1 import api_pb2

REPO = Path(__file__).resolve().parents[3]
GENERATED = REPO / "src" / "pciplugin" / "_generated" / "v1beta1"
FILES = ("api_pb2.py", "api_pb2.pyi", "api_pb2_grpc.py")


class TestGeneratedStubs:
    """proto/generate.sh and src/pciplugin/_generated/."""

    def test_committed_stubs_match_a_fresh_generation(self, tmp_path):
        """Regenerating into a temporary directory yields byte-identical files."""
        env = {**os.environ, "PYTHON": sys.executable}
        subprocess.run(
            ["bash", str(REPO / "proto" / "generate.sh"), str(tmp_path)],
            check=True,
            env=env,
            timeout=60,
        )
        fresh = tmp_path / "pciplugin" / "_generated" / "v1beta1"
        for name in FILES:
            assert filecmp.cmp(fresh / name, GENERATED / name, shallow=False), (
                f"{name} is stale: run proto/generate.sh and commit the result"
            )

    def test_method_paths_use_the_kubelet_package(self):
        """The services are registered under package v1beta1, which fixes the method paths."""
        services = api_pb2.DESCRIPTOR.services_by_name
        assert services["Registration"].full_name == "v1beta1.Registration"
        plugin = services["DevicePlugin"]
        assert [m.name for m in plugin.methods] == [
            "GetDevicePluginOptions",
            "ListAndWatch",
            "GetPreferredAllocation",
            "Allocate",
            "PreStartContainer",
        ]
        assert plugin.methods_by_name["ListAndWatch"].server_streaming

    def test_field_numbers_are_the_wire_contract(self):
        """A sample of field numbers of the kubelet's v1beta1 device plugin API."""

        def number(message, field):
            return message.DESCRIPTOR.fields_by_name[field].number

        assert number(api_pb2.RegisterRequest, "options") == 4
        assert number(api_pb2.DevicePluginOptions, "get_preferred_allocation_available") == 2
        assert number(api_pb2.ContainerPreferredAllocationRequest, "allocation_size") == 3
        assert number(api_pb2.ContainerAllocateResponse, "cdi_devices") == 5
        assert number(api_pb2.Device, "topology") == 3
        assert number(api_pb2.DeviceSpec, "permissions") == 3
