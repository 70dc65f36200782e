"""``pcidevices dra-slices``: this node's DRA ResourceSlices as a process of its own.

For nodes that run the device plugin and the claim engine elsewhere (or not at all) and want
their devices offered under DRA only. It publishes what ``pcidevices agent --dra`` publishes,
built by the same `pcidevices.wiring.agent.dra_slice_sync`: the bus, host protection and the
PCIDeviceClaims of the node (dual mode) in, slices out. It moves no device.
"""

from __future__ import annotations

import logging
from pathlib import Path

import attrs
import injector
from kubernetes import client as k8s_client

from pcicore.device import NodeName
from pcicore.dra_slices import MAX_DEVICES_PER_SLICE, chunk
from pcicore.naming import DeviceNamer
from pcicore.pciids import PciIds
from pcicore.ports import HostFactsSource, PciBus
from pcicore.protection import DenyList, HostProtection
from pcidevices.process import (
    CountedApiModule,
    configure_logging,
    load_api_client,
    termination_signal,
)
from pcidevices.wiring.agent import claimed_addresses, dra_slice_sync, refused_devices
from pcidevices.wiring.host import EngineConfig, HostConfig, HostModule
from pcihost.pciids_file import load_pci_ids
from pcihost.sysfs import SysfsPciBus
from pcioperator.controllers.dra_slices import (
    DraSlicePublisher,
    DraSliceSync,
    check_resource_slices_served,
)
from pcioperator.kube.api import PCIDEVICECLAIMS, KubeApi
from pcioperator.kube.informer import Informer
from pcioperator.kube.workqueue import WorkQueue

log = logging.getLogger(__name__)


@attrs.frozen
class DraConfig:
    """How the standalone slice publisher runs.

    Attributes:
        node: This node's name (the pool's name).
        sysfs: The sysfs mount point.
        proc: The proc mount point (host facts for host protection).
        rescan_interval: Seconds between idle rescans of the bus.
        deny: Addresses or class prefixes never offered.
        devices_per_slice: At most this many devices per ResourceSlice (1 to 128).
    """

    node: NodeName
    sysfs: Path
    proc: Path
    rescan_interval: float = 30.0
    deny: DenyList = attrs.field(factory=DenyList)
    devices_per_slice: int = MAX_DEVICES_PER_SLICE


class DraModule(injector.Module):
    """The standalone publisher's wiring. Builds objects only."""

    def __init__(self, config: DraConfig) -> None:
        """Wire a publisher for ``config``."""
        self._config = config

    @injector.singleton
    @injector.provider
    def publisher(
        self,
        api: KubeApi,
        bus: PciBus,
        namer: DeviceNamer,
        protection: HostProtection,
        facts: HostFactsSource,
    ) -> DraSlicePublisher:
        """The slice sync, the node's slice and claim caches, one worker."""
        config = self._config
        queue: WorkQueue[str] = WorkQueue()
        claims = Informer(api, PCIDEVICECLAIMS, on_change=lambda _n: queue.add(DraSliceSync.KEY))
        sync = dra_slice_sync(
            config.node,
            api,
            bus,
            namer,
            refused_devices(protection, facts),
            claimed_addresses(config.node, claims),
            lambda _name: queue.add(DraSliceSync.KEY),
            config.rescan_interval,
            config.devices_per_slice,
        )
        assert sync.informer is not None  # noqa: S101 - dra_slice_sync always gives one
        return DraSlicePublisher(sync, queue, [sync.informer, claims])


def dra_injector(
    config: DraConfig, api_client: k8s_client.ApiClient, ids: PciIds
) -> injector.Injector:
    """The injector of one standalone publisher."""
    return injector.Injector(
        [
            HostModule(
                HostConfig(sysfs=config.sysfs, proc=config.proc), EngineConfig(config.deny), ids
            ),
            DraModule(config),
            CountedApiModule(api_client),
        ]
    )


def run(config: DraConfig, kubeconfig: Path | None, pci_ids: Path | None) -> int:
    """Publish until SIGTERM or SIGINT; return the exit status.

    Raises:
        pcicore.errors.PciDevicesError: no sysfs tree, no ``pci.ids``, a slice size out of
            range, or no ResourceSlices served (the message names the value and the fix).
    """
    configure_logging()
    chunk((), config.devices_per_slice)  # refuse a bad size before touching anything
    SysfsPciBus(config.sysfs).check()
    ids = load_pci_ids(pci_ids)
    container = dra_injector(config, load_api_client(kubeconfig), ids)
    check_resource_slices_served(container.get(KubeApi), config.node)
    publisher = container.get(DraSlicePublisher)
    stop = termination_signal()
    publisher.start()
    log.info("publishing DRA ResourceSlices of node %s", config.node)
    stop.wait()
    publisher.stop()
    return 0
