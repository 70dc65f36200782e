"""The device plugin's ListAndWatch stream and preferred allocation, driven without a socket.

A `FakeContext` keeps the state a gRPC servicer context has (active or not, the callbacks to
run when the client leaves, the status it was aborted with), so the service's own code runs and
the tests assert on what the kubelet would receive.
"""

from __future__ import annotations

import threading

import grpc
import pytest

from pcicore.address import PciAddress
from pcicore.device import IommuGroup
from pcicore.naming import ResourceName
from pcicore.resources import AdvertisedDevice, Health, ResourcePool
from pciplugin import service
from pciplugin._generated.v1beta1 import api_pb2
from pciplugin.service import DevicePluginService, PoolFeed
from polling import wait_for

RESOURCE = ResourceName("intel.com/I350")
NIC = PciAddress.parse("0000:03:00.0")
OTHER = PciAddress.parse("0000:04:00.0")


def pool(*devices: tuple[PciAddress, Health]) -> ResourcePool:
    return ResourcePool(
        RESOURCE,
        tuple(AdvertisedDevice(a, h, iommu_group=IommuGroup(a.bus)) for a, h in devices),
    )


class Aborted(Exception):  # noqa: N818 - named after the gRPC call it stands for
    """What `FakeContext.abort` raises, as grpc's does, with the status it was given."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


class FakeContext:
    """A servicer context: active for ``checks`` calls of `is_active` (None: until `leave`)."""

    def __init__(self, checks: int | None = None) -> None:
        self.checks = checks
        self.active = True
        self.callbacks: list = []

    def is_active(self) -> bool:
        if self.checks is not None:
            self.checks -= 1
            self.active = self.active and self.checks >= 0
        return self.active

    def add_callback(self, callback) -> bool:
        self.callbacks.append(callback)
        return True

    def leave(self) -> None:
        """The client went away: gRPC marks the call inactive and runs the callbacks."""
        self.active = False
        for callback in self.callbacks:
            callback()

    def abort(self, code: grpc.StatusCode, details: str):
        raise Aborted(code, details)


def ids(response: api_pb2.ListAndWatchResponse) -> list[tuple[str, str]]:
    return [(device.ID, device.health) for device in response.devices]


class TestListAndWatch:
    """What the stream sends, and when it ends."""

    def test_identical_device_list_is_not_sent_again(self, monkeypatch):
        """Publishing the same set (every health round does) sends nothing new.

        Re-sending would make the kubelet rewrite its checkpoint every 0.2 s.
        """
        monkeypatch.setattr(service, "_STREAM_CHECK_SECONDS", 0.0)
        feed = PoolFeed(pool((NIC, Health.HEALTHY)))
        context = FakeContext(checks=5)
        stream = DevicePluginService(RESOURCE, feed).list_and_watch(api_pb2.Empty(), context)
        first = next(stream)
        feed.publish(pool((NIC, Health.HEALTHY)), iommufd=False)
        assert ids(first) == [(str(NIC), "Healthy")]
        assert list(stream) == []

    def test_changed_device_list_is_sent_once(self, monkeypatch):
        """A device turning Unhealthy is sent, once, however often it is published."""
        monkeypatch.setattr(service, "_STREAM_CHECK_SECONDS", 0.0)
        feed = PoolFeed(pool((NIC, Health.HEALTHY)))
        context = FakeContext(checks=5)
        stream = DevicePluginService(RESOURCE, feed).list_and_watch(api_pb2.Empty(), context)
        next(stream)
        feed.publish(pool((NIC, Health.UNHEALTHY)), iommufd=False)
        feed.publish(pool((NIC, Health.UNHEALTHY)), iommufd=False)
        assert [ids(r) for r in stream] == [[(str(NIC), "Unhealthy")]]

    def test_stream_whose_client_left_ends_without_waiting_for_the_backstop(self, monkeypatch):
        """The client leaving wakes the waiting stream, which ends at once.

        Without that wake, every kubelet restart would leave a server thread waiting out the
        backstop (here an hour, so a lost wake cannot pass by luck).
        """
        monkeypatch.setattr(service, "_STREAM_CHECK_SECONDS", 3600.0)
        feed = PoolFeed(pool((NIC, Health.HEALTHY)))
        context = FakeContext()
        stream = DevicePluginService(RESOURCE, feed).list_and_watch(api_pb2.Empty(), context)
        sent: list = []
        thread = threading.Thread(target=lambda: sent.extend(stream), daemon=True)
        thread.start()
        try:
            wait_for(lambda: len(feed._changed._waiters) == 1)  # the stream waits for news
            context.leave()
            thread.join(30)
            assert not thread.is_alive(), "the stream kept waiting after its client left"
        finally:
            feed.close()  # releases a stream the wake did not reach
            thread.join(5)
        assert [ids(r) for r in sent] == [[(str(NIC), "Healthy")]]

    def test_closed_feed_ends_the_stream(self, monkeypatch):
        """Stopping the server ends its streams (the kubelet then reconnects to the new one)."""
        monkeypatch.setattr(service, "_STREAM_CHECK_SECONDS", 0.0)
        feed = PoolFeed(pool((NIC, Health.HEALTHY)))
        stream = DevicePluginService(RESOURCE, feed).list_and_watch(api_pb2.Empty(), FakeContext())
        next(stream)
        feed.close()
        assert list(stream) == []


class TestPreferredAllocation:
    """GetPreferredAllocation refuses ids it cannot place, naming them."""

    @staticmethod
    def prefer(available: list[str], must: list[str], size: int = 1):
        feed = PoolFeed(pool((NIC, Health.HEALTHY), (OTHER, Health.HEALTHY)))
        request = api_pb2.PreferredAllocationRequest(
            container_requests=[
                api_pb2.ContainerPreferredAllocationRequest(
                    available_deviceIDs=available,
                    must_include_deviceIDs=must,
                    allocation_size=size,
                )
            ]
        )
        return DevicePluginService(RESOURCE, feed).get_preferred_allocation(request, FakeContext())

    def test_must_include_id_that_is_no_address_is_refused_naming_it(self):
        """A bogus must-include id is INVALID_ARGUMENT, never silently dropped.

        Dropping it would hand the container other devices than the kubelet required.
        """
        with pytest.raises(Aborted) as caught:
            self.prefer([str(NIC), str(OTHER)], ["not-a-device"])
        assert caught.value.code is grpc.StatusCode.INVALID_ARGUMENT
        assert "not-a-device" in caught.value.details

    def test_unknown_available_id_is_named_once(self):
        """An id both offered and required, unknown to the resource, is named once."""
        with pytest.raises(Aborted) as caught:
            self.prefer([str(NIC), "bogus"], ["bogus"])
        assert caught.value.details.count("bogus") == 1

    def test_valid_must_include_comes_first(self):
        """A known must-include device leads the answer."""
        response = self.prefer([str(NIC), str(OTHER)], [str(OTHER)])
        assert list(response.container_responses[0].deviceIDs) == [str(OTHER)]
