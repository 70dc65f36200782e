"""A kubelet stand-in on real unix sockets: what a device plugin talks to.

`KubeletStandIn` serves ``v1beta1.Registration`` on ``<folder>/kubelet.sock`` with the
*generated* stubs (``api_pb2_grpc``), records each registration and dials back to the plugin's
endpoint, as the kubelet does, so a plugin's hand-written method table is checked against the
generated one. `Stream` reads a ``ListAndWatch`` stream on a thread. Used by the plugin's
integration tests and by stage 2 of the real-kernel tests inside the QEMU guest.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from pciplugin._generated.v1beta1 import api_pb2, api_pb2_grpc

WAIT = 2.0
"""Default upper bound for waits, in seconds; assertions on latency use their own limits."""


class Stream:
    """A ListAndWatch stream read on a thread; each message kept with its arrival time."""

    def __init__(self, stub):
        """Open the stream on ``stub`` and start reading it."""
        self._call = stub.ListAndWatch(api_pb2.Empty())
        self.messages: queue.Queue[tuple[float, api_pb2.ListAndWatchResponse]] = queue.Queue()
        self.latest: api_pb2.ListAndWatchResponse | None = None
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        try:
            for message in self._call:
                self.messages.put((time.monotonic(), message))
        except grpc.RpcError:
            pass

    def wait_for(self, predicate, timeout=WAIT):
        """The first message (from now on, or already queued) satisfying ``predicate``."""
        deadline = time.monotonic() + timeout
        while True:
            if self.latest is not None and predicate(self.latest):
                return self.latest
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"no matching ListAndWatch message within {timeout}s: {self.latest}")
            try:
                _, self.latest = self.messages.get(timeout=remaining)
            except queue.Empty:
                continue

    def health(self):
        """``{id: health}`` of the latest message."""
        assert self.latest is not None
        return {device.ID: device.health for device in self.latest.devices}

    def cancel(self):
        """End the stream."""
        self._call.cancel()
        self._thread.join(WAIT)


class KubeletStandIn(api_pb2_grpc.RegistrationServicer):
    """Serves Registration on ``<folder>/kubelet.sock``; dials plugins back on request."""

    def __init__(self, folder: Path):
        """Serve in ``folder`` (not yet started)."""
        self.folder = folder
        self.registrations: queue.Queue[api_pb2.RegisterRequest] = queue.Queue()
        self._server: grpc.Server | None = None
        self._channels: list[grpc.Channel] = []
        self._streams: list[Stream] = []

    def Register(self, request, _context):  # noqa: N802 - the generated servicer's name
        """Record ``request`` and accept it."""
        self.registrations.put(request)
        return api_pb2.Empty()

    def start(self):
        """Listen on kubelet.sock."""
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        api_pb2_grpc.add_RegistrationServicer_to_server(self, server)
        server.add_insecure_port(f"unix://{self.folder / 'kubelet.sock'}")
        server.start()
        self._server = server

    def stop(self):
        """Close the client side, stop serving, remove kubelet.sock."""
        for stream in self._streams:
            stream.cancel()
        for channel in self._channels:
            channel.close()
        self._streams.clear()
        self._channels.clear()
        if self._server is not None:
            self._server.stop(0).wait(WAIT)
            self._server = None
        (self.folder / "kubelet.sock").unlink(missing_ok=True)

    def restart(self):
        """What a kubelet restart does: stop, delete every socket in the folder, start again."""
        self.stop()
        for path in self.folder.glob("*.sock"):
            path.unlink()
        self.start()

    def next_registration(self, timeout=WAIT):
        """The next registration received."""
        return self.registrations.get(timeout=timeout)

    def registered(self, count, timeout=WAIT):
        """The next ``count`` registrations, keyed by resource name."""
        found = {}
        for _ in range(count):
            request = self.next_registration(timeout)
            found[request.resource_name] = request
        return found

    def dial(self, endpoint):
        """A generated DevicePlugin client on ``<folder>/<endpoint>``."""
        channel = grpc.insecure_channel(f"unix://{self.folder / endpoint}")
        self._channels.append(channel)
        return api_pb2_grpc.DevicePluginStub(channel)

    def watch(self, endpoint):
        """A ListAndWatch stream on ``endpoint``."""
        stream = Stream(self.dial(endpoint))
        self._streams.append(stream)
        return stream
