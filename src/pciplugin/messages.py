"""Translation between the domain's resources and the kubelet's protobuf messages."""

from __future__ import annotations

from collections.abc import Sequence

from pcicore.address import PciAddress
from pcicore.errors import InvalidPciAddressError
from pcicore.preferred import DeviceTopology
from pcicore.resources import ContainerAllocation, ResourcePool
from pciplugin._generated.v1beta1 import api_pb2

API_VERSION = "v1beta1"


def options() -> api_pb2.DevicePluginOptions:
    """What this plugin supports: preferred allocation yes, PreStartContainer not needed."""
    return api_pb2.DevicePluginOptions(
        pre_start_required=False, get_preferred_allocation_available=True
    )


def list_and_watch_response(pool: ResourcePool) -> api_pb2.ListAndWatchResponse:
    """The whole device set of ``pool`` (each message replaces the previous one)."""
    devices = []
    for device in pool.devices:
        topology = (
            api_pb2.TopologyInfo(nodes=[api_pb2.NUMANode(ID=device.numa_node)])
            if device.numa_node is not None
            else None
        )
        devices.append(api_pb2.Device(ID=device.id, health=device.health.value, topology=topology))
    return api_pb2.ListAndWatchResponse(devices=devices)


def container_allocate_response(
    allocation: ContainerAllocation,
) -> api_pb2.ContainerAllocateResponse:
    """One container's env and device specs."""
    return api_pb2.ContainerAllocateResponse(
        envs=dict(allocation.envs),
        devices=[
            api_pb2.DeviceSpec(
                container_path=node.path, host_path=node.path, permissions=node.permissions
            )
            for node in allocation.device_nodes
        ],
    )


def register_request(resource_name: str, endpoint: str) -> api_pb2.RegisterRequest:
    """The request that registers one resource's socket with the kubelet."""
    return api_pb2.RegisterRequest(
        version=API_VERSION, endpoint=endpoint, resource_name=resource_name, options=options()
    )


def topologies(
    pool: ResourcePool, device_ids: Sequence[str]
) -> tuple[list[DeviceTopology], list[str]]:
    """The topology of each id known to ``pool``, and the ids it does not know."""
    found: list[DeviceTopology] = []
    unknown: list[str] = []
    for device_id in device_ids:
        device = pool.find(device_id)
        if device is None:
            unknown.append(device_id)
            continue
        found.append(
            DeviceTopology(
                address=device.address,
                numa_node=device.numa_node,
                root_port=device.root_port,
                iommu_group=device.iommu_group,
            )
        )
    return found, unknown


def addresses(device_ids: Sequence[str]) -> tuple[list[PciAddress], list[str]]:
    """The parsed ids, and those that are not PCI addresses."""
    parsed: list[PciAddress] = []
    bad: list[str] = []
    for device_id in device_ids:
        try:
            parsed.append(PciAddress.parse(device_id))
        except InvalidPciAddressError:
            bad.append(device_id)
    return parsed, bad
