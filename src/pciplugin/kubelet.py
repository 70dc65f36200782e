"""The kubelet side of the device-plugin protocol: its socket, and registering with it."""

from __future__ import annotations

from pathlib import Path
from typing import Final

import grpc

from pcicore.errors import PciDevicesError
from pciplugin import messages
from pciplugin._generated.v1beta1 import api_pb2

KUBELET_SOCKET: Final = "kubelet.sock"
REGISTER_METHOD: Final = "/v1beta1.Registration/Register"

SocketIdentity = tuple[int, int, int]
"""(device, inode, change time) of a socket file: a restarted kubelet makes a new one."""


class RegistrationError(PciDevicesError):
    """The kubelet did not accept (or could not be asked to accept) a plugin's registration."""


def socket_identity(path: Path) -> SocketIdentity | None:
    """Who owns ``path`` now (``None`` when there is no socket there)."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_dev, stat.st_ino, stat.st_ctime_ns)


def register(kubelet_socket: Path, resource_name: str, endpoint: str, timeout: float = 1.0) -> None:
    """Register ``endpoint`` (a socket basename in the same folder) for ``resource_name``.

    Raises:
        RegistrationError: the kubelet is not there, or refused.
    """
    with grpc.insecure_channel(f"unix://{kubelet_socket}") as channel:
        call = channel.unary_unary(
            REGISTER_METHOD,
            request_serializer=api_pb2.RegisterRequest.SerializeToString,
            response_deserializer=api_pb2.Empty.FromString,
        )
        try:
            call(messages.register_request(resource_name, endpoint), timeout=timeout)
        except grpc.RpcError as err:
            code = err.code() if isinstance(err, grpc.Call) else None
            details = err.details() if isinstance(err, grpc.Call) else str(err)
            raise RegistrationError(
                f"kubelet at {kubelet_socket} did not register {resource_name} ({code}: "
                f"{details}); is the kubelet running and is --device-plugins-dir its "
                "device-plugins folder?"
            ) from err
