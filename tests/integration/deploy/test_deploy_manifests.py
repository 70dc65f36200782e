"""deploy/'s manifests against the real API server: they validate, and say what they promise."""

from __future__ import annotations

import base64

import pytest
import yaml

from harness.kube import REPO_ROOT

pytestmark = pytest.mark.kube

DEPLOY = REPO_ROOT / "deploy"

MANIFESTS = sorted(
    path
    for path in DEPLOY.rglob("*.yaml")
    if path.name != "kustomization.yaml"
    and path.parent.name in {"deploy", "crds", "agent"}
    # The Helm chart's templates are not manifests (tests/integration/ship/test_chart.py).
    and "helm" not in path.relative_to(DEPLOY).parts
)


def kustomize_build(kube):
    result = kube.kubectl("kustomize", str(DEPLOY))
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def agent_daemonset(kube):
    (daemonset,) = [doc for doc in kustomize_build(kube) if doc["kind"] == "DaemonSet"]
    return daemonset


class TestServerDryRun:
    """`kubectl apply --dry-run=server` accepts every manifest."""

    @pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: str(p.relative_to(DEPLOY)))
    def test_manifest_passes_server_dry_run(self, agent_identity, kube, path):
        """The API server validates and admits the file (schema, RBAC escalation, admission)."""
        result = kube.kubectl("apply", "--dry-run=server", "-f", str(path), timeout=120)
        assert result.returncode == 0, result.stderr
        assert "(server dry run)" in result.stdout

    def test_kustomization_passes_server_dry_run(self, agent_identity, kube, tmp_path):
        """The whole install (`kubectl kustomize deploy`, CA_BUNDLE filled in) dry-runs clean."""
        built = kube.kubectl("kustomize", str(DEPLOY))
        assert built.returncode == 0, built.stderr
        # The webhook configurations carry a CA_BUNDLE placeholder (docs/webhook.md).
        ca = base64.b64encode(kube.ca_bundle).decode()
        manifest = tmp_path / "deploy.yaml"
        manifest.write_text(built.stdout.replace("CA_BUNDLE", ca))
        result = kube.kubectl("apply", "--dry-run=server", "-f", str(manifest), timeout=120)
        assert result.returncode == 0, result.stderr
        assert "daemonset.apps/pcidevices-agent" in result.stdout


class TestKustomization:
    """The kustomization installs everything the agent needs."""

    def test_every_agent_manifest_is_listed(self):
        """No file in deploy/agent is forgotten by its kustomization."""
        listed = yaml.safe_load((DEPLOY / "agent" / "kustomization.yaml").read_text())
        files = {p.name for p in (DEPLOY / "agent").glob("*.yaml")} - {"kustomization.yaml"}
        assert set(listed["resources"]) == files

    def test_build_holds_crds_namespace_and_agent(self, kube):
        """The build yields the CRDs, the namespace, the identity and the DaemonSet."""
        kinds = {(doc["kind"], doc["metadata"]["name"]) for doc in kustomize_build(kube)}
        assert {
            ("CustomResourceDefinition", "pcidevices.devices.harvesterhci.io"),
            ("CustomResourceDefinition", "pcideviceclaims.devices.harvesterhci.io"),
            ("Namespace", "pcidevices-system"),
            ("ServiceAccount", "pcidevices-agent"),
            ("ClusterRole", "pcidevices-agent"),
            ("ClusterRoleBinding", "pcidevices-agent"),
            ("Role", "pcidevices-agent-events"),
            ("RoleBinding", "pcidevices-agent-events"),
            ("DaemonSet", "pcidevices-agent"),
            ("ValidatingAdmissionPolicy", "pcidevices-agent-devices"),
            ("ValidatingAdmissionPolicyBinding", "pcidevices-agent-devices"),
            ("ValidatingAdmissionPolicy", "pcidevices-agent-claims"),
            ("ValidatingAdmissionPolicyBinding", "pcidevices-agent-claims"),
            ("ValidatingAdmissionPolicy", "pcidevices-agent-events"),
            ("ValidatingAdmissionPolicyBinding", "pcidevices-agent-events"),
        } <= kinds


class TestDaemonSet:
    """The agent's pod spec carries what the agent needs on a node."""

    def test_node_name_comes_from_the_pod_spec(self, kube):
        """NODE_NAME is the node the pod was scheduled on."""
        (container,) = agent_daemonset(kube)["spec"]["template"]["spec"]["containers"]
        env = {item["name"]: item for item in container["env"]}
        assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"

    def test_service_account_token_is_mounted(self, kube):
        """The pod asks for its ServiceAccount's token whatever the ServiceAccount says.

        The node-restriction policies rely on it: it is the projected token bound to the pod.
        """
        spec = agent_daemonset(kube)["spec"]["template"]["spec"]
        assert spec["serviceAccountName"] == "pcidevices-agent"
        assert spec["automountServiceAccountToken"] is True

    def test_host_paths_are_mounted_and_modules_read_only(self, kube):
        """sysfs, /dev, modules, device plugins and the state folder come from the host."""
        spec = agent_daemonset(kube)["spec"]["template"]["spec"]
        host_paths = {v["name"]: v["hostPath"] for v in spec["volumes"] if "hostPath" in v}
        mounts = {m["name"]: m for m in spec["containers"][0]["volumeMounts"]}
        assert {p["path"] for p in host_paths.values()} == {
            "/sys",
            "/dev",
            "/lib/modules",
            "/var/lib/kubelet/device-plugins",
            "/var/lib/pcidevices",
        }
        by_path = {p["path"]: name for name, p in host_paths.items()}
        assert mounts[by_path["/lib/modules"]]["readOnly"] is True
        assert host_paths[by_path["/var/lib/pcidevices"]]["type"] == "DirectoryOrCreate"

    def test_probes_resources_and_tolerations(self, kube):
        """Health on 9090, a 150Mi memory limit, and a toleration for every taint."""
        spec = agent_daemonset(kube)["spec"]["template"]["spec"]
        container = spec["containers"][0]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["ports"][0]["containerPort"] == 9090
        assert container["resources"]["limits"]["memory"] == "150Mi"
        assert {"operator": "Exists"} in spec["tolerations"]
        assert container["securityContext"]["privileged"] is True
