"""The OCI image of scripts/image, unpacked and run in its own root file system.

The image's entrypoint runs under chroot in a private mount namespace with the host's /sys,
/proc and /dev mounted in: `pcidevices scan` must see what the host's venv sees, and the agent
must write this machine's devices to the test API server.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

import pcidevices
from harness.kube import REPO_ROOT, KubeCluster, loopback_env
from pcioperator.kube.api import NODES, PCIDEVICES, KubeApi
from polling import wait_for

pytestmark = pytest.mark.ship

VERSION = pcidevices.__version__


@pytest.fixture(scope="module")
def archive() -> Path:
    if os.geteuid() != 0:
        pytest.skip("building and running the image needs root (mmdebstrap, chroot, mount)")
    result = subprocess.run(
        [str(REPO_ROOT / "scripts" / "image")],
        capture_output=True,
        text=True,
        check=False,
        timeout=3600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return Path(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def layout(archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("oci-layout")
    subprocess.run(["tar", "-xf", str(archive), "-C", str(out)], check=True)
    return out


@pytest.fixture(scope="module")
def bundle(layout: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The image unpacked by umoci: ``rootfs/`` and the runtime's ``config.json``."""
    out = tmp_path_factory.mktemp("bundle") / "pcidevices"
    subprocess.run(
        ["umoci", "unpack", "--image", f"{layout}:{VERSION}", str(out)],
        check=True,
        capture_output=True,
    )
    return out


def blob(layout: Path, descriptor: dict[str, Any]) -> dict[str, Any]:
    algorithm, digest = descriptor["digest"].split(":")
    return json.loads((layout / "blobs" / algorithm / digest).read_text())  # type: ignore[no-any-return]


def image_config(layout: Path) -> dict[str, Any]:
    index = json.loads((layout / "index.json").read_text())
    (manifest,) = [
        m
        for m in index["manifests"]
        if m["annotations"]["org.opencontainers.image.ref.name"] == VERSION
    ]
    return blob(layout, blob(layout, manifest)["config"])


def entrypoint(bundle: Path) -> list[str]:
    """The process the image runs, as the OCI runtime config written by umoci says."""
    config = json.loads((bundle / "config.json").read_text())
    assert config["process"]["user"]["uid"] == 0
    return list(config["process"]["args"])


def in_image(
    bundle: Path, argv: Sequence[str], *, also_mount: Sequence[Path] = ()
) -> subprocess.Popen[str]:
    """Run ``argv`` chrooted into the image's root, with /sys, /proc and /dev of the host."""
    root = bundle / "rootfs"
    steps = [
        "set -e",
        *(f"mount --rbind {source} {root}{source}" for source in ("/sys", "/dev")),
        f"mount -t proc proc {root}/proc",
        *(f"mkdir -p {root}{path} && mount --bind {path} {root}{path}" for path in also_mount),
    ]
    config = json.loads((bundle / "config.json").read_text())
    env = ["env", "-i", *config["process"]["env"]]
    steps.append(f"exec chroot {root} {shlex.join([*env, *argv])}")
    return subprocess.Popen(
        [
            *("unshare", "--mount", "--propagation", "private", "--pid", "--fork"),
            *("sh", "-c", "; ".join(steps)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=loopback_env() | {"PATH": os.environ["PATH"]},
        start_new_session=True,
    )


def test_image_config_has_entrypoint_user_and_labels(layout):
    config = image_config(layout)
    assert config["config"]["Entrypoint"] == ["/usr/local/bin/pcidevices"]
    assert config["config"]["Cmd"] == ["agent"]
    assert config["config"]["User"] == "0:0"
    assert "PYTHONDONTWRITEBYTECODE=1" in config["config"]["Env"]
    assert config["config"]["Labels"]["org.opencontainers.image.version"] == VERSION
    assert len(config["rootfs"]["diff_ids"]) == 2  # Debian base, then the wheel


def test_image_holds_the_tools_the_agent_uses(bundle):
    root = bundle / "rootfs"
    assert (root / "usr/share/misc/pci.ids").exists()
    # usb.ids is a link to /var/lib/usbutils/usb.ids, which resolves inside the image only.
    assert (root / "var/lib/usbutils/usb.ids").is_file()
    assert os.readlink(root / "usr/share/misc/usb.ids") == "/var/lib/usbutils/usb.ids"
    assert (root / "usr/bin/lspci").exists()
    # A symbolic link to /bin/kmod, which resolves inside the image only.
    assert os.readlink(root / "usr/sbin/modprobe") == "/bin/kmod"
    assert (root / "usr/bin/kmod").is_file()
    site = root / "usr/local/lib/python3.11/dist-packages"
    assert (site / "pcidevices" / "__init__.py").exists()
    assert list((site / "pcidevices" / "__pycache__").glob("__init__.cpython-311.pyc"))


def test_scan_in_the_image_sees_what_the_host_sees(bundle):
    process = in_image(bundle, [*entrypoint(bundle)[:1], "scan", "-o", "json"])
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    host = subprocess.run(
        [str(Path(sys.executable).parent / "pcidevices"), "scan", "-o", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    in_image_items = json.loads(out)["items"]
    assert in_image_items
    assert in_image_items == json.loads(host.stdout)["items"]


def test_every_process_imports_in_the_image(bundle):
    """The composition roots load with the image's Python and shared libraries (grpcio's too)."""
    roots = ", ".join(f"pcidevices.wiring.{name}" for name in ("agent", "controller", "webhook"))
    process = in_image(
        bundle, ["/usr/bin/python3", "-c", f"import {roots}, pcidevices.wiring.plugin"]
    )
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0, err[-3000:]


@pytest.mark.kube
def test_agent_from_the_image_writes_this_machines_devices(bundle, kube: KubeCluster, unique_name):
    api = KubeApi(kube.api_client)
    node = unique_name("image-node")
    api.create(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}})
    expected = subprocess.run(
        [str(Path(sys.executable).parent / "pcidevices"), "scan", "-o", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    addresses = {item["status"]["address"] for item in json.loads(expected.stdout)["items"]}
    argv = [
        *entrypoint(bundle),  # the image's own entrypoint and command: `pcidevices agent`
        f"--node={node}",
        f"--kubeconfig={kube.kubeconfig}",
        "--state-file=/tmp/claims.json",
        "--metrics-address=off",
        "--no-device-plugin",
        "--no-kernel-events",
    ]
    process = in_image(bundle, argv, also_mount=[kube.workdir])
    try:

        def written() -> bool:
            assert process.poll() is None, process.communicate()[1][-3000:]
            items, _ = api.list_objects(PCIDEVICES, label_selector=f"nodename={node}")
            # An object is created first, its status written next: count it once both are in.
            return {(item.get("status") or {}).get("address") for item in items} == addresses

        wait_for(written, timeout=120, interval=0.5)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        _, err = process.communicate(timeout=60)
        api.delete(NODES, node)
    assert process.returncode == 0, err[-3000:]
