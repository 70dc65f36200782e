"""The start-up check of the installed CRDs' schema, against a real kube-apiserver."""

from __future__ import annotations

from pathlib import Path

import pytest

from pcioperator.kube.api import KubeApi
from pcioperator.kube.schema import InstalledSchemaError, check_installed_schema

pytestmark = pytest.mark.kube

HARVESTER_SHAPED = Path(__file__).with_name("harvester-shaped-crds.yaml")


@pytest.fixture(scope="module")
def harvester_shaped(kube_cluster):
    """Harvester-shaped CRDs under a test group, installed for this module's tests."""
    kube_cluster.install_crds([HARVESTER_SHAPED])
    yield "harvester-shaped.test"
    kube_cluster.kubectl(
        "delete", "--ignore-not-found", "--wait=false", "-f", str(HARVESTER_SHAPED)
    )


class TestCheckInstalledSchema:
    """Start-up refuses CRDs that would prune our fields, and accepts ours."""

    def test_project_crds_pass(self, kube):
        """With this release's CRDs installed the check passes."""
        check_installed_schema(KubeApi(kube.api_client))

    def test_harvester_shaped_crds_are_refused_naming_the_fields(self, kube, harvester_shaped):
        """Harvester's CRDs: one error naming each field that would be pruned, and the fix."""
        with pytest.raises(InstalledSchemaError) as caught:
            check_installed_schema(KubeApi(kube.api_client), group=harvester_shaped)
        message = str(caught.value)
        for field in (
            "PCIDevice.status.hostProtected",
            "PCIDevice.status.conditions",
            "PCIDeviceClaim.status.groupMembers",
            "PCIDeviceClaim.status.conditions",
        ):
            assert field in message
        assert "PCIDevice.status.classId" not in message
        assert "kubectl apply -f deploy/crds/" in message
        assert "\n" not in message

    def test_group_not_served_is_refused(self, kube):
        """No CRDs at all: the error says they are not installed."""
        with pytest.raises(InstalledSchemaError, match="CRDs are not installed"):
            check_installed_schema(KubeApi(kube.api_client), group="absent.test")
