"""The kubelet DRA plugin's wiring: for ``pcidevices agent --dra`` and ``pcidevices dra-plugin``.

`DraPluginModule` builds the `pciplugin.dra.host.DraPluginHost` from the host's adapters
(`pcidevices.wiring.host.HostModule`) and the API (`pcidevices.process.CountedApiModule`): a
claim engine of its own — the host's bus, driver control, host facts, protection and clock, on
the DRA plugin's own ledger, so that the agent's claim controller (which returns every device
its PCIDeviceClaims do not want) never touches a device a ResourceClaim holds — and the
ResourceClaim reader, checkpoint and claim files. The agent joins it with `dra_plugin_service`:
install the module, then start and stop the service with the others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path

import attrs
import injector
from kubernetes import client as k8s_client

from pcicore.address import PciAddress
from pcicore.dra_preparer import DraPreparer, DraSettings
from pcicore.engine import ClaimEngine
from pcicore.naming import DeviceNamer
from pcicore.pciids import PciIds
from pcicore.policy import GroupPolicy
from pcicore.ports import Clock, DriverControl, HostFactsSource, LedgerStore, PciBus
from pcicore.protection import DenyList, HostProtection
from pcicore.resources import VfioNodes
from pcidevices.process import (
    CountedApiModule,
    configure_logging,
    load_api_client,
    termination_signal,
)
from pcidevices.wiring.host import EngineConfig, HostConfig, HostModule
from pcihost.dra_files import ClaimFiles, DraCheckpointFile
from pcihost.pciids_file import load_pci_ids
from pcihost.statefile import ClaimStateFile
from pcihost.sysfs import SysfsPciBus
from pcioperator.controllers.resourceclaims import KubeResourceClaims
from pcioperator.kube.api import KubeApi
from pciplugin.dra.host import DraPluginHost, DraPluginSettings

_log = logging.getLogger(__name__)


@attrs.frozen
class DraPluginConfig:
    """How the kubelet DRA plugin runs on its node.

    Attributes:
        node: This node's name (the pool our ResourceSlices publish).
        policy: The IOMMU group policy, as for PCIDeviceClaims.
        settings: Its sockets and folders.
    """

    node: str
    policy: GroupPolicy = GroupPolicy.STRICT
    settings: DraPluginSettings = attrs.field(factory=DraPluginSettings)


def held_by_pci_device_claims(ledger: LedgerStore) -> Callable[[], Mapping[PciAddress, str]]:
    """The devices PCIDeviceClaims hold on this node (the agent's ledger), for refusals."""

    def held() -> Mapping[PciAddress, str]:
        return {
            address: f"a PCIDeviceClaim (device plugin) on {record.root}"
            for address, record in ledger.load().claims.items()
        }

    return held


def held_by_resource_claims(settings: DraPluginSettings) -> Callable[[], Mapping[PciAddress, str]]:
    """The devices ResourceClaims hold on this node (the DRA checkpoint), for the other side.

    For the agent's PCIDeviceClaim path (claim controller, webhook facts) to refuse a device DRA
    has prepared, as the DRA plugin refuses the devices PCIDeviceClaims hold.
    """
    checkpoint = DraCheckpointFile(settings.checkpoint)

    def held() -> Mapping[PciAddress, str]:
        return {
            device.address: f"ResourceClaim {claim.ref} (DRA)"
            for claim in checkpoint.load().claims.values()
            for device in claim.devices
        }

    return held


class DraPluginModule(injector.Module):
    """The DRA plugin's wiring; needs `HostModule`'s ports and a `KubeApi`."""

    def __init__(self, config: DraPluginConfig) -> None:
        """Wire the plugin for ``config``."""
        self._config = config

    def configure(self, binder: injector.Binder) -> None:
        """Bind the values given at start-up."""
        binder.bind(DraPluginConfig, to=self._config)

    @injector.singleton
    @injector.provider
    def host(
        self,
        config: DraPluginConfig,
        api: KubeApi,
        bus: PciBus,
        driver: DriverControl,
        facts: HostFactsSource,
        clock: Clock,
        protection: HostProtection,
        vfio: VfioNodes,
        namer: DeviceNamer,
        ledger: LedgerStore,
    ) -> DraPluginHost:
        """The node's DRA plugin."""
        settings = config.settings
        dra_ledger = ClaimStateFile(settings.ledger)
        engine = ClaimEngine(bus, driver, facts, dra_ledger, clock, protection=protection)
        preparer = DraPreparer(
            DraSettings(config.node, str(settings.metadata_dir), config.policy),
            claims=KubeResourceClaims(api),
            checkpoint=DraCheckpointFile(settings.checkpoint),
            engine=engine,
            ledger=dra_ledger,
            files=ClaimFiles(settings.cdi_dir, settings.metadata_dir),
            bus=bus,
            vfio=vfio,
            namer=namer,
            clock=clock,
            held=held_by_pci_device_claims(ledger),
        )
        return DraPluginHost(settings, preparer)


def dra_plugin_service(container: injector.Injector) -> DraPluginHost:
    """The plugin an agent with ``--dra`` starts and stops with its other services."""
    return container.get(DraPluginHost)


def dra_plugin_injector(
    host: HostConfig,
    engine: EngineConfig,
    config: DraPluginConfig,
    api_client: k8s_client.ApiClient,
    ids: PciIds,
) -> injector.Injector:
    """The injector of one standalone DRA plugin process."""
    return injector.Injector(
        [
            HostModule(host, engine, ids),
            CountedApiModule(api_client),
            DraPluginModule(config),
        ]
    )


def run(
    host: HostConfig,
    config: DraPluginConfig,
    *,
    deny: DenyList,
    kubeconfig: Path | None,
    pci_ids: Path | None,
) -> int:
    """Serve the kubelet DRA plugin until SIGTERM or SIGINT; return the exit status."""
    configure_logging()
    SysfsPciBus(host.sysfs).check()
    container = dra_plugin_injector(
        host, EngineConfig(deny), config, load_api_client(kubeconfig), load_pci_ids(pci_ids)
    )
    plugin = dra_plugin_service(container)
    stop = termination_signal()
    try:
        plugin.start()
        _log.info("DRA plugin running on node %s", config.node)
        stop.wait()
    finally:
        plugin.stop()
    return 0
