"""The installed `kubectl-pcidevices` console script: kubeconfig loading and one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.kube

SCRIPT = Path(sys.executable).parent / "kubectl-pcidevices"


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *argv], capture_output=True, text=True, check=False, timeout=60
    )


def test_lists_a_node_through_the_kubeconfig(kube, unique_name):
    node = unique_name("node")
    result = run("--kubeconfig", str(kube.kubeconfig), "ls", "--node", node)
    assert result.returncode == 0, result.stderr
    assert result.stderr == (
        f"kubectl pcidevices: no PCIDevices on node {node!r} "
        "(is the pcidevices agent running there?)\n"
    )


def test_missing_kubeconfig_is_one_line(tmp_path):
    missing = tmp_path / "nowhere.kubeconfig"
    result = run("--kubeconfig", str(missing), "ls")
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert str(missing) in line
    assert "--kubeconfig" in line


def test_bad_arguments_are_one_line():
    result = run("claim", "0000:03:00.0")
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert "--node" in line
