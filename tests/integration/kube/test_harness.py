"""The test cluster behaves as a real cluster does where later tests rely on it."""

from __future__ import annotations

import pytest
from kubernetes import client

pytestmark = pytest.mark.kube


def namespace(api: client.CoreV1Api, name: str) -> str:
    """Create a namespace (the ``kube`` fixture deletes it after the test) and return its name."""
    api.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


class TestApiGroups:
    """API groups a real cluster serves."""

    @pytest.mark.parametrize(
        "group",
        [
            "coordination.k8s.io",
            "admissionregistration.k8s.io",
            "apiextensions.k8s.io",
            "rbac.authorization.k8s.io",
            "devices.harvesterhci.io",
        ],
    )
    def test_group_is_served(self, kube, group):
        """The API server's discovery lists the group."""
        groups = client.ApisApi(kube.api_client).get_api_versions().groups
        assert group in {g.name for g in groups}

    def test_lease_can_be_created(self, kube, unique_name):
        """A Lease in coordination.k8s.io is stored with its holder."""
        ns = namespace(client.CoreV1Api(kube.api_client), unique_name("ns"))
        leases = client.CoordinationV1Api(kube.api_client)
        leases.create_namespaced_lease(
            ns,
            {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": "pcidevices-agent"},
                "spec": {"holderIdentity": "agent-titan", "leaseDurationSeconds": 15},
            },
        )
        stored = leases.read_namespaced_lease("pcidevices-agent", ns)
        assert stored.spec.holder_identity == "agent-titan"


class TestIdentity:
    """Client-certificate users, RBAC and service-account tokens."""

    def test_user_without_roles_is_forbidden(self, kube, unique_name):
        """A client-certificate user with no RBAC binding is refused listing PCIDevices."""
        kubeconfig = kube.user_kubeconfig(unique_name("user"), groups=["team-a"])
        result = kube.kubectl("get", "pcidevices", kubeconfig=kubeconfig)
        assert result.returncode != 0
        assert "is forbidden" in result.stderr
        assert 'cannot list resource "pcidevices"' in result.stderr

    def test_user_in_bound_group_is_allowed(self, kube, unique_name):
        """A user whose certificate names a group bound to a role may do what the role allows."""
        group = unique_name("group")
        rbac = client.RbacAuthorizationV1Api(kube.api_client)
        rbac.create_cluster_role(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": group},
                "rules": [
                    {
                        "apiGroups": ["devices.harvesterhci.io"],
                        "resources": ["pcidevices"],
                        "verbs": ["get", "list"],
                    }
                ],
            }
        )
        rbac.create_cluster_role_binding(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": group},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": group,
                },
                "subjects": [
                    {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}
                ],
            }
        )
        try:
            kubeconfig = kube.user_kubeconfig(unique_name("user"), groups=[group])
            allowed = kube.kubectl("get", "pcidevices", kubeconfig=kubeconfig)
            refused = kube.kubectl("get", "pcideviceclaims", kubeconfig=kubeconfig)
        finally:
            rbac.delete_cluster_role_binding(group)
            rbac.delete_cluster_role(group)
        assert allowed.returncode == 0, allowed.stderr
        assert 'cannot list resource "pcideviceclaims"' in refused.stderr

    def test_token_request_issues_a_token(self, kube, unique_name):
        """TokenRequest returns a signed token the API server accepts for that service account."""
        core = client.CoreV1Api(kube.api_client)
        ns = namespace(core, unique_name("ns"))
        core.create_namespaced_service_account(
            ns, {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "agent"}}
        )
        token = core.create_namespaced_service_account_token(
            "agent",
            ns,
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}},
        ).status.token
        review = client.AuthenticationV1Api(kube.api_client).create_token_review(
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenReview",
                "spec": {"token": token},
            }
        )
        assert review.status.authenticated
        assert review.status.user.username == f"system:serviceaccount:{ns}:agent"


class TestRestart:
    """Restarting the API server under a running test."""

    def test_objects_survive_apiserver_restart(self, kube, unique_name):
        """An object created before restart_apiserver() is still there after it, on the same URL."""
        if not kube.owned:
            pytest.skip(
                "restart needs a cluster this session started; PCIDEVICES_KUBECONFIG is set"
            )
        core = client.CoreV1Api(kube.api_client)
        ns = namespace(core, unique_name("ns"))
        server = kube.server
        kube.restart_apiserver()
        assert kube.server == server
        assert core.read_namespace(ns).metadata.name == ns
