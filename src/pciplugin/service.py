"""The ``v1beta1.DevicePlugin`` service of one resource, on a typed gRPC method table.

The generated ``api_pb2_grpc`` module carries no types, so the method table is written here
against ``grpc``'s typed API; the paths come from the proto package (``/v1beta1.DevicePlugin/…``)
and the tests drive this service through the generated client, which checks both agree.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final, Generic, NoReturn, Protocol, TypeVar

import grpc

from pcicore.errors import PciDevicesError
from pcicore.naming import ResourceName
from pcicore.preferred import preferred_allocation
from pcicore.resources import (
    AllocationError,
    ContainerAllocation,
    ResourcePool,
    UnhealthyDeviceError,
    allocate,
)
from pciplugin import messages
from pciplugin._generated.v1beta1 import api_pb2

_log = logging.getLogger(__name__)

SERVICE: Final = "v1beta1.DevicePlugin"
# A ListAndWatch stream is woken by changes and by its client leaving; this is only a backstop.
_STREAM_CHECK_SECONDS: Final = 2.0


PoolT = TypeVar("PoolT")
"""The device set of one resource (`ResourcePool` for PCI, `pcicore.usb.UsbPool` for USB)."""


class PoolFeed(Generic[PoolT]):
    """The latest state of one resource, and a way for streams to wait for the next one."""

    def __init__(self, pool: PoolT, *, iommufd: bool = False) -> None:
        """Start with ``pool``."""
        self._changed = threading.Condition()
        self._pool = pool
        self._iommufd = iommufd
        self._version = 0
        self._closed = False

    @property
    def pool(self) -> PoolT:
        """The resource's devices now."""
        return self._pool

    @property
    def iommufd(self) -> bool:
        """Whether the host exposes ``/dev/iommu``."""
        return self._iommufd

    def publish(self, pool: PoolT, *, iommufd: bool = False) -> None:
        """Replace the state; wake the streams when the device set changed."""
        with self._changed:
            self._iommufd = iommufd
            if pool != self._pool:
                self._pool = pool
                self._version += 1
                self._changed.notify_all()

    def next_after(self, version: int, timeout: float) -> tuple[int, PoolT] | None:
        """The state after a change, `wake` or ``timeout`` (first wins); ``None`` once closed."""
        with self._changed:
            if not self._closed and self._version == version:
                self._changed.wait(timeout)  # woken by a change, a close or `wake`
            if self._closed:
                return None
            return (self._version, self._pool)

    def wake(self) -> None:
        """Wake every waiting stream (one of them has lost its client)."""
        with self._changed:
            self._changed.notify_all()

    def close(self) -> None:
        """End every stream."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()


def watch(
    feed: PoolFeed[PoolT],
    context: grpc.ServicerContext,
    response: Callable[[PoolT], api_pb2.ListAndWatchResponse],
) -> Iterator[api_pb2.ListAndWatchResponse]:
    """ListAndWatch: the device set now, then at each change, until the client leaves."""
    version = -1
    context.add_callback(feed.wake)  # a client that leaves ends the wait at once
    while context.is_active():
        update = feed.next_after(version, _STREAM_CHECK_SECONDS)
        if update is None:
            return
        if update[0] != version:
            version = update[0]
            yield response(update[1])


class PluginServicer(Protocol):
    """The five methods of ``v1beta1.DevicePlugin``, as one resource answers them."""

    def get_device_plugin_options(
        self, request: api_pb2.Empty, context: grpc.ServicerContext
    ) -> api_pb2.DevicePluginOptions:
        """What the plugin supports."""
        ...

    def list_and_watch(
        self, request: api_pb2.Empty, context: grpc.ServicerContext
    ) -> Iterator[api_pb2.ListAndWatchResponse]:
        """The device set, then each change."""
        ...

    def get_preferred_allocation(
        self, request: api_pb2.PreferredAllocationRequest, context: grpc.ServicerContext
    ) -> api_pb2.PreferredAllocationResponse:
        """Which devices to hand out."""
        ...

    def allocate(
        self, request: api_pb2.AllocateRequest, context: grpc.ServicerContext
    ) -> api_pb2.AllocateResponse:
        """What each container gets."""
        ...

    def pre_start_container(
        self, request: api_pb2.PreStartContainerRequest, context: grpc.ServicerContext
    ) -> api_pb2.PreStartContainerResponse:
        """Work before a container starts."""
        ...


def method_handlers(service: PluginServicer) -> grpc.GenericRpcHandler[Any, Any]:
    """The gRPC method table of ``service`` (its methods mix message types, hence Any)."""
    unary = grpc.unary_unary_rpc_method_handler
    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "GetDevicePluginOptions": unary(
                service.get_device_plugin_options,
                request_deserializer=api_pb2.Empty.FromString,
                response_serializer=api_pb2.DevicePluginOptions.SerializeToString,
            ),
            "ListAndWatch": grpc.unary_stream_rpc_method_handler(
                service.list_and_watch,
                request_deserializer=api_pb2.Empty.FromString,
                response_serializer=api_pb2.ListAndWatchResponse.SerializeToString,
            ),
            "GetPreferredAllocation": unary(
                service.get_preferred_allocation,
                request_deserializer=api_pb2.PreferredAllocationRequest.FromString,
                response_serializer=api_pb2.PreferredAllocationResponse.SerializeToString,
            ),
            "Allocate": unary(
                service.allocate,
                request_deserializer=api_pb2.AllocateRequest.FromString,
                response_serializer=api_pb2.AllocateResponse.SerializeToString,
            ),
            "PreStartContainer": unary(
                service.pre_start_container,
                request_deserializer=api_pb2.PreStartContainerRequest.FromString,
                response_serializer=api_pb2.PreStartContainerResponse.SerializeToString,
            ),
        },
    )


def abort_allocation(
    context: grpc.ServicerContext, resource: ResourceName, err: PciDevicesError
) -> NoReturn:
    """End an Allocate with the status code of ``err`` and its message.

    Ids the resource does not have are ``INVALID_ARGUMENT``; a device that exists but cannot be
    used now (Unhealthy, its node not handed over) is ``FAILED_PRECONDITION``.
    """
    invalid = isinstance(err, AllocationError) and not isinstance(err, UnhealthyDeviceError)
    code = grpc.StatusCode.INVALID_ARGUMENT if invalid else grpc.StatusCode.FAILED_PRECONDITION
    _log.warning("Allocate on %s refused: %s", resource, err)
    context.abort(code, str(err))


def allocate_response(
    request: api_pb2.AllocateRequest,
    context: grpc.ServicerContext,
    resource: ResourceName,
    allocate_one: Callable[[Sequence[str]], ContainerAllocation],
) -> api_pb2.AllocateResponse:
    """Each container's allocation, or the whole Allocate refused (`abort_allocation`)."""
    responses = []
    for container in request.container_requests:
        try:
            allocation = allocate_one(container.devices_ids)
        except PciDevicesError as err:
            abort_allocation(context, resource, err)
        responses.append(messages.container_allocate_response(allocation))
    return api_pb2.AllocateResponse(container_responses=responses)


class ResourceService(Generic[PoolT]):
    """What every resource's service shares: its name, its feed, options, PreStartContainer."""

    def __init__(self, resource: ResourceName, feed: PoolFeed[PoolT]) -> None:
        """Serve ``resource`` from ``feed``."""
        self.resource = resource
        self._feed = feed

    def get_device_plugin_options(
        self, _request: api_pb2.Empty, _context: grpc.ServicerContext
    ) -> api_pb2.DevicePluginOptions:
        """Preferred allocation is available; PreStartContainer is not needed."""
        return messages.options()

    def pre_start_container(
        self, _request: api_pb2.PreStartContainerRequest, _context: grpc.ServicerContext
    ) -> api_pb2.PreStartContainerResponse:
        """Nothing to do: devices are ready before they are advertised Healthy."""
        return api_pb2.PreStartContainerResponse()


class DevicePluginService(ResourceService[ResourcePool]):
    """Answers the kubelet for one PCI (VFIO) resource, from its `PoolFeed`."""

    def list_and_watch(
        self, _request: api_pb2.Empty, context: grpc.ServicerContext
    ) -> Iterator[api_pb2.ListAndWatchResponse]:
        """The device set now, then again each time it changes, until the client leaves."""
        return watch(self._feed, context, messages.list_and_watch_response)

    def get_preferred_allocation(
        self, request: api_pb2.PreferredAllocationRequest, context: grpc.ServicerContext
    ) -> api_pb2.PreferredAllocationResponse:
        """For each container: must-include first, then one NUMA node, one root, whole groups."""
        pool = self._feed.pool
        responses = []
        for container in request.container_requests:
            available, unknown = messages.topologies(pool, container.available_deviceIDs)
            must, bad = messages.addresses(container.must_include_deviceIDs)
            unknown += [i for i in bad if i not in unknown]
            if unknown:
                context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"resource {self.resource} has no device(s) {', '.join(unknown)}",
                )
            chosen = preferred_allocation(available, must, container.allocation_size)
            responses.append(
                api_pb2.ContainerPreferredAllocationResponse(deviceIDs=[str(a) for a in chosen])
            )
        return api_pb2.PreferredAllocationResponse(container_responses=responses)

    def allocate(
        self, request: api_pb2.AllocateRequest, context: grpc.ServicerContext
    ) -> api_pb2.AllocateResponse:
        """For each container: KubeVirt's env var and the VFIO device nodes."""
        pool, iommufd = self._feed.pool, self._feed.iommufd
        return allocate_response(
            request, context, self.resource, lambda ids: allocate(pool, ids, iommufd=iommufd)
        )

    def handler(self) -> grpc.GenericRpcHandler[Any, Any]:
        """The gRPC method table of this service."""
        return method_handlers(self)
