"""The ``v1beta1.DevicePlugin`` service of one USB resource (KubeVirt's USB host devices).

Harvester offers each USB device as a resource of its own (``kubevirt.io/<USBDevice name>``),
so a VM picks one of two identical sticks. Allocate follows what virt-launcher reads
(KubeVirt's ``USB_RESOURCE_<resource>`` = ``bus:device``, comma-joined) and hands the device node
``/dev/bus/usb/BBB/DDD`` to the container, after making QEMU's user its owner as KubeVirt's own
USB plugin does. A device whose node is gone is Unhealthy and refused with the reason.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import attrs
import grpc

from pcicore.naming import ResourceName
from pcicore.ports import UsbNodes
from pcicore.resources import ContainerAllocation
from pcicore.usb import UsbPool, UsbStatus, allocate_usb, assess_usb, usb_pools
from pciplugin._generated.v1beta1 import api_pb2
from pciplugin.service import (
    PluginServicer,
    PoolFeed,
    ResourceService,
    allocate_response,
    watch,
)


def observe_usb_pools(
    enabled: Mapping[str, UsbStatus], nodes: UsbNodes
) -> dict[ResourceName, UsbPool]:
    """Read each enabled device's node now and group the devices into their resources."""
    devices = [
        assess_usb(name, status, node_present=nodes.exists(status.device_path))
        for name, status in enabled.items()
    ]
    return usb_pools(devices, {name: status.resource_name for name, status in enabled.items()})


def list_response(pool: UsbPool) -> api_pb2.ListAndWatchResponse:
    """The whole device set of ``pool`` (USB devices carry no NUMA topology)."""
    return api_pb2.ListAndWatchResponse(
        devices=[api_pb2.Device(ID=d.id, health=d.health.value) for d in pool.devices]
    )


@attrs.frozen
class UsbServicerFactory:
    """Builds the USB service of a resource (the `pciplugin.server.ServicerFactory` for USB).

    Attributes:
        nodes: The host's USB device nodes.
    """

    nodes: UsbNodes

    def __call__(self, resource: ResourceName, feed: PoolFeed[UsbPool]) -> PluginServicer:
        """The service of ``resource``."""
        return UsbDevicePluginService(resource, feed, self.nodes)


class UsbDevicePluginService(ResourceService[UsbPool]):
    """Answers the kubelet for one USB resource, from its `PoolFeed`."""

    def __init__(self, resource: ResourceName, feed: PoolFeed[UsbPool], nodes: UsbNodes) -> None:
        """Serve ``resource`` from ``feed``; hand device nodes over through ``nodes``."""
        super().__init__(resource, feed)
        self._nodes = nodes

    def list_and_watch(
        self, _request: api_pb2.Empty, context: grpc.ServicerContext
    ) -> Iterator[api_pb2.ListAndWatchResponse]:
        """The device set now, then again each time it changes, until the client leaves."""
        return watch(self._feed, context, list_response)

    def get_preferred_allocation(
        self, request: api_pb2.PreferredAllocationRequest, _context: grpc.ServicerContext
    ) -> api_pb2.PreferredAllocationResponse:
        """Must-include first, then the others in id order (no topology to weigh)."""
        responses = []
        for container in request.container_requests:
            rest = sorted(
                set(container.available_deviceIDs) - set(container.must_include_deviceIDs)
            )
            chosen = [*container.must_include_deviceIDs, *rest][: container.allocation_size]
            responses.append(api_pb2.ContainerPreferredAllocationResponse(deviceIDs=chosen))
        return api_pb2.PreferredAllocationResponse(container_responses=responses)

    def allocate(
        self, request: api_pb2.AllocateRequest, context: grpc.ServicerContext
    ) -> api_pb2.AllocateResponse:
        """For each container: KubeVirt's ``USB_RESOURCE_…`` variable and the device nodes."""
        pool = self._feed.pool

        def allocate_one(device_ids: Sequence[str]) -> ContainerAllocation:
            allocation = allocate_usb(pool, device_ids)
            for node in allocation.device_nodes:
                self._nodes.hand_over(node.path)
            return allocation

        return allocate_response(request, context, self.resource, allocate_one)
