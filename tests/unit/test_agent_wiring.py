"""The agent's composition root builds a whole agent, and feeds the plugin from the claims."""

from __future__ import annotations

import argparse
from pathlib import Path

import attrs
from kubernetes.client import ApiClient

from pcicore.address import PciAddress
from pcicore.device import PciClass, PciDevice
from pcicore.engine import ClaimEngine
from pcicore.naming import DeviceNamer
from pcicore.pciids import PciIds
from pcicore.ports import HostFactsSource, LedgerStore, PciBus
from pcicore.resources import ClaimedDevices, VfioNodes
from pcidevices.wiring.agent import AgentConfig, ClusterClaimedDevices, agent_injector
from pcidevices.wiring.host import HostConfig
from pcidevices.wiring.node_admin import node_injector
from pcidevices.wiring.plugin import VfioBoundDevices, plugin_injector
from pcidevices.wiring.webhook import WebhookConfig, webhook_injector
from pcihost.statefile import ClaimStateFile
from pcihost.sysfs import SysfsPciBus
from pcioperator.agent import Agent
from pcioperator.kube.api import KubeApi
from pcioperator.webhook.admission import ClaimAdmission
from pcioperator.webhook.facts import ClusterFacts
from pciplugin.host import DevicePluginHost, PluginSettings, UsbAdvertising


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

    def test_claim_bound_by_another_component_is_not_advertised(self):
        """A claim marked skip-vfio-binding (a vGPU) is served elsewhere: not advertised here."""
        vgpu = claim("n1-000003000", "0000:03:00.0", "n1")
        vgpu["metadata"]["annotations"] = {"pcidevices.harvesterhci.io/skip-vfio-binding": "true"}
        informer = FakeInformer([vgpu])
        bus = FakeBus(nic("0000:03:00.0"))
        assert ClusterClaimedDevices("n1", informer, bus, DeviceNamer(IDS)).claimed() == []

    def test_claimed_device_is_advertised_under_its_pcidevice_override(self):
        """A PCIDevice's override annotation is the name its claimed device is advertised under.

        VMs ask for the name the PCIDevice shows; an invalid override is ignored, as the device
        sync ignores it for the status.
        """
        informer = FakeInformer(
            [
                claim("n1-000003000", "0000:03:00.0", "n1"),
                claim("n1-000004000", "0000:04:00.0", "n1", dedicated=True),
                claim("n1-000005000", "0000:05:00.0", "n1"),
            ]
        )
        bus = FakeBus(nic("0000:03:00.0"), nic("0000:04:00.0"), nic("0000:05:00.0"))
        claimed = ClusterClaimedDevices("n1", informer, bus, DeviceNamer(IDS))
        claimed.follow_overrides(
            lambda: {
                "n1-000003000": "example.com/nic-for-vm",
                "n1-000004000": "example.com/dedicated-override",
                "n1-000005000": "not a resource name",
            }
        )
        assert [(str(c.address), c.advertised_as) for c in claimed.claimed()] == [
            ("0000:03:00.0", "example.com/nic-for-vm"),
            ("0000:04:00.0", "example.com/dedicated-override"),
            ("0000:05:00.0", "intel.com/I210_GIGABIT_NETWORK_CONNECTION"),
        ]

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

    def test_plugin_advertises_the_usb_controllers_enabled_devices(self, tmp_path):
        """The plugin's USB source is the agent's own USB controller; --no-usb leaves both out."""
        config = AgentConfig(node="n1", state_file=tmp_path / "claims.json", metrics_address=None)
        inj = agent_injector(config, ApiClient(), IDS)
        agent = inj.get(Agent)
        assert agent.usb is not None
        assert inj.get(UsbAdvertising).enabled is agent.usb
        config = attrs.evolve(config, usb=False)
        inj = agent_injector(config, ApiClient(), IDS)
        assert inj.get(Agent).usb is None
        assert inj.get(UsbAdvertising).enabled is None

    def test_plugin_can_be_left_out(self, tmp_path):
        """--no-device-plugin leaves the services empty."""
        config = AgentConfig(node="n1", state_file=tmp_path / "claims.json", device_plugin=False)
        agent = agent_injector(config, ApiClient(), IDS).get(Agent)
        assert agent.services == ()
        assert agent.health is not None


class TestHostModule:
    """The shared host module every composition root is built from."""

    def test_binds_every_port_once_and_shares_it(self, tmp_path):
        """The agent's engine, device sync and plugin use the same adapter instance per port."""
        config = AgentConfig(
            node="n1",
            state_file=tmp_path / "claims.json",
            metrics_address=None,
            plugin_settings=PluginSettings(device_plugins_dir=tmp_path),
        )
        inj = agent_injector(config, ApiClient(), IDS)
        agent = inj.get(Agent)
        engine = inj.get(ClaimEngine)
        assert agent.claims._engine is engine
        assert inj.get(ClaimEngine) is engine
        assert engine._bus is inj.get(PciBus) is inj.get(SysfsPciBus)
        assert agent.devices._bus is inj.get(PciBus)
        assert engine._ledger is inj.get(LedgerStore)
        assert isinstance(inj.get(LedgerStore), ClaimStateFile)
        assert engine._host is inj.get(HostFactsSource)
        assert inj.get(LedgerStore).path == tmp_path / "claims.json"
        plugin = agent.services[0]
        assert plugin._bus is inj.get(PciBus)
        assert plugin._vfio is inj.get(VfioNodes)

    def test_the_node_admin_engine_comes_from_the_same_module(self, tmp_path):
        """bind/release/status build their engine from the host module, with the CLI's paths."""
        args = argparse.Namespace(
            sysfs=tmp_path, proc=tmp_path / "proc", state_file=tmp_path / "s.json", deny=[]
        )
        inj = node_injector(args)
        engine = inj.get(ClaimEngine)
        assert engine._ledger is inj.get(LedgerStore)
        assert inj.get(LedgerStore).path == tmp_path / "s.json"
        assert inj.get(HostConfig).proc == tmp_path / "proc"

    def test_the_standalone_plugin_uses_the_host_module(self, tmp_path):
        """The standalone plugin's host reads the bus bound by the host module."""
        inj = plugin_injector(
            HostConfig(sysfs=tmp_path), PluginSettings(device_plugins_dir=tmp_path), IDS
        )
        host = inj.get(DevicePluginHost)
        assert host._bus is inj.get(PciBus)
        assert isinstance(inj.get(ClaimedDevices), VfioBoundDevices)

    def test_the_webhook_reads_through_the_counted_api(self, tmp_path):
        """The webhook's facts use the same KubeApi as the metrics count."""
        config = WebhookConfig(cert=tmp_path / "c", key=tmp_path / "k")
        inj = webhook_injector(config, ApiClient())
        facts = inj.get(ClusterFacts)
        api = inj.get(KubeApi)
        assert facts._api is api
        assert inj.get(ClaimAdmission)._facts is facts
