"""A node agent under test: real API server (harness), real adapters, a fake kernel.

The fake kernel lives on pyfakefs; the Kubernetes client, TLS and the harness are told to use
the real filesystem (pyfakefs ``additional_skip_names``), so the agent talks HTTPS to the real
API server while its sysfs writes land in the fake kernel.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator

import pytest
from pyfakefs.fake_filesystem_unittest import Patcher

from fakesys.background import stop_agent, stop_before_report
from fakesys.descriptors import guard_descriptors
from fakesys.hosts import STATE, Host, workstation
from pcicore.pciids import PciIds
from pcidevices.wiring.agent import AgentConfig, agent_injector
from pcihost.pciids_file import load_pci_ids
from pcioperator.agent import Agent
from pcioperator.kube.api import NODES, KubeApi
from polling import wait_for

REAL_FS_MODULES = [
    "kubernetes",
    "urllib3",
    "ssl",
    "certifi",
    "http",
    "socket",
    "harness",
    "prometheus_client",
]


@pytest.fixture(scope="session")
def pci_ids() -> PciIds:
    return load_pci_ids()


@pytest.fixture
def fake_fs(kube) -> Iterator[object]:
    with Patcher(additional_skip_names=REAL_FS_MODULES) as patcher:
        guard_descriptors(patcher.fs)
        # The client reads its TLS key through builtins.open: let it see the real one.
        patcher.fs.add_real_directory(str(kube.pki))
        yield patcher.fs


@pytest.fixture
def make_node(kube, unique_name) -> Callable[[], str]:
    api = KubeApi(kube.api_client)

    def make() -> str:
        name = unique_name("node")
        api.create(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})
        return name

    return make


class RunningAgent:
    """An agent on a fake host, and what a test needs to look at both."""

    def __init__(self, agent: Agent, host: Host, node: str, api: KubeApi) -> None:
        """Hold the parts of one test's agent."""
        self.agent = agent
        self.host = host
        self.node = node
        self.api = api


@pytest.fixture
def start_agent(
    request, kube, fake_fs, pci_ids, make_node
) -> Iterator[Callable[..., RunningAgent]]:
    started: list[Agent] = []
    hosts: dict[str, Host] = {}

    def start(node: str | None = None, host: Host | None = None, **options) -> RunningAgent:
        node = node or make_node()
        if host is None:
            host = hosts.get("default") or workstation(fake_fs)
            hosts["default"] = host
        config = AgentConfig(
            node=node,
            state_file=STATE,
            metrics_address=("127.0.0.1", 0),
            device_plugin=False,
            kernel_events=False,
            rescan_interval=options.pop("rescan_interval", 0.5),
            **options,
        )
        agent = agent_injector(config, kube.api_client, pci_ids).get(Agent)
        agent.start()
        started.append(agent)
        stop_before_report(request, lambda: stop_agent(agent))
        wait_for(agent.ready)
        return RunningAgent(agent, host, node, KubeApi(kube.api_client))

    yield start
    for agent in started:
        stop_agent(agent)  # already stopped unless the test never reached its end
    gc.collect()
