"""`kubectl pcidevices` against the real API server, with an agent on the fake kernel.

The commands run in this process (the agent's fake kernel is on pyfakefs here); the console
script and its kubeconfig loading are tested in tests/integration/ship/test_kubectl_script.py.
"""

from __future__ import annotations

import io
import json

import pytest

from fakesys.hosts import FREE_NIC, GPU, GPU_AUDIO, MGMT_NIC, ROOT_PORT
from pcidevices.kubectl import commands
from pcioperator.kube.api import PCIDEVICECLAIMS, KubeApi
from pcioperator.kube.errors import NotFoundError
from polling import wait_for

pytestmark = pytest.mark.kube


def kubectl_pcidevices(running, *argv):
    out, err = io.StringIO(), io.StringIO()
    code = commands.run(list(argv), api=KubeApi(running.api._client), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def name_of(node, address):
    return f"{node}-{address.replace(':', '').replace('.', '')}"


def wait_listed(running):
    """Wait until the agent has written every device of the fake host."""
    wait_for(lambda: len(rows(running)) == 7)  # 8 functions less the root port (a bridge)


def rows(running):
    code, out, _ = kubectl_pcidevices(running, "ls", "--node", running.node, "-o", "json")
    assert code == 0
    return {row["address"]: row for row in json.loads(out)["items"]}


def test_ls_prints_the_nodes_devices_like_lspci(start_agent):
    running = start_agent()
    wait_listed(running)
    code, out, _ = kubectl_pcidevices(running, "ls", "--node", running.node)
    assert code == 0
    header, *lines = out.splitlines()
    assert header.split()[:3] == ["ADDRESS", "IDS", "DRIVER"]
    assert "NODE" not in header
    (nic,) = [line for line in lines if line.startswith(FREE_NIC)]
    assert nic.split()[1:4] == ["8086:1533", "igb", "5"]
    assert "Ethernet controller: Intel Corporation I210 Gigabit Network Connection" in nic
    assert [line.split()[0] for line in lines] == sorted(line.split()[0] for line in lines)


def test_ls_of_all_nodes_names_the_node(start_agent):
    running = start_agent()
    wait_listed(running)
    code, out, _ = kubectl_pcidevices(running, "ls")
    assert code == 0
    assert out.splitlines()[0].startswith("NODE")
    assert any(line.startswith(f"{running.node} ") for line in out.splitlines())


def test_claim_then_release_moves_the_device_and_back(start_agent):
    running = start_agent()
    wait_listed(running)
    code, out, err = kubectl_pcidevices(running, "claim", FREE_NIC, "--node", running.node)
    assert code == 0, err
    assert running.host.driver(FREE_NIC) == "vfio-pci"
    name = name_of(running.node, FREE_NIC)
    assert f"pcideviceclaim/{name} created" in err
    assert f"pcideviceclaim/{name}: BoundToVfio" in err
    assert out.split("\n")[1].split() == [name, FREE_NIC, running.node, "True", "BoundToVfio"]
    listed = rows(running)[FREE_NIC]
    assert listed["claimState"] == "BoundToVfio"
    assert listed["claimedBy"]

    code, out, err = kubectl_pcidevices(running, "release", FREE_NIC, "--node", running.node)
    assert code == 0, err
    with pytest.raises(NotFoundError):
        running.api.get(PCIDEVICECLAIMS, name)
    assert running.host.driver(FREE_NIC) == "igb"
    assert out == f"released {FREE_NIC}\n"


def test_refused_claim_prints_the_reason_and_fails(start_agent):
    running = start_agent()
    wait_listed(running)
    code, _, err = kubectl_pcidevices(running, "claim", MGMT_NIC, "--node", running.node)
    assert code == 1
    assert "HostDependsOnDevice" in err
    assert "default route" in err
    assert f"release {MGMT_NIC} --node {running.node}" in err
    assert running.host.driver(MGMT_NIC) == "e1000e"


def test_claim_with_group_takes_the_whole_iommu_group(start_agent):
    """Under the strict policy one function alone waits; --group claims its group-mates too."""
    running = start_agent()
    wait_listed(running)
    code, _, err = kubectl_pcidevices(running, "claim", GPU, "--node", running.node)
    assert code == 1
    assert "IommuGroupIncomplete" in err
    code, out, err = kubectl_pcidevices(
        running, "claim", GPU, "--node", running.node, "--group", "-o", "json"
    )
    assert code == 0, err
    claims = json.loads(out)["items"]
    assert [c["spec"]["address"] for c in claims] == [GPU, GPU_AUDIO]  # never the root port
    assert running.host.driver(GPU) == running.host.driver(GPU_AUDIO) == "vfio-pci"
    assert running.host.driver(ROOT_PORT) == "pcieport"


def test_errors_are_one_line(start_agent, capsys, monkeypatch):
    running = start_agent()
    wait_listed(running)
    from pcidevices import kubectl  # noqa: PLC0415

    monkeypatch.setattr(commands, "_api_from_kubeconfig", lambda *_: KubeApi(running.api._client))
    assert kubectl.main(["claim", "0000:09:00.0", "--node", running.node]) == 1
    assert kubectl.main(["claim", "09:00", "--node", running.node]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2
    assert "0000:09:00.0" in lines[0]
    assert f"kubectl pcidevices ls --node {running.node}" in lines[0]
    assert "09:00" in lines[1]
