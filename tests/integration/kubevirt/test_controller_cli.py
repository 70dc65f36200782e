"""``pcidevices controller`` as a process: it leads, keeps the CR, and stops cleanly on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
from kubevirt_objects import (
    OURS,
    SLOW,
    USER_ENTRY,
    kubevirt_body,
    make_claim,
    make_device,
    permitted,
)

from harness.kube import loopback_env
from pcioperator.controllers.kubevirt import KUBEVIRTS
from pcioperator.kube.api import LEASES
from pcioperator.kube.errors import NotFoundError
from polling import wait_for

pytestmark = pytest.mark.kube


def lease_holder(api, namespace: str, name: str) -> str | None:
    """The Lease's holder, ``""`` when released, ``None`` before it exists."""
    try:
        return api.get(LEASES, name, namespace)["spec"].get("holderIdentity") or ""
    except NotFoundError:
        return None


class TestControllerCommand:
    """The composition root runs the whole controller against a real API server."""

    def test_runs_until_sigterm_then_releases_the_lease(
        self, kube, kubevirt_crd, api, make_namespace, unique_name
    ):
        """It takes the Lease, fills the CR, and on SIGTERM exits 0 with the Lease released."""
        namespace = make_namespace()
        api.create(KUBEVIRTS, kubevirt_body(namespace), namespace)
        node = unique_name("node")
        make_device(api, node, "0000:03:00.0")
        make_claim(api, node, "0000:03:00.0")
        lease = unique_name("lease")
        argv = [
            sys.executable,
            "-m",
            "pcidevices",
            "controller",
            f"--kubeconfig={kube.kubeconfig}",
            f"--kubevirt-namespace={namespace}",
            f"--lease-namespace={namespace}",
            f"--lease-name={lease}",
            "--identity=cli-replica",
            "--metrics-address=127.0.0.1:0",
        ]
        process = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, env=loopback_env())
        try:
            wait_for(lambda: lease_holder(api, namespace, lease) == "cli-replica", timeout=SLOW)
            wait_for(lambda: permitted(api, namespace) == [USER_ENTRY, OURS], timeout=SLOW)
            process.send_signal(signal.SIGTERM)
            _, stderr = process.communicate(timeout=SLOW)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        assert process.returncode == 0, stderr
        assert lease_holder(api, namespace, lease) == ""
        assert "Traceback" not in stderr
