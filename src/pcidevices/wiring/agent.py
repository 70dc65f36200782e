"""``pcidevices agent``: the node agent's composition root.

`main`-time work (reading the kubeconfig, the pci.ids file, signal handlers) happens in `run`;
`AgentModule` only builds objects from what it is given — the host's adapters come from the
shared `pcidevices.wiring.host.HostModule`, the counted API from `CountedApiModule` — so the
same wiring runs in tests against a real API server with a fake kernel.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Annotated

import attrs
import cattrs
import injector
from kubernetes import client as k8s_client

from pcicore.address import PciAddress
from pcicore.catalog import DeviceCatalog
from pcicore.claim_binding import claim_binding, moves_driver
from pcicore.device import NodeName, PciDevice
from pcicore.dra_slices import MAX_DEVICES_PER_SLICE
from pcicore.engine import ClaimEngine
from pcicore.errors import ClaimRefusedError, InvalidPciAddressError
from pcicore.naming import DeviceNamer, ResourceName, object_name
from pcicore.pciids import PciIds
from pcicore.policy import GroupPolicy
from pcicore.ports import HostFactsSource, LedgerStore, PciBus, SriovControl
from pcicore.protection import DenyList, HostProtection
from pcicore.resources import ClaimedDevice, ClaimedDevices, device_resource_name
from pcicore.usbids import UsbIds
from pcidevices.process import (
    CountedApiModule,
    configure_logging,
    load_api_client,
    termination_signal,
)
from pcidevices.wiring.dra_plugin import DraPluginConfig, DraPluginModule, held_by_resource_claims
from pcidevices.wiring.host import EngineConfig, HostConfig, HostModule
from pcidevices.wiring.plugin import DevicePluginModule
from pcihost.paths import (
    DEFAULT_DEV_ROOT,
    DEFAULT_PROC_ROOT,
    DEFAULT_STATE_FILE,
    DEFAULT_SYSFS_ROOT,
)
from pcihost.pciids_file import load_pci_ids
from pcihost.sysfs import SysfsPciBus
from pcihost.uevents import KernelPciEvents
from pcihost.usb import HostUsbNodes, SysfsUsbBus, load_usb_ids
from pcioperator.agent import Agent, Service
from pcioperator.controllers.claim_store import SKIP_VFIO_BINDING, KubeClaimEvents, KubeClaimStore
from pcioperator.controllers.claims import ClaimController
from pcioperator.controllers.devices import DeviceSync, KubeDeviceStore, node_selector
from pcioperator.controllers.dra_slices import (
    DraSliceSync,
    KubeSliceStore,
    check_resource_slices_served,
    slice_informer,
)
from pcioperator.controllers.sriov import KubeSriovStore, SriovSync
from pcioperator.controllers.usb import KubeUsbClaimStore, KubeUsbStore, UsbSync
from pcioperator.kube.api import (
    PCIDEVICECLAIMS,
    PCIDEVICES,
    SRIOVNETWORKDEVICES,
    USBDEVICECLAIMS,
    USBDEVICES,
    JsonObject,
    KubeApi,
)
from pcioperator.kube.events import EventRecorder
from pcioperator.kube.informer import Informer
from pcioperator.kube.metrics import AgentMetrics, HealthServer
from pcioperator.kube.schema import check_installed_schema
from pcioperator.kube.workqueue import WorkQueue
from pcioperator.wire.claim import Claim, claim_from_object
from pciplugin.dra.host import DraPluginHost, DraPluginSettings
from pciplugin.host import DevicePluginHost, PluginSettings, UsbAdvertising

log = logging.getLogger(__name__)


@attrs.frozen
class AgentConfig:
    """How the agent runs on its node.

    Attributes:
        node: This node's name.
        sysfs: The sysfs mount point.
        proc: The proc mount point (host facts, loaded modules).
        dev_root: The ``/dev`` where VFIO nodes appear.
        state_file: Where claimed devices and original drivers are recorded.
        rescan_interval: Seconds between idle rescans of the bus.
        metrics_address: Host and port of /metrics, /healthz, /readyz (``None``: off).
        group_policy: How IOMMU groups are handled (``strict`` or ``group``).
        deny: Addresses or class prefixes never to hand over.
        device_plugin: Whether to serve the kubelet device plugin in this process.
        kernel_events: Whether to follow the kernel's PCI hot-plug/bind events (netlink).
        plugin_settings: Device-plugins folder and intervals.
        usb: Whether to publish the node's USB devices and answer USBDeviceClaims.
        dra: Whether to run the DRA driver: publish this node's unclaimed devices as
            ResourceSlices and serve the kubelet DRA plugin that prepares them.
        dra_plugin: The DRA plugin's sockets and folders (with ``dra``).
    """

    node: str
    sysfs: Path = DEFAULT_SYSFS_ROOT
    proc: Path = DEFAULT_PROC_ROOT
    dev_root: Path = DEFAULT_DEV_ROOT
    state_file: Path = DEFAULT_STATE_FILE
    rescan_interval: float = 30.0
    metrics_address: tuple[str, int] | None = ("0.0.0.0", 9090)  # noqa: S104 - a pod's port
    group_policy: GroupPolicy = GroupPolicy.STRICT
    deny: DenyList = attrs.field(factory=DenyList)
    device_plugin: bool = True
    kernel_events: bool = True
    plugin_settings: PluginSettings = attrs.field(factory=PluginSettings)
    usb: bool = True
    dra: bool = False
    dra_plugin: DraPluginSettings = attrs.field(factory=DraPluginSettings)


def parsed_claims(informer: Informer) -> Iterator[tuple[JsonObject, Claim, PciAddress]]:
    """Each cached claim that parses, with its device's address; malformed ones are skipped."""
    for obj in informer.objects():
        try:
            claim = claim_from_object(obj)
            address = PciAddress.parse(claim.spec.address)
        except (cattrs.BaseValidationError, InvalidPciAddressError, KeyError, ValueError):
            continue
        yield obj, claim, address


class ClusterClaimedDevices:
    """`ClaimedDevices` read from the claims in the cluster (the agent's informer cache)."""

    def __init__(self, node: str, informer: Informer, bus: PciBus, namer: DeviceNamer) -> None:
        """Claims for ``node``; resourceNames from the device on ``bus``."""
        self._node = node
        self._informer = informer
        self._bus = bus
        self._namer = namer
        self._names: dict[PciAddress, ResourceName] = {}
        self._overrides: Callable[[], Mapping[str, str]] = dict

    def follow_overrides(self, overrides: Callable[[], Mapping[str, str]]) -> None:
        """Take each PCIDevice's resource-name override annotation from ``overrides``."""
        self._overrides = overrides

    def _live(self) -> Iterator[tuple[PciAddress, bool]]:
        """(device, pooling disabled) of every live claim of this node that parses."""
        for obj, claim, address in parsed_claims(self._informer):
            annotations = (obj.get("metadata") or {}).get("annotations") or {}
            if not moves_driver(claim_binding(annotations.get(SKIP_VFIO_BINDING))):
                continue  # bound and served by another component (a vGPU), not advertised here
            if claim.spec.node_name == self._node and not claim.deleting:
                yield address, claim.spec.disable_resource_pooling

    def dedicated(self) -> frozenset[PciAddress]:
        """The devices of this node whose live claims disable resource pooling."""
        return frozenset(address for address, dedicated in self._live() if dedicated)

    def claimed(self) -> Sequence[ClaimedDevice]:
        """Every live claim of this node whose device has a known resourceName."""
        found: list[ClaimedDevice] = []
        overrides = self._overrides()
        for address, dedicated in self._live():
            pool = self._names.get(address)
            if pool is None:
                device = self._bus.device(address)
                if device is None:
                    continue
                pool = self._names[address] = self._namer.resource_name(device)
            # The name the PCIDevice shows: its override annotation, else Harvester's per-device
            # name while pooling is disabled, else the pool.
            device_name = object_name(NodeName(self._node), address)
            name = device_resource_name(
                pool, device_name, override=overrides.get(device_name), dedicated=dedicated
            )
            found.append(ClaimedDevice(address, name))
        return sorted(found, key=lambda c: c.address.sort_key)


def claimed_addresses(node: str, informer: Informer) -> Callable[[], frozenset[PciAddress]]:
    """The addresses that claims of ``node`` name (deleting ones too: they still hold it)."""

    def claimed() -> frozenset[PciAddress]:
        return frozenset(
            address
            for _obj, claim, address in parsed_claims(informer)
            if claim.spec.node_name == node
        )

    return claimed


def protected_devices(
    protection: HostProtection, host: HostFactsSource
) -> Callable[[Sequence[PciDevice]], Mapping[PciAddress, str]]:
    """Why the host refuses each device it depends on (reported on its PCIDevice)."""

    def refused(devices: Sequence[PciDevice]) -> Mapping[PciAddress, str]:
        facts = host.facts()
        reasons: dict[PciAddress, str] = {}
        for device in devices:
            try:
                protection.check(device, facts)
            except ClaimRefusedError as err:
                reasons[device.address] = str(err)
        return reasons

    return refused


def refused_devices(
    protection: HostProtection, host: HostFactsSource
) -> Callable[[Sequence[PciDevice]], frozenset[PciAddress]]:
    """The devices host protection refuses (never published under DRA)."""
    reasons = protected_devices(protection, host)
    return lambda devices: frozenset(reasons(devices))


def dra_slice_sync(
    node: NodeName,
    api: KubeApi,
    bus: PciBus,
    namer: DeviceNamer,
    refused: Callable[[Sequence[PciDevice]], Collection[PciAddress]],
    claimed: Callable[[], Collection[PciAddress]],
    on_change: Callable[[str], None],
    rescan_interval: float,
    max_devices: int = MAX_DEVICES_PER_SLICE,
) -> DraSliceSync:
    """The DRA slice sync of ``node``: its informer queues the sync through ``on_change``."""
    informer = slice_informer(api, node, on_change)
    return DraSliceSync(
        node=node,
        bus=bus,
        namer=namer,
        store=KubeSliceStore(api, informer, node),
        claimed=claimed,
        refused=refused,
        informer=informer,
        events=EventRecorder(api, node),
        rescan_interval=rescan_interval,
        max_devices=max_devices,
    )


DraSlices = Annotated[DraSliceSync | None, "this node's DRA slice sync, if published"]
"""The key of the agent's DRA slice sync (``None``: ``--dra`` not given)."""

AgentQueue = Annotated[WorkQueue[str], "the agent's work queue"]
"""The key of the agent's one work queue."""


def _claims_changed(queue: WorkQueue[str], *, dra: bool) -> None:
    """A claim changed: claims, VF counts (a release may unblock one), USB (its controller), DRA."""
    queue.add(ClaimController.KEY)
    queue.add(SriovSync.KEY)
    queue.add(UsbSync.KEY)
    if dra:
        queue.add(DraSliceSync.KEY)  # dual mode: a claimed device leaves the slices


KernelEvents = Annotated[KernelPciEvents | None, "the kernel's PCI events, if followed"]
"""The key of the kernel event listener (``None``: not followed)."""


class AgentModule(injector.Module):
    """The agent's own wiring. Builds objects only; nothing here reads files or the network."""

    def __init__(self, config: AgentConfig, usb_ids: UsbIds | None = None) -> None:
        """Wire an agent for ``config`` (host: `HostModule`; API: `CountedApiModule`)."""
        self._config = config
        self._usb_ids = usb_ids if usb_ids is not None else UsbIds.empty()

    def configure(self, binder: injector.Binder) -> None:
        """Bind the values given at start-up."""
        binder.bind(AgentConfig, to=self._config)
        binder.bind(PluginSettings, to=self._config.plugin_settings)
        binder.bind(UsbIds, to=self._usb_ids)

    @injector.singleton
    @injector.provider
    def queue(self) -> AgentQueue:
        """The agent's one work queue."""
        return WorkQueue()

    @injector.singleton
    @injector.provider
    def devices(
        self,
        config: AgentConfig,
        api: KubeApi,
        bus: PciBus,
        namer: DeviceNamer,
        ledger: LedgerStore,
        protection: HostProtection,
        facts: HostFactsSource,
        queue: AgentQueue,
        claimed: ClaimedDevices,
        sriov: SriovSync,
    ) -> DeviceSync:
        """The PCIDevice sync of this node."""
        informer = Informer(
            api,
            PCIDEVICES,
            label_selector=node_selector(config.node),
            on_change=lambda _name: queue.add(DeviceSync.KEY),
        )
        sync = DeviceSync(
            bus=bus,
            catalog=DeviceCatalog(NodeName(config.node), namer),
            store=KubeDeviceStore(api, informer, config.node),
            informer=informer,
            original_drivers=lambda: ledger.load().originals,
            rescan_interval=config.rescan_interval,
            protection=protected_devices(protection, facts),
            dedicated=claimed.dedicated if isinstance(claimed, ClusterClaimedDevices) else None,
            sriov_parents=sriov.parents,
        )
        if isinstance(claimed, ClusterClaimedDevices):
            claimed.follow_overrides(lambda: sync.last_overrides)
        return sync

    @injector.singleton
    @injector.provider
    def sriov(
        self,
        config: AgentConfig,
        api: KubeApi,
        bus: PciBus,
        control: SriovControl,
        protection: HostProtection,
        facts: HostFactsSource,
        queue: AgentQueue,
        claims: KubeClaimStore,
    ) -> SriovSync:
        """The SRIOVNetworkDevice controller of this node."""
        informer = Informer(
            api,
            SRIOVNETWORKDEVICES,
            label_selector=node_selector(config.node),
            on_change=lambda _name: queue.add(SriovSync.KEY),
        )
        return SriovSync(
            node=NodeName(config.node),
            bus=bus,
            control=control,
            store=KubeSriovStore(api, informer),
            claimed=claimed_addresses(config.node, claims.informer),
            protection=lambda device: protection.refusal(device, facts.facts()),
            on_vfs_changed=lambda: queue.add(DeviceSync.KEY),
            rescan_interval=config.rescan_interval,
            informer=informer,
        )

    @injector.singleton
    @injector.provider
    def usb(
        self,
        config: AgentConfig,
        api: KubeApi,
        ids: UsbIds,
        queue: AgentQueue,
        claims: KubeClaimStore,
    ) -> UsbSync:
        """The USBDevice and USBDeviceClaim controller of this node."""
        devices = Informer(
            api,
            USBDEVICES,
            label_selector=node_selector(config.node),
            on_change=lambda _name: queue.add(UsbSync.KEY),
        )
        usb_claims = Informer(api, USBDEVICECLAIMS, on_change=lambda _name: queue.add(UsbSync.KEY))
        return UsbSync(
            node=NodeName(config.node),
            bus=SysfsUsbBus(config.sysfs),
            ids=ids,
            store=KubeUsbStore(api, devices, config.node),
            claims=KubeUsbClaimStore(api, usb_claims, EventRecorder(api, config.node)),
            claimed_controllers=claimed_addresses(config.node, claims.informer),
            rescan_interval=config.rescan_interval,
            informers={"usbdevices-informer": devices, "usb-claims-informer": usb_claims},
        )

    @injector.singleton
    @injector.provider
    def usb_advertising(
        self, config: AgentConfig, usb: injector.ProviderOf[UsbSync]
    ) -> UsbAdvertising:
        """The enabled USB devices the device plugin advertises (none when USB is off)."""
        if not config.usb:
            return UsbAdvertising()
        return UsbAdvertising(usb.get(), HostUsbNodes(config.dev_root))

    @injector.singleton
    @injector.provider
    def claim_store(self, config: AgentConfig, api: KubeApi, queue: AgentQueue) -> KubeClaimStore:
        """This node's claims: a cache of every claim, watched; a change queues the claims."""
        return KubeClaimStore(
            config.node,
            api,
            Informer(
                api,
                PCIDEVICECLAIMS,
                on_change=lambda _name: _claims_changed(queue, dra=config.dra),
            ),
        )

    @injector.singleton
    @injector.provider
    def claims(
        self,
        config: AgentConfig,
        api: KubeApi,
        bus: PciBus,
        namer: DeviceNamer,
        engine: ClaimEngine,
        ledger: LedgerStore,
        queue: AgentQueue,
        store: KubeClaimStore,
    ) -> ClaimController:
        """The claim controller of this node."""

        def resource_name_of(address: PciAddress) -> str | None:
            device = bus.device(address)
            return None if device is None else namer.resource_name(device)

        return ClaimController(
            store=store,
            events=KubeClaimEvents(EventRecorder(api, config.node)),
            engine=engine,
            ledger=ledger,
            resource_name_of=resource_name_of,
            on_host_changed=lambda: queue.add(DeviceSync.KEY),
            policy=config.group_policy,
        )

    @injector.singleton
    @injector.provider
    def claimed(
        self, config: AgentConfig, store: KubeClaimStore, bus: PciBus, namer: DeviceNamer
    ) -> ClaimedDevices:
        """What the device plugin advertises: the claims in the cluster."""
        return ClusterClaimedDevices(config.node, store.informer, bus, namer)

    @injector.singleton
    @injector.provider
    def dra_slices(
        self,
        config: AgentConfig,
        api: KubeApi,
        bus: PciBus,
        namer: DeviceNamer,
        protection: HostProtection,
        facts: HostFactsSource,
        queue: AgentQueue,
        claims: KubeClaimStore,
    ) -> DraSlices:
        """This node's DRA ResourceSlices, when published (``--dra``)."""
        if not config.dra:
            return None
        return dra_slice_sync(
            NodeName(config.node),
            api,
            bus,
            namer,
            refused_devices(protection, facts),
            claimed_addresses(config.node, claims.informer),
            lambda _name: queue.add(DraSliceSync.KEY),
            config.rescan_interval,
        )

    @injector.singleton
    @injector.provider
    def kernel_events(self, config: AgentConfig, queue: AgentQueue) -> KernelEvents:
        """The kernel's PCI hot-plug/bind events, when followed."""
        if not config.kernel_events:
            return None

        def changed(_action: str, _slot: str) -> None:
            queue.add(DeviceSync.KEY)
            if config.dra:
                queue.add(DraSliceSync.KEY)

        return KernelPciEvents(
            changed, on_usb=(lambda _action: queue.add(UsbSync.KEY)) if config.usb else None
        )

    @injector.singleton
    @injector.provider
    def agent(
        self,
        config: AgentConfig,
        devices: DeviceSync,
        claims: ClaimController,
        store: KubeClaimStore,
        metrics: AgentMetrics,
        queue: AgentQueue,
        plugin: injector.ProviderOf[DevicePluginHost],
        dra_plugin: injector.ProviderOf[DraPluginHost],
        events: KernelEvents,
        sriov: SriovSync,
        usb: injector.ProviderOf[UsbSync],
        dra: DraSlices,
    ) -> Agent:
        """The whole agent, with the device plugin and the DRA plugin when configured."""
        services: tuple[Service, ...] = (plugin.get(),) if config.device_plugin else ()
        if config.dra:
            services += (dra_plugin.get(),)
        agent = Agent(
            devices=devices,
            claims=claims,
            claims_informer=store.informer,
            metrics=metrics,
            queue=queue,
            services=services,
            kernel_events=events,
            sriov=sriov,
            usb=usb.get() if config.usb else None,
            dra=dra,
        )
        if config.metrics_address is not None:
            agent.health = HealthServer(config.metrics_address, metrics, agent.healthy, agent.ready)
        return agent


def host_config(config: AgentConfig) -> HostConfig:
    """Where the agent finds the host."""
    return HostConfig(
        sysfs=config.sysfs, proc=config.proc, dev_root=config.dev_root, state_file=config.state_file
    )


def agent_injector(
    config: AgentConfig,
    api_client: k8s_client.ApiClient,
    ids: PciIds,
    usb_ids: UsbIds | None = None,
) -> injector.Injector:
    """The injector of one agent process (``usb_ids``: none, USB devices are unnamed)."""
    engine = EngineConfig(
        config.deny,
        # Dual mode: a device a ResourceClaim holds is refused to PCIDeviceClaims.
        held_elsewhere=held_by_resource_claims(config.dra_plugin) if config.dra else dict,
    )
    return injector.Injector(
        [
            HostModule(host_config(config), engine, ids),
            AgentModule(config, usb_ids),
            CountedApiModule(api_client),
            DevicePluginModule(),
            DraPluginModule(DraPluginConfig(config.node, config.group_policy, config.dra_plugin)),
        ]
    )


def run(
    config: AgentConfig,
    kubeconfig: Path | None,
    pci_ids: Path | None,
    usb_ids: Path | None = None,
) -> int:
    """Run the agent until SIGTERM or SIGINT; return the exit status."""
    configure_logging()
    SysfsPciBus(config.sysfs).check()
    ids = load_pci_ids(pci_ids)
    api_client = load_api_client(kubeconfig)
    check_installed_schema(KubeApi(api_client))  # refuse CRDs that would drop our fields
    if config.dra:
        check_resource_slices_served(KubeApi(api_client), NodeName(config.node))
    usb_names = load_usb_ids(usb_ids) if config.usb else None
    agent = agent_injector(config, api_client, ids, usb_names).get(Agent)
    stop = termination_signal()
    agent.start()
    log.info("agent running on node %s", config.node)
    stop.wait()
    agent.stop()
    return 0
