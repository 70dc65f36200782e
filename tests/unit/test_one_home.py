"""The concepts that have one home: driver and node names, backoff, loop threads."""

from __future__ import annotations

import threading

import pytest

from pcicore.backoff import Backoff
from pcicore.device import parse_driver_name, parse_node_name
from pcicore.errors import InvalidDriverNameError, InvalidNodeNameError
from pcioperator.kube.threads import LoopThreads


class TestParseDriverName:
    """parse_driver_name."""

    @pytest.mark.parametrize("name", ["e1000e", "vfio-pci", "snd_hda_intel", "mlx5_core.x"])
    def test_accepts_kernel_driver_names(self, name):
        """Names as found under /sys/bus/pci/drivers are accepted unchanged."""
        assert parse_driver_name(name) == name

    @pytest.mark.parametrize("name", ["", "../e1000e", "a/b", ".hidden", "x" * 65, 7, None])
    def test_refuses_anything_that_could_be_a_path(self, name):
        """Empty, path-like, over-long and non-text values raise, naming the value and hint."""
        with pytest.raises(InvalidDriverNameError) as error:
            parse_driver_name(name)
        assert str(error.value).endswith(
            "(at most 64, as under /sys/bus/pci/drivers); check the recorded original driver"
        )


class TestParseNodeName:
    """parse_node_name."""

    def test_accepts_an_rfc1123_subdomain(self):
        """A lower-case dotted name is a node name."""
        assert parse_node_name("node-1.example.com") == "node-1.example.com"

    @pytest.mark.parametrize("name", ["Node1", "-a", "a-", "a_b", "", "a" * 254])
    def test_refuses_what_kubernetes_refuses(self, name):
        """Upper case, edge dashes, underscores, empty and over-long names raise."""
        with pytest.raises(InvalidNodeNameError, match="--node or NODE_NAME"):
            parse_node_name(name)


class TestBackoff:
    """Backoff."""

    def test_doubles_from_base_up_to_cap(self):
        """The delay doubles per failure from base and stops growing at cap."""
        backoff = Backoff(base=0.5, cap=3.0)
        assert [backoff.delay(n) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 3.0, 3.0]

    def test_gives_up_only_when_bounded(self):
        """An unbounded backoff never gives up; a bounded one does at max_attempts."""
        assert not Backoff().gives_up(1000)
        bounded = Backoff(max_attempts=3)
        assert [bounded.gives_up(n) for n in (2, 3)] == [False, True]


class TestLoopThreads:
    """LoopThreads."""

    def test_runs_each_loop_until_stopped(self):
        """Started loops are alive and healthy; after stop and join none is left."""
        loops = LoopThreads()
        started = threading.Barrier(3)

        def loop(stop: threading.Event) -> None:
            started.wait()
            stop.wait()

        assert not loops.healthy()
        loops.start({"one": loop, "two": loop})
        started.wait()
        assert sorted(loops.alive()) == ["one", "two"]
        assert loops.healthy()
        loops.request_stop()
        loops.join()
        assert loops.alive() == []
        assert not loops.healthy()
