"""``harness kubelet-dra``: kubelet's own DRA client code calls a plugin on a unix socket.

A minimal DRA plugin stands in here (generic gRPC handlers, messages encoded by hand from the
kubelet's ``dra/v1`` and ``pluginregistration/v1`` protos), so the sub-command is proven before
the project's plugin uses it: the request it sends, the JSON it prints, the registration
handshake, and the exit status when the plugin reports an error for the claim.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from harness.kube import ensure_binary

pytestmark = pytest.mark.kube

DRA_SERVICE = "k8s.io.kubelet.pkg.apis.dra.v1.DRAPlugin"
REGISTRATION_SERVICE = "pluginregistration.Registration"
DRIVER = "pci.devices.harvesterhci.io"


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (strings, messages)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def fields(data: bytes) -> list[tuple[int, bytes | int]]:
    """The top-level fields of a protobuf message (length-delimited and varint ones)."""
    found: list[tuple[int, bytes | int]] = []
    i = 0
    while i < len(data):
        key, i = _read_varint(data, i)
        if key & 7 == 2:
            size, i = _read_varint(data, i)
            found.append((key >> 3, data[i : i + size]))
            i += size
        else:
            value, i = _read_varint(data, i)
            found.append((key >> 3, value))
    return found


def _read_varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, i


class FakePlugin:
    """Answers NodePrepareResources with one device per claim (or an error), and records calls."""

    def __init__(self, error: str = "") -> None:
        self.error = error
        self.calls: list[tuple[str, list[dict[str, str]]]] = []

    def _claims(self, request: bytes) -> list[dict[str, str]]:
        claims = []
        for number, claim in fields(request):
            assert number == 1
            assert isinstance(claim, bytes)
            parts = {n: v.decode() for n, v in fields(claim) if isinstance(v, bytes)}
            claims.append({"namespace": parts[1], "uid": parts[2], "name": parts[3]})
        return claims

    def prepare(self, request: bytes, _context: object) -> bytes:
        claims = self._claims(request)
        self.calls.append(("prepare", claims))
        out = b""
        for claim in claims:
            if self.error:
                result = field(2, self.error.encode())
            else:
                device = (
                    field(1, b"gpu")
                    + field(2, b"node-1")
                    + field(3, b"pci-0000-01-00-0")
                    + field(4, f"{DRIVER}/pci=pci-0000-01-00-0".encode())
                )
                result = field(1, device)
            out += field(1, field(1, claim["uid"].encode()) + field(2, result))
        return out

    def unprepare(self, request: bytes, _context: object) -> bytes:
        claims = self._claims(request)
        self.calls.append(("unprepare", claims))
        return b"".join(field(1, field(1, c["uid"].encode()) + field(2, b"")) for c in claims)


class FakeRegistration:
    """The plugin's registration service, as kubelet's plugin watcher meets it."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.statuses: list[list[tuple[int, bytes | int]]] = []

    def get_info(self, _request: bytes, _context: object) -> bytes:
        return (
            field(1, b"DRAPlugin")
            + field(2, DRIVER.encode())
            + field(3, self.endpoint.encode())
            + field(4, b"v1.DRAPlugin")
        )

    def notify(self, request: bytes, _context: object) -> bytes:
        self.statuses.append(fields(request))
        return b""


def _raw(handler):
    return grpc.unary_unary_rpc_method_handler(handler)


@pytest.fixture
def plugin_sockets(tmp_path: Path) -> Iterator[tuple[FakePlugin, FakeRegistration, Path, Path]]:
    dra = tmp_path / "dra.sock"
    reg = tmp_path / "reg.sock"
    plugin = FakePlugin()
    registration = FakeRegistration(str(dra))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                DRA_SERVICE,
                {
                    "NodePrepareResources": _raw(plugin.prepare),
                    "NodeUnprepareResources": _raw(plugin.unprepare),
                },
            ),
            grpc.method_handlers_generic_handler(
                REGISTRATION_SERVICE,
                {
                    "GetInfo": _raw(registration.get_info),
                    "NotifyRegistrationStatus": _raw(registration.notify),
                },
            ),
        )
    )
    server.add_insecure_port(f"unix:{dra}")
    server.add_insecure_port(f"unix:{reg}")
    server.start()
    yield plugin, registration, dra, reg
    server.stop(None)


def kubelet_dra(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ensure_binary()), "kubelet-dra", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


CLAIM = ("--driver", DRIVER, "--namespace", "vms", "--name", "gpu-claim", "--uid", "uid-1")


def test_prepare_on_the_dra_socket_prints_the_plugins_answer(plugin_sockets):
    """--socket: one NodePrepareResources with the claim; the response as JSON, exit 0."""
    plugin, _registration, dra, _reg = plugin_sockets
    result = kubelet_dra("prepare", "--socket", str(dra), *CLAIM)
    assert result.returncode == 0, result.stderr
    assert plugin.calls == [
        ("prepare", [{"namespace": "vms", "uid": "uid-1", "name": "gpu-claim"}])
    ]
    answer = json.loads(result.stdout)
    (device,) = answer["claims"]["uid-1"]["devices"]
    assert device == {
        "requestNames": ["gpu"],
        "poolName": "node-1",
        "deviceName": "pci-0000-01-00-0",
        "cdiDeviceIds": [f"{DRIVER}/pci=pci-0000-01-00-0"],
    }


def test_registration_handshake_then_unprepare(plugin_sockets):
    """--registration: GetInfo, a successful NotifyRegistrationStatus, then the call."""
    plugin, registration, _dra, reg = plugin_sockets
    result = kubelet_dra("unprepare", "--registration", str(reg), *CLAIM)
    assert result.returncode == 0, result.stderr
    assert registration.statuses == [[(1, 1)]]  # plugin_registered = true, no error
    assert [call for call, _ in plugin.calls] == ["unprepare"]
    assert json.loads(result.stdout) == {"claims": {"uid-1": {}}}


def test_a_claim_error_exits_one_naming_it(plugin_sockets):
    """The plugin's error for the claim: JSON on stdout, exit 1, the error on stderr."""
    plugin, _registration, dra, _reg = plugin_sockets
    plugin.error = "device 0000:01:00.0 is busy"
    result = kubelet_dra("prepare", "--socket", str(dra), *CLAIM)
    assert result.returncode == 1
    assert json.loads(result.stdout)["claims"]["uid-1"]["error"] == "device 0000:01:00.0 is busy"
    assert "claim vms/gpu-claim: device 0000:01:00.0 is busy" in result.stderr


def test_a_registration_for_another_driver_is_refused(plugin_sockets):
    """GetInfo naming another driver: told so in NotifyRegistrationStatus, exit 1, no call."""
    plugin, registration, _dra, reg = plugin_sockets
    args = list(CLAIM)
    args[1] = "other.example.com"
    result = kubelet_dra("prepare", "--registration", str(reg), *args)
    assert result.returncode == 1
    assert "want the driver name" in result.stderr
    refusal = (
        b'plugin name is "pci.devices.harvesterhci.io", want the driver name "other.example.com"'
    )
    assert registration.statuses == [[(2, refusal)]]  # plugin_registered false (not sent)
    assert plugin.calls == []
