"""What the kubelet device plugin advertises: resources, their devices and the devices' health.

A claimed device is advertised under its ``resourceName`` (the shared *pool* of identical
devices on the node), or — when its claim sets ``disableResourcePooling`` — under a resource of
its own (`dedicated_resource_name`). A device is Healthy only when a VM can really use it: bound
to ``vfio-pci`` and its IOMMU group's ``/dev/vfio/<N>`` present (VFIO creates it only once every
endpoint of the group is on ``vfio-pci``). The facts come through the ports at the bottom of this
module; everything else here is pure.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Final, Protocol, TypeAlias, TypeVar

import attrs

from pcicore.address import PciAddress
from pcicore.device import IommuGroup, NodeName, PciDevice
from pcicore.errors import PciDevicesError
from pcicore.naming import ResourceName, object_name
from pcicore.ports import PciBus

# A Kubernetes qualified name's name part (after the ``/``) is at most 63 characters.
_NAME_PART_MAX: Final = 63
_COMPACT_ADDRESS_LEN: Final = 9

DeviceId: TypeAlias = str
"""The id the kubelet knows a device by: its canonical PCI address (``0000:03:00.0``)."""


class Health(enum.Enum):
    """A device's health as the kubelet spells it (``Device.health``)."""

    HEALTHY = "Healthy"
    UNHEALTHY = "Unhealthy"


@attrs.frozen
class ClaimedDevice:
    """A device some claim has put (or is putting) on ``vfio-pci`` for VMs.

    Attributes:
        address: The device.
        resource_name: The resourceName of its kind (the pool it belongs to).
        dedicated: The claim set ``disableResourcePooling``: advertise the device under a
            resource of its own (`dedicated_resource_name`) instead of the pool.
    """

    address: PciAddress
    resource_name: ResourceName
    dedicated: bool = False

    @property
    def advertised_as(self) -> ResourceName:
        """The resource the kubelet sees this device under."""
        if self.dedicated:
            return dedicated_resource_name(self.resource_name, self.address)
        return self.resource_name


def dedicated_resource_name(
    pool: ResourceName, address: PciAddress, node: NodeName | None = None
) -> ResourceName:
    """The resource of one device whose claim disables pooling.

    With its ``node``, Harvester's name: ``<vendor part of the pool>/<PCIDevice name>``, so
    ``intel.com/I350_GIGABIT_NETWORK_CONNECTION`` at ``0000:03:00.0`` on ``node1`` is
    ``intel.com/node1-000003000`` — the name Harvester writes into the PCIDevice's
    ``status.resourceName`` and that VMs made in its UI ask for. The vendor part of a name
    already of that form is the same, so applying this twice changes nothing.

    Without a node (callers that do not know it yet), the older form
    ``<pool>-<compact address>`` (``intel.com/I350_GIGABIT_NETWORK_CONNECTION-000003000``),
    the product cut so that the part after ``/`` fits the 63 characters Kubernetes allows.
    """
    vendor, _, product = pool.partition("/")
    if node is not None:
        return ResourceName(f"{vendor}/{object_name(node, address)}")
    room = _NAME_PART_MAX - 1 - _COMPACT_ADDRESS_LEN
    product = product[:room].rstrip("_.-") or "device"
    return ResourceName(f"{vendor}/{product}-{address.compact}")


def device_resource_name(
    pool: ResourceName,
    device_name: str,
    *,
    override: str | None = None,
    dedicated: bool = False,
) -> ResourceName:
    """The ``resourceName`` a PCIDevice reports and the device is advertised under.

    In order: the PCIDevice's override annotation when it holds a valid resource name (Harvester
    and its vGPU support write it; a user may too), else — while a claim on the device disables
    pooling — ``<vendor part of the pool>/<PCIDevice name>`` (Harvester's per-device name), else
    the pool.
    """
    if override and is_resource_name(override):
        return ResourceName(override)
    if dedicated:
        vendor, _, _ = pool.partition("/")
        return ResourceName(f"{vendor}/{device_name}")
    return pool


# A Kubernetes extended-resource name: a DNS subdomain prefix, ``/``, a qualified name part.
_RESOURCE_NAME: Final = re.compile(
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
    r"/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
)
_PREFIX_MAX: Final = 253


def is_resource_name(text: str) -> bool:
    """Whether ``text`` is a name the kubelet accepts for an extended resource (``x.com/y``)."""
    prefix, _, name = text.partition("/")
    return (
        _RESOURCE_NAME.fullmatch(text) is not None
        and len(prefix) <= _PREFIX_MAX
        and len(name) <= _NAME_PART_MAX
    )


def resource_env_var(prefix: str, resource: ResourceName) -> str:
    """KubeVirt's ``ResourceNameToEnvVar``: ``<prefix>_`` + upper-case, ``/`` and ``.`` as ``_``."""
    return f"{prefix}_" + resource.upper().replace("/", "_").replace(".", "_")


def env_var_name(resource: ResourceName) -> str:
    """The variable KubeVirt reads a resource's addresses from (``PCI_RESOURCE_INTEL_COM_…``)."""
    return resource_env_var("PCI_RESOURCE", resource)


@attrs.frozen
class AdvertisedDevice:
    """One device as the plugin advertises it, with the facts Allocate and preference need.

    Attributes:
        address: The device (its kubelet id is ``str(address)``).
        health: Whether a VM can use it now.
        numa_node: Its NUMA node, or ``None`` where the kernel reports none.
        iommu_group: Its IOMMU group, or ``None`` (no IOMMU, or the device is gone).
        root_port: The PCIe root port above it, or ``None``.
        vfio_cdev: The iommufd character device name (``vfio3``) when the kernel exposes one.
        reason: Why it is unhealthy (empty when healthy), for logs and errors.
    """

    address: PciAddress
    health: Health
    numa_node: int | None = None
    iommu_group: IommuGroup | None = None
    root_port: PciAddress | None = None
    vfio_cdev: str | None = None
    reason: str = ""

    @property
    def id(self) -> DeviceId:
        """The kubelet's id of the device."""
        return str(self.address)

    @property
    def healthy(self) -> bool:
        """Whether a VM can use the device now."""
        return self.health is Health.HEALTHY


def assess(
    address: PciAddress,
    device: PciDevice | None,
    *,
    group_node_present: bool,
    vfio_cdev: str | None = None,
) -> AdvertisedDevice:
    """The advertised form of a claimed device, given what the host shows now.

    Healthy only when the device is present, bound to ``vfio-pci``, in an IOMMU group, and that
    group's ``/dev/vfio/<N>`` exists. A device that vanished (or reads vendor ``0xffff``, which
    the bus reports as absent) is Unhealthy.
    """
    if device is None:
        return AdvertisedDevice(address, Health.UNHEALTHY, reason="device is gone from the bus")
    seen = AdvertisedDevice(
        address,
        Health.UNHEALTHY,
        numa_node=device.numa_node,
        iommu_group=device.iommu_group,
        root_port=device.root_port,
    )
    if not device.is_bound_to_vfio:
        return attrs.evolve(seen, reason=f"bound to {device.driver or 'no driver'}, not vfio-pci")
    if device.iommu_group is None:
        return attrs.evolve(
            seen, reason="no IOMMU group: enable the IOMMU (intel_iommu=on / amd_iommu=on)"
        )
    if not group_node_present:
        return attrs.evolve(
            seen,
            reason=f"/dev/vfio/{device.iommu_group} is missing: bind every device of IOMMU "
            f"group {device.iommu_group} to vfio-pci",
        )
    return attrs.evolve(seen, health=Health.HEALTHY, vfio_cdev=vfio_cdev)


@attrs.frozen
class ResourcePool:
    """The devices advertised under one resource, in address order.

    Attributes:
        name: The resource (extended-resource name the kubelet schedules on).
        devices: Its devices, sorted by address.
    """

    name: ResourceName
    devices: tuple[AdvertisedDevice, ...] = ()

    def find(self, device_id: DeviceId) -> AdvertisedDevice | None:
        """The device with kubelet id ``device_id``, or ``None``."""
        for device in self.devices:
            if device.id == device_id:
                return device
        return None


def group_into_pools(
    claims: Iterable[ClaimedDevice], devices: Mapping[PciAddress, AdvertisedDevice]
) -> dict[ResourceName, ResourcePool]:
    """One pool per advertised resource, each with its devices sorted by address."""
    members: dict[ResourceName, list[AdvertisedDevice]] = {}
    for claim in claims:
        members.setdefault(claim.advertised_as, []).append(devices[claim.address])
    return {
        name: ResourcePool(name, tuple(sorted(found, key=lambda d: d.address)))
        for name, found in sorted(members.items())
    }


# --- Allocate ---------------------------------------------------------------------------------

VFIO_CONTAINER: Final = "/dev/vfio/vfio"
IOMMUFD: Final = "/dev/iommu"
DEVICE_PERMISSIONS: Final = "mrw"


@attrs.frozen
class DeviceNode:
    """A device node handed to the container at the same path as on the host.

    Attributes:
        path: ``/dev/...`` path on the host and in the container.
        permissions: cgroup device permissions (``mrw``).
    """

    path: str
    permissions: str = DEVICE_PERMISSIONS


@attrs.frozen
class ContainerAllocation:
    """What one container gets for its devices (the contract virt-launcher reads).

    Attributes:
        envs: ``PCI_RESOURCE_<…>`` = comma-joined addresses.
        device_nodes: ``/dev/vfio/vfio``, each ``/dev/vfio/<group>``, and with iommufd
            ``/dev/iommu`` and each ``/dev/vfio/devices/vfioN``.
    """

    envs: Mapping[str, str]
    device_nodes: tuple[DeviceNode, ...]


class AllocationError(PciDevicesError):
    """The kubelet asked for devices this plugin cannot hand out."""

    def __init__(self, resource: ResourceName, message: str, device_ids: Sequence[str]) -> None:
        """Name the resource and the offending ids."""
        super().__init__(message)
        self.resource = resource
        self.device_ids = tuple(device_ids)


class UnknownDeviceError(AllocationError):
    """Some requested ids are not devices of this resource (a kubelet bug or a stale view)."""

    def __init__(self, resource: ResourceName, device_ids: Sequence[str]) -> None:
        """Name the unknown ids."""
        super().__init__(
            resource,
            f"resource {resource} has no device(s) {', '.join(device_ids)}; the kubelet's view "
            "is stale: it refreshes from ListAndWatch, retry the pod",
            device_ids,
        )


class ExplainedDevice(Protocol):
    """A device the kubelet knows by an id, with the reason it is unhealthy."""

    @property
    def id(self) -> str:
        """The kubelet's id of the device."""
        ...

    @property
    def reason(self) -> str:
        """Why it is unhealthy."""
        ...


class UnhealthyDeviceError(AllocationError):
    """Some requested devices exist but a VM cannot use them now."""

    def __init__(
        self,
        resource: ResourceName,
        devices: Sequence[ExplainedDevice],
        *,
        claim_kind: str = "PCIDeviceClaim",
    ) -> None:
        """Name each unhealthy device with the reason."""
        details = "; ".join(f"{device.id}: {device.reason}" for device in devices)
        super().__init__(
            resource,
            f"device(s) of {resource} not usable now ({details}); check the {claim_kind}",
            [device.id for device in devices],
        )


class HealthAware(ExplainedDevice, Protocol):
    """A device the kubelet knows by an id, healthy or not (with the reason)."""

    @property
    def healthy(self) -> bool:
        """Whether a VM can use it now."""
        ...


DeviceT = TypeVar("DeviceT", bound=HealthAware)
DeviceT_co = TypeVar("DeviceT_co", bound=HealthAware, covariant=True)


class Pool(Protocol[DeviceT_co]):
    """The devices advertised under one resource, found by kubelet id."""

    @property
    def name(self) -> ResourceName:
        """The resource."""
        ...

    def find(self, device_id: str) -> DeviceT_co | None:
        """The device with kubelet id ``device_id``, or ``None``."""
        ...


def requested_devices(
    pool: Pool[DeviceT], device_ids: Sequence[str], *, claim_kind: str = "PCIDeviceClaim"
) -> list[DeviceT]:
    """The devices of ``pool`` an Allocate asks for, each known and Healthy.

    Raises:
        UnknownDeviceError: an id is not a device of ``pool``.
        UnhealthyDeviceError: a device is not Healthy now (the message names ``claim_kind``).
    """
    found = [(device_id, pool.find(device_id)) for device_id in device_ids]
    unknown = [device_id for device_id, device in found if device is None]
    if unknown:
        raise UnknownDeviceError(pool.name, unknown)
    devices = [device for _, device in found if device is not None]
    unhealthy = [device for device in devices if not device.healthy]
    if unhealthy:
        raise UnhealthyDeviceError(pool.name, unhealthy, claim_kind=claim_kind)
    return devices


def allocate(
    pool: ResourcePool, device_ids: Sequence[str], *, iommufd: bool
) -> ContainerAllocation:
    """The container's env and device nodes for ``device_ids`` of ``pool``.

    Raises:
        UnknownDeviceError: an id is not a device of ``pool``.
        UnhealthyDeviceError: a device is not Healthy now.
    """
    devices = requested_devices(pool, device_ids)
    paths = [VFIO_CONTAINER]
    for device in devices:
        group_path = f"/dev/vfio/{device.iommu_group}"
        if group_path not in paths:
            paths.append(group_path)
    cdevs = [device.vfio_cdev for device in devices if device.vfio_cdev is not None]
    if iommufd and cdevs:
        paths.append(IOMMUFD)
        paths.extend(f"/dev/vfio/devices/{cdev}" for cdev in cdevs)
    return ContainerAllocation(
        envs={env_var_name(pool.name): ",".join(device.id for device in devices)},
        device_nodes=tuple(DeviceNode(path) for path in paths),
    )


# --- Ports ------------------------------------------------------------------------------------


class ClaimedDevices(Protocol):
    """Which devices are claimed on this node (the claim engine, or a standalone stand-in)."""

    def claimed(self) -> Sequence[ClaimedDevice]:
        """Every device claimed now, whatever the progress of its bind."""
        ...


class VfioNodes(Protocol):
    """The VFIO device nodes a host exposes (``/dev/vfio``, ``/dev/iommu``)."""

    def group_node_exists(self, group: IommuGroup) -> bool:
        """Whether ``/dev/vfio/<group>`` exists."""
        ...

    def device_cdev(self, address: PciAddress) -> str | None:
        """The iommufd cdev name of a device (``vfio3``), or ``None`` when the kernel has none."""
        ...

    def iommufd_available(self) -> bool:
        """Whether ``/dev/iommu`` exists."""
        ...


def observe_pools(
    claims: Sequence[ClaimedDevice], bus: PciBus, vfio: VfioNodes
) -> dict[ResourceName, ResourcePool]:
    """Read every claimed device now and group them into the advertised pools."""
    advertised: dict[PciAddress, AdvertisedDevice] = {}
    for claim in claims:
        device = bus.device(claim.address)
        group = device.iommu_group if device is not None else None
        healthy_candidate = device is not None and device.is_bound_to_vfio and group is not None
        advertised[claim.address] = assess(
            claim.address,
            device,
            group_node_present=group is not None and vfio.group_node_exists(group),
            vfio_cdev=vfio.device_cdev(claim.address) if healthy_candidate else None,
        )
    return group_into_pools(claims, advertised)
