"""The optional ``v1.DRAResourceHealth`` service: the health of every prepared device.

The kubelet (1.37, feature ``ResourceHealthStatus``) opens one ``NodeWatchResources`` stream and
shows each device's health in the pod's status. The stream sends the whole list of prepared
devices when it opens, whenever a device's health changes, and at least every
``resend_seconds`` (the kubelet counts a device not reported within
``health_check_timeout_seconds`` as Unknown). A device is Healthy while it is on ``vfio-pci``
with its group's ``/dev/vfio/<N>`` (`pcicore.dra_preparer.DraPreparer.health`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Final

import grpc

from pcicore.dra_preparer import DraPreparer
from pciplugin._generated.drahealth.v1 import api_pb2

SERVICE: Final = "v1.DRAResourceHealth"
"""The gRPC service name, and how the registration lists it (the kubelet's constant)."""


class DraHealthService:
    """Streams the health of the devices of prepared claims."""

    def __init__(
        self,
        preparer: DraPreparer,
        lock: threading.Lock,
        *,
        interval_seconds: float = 1.0,
        resend_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Read ``preparer`` under ``lock`` every ``interval_seconds``."""
        self._preparer = preparer
        self._lock = lock
        self._interval = interval_seconds
        self._resend = resend_seconds
        self._clock = clock
        self._stopping = threading.Event()

    def report(self) -> api_pb2.NodeWatchResourcesResponse:
        """The health of every prepared device now."""
        with self._lock:
            found = self._preparer.health()
        now = int(time.time())
        timeout = int(self._resend * 3)
        return api_pb2.NodeWatchResourcesResponse(
            devices=[
                api_pb2.DeviceHealth(
                    device=api_pb2.DeviceIdentifier(
                        pool_name=allocated.pool, device_name=allocated.name
                    ),
                    health=api_pb2.HEALTHY if advertised.healthy else api_pb2.UNHEALTHY,
                    last_updated_time=now,
                    health_check_timeout_seconds=timeout,
                    message=advertised.reason,
                )
                for allocated, advertised in found
            ]
        )

    def node_watch_resources(
        self, _request: api_pb2.NodeWatchResourcesRequest, context: grpc.ServicerContext
    ) -> Iterator[api_pb2.NodeWatchResourcesResponse]:
        """The list now, then on each change and every ``resend_seconds``, until a side stops."""
        last: list[tuple[str, str, int, str]] | None = None
        sent_at = 0.0
        while context.is_active() and not self._stopping.is_set():
            response = self.report()
            state = [
                (d.device.pool_name, d.device.device_name, int(d.health), d.message)
                for d in response.devices
            ]
            if state != last or self._clock() - sent_at >= self._resend:
                yield response
                last, sent_at = state, self._clock()
            self._stopping.wait(self._interval)

    def stop(self) -> None:
        """End every stream."""
        self._stopping.set()

    def handler(self) -> grpc.GenericRpcHandler[Any, Any]:
        """The gRPC method table of this service."""
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "NodeWatchResources": grpc.unary_stream_rpc_method_handler(
                    self.node_watch_resources,
                    request_deserializer=api_pb2.NodeWatchResourcesRequest.FromString,
                    response_serializer=api_pb2.NodeWatchResourcesResponse.SerializeToString,
                ),
            },
        )
