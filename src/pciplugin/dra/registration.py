"""The plugin-registration service the kubelet's plugin watcher calls.

The kubelet watches ``/var/lib/kubelet/plugins_registry``; for a new socket there it calls
``pluginregistration.Registration/GetInfo``, checks the type (``DRAPlugin``), the name (the DRA
driver name) and the supported versions (gRPC services, e.g. ``v1.DRAPlugin``; the kubelet of
1.37 accepts ``v1.DRAPlugin`` and ``v1beta1.DRAPlugin``), connects to ``endpoint``, and then
calls ``NotifyRegistrationStatus`` with the result.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Final

import grpc

from pciplugin._generated.pluginregistration.v1 import api_pb2

_log = logging.getLogger(__name__)

SERVICE: Final = "pluginregistration.Registration"
PLUGIN_TYPE: Final = "DRAPlugin"
"""``k8s.io/kubelet/pkg/apis/pluginregistration/v1.DRAPlugin``."""


class RegistrationService:
    """Tells the kubelet who we are, and remembers what it answered."""

    def __init__(self, driver: str, endpoint: str, versions: tuple[str, ...]) -> None:
        """Register ``driver`` served at ``endpoint`` (a socket path) speaking ``versions``."""
        self.driver = driver
        self.endpoint = endpoint
        self.versions = versions
        self._changed = threading.Condition()
        self.registered: bool | None = None
        self.error = ""

    def get_info(
        self, _request: api_pb2.InfoRequest, _context: grpc.ServicerContext
    ) -> api_pb2.PluginInfo:
        """Our type, name, endpoint and versions."""
        return api_pb2.PluginInfo(
            type=PLUGIN_TYPE,
            name=self.driver,
            endpoint=self.endpoint,
            supported_versions=list(self.versions),
        )

    def notify_registration_status(
        self, request: api_pb2.RegistrationStatus, _context: grpc.ServicerContext
    ) -> api_pb2.RegistrationStatusResponse:
        """Record the kubelet's verdict (and log a refusal, with its reason)."""
        with self._changed:
            self.registered = request.plugin_registered
            self.error = request.error
            self._changed.notify_all()
        if request.plugin_registered:
            _log.info("the kubelet registered DRA driver %s at %s", self.driver, self.endpoint)
        else:
            _log.error("the kubelet refused DRA driver %s: %s", self.driver, request.error)
        return api_pb2.RegistrationStatusResponse()

    def wait_registered(self, timeout: float) -> bool | None:
        """The kubelet's verdict once it came (``None`` if none within ``timeout`` seconds)."""
        with self._changed:
            self._changed.wait_for(lambda: self.registered is not None, timeout)
            return self.registered

    def handler(self) -> grpc.GenericRpcHandler[Any, Any]:
        """The gRPC method table of this service."""
        unary = grpc.unary_unary_rpc_method_handler
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "GetInfo": unary(
                    self.get_info,
                    request_deserializer=api_pb2.InfoRequest.FromString,
                    response_serializer=api_pb2.PluginInfo.SerializeToString,
                ),
                "NotifyRegistrationStatus": unary(
                    self.notify_registration_status,
                    request_deserializer=api_pb2.RegistrationStatus.FromString,
                    response_serializer=api_pb2.RegistrationStatusResponse.SerializeToString,
                ),
            },
        )
