"""The manifests in ``deploy/webhook`` are accepted by the real API server (server dry-run)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[3] / "deploy" / "webhook"


@pytest.mark.kube
def test_server_side_dry_run(kube, tmp_path):
    """Every object validates on the API server once CA_BUNDLE is replaced by a real CA."""
    if kube.kubectl("get", "namespace", "pcidevices-system").returncode != 0:
        kube.kubectl("create", "namespace", "pcidevices-system")
    ca = base64.b64encode(kube.ca_bundle).decode()
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    for name in kustomization["resources"]:
        manifest = tmp_path / name
        manifest.write_text((DEPLOY / name).read_text().replace("CA_BUNDLE", ca))
        result = kube.kubectl("apply", "--dry-run=server", "-f", str(manifest))
        assert result.returncode == 0, f"{name}: {result.stderr}"


def test_webhooks_fail_closed_and_scoped():
    """Every webhook fails closed, times out fast and matches only its claim kind."""
    docs = [doc for doc in yaml.safe_load_all((DEPLOY / "admission.yaml").read_text()) if doc]
    assert {doc["kind"] for doc in docs} == {
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    }
    for doc in docs:
        for hook in doc["webhooks"]:
            assert hook["failurePolicy"] == "Fail"
            assert hook["timeoutSeconds"] == 5
            assert hook["sideEffects"] == "None"
            assert hook["admissionReviewVersions"] == ["v1"]
            assert "objectSelector" not in hook
            for rule in hook["rules"]:
                assert rule["apiGroups"] == ["devices.harvesterhci.io"]
                kind = "usbdeviceclaims" if "usbdeviceclaims" in hook["name"] else "pcideviceclaims"
                assert rule["resources"] == [kind]
