"""The ``k8s.io.kubelet.pkg.apis.dra.v1.DRAPlugin`` service, on a typed gRPC method table.

Each claim of a request is answered on its own: a claim that cannot be prepared gets its
``error`` (one line naming the claim, the device and the fix) and the others go on. Only a
request the plugin cannot read at all fails as a whole. Calls are serialised: the kubelet may
send several at once, and one claim engine moves devices one step at a time.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Final

import grpc

from pcicore.dra_prepare import DraClaimRef
from pcicore.dra_preparer import DraPreparer
from pcicore.errors import PciDevicesError
from pciplugin._generated.dra.v1 import api_pb2

_log = logging.getLogger(__name__)

SERVICE: Final = "k8s.io.kubelet.pkg.apis.dra.v1.DRAPlugin"
"""The gRPC service name (from the .proto's package), which fixes the method paths."""

SUPPORTED_VERSION: Final = "v1.DRAPlugin"
"""How the registration names this service: ``<gRPC package's last part>.<service>``, the
form the kubelet's ``DRAPluginService`` constant of ``k8s.io/kubelet/pkg/apis/dra/v1`` has."""


class DraPluginService:
    """Answers NodePrepareResources and NodeUnprepareResources through a `DraPreparer`."""

    def __init__(self, preparer: DraPreparer) -> None:
        """Prepare with ``preparer``."""
        self._preparer = preparer
        self.lock = threading.Lock()
        """Held around every call of the preparer (the health stream takes it too)."""

    def node_prepare_resources(
        self, request: api_pb2.NodePrepareResourcesRequest, _context: grpc.ServicerContext
    ) -> api_pb2.NodePrepareResourcesResponse:
        """Prepare each claim; each gets its devices, or its error."""
        answers: dict[str, api_pb2.NodePrepareResourceResponse] = {}
        with self.lock:
            for claim in request.claims:
                answers[claim.uid] = self._prepare(claim)
        return api_pb2.NodePrepareResourcesResponse(claims=answers)

    def node_unprepare_resources(
        self, request: api_pb2.NodeUnprepareResourcesRequest, _context: grpc.ServicerContext
    ) -> api_pb2.NodeUnprepareResourcesResponse:
        """Unprepare each claim; each gets an empty answer, or its error."""
        answers: dict[str, api_pb2.NodeUnprepareResourceResponse] = {}
        with self.lock:
            for claim in request.claims:
                answers[claim.uid] = self._unprepare(claim)
        return api_pb2.NodeUnprepareResourcesResponse(claims=answers)

    def _prepare(self, claim: api_pb2.Claim) -> api_pb2.NodePrepareResourceResponse:
        try:
            ref = DraClaimRef.parse(claim.namespace, claim.name, claim.uid)
            prepared = self._preparer.prepare(ref)
        except PciDevicesError as err:
            _log.warning("NodePrepareResources %s/%s: %s", claim.namespace, claim.name, err)
            return api_pb2.NodePrepareResourceResponse(error=str(err))
        _log.info(
            "prepared ResourceClaim %s: %s", ref, ", ".join(str(p.device.address) for p in prepared)
        )
        return api_pb2.NodePrepareResourceResponse(
            devices=[
                api_pb2.Device(
                    request_names=[p.device.request],
                    pool_name=p.device.pool,
                    device_name=p.device.name,
                    cdi_device_ids=list(p.cdi_ids),
                )
                for p in prepared
            ]
        )

    def _unprepare(self, claim: api_pb2.Claim) -> api_pb2.NodeUnprepareResourceResponse:
        try:
            ref = DraClaimRef.parse(claim.namespace, claim.name, claim.uid)
            self._preparer.unprepare(ref)
        except PciDevicesError as err:
            _log.warning("NodeUnprepareResources %s/%s: %s", claim.namespace, claim.name, err)
            return api_pb2.NodeUnprepareResourceResponse(error=str(err))
        _log.info("unprepared ResourceClaim %s", ref)
        return api_pb2.NodeUnprepareResourceResponse()

    def handler(self) -> grpc.GenericRpcHandler[Any, Any]:
        """The gRPC method table of this service."""
        unary = grpc.unary_unary_rpc_method_handler
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "NodePrepareResources": unary(
                    self.node_prepare_resources,
                    request_deserializer=api_pb2.NodePrepareResourcesRequest.FromString,
                    response_serializer=api_pb2.NodePrepareResourcesResponse.SerializeToString,
                ),
                "NodeUnprepareResources": unary(
                    self.node_unprepare_resources,
                    request_deserializer=api_pb2.NodeUnprepareResourcesRequest.FromString,
                    response_serializer=api_pb2.NodeUnprepareResourcesResponse.SerializeToString,
                ),
            },
        )
