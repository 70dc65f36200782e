"""The agent's composition root builds a whole agent, and feeds the plugin from the claims."""

from __future__ import annotations

from pathlib import Path

from kubernetes.client import ApiClient

from pcicore.address import PciAddress
from pcicore.device import PciClass, PciDevice
from pcicore.naming import DeviceNamer
from pcicore.pciids import PciIds
from pcidevices.wiring.agent import AgentConfig, ClusterClaimedDevices, agent_injector
from pcioperator.agent import Agent
from pciplugin.host import DevicePluginHost, PluginSettings


class FakeInformer:
    """An informer cache holding fixed objects."""

    def __init__(self, objects):
        self._objects = objects

    def objects(self):
        return list(self._objects)


class FakeBus:
    """A PCI bus with fixed devices."""

    def __init__(self, *devices):
        self._devices = {d.address: d for d in devices}

    def devices(self):
        return list(self._devices.values())

    def device(self, address):
        return self._devices.get(address)


def claim(name, address, node, *, deleting=False, dedicated=False):
    meta = {"name": name, "uid": "u", "resourceVersion": "1"}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {
        "metadata": meta,
        "spec": {
            "address": address,
            "nodeName": node,
            "userName": "u",
            "disableResourcePooling": dedicated,
        },
    }


IDS = PciIds(b"8086  Intel Corporation\n\t1533  I210 Gigabit Network Connection\n")


def nic(address):
    return PciDevice(PciAddress.parse(address), 0x8086, 0x1533, PciClass(2, 0))


class TestClusterClaimedDevices:
    """What the in-agent device plugin advertises."""

    def test_live_claims_of_this_node_with_their_resource(self):
        """Claims of this node are advertised under their device's resourceName, pooled or not."""
        informer = FakeInformer(
            [
                claim("n1-000003000", "0000:03:00.0", "n1"),
                claim("n1-000004000", "0000:04:00.0", "n1", dedicated=True),
                claim("n2-000003000", "0000:03:00.0", "n2"),
                claim("n1-000005000", "0000:05:00.0", "n1", deleting=True),
                claim("n1-bad", "../../etc", "n1"),
            ]
        )
        bus = FakeBus(nic("0000:03:00.0"), nic("0000:04:00.0"), nic("0000:05:00.0"))
        claimed = ClusterClaimedDevices("n1", informer, bus, DeviceNamer(IDS)).claimed()
        # A claim that disables pooling gets Harvester's per-device name: <vendor>/<PCIDevice>.
        assert [(str(c.address), c.advertised_as) for c in claimed] == [
            ("0000:03:00.0", "intel.com/I210_GIGABIT_NETWORK_CONNECTION"),
            ("0000:04:00.0", "intel.com/n1-000004000"),
        ]

    def test_dedicated_devices_are_those_of_live_claims_disabling_pooling(self):
        """Only this node's live claims with disableResourcePooling count."""
        informer = FakeInformer(
            [
                claim("n1-000003000", "0000:03:00.0", "n1"),
                claim("n1-000004000", "0000:04:00.0", "n1", dedicated=True),
                claim("n2-000004000", "0000:04:00.0", "n2", dedicated=True),
                claim("n1-000005000", "0000:05:00.0", "n1", dedicated=True, deleting=True),
            ]
        )
        found = ClusterClaimedDevices("n1", informer, FakeBus(), DeviceNamer(IDS)).dedicated()
        assert found == {PciAddress.parse("0000:04:00.0")}

    def test_claim_of_a_missing_device_is_not_advertised(self):
        """A claim whose device is not on the bus advertises nothing."""
        informer = FakeInformer([claim("n1-000009000", "0000:09:00.0", "n1")])
        assert ClusterClaimedDevices("n1", informer, FakeBus(), DeviceNamer(IDS)).claimed() == []


class TestAgentInjector:
    """agent_injector."""

    def test_builds_an_agent_hosting_the_device_plugin(self, tmp_path):
        """With the plugin enabled, the agent carries a device-plugin host among its services."""
        config = AgentConfig(
            node="n1",
            sysfs=Path("/sys"),
            state_file=tmp_path / "claims.json",
            metrics_address=None,
            plugin_settings=PluginSettings(device_plugins_dir=tmp_path),
        )
        agent = agent_injector(config, ApiClient(), IDS).get(Agent)
        assert [type(s) for s in agent.services] == [DevicePluginHost]
        assert agent.health is None

    def test_plugin_can_be_left_out(self, tmp_path):
        """--no-device-plugin leaves the services empty."""
        config = AgentConfig(node="n1", state_file=tmp_path / "claims.json", device_plugin=False)
        agent = agent_injector(config, ApiClient(), IDS).get(Agent)
        assert agent.services == ()
        assert agent.health is not None
