"""A real Kubernetes control plane on loopback for the integration tests.

The operator is judged by how it behaves against a real API server (schema validation, the
status subresource, conflicts, watches, garbage collection, RBAC), so the tests run one: an
embedded etcd, kube-apiserver, kube-controller-manager, kubectl and (on request)
kube-scheduler, all from one pinned Kubernetes release, linked into one binary by
``tests/harness/build.sh`` and cached outside the clone. This module builds that binary when
it is missing, starts the processes in their own process groups, and stops them again.

Run ``python tests/harness/kube.py up`` to keep a cluster running between test sessions; point
``PCIDEVICES_KUBECONFIG`` at the kubeconfig it prints and the fixtures reuse it.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import dataclasses
import hashlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from kubernetes.client import ApiClient

HARNESS_DIR = Path(__file__).resolve().parent
GO_DIR = HARNESS_DIR / "go"
BUILD_SCRIPT = HARNESS_DIR / "build.sh"
REPO_ROOT = HARNESS_DIR.parent.parent
CRD_DIR = REPO_ROOT / "deploy" / "crds"

# Controllers this cluster runs: garbage collection (ownerReferences) and namespace deletion are
# the point; service accounts and their tokens make namespaces behave as in a real cluster; the
# admission-policy status controller type-checks ValidatingAdmissionPolicies (their status).
CONTROLLERS = (
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
    "validatingadmissionpolicy-status-controller",
    # Creates a pod's ResourceClaims from its ResourceClaimTemplates (DRA), as in a real cluster.
    "resourceclaim-controller",
)
_PR_SET_PDEATHSIG = 1  # prctl(2): signal this process when its parent thread exits.
_STOP_GRACE_SECONDS = 15.0


@dataclasses.dataclass(frozen=True)
class Profile:
    """What a cluster runs beyond etcd and the API server, and how.

    The default is a small real cluster. `LEAN` is for a machine where CPU is scarce (the QEMU
    guest under TCG, where each CPU-second of start-up costs about a minute): no controller
    manager, and the API server's start-up work cut where nothing here depends on it.
    """

    controller_manager: bool = True
    apiserver_flags: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    ready_timeout: float = 120.0
    ready_poll_interval: float = 0.25


DEFAULT = Profile()
LEAN = Profile(
    controller_manager=False,
    apiserver_flags=(
        # API priority and fairness writes its bootstrap configuration at start-up.
        "--enable-priority-and-fairness=false",
        # No watch cache: one reflector fewer per resource type; our tests list little.
        "--watch-cache=false",
    ),
    # Go's collector costs a third of the API server's start-up CPU; a limit keeps it bounded.
    env=(("GOGC", "off"), ("GOMEMLIMIT", "1536MiB")),
    ready_timeout=600.0,
    # Each `/readyz` poll is a TLS handshake, which costs seconds of emulated CPU.
    ready_poll_interval=2.0,
)


class HarnessError(RuntimeError):
    """The test cluster could not be built, started or used; the message says why and how."""


def cache_root() -> Path:
    """Folder outside the clone that holds built harness binaries (``$PCIDEVICES_CACHE``)."""
    configured = os.environ.get("PCIDEVICES_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "pcidevices"


# What ``build.sh [VARIANT]`` builds, by variant: the file name of the binary in the cache.
# "full" has every sub-command; "demo" only etcd, apiserver and pki (no controller manager, no
# kubectl), for `scripts/demo`.
VARIANTS = {"full": "harness", "demo": "harness-demo"}


def binary_path(variant: str = "full") -> Path:
    """Where the binary for the current pins lives; keyed exactly as ``build.sh`` keys it.

    The key hashes go.mod, go.sum and every ``*.go`` file in byte order of their names.
    """
    digest = hashlib.sha256()
    sources = sorted(path.name for path in GO_DIR.glob("*.go"))
    for name in ("go.mod", "go.sum", *sources):
        digest.update((GO_DIR / name).read_bytes())
    return cache_root() / f"harness-{digest.hexdigest()[:16]}" / VARIANTS[variant]


def ensure_binary(variant: str = "full") -> Path:
    """Return the harness binary, building it with ``build.sh`` first when it is missing.

    Raises:
        HarnessError: the build failed; the message holds the build's own output.
    """
    binary = binary_path(variant)
    if os.access(binary, os.X_OK):
        return binary
    try:
        result = subprocess.run(
            ["bash", str(BUILD_SCRIPT), variant],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError as err:
        raise HarnessError(f"could not run {BUILD_SCRIPT}: {err}") from err
    if result.returncode != 0:
        raise HarnessError(
            f"building the test cluster failed (exit {result.returncode}); "
            f"run {BUILD_SCRIPT} {variant} to reproduce.\n{result.stdout}{result.stderr}"
        )
    built = Path(result.stdout.strip().splitlines()[-1])
    if not os.access(built, os.X_OK):
        raise HarnessError(f"{BUILD_SCRIPT} reported {built}, which is not an executable")
    return built


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def loopback_env() -> dict[str, str]:
    """The environment for cluster processes: loopback never goes through an HTTP proxy.

    The API server calls webhooks on 127.0.0.1 and honours ``HTTPS_PROXY``; so do kubectl and
    the controller manager.
    """
    env = dict(os.environ)
    for name in ("NO_PROXY", "no_proxy"):
        present = [part for part in env.get(name, "").split(",") if part]
        env[name] = ",".join([*present, "127.0.0.1", "localhost"])
    env.pop("KUBECONFIG", None)
    return env


def _die_with_parent() -> None:
    """Child-side ``preexec_fn``: the kernel sends SIGTERM if the test process dies uncleanly.

    The kernel tracks the *thread* that forked: start a cluster from a thread that lives as long
    as the cluster should (the main thread, or one that waits until it stops the cluster).
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class _Process:
    """One control-plane process in its own process group, logging to a file."""

    def __init__(
        self, name: str, argv: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = {**loopback_env(), **(env or {})}
        self._popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        # The child gets its own copy of the log descriptor; the parent keeps none open, so no
        # long-lived descriptor of the test process depends on it.
        with self.log_path.open("ab") as log:
            self._popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - calls prctl only, takes no locks
            )

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen else None

    def exited(self) -> int | None:
        """Return the exit code if the process has ended, else None."""
        return self._popen.poll() if self._popen else None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Terminate the whole process group; SIGKILL whatever outlives the grace period."""
        popen, self._popen = self._popen, None
        if popen is not None:
            if popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(popen.pid, signal.SIGTERM)
                try:
                    popen.wait(timeout=_STOP_GRACE_SECONDS)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(popen.pid, signal.SIGKILL)
                    popen.wait()
            # Reap anything left in the group (the leader may exit before its children).
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(popen.pid, signal.SIGKILL)


class KubeCluster:
    """etcd + kube-apiserver + kube-controller-manager on loopback, and kubectl to talk to them.

    Attributes:
        workdir: Folder holding the PKI, kubeconfigs, etcd data and one log file per process.
        binary: The multi-call harness binary.
        kubeconfig: Admin kubeconfig (user ``admin`` in group ``system:masters``).
        server: The API server's URL.
    """

    def __init__(self, workdir: Path, binary: Path, profile: Profile = DEFAULT) -> None:
        """Describe a cluster; use :meth:`start` or :meth:`attach` to get a running one."""
        self.workdir = workdir
        self.binary = binary
        self.profile = profile
        self.pki = workdir / "pki"
        self.kubeconfig = workdir / "admin.kubeconfig"
        self.server = ""
        self._owned = False
        self._processes: dict[str, _Process] = {}
        self._api_client: ApiClient | None = None
        self._crds_installed = False

    # -- life cycle -------------------------------------------------------------------------

    @classmethod
    def start(
        cls, workdir: Path | None = None, profile: Profile = DEFAULT, variant: str = "full"
    ) -> KubeCluster:
        """Build if needed, then start etcd, the API server and (by default) the controller manager.

        ``variant="demo"`` uses the smaller binary (no controller manager, no kubectl): pass a
        profile without the controller manager, and reach the cluster through `api_client`.

        Raises:
            HarnessError: a build or start-up failure, with the process's log.
        """
        binary = ensure_binary(variant)
        if workdir is None:
            workdir = Path(tempfile.mkdtemp(prefix="pcidevices-kube-"))
        cluster = cls(workdir, binary, profile)
        cluster._owned = True
        atexit.register(cluster.stop)
        try:
            cluster._boot()
        except BaseException:
            cluster.stop()
            raise
        return cluster

    @classmethod
    def attach(cls, kubeconfig: Path) -> KubeCluster:
        """Use a cluster someone else runs (``python tests/harness/kube.py up``); never stop it.

        Raises:
            HarnessError: the kubeconfig is missing or the cluster is not ready.
        """
        if not kubeconfig.is_file():
            raise HarnessError(f"PCIDEVICES_KUBECONFIG={kubeconfig} does not exist")
        cluster = cls(kubeconfig.parent, ensure_binary())
        cluster.kubeconfig = kubeconfig
        config = yaml.safe_load(kubeconfig.read_text())
        cluster.server = config["clusters"][0]["cluster"]["server"]
        cluster._wait_ready(timeout=30.0)
        return cluster

    def _boot(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._run_harness("pki", "init", str(self.pki))
        etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
        self.server = f"https://127.0.0.1:{api_port}"
        env = dict(self.profile.env)
        self._processes["etcd"] = _Process(
            "etcd",
            [
                str(self.binary),
                "etcd",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--client-port={etcd_port}",
                f"--peer-port={peer_port}",
            ],
            self.workdir / "etcd.log",
            env,
        )
        self._processes["apiserver"] = _Process(
            "apiserver",
            [
                str(self.binary),
                "apiserver",
                *self._apiserver_flags(api_port, etcd_port),
                *self.profile.apiserver_flags,
            ],
            self.workdir / "apiserver.log",
            env,
        )
        self._write_kubeconfig(self.kubeconfig, "admin", self.pki / "admin")
        self._processes["etcd"].start()
        self._processes["apiserver"].start()
        self._wait_ready(timeout=self.profile.ready_timeout)
        if self.profile.controller_manager:
            self._processes["controller-manager"] = _Process(
                "controller-manager",
                [
                    str(self.binary),
                    "controller-manager",
                    f"--kubeconfig={self.kubeconfig}",
                    f"--controllers={','.join(CONTROLLERS)}",
                    "--leader-elect=false",
                    "--secure-port=0",
                    "--use-service-account-credentials=false",
                    f"--service-account-private-key-file={self.pki / 'sa.key'}",
                    f"--root-ca-file={self.pki / 'ca.crt'}",
                ],
                self.workdir / "controller-manager.log",
                env,
            )
            self._processes["controller-manager"].start()
        (self.workdir / "cluster.json").write_text(
            json.dumps(
                {
                    "server": self.server,
                    "kubeconfig": str(self.kubeconfig),
                    "pids": {name: proc.pid for name, proc in self._processes.items()},
                },
                indent=2,
            )
        )

    def _apiserver_flags(self, api_port: int, etcd_port: int) -> list[str]:
        pki = self.pki
        return [
            f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={api_port}",
            f"--cert-dir={self.workdir / 'apiserver-certs'}",
            f"--tls-cert-file={pki / 'serving.crt'}",
            f"--tls-private-key-file={pki / 'serving.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--authorization-mode=Node,RBAC",
            "--allow-privileged=true",
            # The kubernetes Service's endpoints may not point at loopback; nothing here needs it.
            "--endpoint-reconciler-type=none",
            "--profiling=false",
            # With the default (0) a SIGTERM waits on open watches (the controller manager's)
            # until SIGKILL; 2s lets restart_apiserver() drain them and exit in about a second.
            "--shutdown-watch-termination-grace-period=2s",
        ]

    def stop(self) -> None:
        """Stop every process this object started (controller manager first, etcd last)."""
        if self._api_client is not None:
            self._api_client.close()
            self._api_client = None
        for name in ("scheduler", "controller-manager", "apiserver", "etcd"):
            process = self._processes.pop(name, None)
            if process is not None:
                process.stop()

    def start_scheduler(self, timeout: float = 60.0) -> None:
        """Start the real kube-scheduler and wait for its ``/readyz``; idempotent.

        It runs as the admin user, without leader election, serving health on a free loopback
        port. Tests that need pods placed and DRA claims allocated ask for it (the
        `kube_scheduler` fixture); it stops with the cluster or with `stop_scheduler`. On an
        attached cluster it is this session's own process and stops when the session ends.

        Raises:
            HarnessError: the scheduler exited or was not ready in time; the message holds its
                log.
        """
        if "scheduler" in self._processes:
            return
        port = free_port()
        process = _Process(
            "scheduler",
            [
                str(self.binary),
                "scheduler",
                f"--kubeconfig={self.kubeconfig}",
                f"--authentication-kubeconfig={self.kubeconfig}",
                f"--authorization-kubeconfig={self.kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={self.workdir / 'scheduler-certs'}",
            ],
            self.workdir / "scheduler.log",
            dict(self.profile.env),
        )
        self._processes["scheduler"] = process
        process.start()
        if not self._owned:
            atexit.register(self.stop_scheduler)
        # Its serving certificate is self-signed; /readyz is open to anyone (the default
        # --authorization-always-allow-paths), so no client certificate is needed either.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            code = process.exited()
            if code is not None:
                self._processes.pop("scheduler")
                raise HarnessError(
                    f"kube-scheduler exited with {code}; log {process.log_path}:\n"
                    f"{process.log_tail()}"
                )
            try:
                with urllib.request.urlopen(
                    f"https://127.0.0.1:{port}/readyz", context=context, timeout=5
                ) as response:
                    if response.status == 200:
                        return
                    last = f"HTTP {response.status}"
            except urllib.error.HTTPError as err:
                last = f"HTTP {err.code}"
            except (OSError, ssl.SSLError) as err:
                last = str(err)
            # Each poll is a TLS handshake: seconds of emulated CPU in the QEMU guest (LEAN).
            time.sleep(self.profile.ready_poll_interval)
        self.stop_scheduler()
        raise HarnessError(
            f"kube-scheduler not ready after {timeout:.0f}s: {last}\n{process.log_tail()}"
        )

    def stop_scheduler(self) -> None:
        """Stop the scheduler if this object started it."""
        process = self._processes.pop("scheduler", None)
        if process is not None:
            process.stop()

    def restart_apiserver(self) -> None:
        """Stop the API server and start it again on the same port; etcd keeps the data.

        Raises:
            HarnessError: the cluster was attached, not started here, or did not come back.
        """
        process = self._processes.get("apiserver")
        if process is None:
            raise HarnessError(
                "restart_apiserver needs a cluster this session started; "
                "unset PCIDEVICES_KUBECONFIG"
            )
        process.stop()
        process.start()
        self._wait_ready(timeout=self.profile.ready_timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        context = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        context.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        last = "no answer yet"
        while time.monotonic() < deadline:
            for process in self._processes.values():
                code = process.exited()
                if code is not None:
                    raise HarnessError(
                        f"{process.name} exited with {code} during start-up; "
                        f"log {process.log_path}:\n{process.log_tail()}"
                    )
            try:
                with urllib.request.urlopen(  # noqa: S310 - fixed https URL on loopback
                    f"{self.server}/readyz", context=context, timeout=5
                ) as response:
                    if response.status == 200:
                        return
                    last = f"HTTP {response.status}"
            except urllib.error.HTTPError as err:
                last = f"HTTP {err.code}: {err.read()[:2000].decode(errors='replace')}"
            except (OSError, ssl.SSLError) as err:
                last = str(err)
            time.sleep(self.profile.ready_poll_interval)
        apiserver = self._processes.get("apiserver")
        tail = apiserver.log_tail() if apiserver else ""
        raise HarnessError(f"{self.server}/readyz not ready after {timeout:.0f}s: {last}\n{tail}")

    # -- access -----------------------------------------------------------------------------

    @property
    def owned(self) -> bool:
        """True when this object started the processes (and so may stop or restart them)."""
        return self._owned

    @property
    def api_client(self) -> ApiClient:
        """A ``kubernetes.client.ApiClient`` for the admin user (shared, closed on stop)."""
        if self._api_client is None:
            from kubernetes import config  # noqa: PLC0415 - keep the client out of import time

            self._api_client = config.new_client_from_config(config_file=str(self.kubeconfig))
        return self._api_client

    def kubectl(
        self,
        *args: str,
        kubeconfig: Path | None = None,
        stdin: str | None = None,
        timeout: float = 60.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl of the same release against this cluster; never raises on exit code."""
        env = loopback_env() | {
            "KUBECACHEDIR": str(self.workdir / "kubectl-cache"),
            "KUBERC": "off",
        }
        return subprocess.run(
            [
                str(self.binary),
                "kubectl",
                f"--kubeconfig={kubeconfig or self.kubeconfig}",
                *args,
            ],
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            check=False,
        )

    def user_kubeconfig(self, name: str, groups: Iterable[str] = ()) -> Path:
        """Write a kubeconfig for a client-certificate user ``name`` in ``groups`` (RBAC tests)."""
        users = self.workdir / "users"
        users.mkdir(exist_ok=True)
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        prefix = users / safe
        self._run_harness("pki", "client", str(self.pki), name, str(prefix), *groups)
        path = users / f"{safe}.kubeconfig"
        self._write_kubeconfig(path, name, prefix)
        return path

    def serving_cert(self, name: str, hosts: Sequence[str] = ("127.0.0.1", "localhost")) -> Path:
        """Write ``<prefix>.crt``/``.key``, a server cert from the cluster CA; return the prefix.

        For webhooks on loopback: the API server trusts ``ca_bundle`` (``pki/ca.crt``).
        """
        certs = self.workdir / "serving"
        certs.mkdir(exist_ok=True)
        prefix = certs / "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        self._run_harness("pki", "serving", str(self.pki), str(prefix), *hosts)
        return prefix

    @property
    def ca_bundle(self) -> bytes:
        """The cluster CA in PEM, e.g. for a webhook's ``clientConfig.caBundle``."""
        return (self.pki / "ca.crt").read_bytes()

    def install_crds(self, paths: Iterable[Path], timeout: float = 60.0) -> list[str]:
        """Apply CRD manifests (idempotent) and wait until each is Established; return names.

        Raises:
            HarnessError: kubectl refused a manifest, or a CRD did not become Established.
        """
        names: list[str] = []
        kinds: dict[str, set[str]] = {}
        for path in paths:
            result = self.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))
            if result.returncode != 0:
                raise HarnessError(f"kubectl apply -f {path} failed:\n{result.stderr}")
            for doc in yaml.safe_load_all(path.read_text()):
                if not doc or doc.get("kind") != "CustomResourceDefinition":
                    continue
                names.append(doc["metadata"]["name"])
                spec = doc["spec"]
                for version in spec["versions"]:
                    if version.get("served", True):
                        gv = f"{spec['group']}/{version['name']}"
                        kinds.setdefault(gv, set()).add(spec["names"]["kind"])
        for name in names:
            result = self.kubectl(
                "wait",
                "--for=condition=Established",
                f"--timeout={int(timeout)}s",
                f"customresourcedefinition/{name}",
                timeout=timeout + 10,
            )
            if result.returncode != 0:
                raise HarnessError(f"CRD {name} not Established: {result.stderr}")
        for gv, gv_kinds in kinds.items():
            self._wait_openapi(gv, gv_kinds, timeout)
        return names

    def _wait_openapi(self, group_version: str, kinds: set[str], timeout: float) -> None:
        """Wait until the OpenAPI v3 document for ``group_version`` carries every kind.

        Established means the API server accepts the CRD; its OpenAPI document is published a
        moment later, and code that reads the schema (the start-up check) must not race it.
        """
        deadline = time.monotonic() + timeout
        seen: set[str] = set()
        while time.monotonic() < deadline:
            result = self.kubectl("get", "--raw", f"/openapi/v3/apis/{group_version}")
            if result.returncode == 0:
                schemas = (json.loads(result.stdout).get("components") or {}).get("schemas") or {}
                seen = {
                    gvk.get("kind", "")
                    for schema in schemas.values()
                    for gvk in schema.get("x-kubernetes-group-version-kind") or ()
                }
                if kinds <= seen:
                    return
            time.sleep(self.profile.ready_poll_interval)
        raise HarnessError(
            f"OpenAPI v3 for {group_version} lacks {sorted(kinds - seen)} after {timeout:.0f}s"
        )

    def ensure_project_crds(self) -> None:
        """Install the project's own CRDs from ``deploy/crds`` once per cluster object."""
        if not self._crds_installed:
            self.install_crds(sorted(CRD_DIR.glob("*.yaml")))
            self._crds_installed = True

    # -- helpers ----------------------------------------------------------------------------

    def _run_harness(self, *args: str) -> None:
        result = subprocess.run(
            [str(self.binary), *args], capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise HarnessError(f"harness {' '.join(args)} failed: {result.stderr}")

    def _write_kubeconfig(self, path: Path, user: str, cert_prefix: Path) -> None:
        config: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "pcidevices-test",
                    "cluster": {
                        "server": self.server,
                        "certificate-authority": str(self.pki / "ca.crt"),
                    },
                }
            ],
            "users": [
                {
                    "name": user,
                    "user": {
                        "client-certificate": f"{cert_prefix}.crt",
                        "client-key": f"{cert_prefix}.key",
                    },
                }
            ],
            "contexts": [
                {"name": user, "context": {"cluster": "pcidevices-test", "user": user}},
            ],
            "current-context": user,
        }
        path.write_text(yaml.safe_dump(config))


def main(argv: Sequence[str]) -> int:
    """``kube.py build`` prints the binary; ``kube.py up [DIR]`` runs a cluster until Ctrl-C."""
    if len(argv) >= 1 and argv[0] == "build":
        sys.stdout.write(f"{ensure_binary()}\n")
        return 0
    if len(argv) >= 1 and argv[0] == "up":
        workdir = Path(argv[1]).resolve() if len(argv) > 1 else None
        cluster = KubeCluster.start(workdir)
        cluster.ensure_project_crds()
        sys.stdout.write(
            f"cluster ready; logs in {cluster.workdir}\n"
            f"export PCIDEVICES_KUBECONFIG={cluster.kubeconfig}\n"
        )
        sys.stdout.flush()
        stop_signals = {signal.SIGINT, signal.SIGTERM}
        signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
        signal.sigwait(stop_signals)
        cluster.stop()
        return 0
    sys.stderr.write("usage: kube.py build | kube.py up [WORKDIR]\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
