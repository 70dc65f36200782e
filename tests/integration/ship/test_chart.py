"""The Helm chart lints, renders what `kubectl kustomize deploy` renders, and installs.

"Installs" is a server-side dry-run on the real API server, with the defaults and with every
value of values.yaml changed once (a test checks that no value is left out).
"""

from __future__ import annotations

import base64
import copy
import difflib
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import pcidevices
from harness.helm import CHART, Helm, ensure_helm
from harness.identity import applied
from harness.kube import REPO_ROOT, HarnessError, KubeCluster

pytestmark = [pytest.mark.kube, pytest.mark.ship]

DEPLOY = REPO_ROOT / "deploy"
NAMESPACE = "pcidevices-system"
# Labels Helm's conventions add to metadata (never to selectors); deploy/ does not carry them.
HELM_ONLY_LABELS = frozenset(
    {
        "app.kubernetes.io/managed-by",
        "app.kubernetes.io/instance",
        "app.kubernetes.io/version",
        "helm.sh/chart",
    }
)
# The chart makes the webhook's serving certificate; with deploy/ the operator creates it.
CHART_ONLY = frozenset({("Secret", NAMESPACE, "pcidevices-webhook-tls")})
# The chart leaves the namespace to `helm install --create-namespace` unless namespace.create.
KUSTOMIZE_ONLY = frozenset({("Namespace", "", NAMESPACE)})

Key = tuple[str, str, str]
Objects = dict[Key, dict[str, Any]]


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    try:
        binary = ensure_helm()
    except HarnessError as err:
        pytest.fail(str(err), pytrace=False)
    return Helm(binary, tmp_path_factory.mktemp("helm-home"))


@pytest.fixture(scope="module")
def namespace(kube_cluster: KubeCluster) -> Iterator[KubeCluster]:
    """The cluster with the release namespace and the CRDs (objects in it dry-run against it)."""
    with applied(kube_cluster, NAMESPACE, [DEPLOY / "namespace.yaml"]) as cluster:
        yield cluster


def key(doc: dict[str, Any]) -> Key:
    meta = doc["metadata"]
    return (doc["kind"], meta.get("namespace", ""), meta["name"])


def parse(text: str) -> Objects:
    objects: Objects = {}
    for doc in yaml.safe_load_all(text):
        if doc:
            assert key(doc) not in objects, f"{key(doc)} rendered twice"
            objects[key(doc)] = doc
    return objects


def render(helm: Helm, values: dict[str, Any] | None = None, ns: str = NAMESPACE) -> Objects:
    result = helm.template(ns, values)
    assert result.returncode == 0, result.stderr
    return parse(result.stdout)


def kustomize(cluster: KubeCluster) -> Objects:
    result = cluster.kubectl("kustomize", str(DEPLOY))
    assert result.returncode == 0, result.stderr
    return parse(result.stdout)


def normalized(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` without Helm's bookkeeping labels and the webhooks' CA bundle."""
    doc = copy.deepcopy(doc)
    labels = doc["metadata"].get("labels", {})
    for label in HELM_ONLY_LABELS:
        labels.pop(label, None)
    for webhook in doc.get("webhooks", []):
        webhook["clientConfig"].pop("caBundle", None)
    return doc


def yaml_diff(expected: dict[str, Any], actual: dict[str, Any]) -> str:
    return "\n".join(
        difflib.unified_diff(
            yaml.safe_dump(expected).splitlines(),
            yaml.safe_dump(actual).splitlines(),
            "kubectl kustomize deploy",
            "helm template",
            lineterm="",
        )
    )


def dry_run(cluster: KubeCluster, objects: Objects, tmp_path: Path) -> str:
    manifest = tmp_path / "rendered.yaml"
    manifest.write_text(yaml.safe_dump_all(list(objects.values())))
    result = cluster.kubectl("apply", "--dry-run=server", "-f", str(manifest), timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def pod_specs(objects: Objects) -> dict[str, dict[str, Any]]:
    return {
        name: doc["spec"]["template"]["spec"]
        for (kind, _, name), doc in objects.items()
        if kind in {"DaemonSet", "Deployment"}
    }


def container(objects: Objects, name: str) -> dict[str, Any]:
    (only,) = pod_specs(objects)[name]["containers"]
    return only


def args(objects: Objects, name: str) -> list[str]:
    return container(objects, name)["args"]


# -- the chart as a whole -------------------------------------------------------------------


def test_chart_lints(helm):
    result = helm.run("lint", "--strict", str(CHART))
    assert result.returncode == 0, result.stdout + result.stderr


def test_chart_versions_follow_the_package():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == pcidevices.__version__
    assert chart["version"] == pcidevices.__version__


def test_default_values_render_the_kustomize_objects(helm, kube_cluster):
    """The chart and deploy/ install the same objects, field for field.

    An object added to deploy/ fails this test until the chart has it too (its template goes
    under deploy/helm/pcidevices/templates/ in the folder named like deploy/'s).
    """
    chart = render(helm)
    reference = kustomize(kube_cluster)
    assert set(chart) - set(reference) == CHART_ONLY
    assert set(reference) - set(chart) == KUSTOMIZE_ONLY
    for name in sorted(set(reference) - KUSTOMIZE_ONLY):
        expected, actual = normalized(reference[name]), normalized(chart[name])
        assert actual == expected, f"{name} differs:\n{yaml_diff(expected, actual)}"


def test_namespace_create_renders_deploys_namespace(helm, kube_cluster):
    (ns_key,) = KUSTOMIZE_ONLY
    rendered = render(helm, {"namespace": {"create": True}})[ns_key]
    assert normalized(rendered) == kustomize(kube_cluster)[ns_key]


def test_release_namespace_is_used_everywhere(helm):
    objects = render(helm, ns="pci-elsewhere")
    text = yaml.safe_dump_all(list(objects.values()))
    assert NAMESPACE not in text
    binding = objects[("ClusterRoleBinding", "", "pcidevices-agent")]
    assert binding["subjects"][0]["namespace"] == "pci-elsewhere"


def test_defaults_pass_server_dry_run(helm, namespace, tmp_path):
    out = dry_run(namespace, render(helm), tmp_path)
    assert "daemonset.apps/pcidevices-agent" in out
    assert "validatingwebhookconfiguration.admissionregistration.k8s.io/pcidevices-webhook" in out


def test_generated_certificate_serves_the_webhook_service(helm, tmp_path):
    """The Secret's certificate is signed by the webhooks' caBundle and names the Service."""
    objects = render(helm)
    secret = objects[("Secret", NAMESPACE, "pcidevices-webhook-tls")]
    ca = secret["data"]["ca.crt"]
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        for hook in objects[(kind, "", "pcidevices-webhook")]["webhooks"]:
            assert hook["clientConfig"]["caBundle"] == ca
    (tmp_path / "ca.crt").write_bytes(base64.b64decode(ca))
    (tmp_path / "tls.crt").write_bytes(base64.b64decode(secret["data"]["tls.crt"]))
    verify = subprocess.run(
        ["openssl", "verify", "-CAfile", str(tmp_path / "ca.crt"), str(tmp_path / "tls.crt")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    names = subprocess.run(
        ["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", str(tmp_path / "tls.crt")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"DNS:pcidevices-webhook.{NAMESPACE}.svc" in names


def test_own_certificate_needs_its_ca_bundle(helm):
    result = helm.template(NAMESPACE, {"webhook": {"certificate": {"generate": False}}})
    assert result.returncode != 0
    assert "webhook.certificate.caBundle" in result.stderr


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"agent": {"groupPolicy": "loose"}}, "groupPolicy"),
        ({"agent": {"deny": ["0000:03:00"]}}, "deny"),
        ({"image": {"pullPolicy": "Sometimes"}}, "pullPolicy"),
    ],
)
def test_schema_rejects_bad_values(helm, values, field):
    result = helm.template(NAMESPACE, values)
    assert result.returncode != 0
    assert field in result.stderr


# -- every value changed once ---------------------------------------------------------------

Check = Callable[[Objects], None]


def _images(objects: Objects) -> set[str]:
    return {spec["containers"][0]["image"] for spec in pod_specs(objects).values()}


def _each_pod(predicate: Callable[[dict[str, Any]], bool]) -> Check:
    def check(objects: Objects) -> None:
        specs = pod_specs(objects)
        assert len(specs) == 3
        assert all(predicate(spec) for spec in specs.values()), specs

    return check


def _pod(name: str, predicate: Callable[[dict[str, Any]], bool]) -> Check:
    def check(objects: Objects) -> None:
        assert predicate(pod_specs(objects)[name])

    return check


def _has_args(name: str, *wanted: str) -> Check:
    def check(objects: Objects) -> None:
        assert set(wanted) <= set(args(objects, name)), args(objects, name)

    return check


def _container_field(name: str, field: str, expected: object) -> Check:
    def check(objects: Objects) -> None:
        assert container(objects, name)[field] == expected

    return check


def _images_are(*expected: str) -> Check:
    def check(objects: Objects) -> None:
        assert _images(objects) == set(expected)

    return check


def _renders(wanted: Key) -> Check:
    def check(objects: Objects) -> None:
        assert wanted in objects

    return check


def _absent(*kinds: str) -> Check:
    def check(objects: Objects) -> None:
        assert not [k for k in objects if k[0] in kinds]

    return check


def _all(*checks: Check) -> Check:
    def check(objects: Objects) -> None:
        for each in checks:
            each(objects)

    return check


def _replicas(name: str, count: int) -> Check:
    def check(objects: Objects) -> None:
        assert objects[("Deployment", NAMESPACE, name)]["spec"]["replicas"] == count

    return check


def _no_secret_and_bundle(bundle: str) -> Check:
    def check(objects: Objects) -> None:
        assert ("Secret", NAMESPACE, "pcidevices-webhook-tls") not in objects
        hook = objects[("ValidatingWebhookConfiguration", "", "pcidevices-webhook")]
        assert hook["webhooks"][0]["clientConfig"]["caBundle"] == bundle

    return check


def _validity_days(days: int) -> Check:
    def check(objects: Objects) -> None:
        secret = objects[("Secret", NAMESPACE, "pcidevices-webhook-tls")]
        pem = base64.b64decode(secret["data"]["tls.crt"])
        within = subprocess.run(
            ["openssl", "x509", "-noout", "-checkend", str((days + 1) * 86400)],
            input=pem,
            capture_output=True,
            check=False,
        )
        beyond = subprocess.run(
            ["openssl", "x509", "-noout", "-checkend", str((days - 1) * 86400)],
            input=pem,
            capture_output=True,
            check=False,
        )
        assert within.returncode == 1, "expires later than asked"  # it will have expired
        assert beyond.returncode == 0, "expires sooner than asked"

    return check


SELECTOR = {"pcidevices.example/enabled": "true"}
TOLERATION = [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]
# Helm merges a map value into the default map: every key the defaults have is set here.
RESOURCES = {
    "requests": {"cpu": "100m", "memory": "200Mi"},
    "limits": {"cpu": "1", "memory": "300Mi"},
}
CA_BUNDLE = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")

# (values, check): each value of values.yaml changed once, and what must follow from it.
CHANGES: dict[str, tuple[dict[str, Any], Check]] = {
    "image.repository": (
        {"image": {"repository": "registry.example/pci/pcidevices"}},
        _images_are("registry.example/pci/pcidevices:0.1.0"),
    ),
    "image.tag": (
        {"image": {"tag": "9.9.9"}},
        _images_are("ghcr.io/pcidevices/pcidevices:9.9.9"),
    ),
    "image.pullPolicy": (
        {"image": {"pullPolicy": "Always"}},
        _each_pod(lambda s: s["containers"][0]["imagePullPolicy"] == "Always"),
    ),
    "imagePullSecrets": (
        {"imagePullSecrets": [{"name": "regcred"}]},
        _each_pod(lambda s: s.get("imagePullSecrets") == [{"name": "regcred"}]),
    ),
    "namespace.create": (
        {"namespace": {"create": True}},
        _renders(("Namespace", "", NAMESPACE)),
    ),
    "agent.groupPolicy": (
        {"agent": {"groupPolicy": "group"}},
        _has_args("pcidevices-agent", "--group-policy=group"),
    ),
    "agent.deny": (
        {"agent": {"deny": ["0000:03:00.0", "0106"]}},
        _has_args("pcidevices-agent", "--deny=0000:03:00.0", "--deny=0106"),
    ),
    "agent.rescanInterval": (
        {"agent": {"rescanInterval": 5}},
        _has_args("pcidevices-agent", "--rescan-interval=5"),
    ),
    "agent.dra": (
        {"agent": {"dra": True}},
        _all(
            _has_args("pcidevices-agent", "--dra"),
            _pod(
                "pcidevices-agent",
                lambda spec: (
                    {
                        "/var/lib/kubelet/plugins/pci.devices.harvesterhci.io",
                        "/var/lib/kubelet/plugins_registry",
                        "/var/run/cdi",
                    }
                    <= {v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v}
                ),
            ),
        ),
    ),
    "dra.enabled": ({"dra": {"enabled": False}}, _absent("DeviceClass")),
    "agent.metricsPort": (
        {"agent": {"metricsPort": 9191}},
        _all(
            _has_args("pcidevices-agent", "--metrics-address=0.0.0.0:9191"),
            _container_field(
                "pcidevices-agent",
                "ports",
                [{"name": "metrics", "containerPort": 9191, "protocol": "TCP"}],
            ),
        ),
    ),
    "agent.priorityClassName": (
        {"agent": {"priorityClassName": "system-cluster-critical"}},
        _pod("pcidevices-agent", lambda s: s["priorityClassName"] == "system-cluster-critical"),
    ),
    "agent.nodeSelector": (
        {"agent": {"nodeSelector": SELECTOR}},
        _pod("pcidevices-agent", lambda s: s["nodeSelector"] == SELECTOR),
    ),
    "agent.tolerations": (
        {"agent": {"tolerations": TOLERATION}},
        _pod("pcidevices-agent", lambda s: s["tolerations"] == TOLERATION),
    ),
    "agent.resources": (
        {"agent": {"resources": RESOURCES}},
        _container_field("pcidevices-agent", "resources", RESOURCES),
    ),
    "controller.replicas": ({"controller": {"replicas": 1}}, _replicas("pcidevices-controller", 1)),
    "controller.nodeSelector": (
        {"controller": {"nodeSelector": SELECTOR}},
        _pod("pcidevices-controller", lambda s: s["nodeSelector"] == SELECTOR),
    ),
    "controller.tolerations": (
        {"controller": {"tolerations": TOLERATION}},
        _pod("pcidevices-controller", lambda s: s["tolerations"] == TOLERATION),
    ),
    "controller.resources": (
        {"controller": {"resources": RESOURCES}},
        _container_field("pcidevices-controller", "resources", RESOURCES),
    ),
    "kubevirt.namespace": (
        {"kubevirt": {"namespace": "virt"}},
        _has_args("pcidevices-controller", "--kubevirt-namespace=virt"),
    ),
    "kubevirt.name": (
        {"kubevirt": {"name": "kv"}},
        _has_args("pcidevices-controller", "--kubevirt-name=kv"),
    ),
    "webhook.replicas": ({"webhook": {"replicas": 3}}, _replicas("pcidevices-webhook", 3)),
    "webhook.nodeSelector": (
        {"webhook": {"nodeSelector": SELECTOR}},
        _pod("pcidevices-webhook", lambda s: s["nodeSelector"] == SELECTOR),
    ),
    "webhook.tolerations": (
        {"webhook": {"tolerations": TOLERATION}},
        _pod("pcidevices-webhook", lambda s: s["tolerations"] == TOLERATION),
    ),
    "webhook.resources": (
        {"webhook": {"resources": RESOURCES}},
        _container_field("pcidevices-webhook", "resources", RESOURCES),
    ),
    "webhook.certificate.generate": (
        {"webhook": {"certificate": {"generate": False, "caBundle": CA_BUNDLE.decode()}}},
        _no_secret_and_bundle(CA_BUNDLE.decode()),
    ),
    "webhook.certificate.caBundle": (
        {"webhook": {"certificate": {"generate": False, "caBundle": CA_BUNDLE.decode()}}},
        _no_secret_and_bundle(CA_BUNDLE.decode()),
    ),
    "webhook.certificate.validityDays": (
        {"webhook": {"certificate": {"validityDays": 30}}},
        _validity_days(30),
    ),
}


def leaves(values: dict[str, Any], prefix: str = "") -> set[str]:
    """Dotted paths of the values a user sets (a list or an empty map is one value)."""
    found: set[str] = set()
    for name, value in values.items():
        path = f"{prefix}{name}"
        if isinstance(value, dict) and value and name != "resources":
            found |= leaves(value, f"{path}.")
        else:
            found.add(path)
    return found


def test_every_value_is_changed_by_a_case():
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    assert leaves(defaults) == set(CHANGES)


@pytest.mark.parametrize("name", sorted(CHANGES))
def test_value_changed_once(helm, namespace, tmp_path, name):
    """The changed value shows where it should, and the result dry-runs."""
    values, check = CHANGES[name]
    objects = render(helm, values)
    check(objects)
    dry_run(namespace, objects, tmp_path)
