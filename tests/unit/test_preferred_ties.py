"""GetPreferredAllocation's tie-breaks and group mates, case by case.

`test_resources_preferred.py` has the table of usual choices; these pin how ties between NUMA
nodes and root ports are broken (lowest first, whatever the device addresses), that a bigger
insufficient NUMA node comes before a smaller one, and that a must-include device's group
mates are taken even when their group does not fit whole.
"""

from __future__ import annotations

from pcicore.address import PciAddress
from pcicore.preferred import preferred_allocation
from topology_table import dev, ids


def test_numa_tie_goes_to_the_lowest_node_not_the_lowest_address():
    """One device each on NUMA 1 (lower address) and NUMA 0: node 0's is preferred."""
    available = [dev("01:00.0", 1, group=1), dev("02:00.0", 0, group=2)]
    assert ids(preferred_allocation(available, [], 1)) == ["02:00.0"]


def test_two_single_devices_on_two_nodes_are_listed_lowest_node_first():
    """Two needed, one per node: node 0's device first."""
    available = [dev("01:00.0", 1, group=1), dev("02:00.0", 0, group=2)]
    assert ids(preferred_allocation(available, [], 2)) == ["02:00.0", "01:00.0"]


def test_root_port_tie_goes_to_the_lowest_port_not_the_lowest_address():
    """Same NUMA node, one device behind each root port: the lower port's device first."""
    available = [dev("01:00.0", 0, "00:02.0", 1), dev("02:00.0", 0, "00:01.0", 2)]
    assert ids(preferred_allocation(available, [], 1)) == ["02:00.0"]


def test_bigger_node_first_when_no_node_holds_the_whole_request():
    """Three needed: node 1 holds two, node 0 one (lower address): node 1's first."""
    available = [dev("01:00.0", 0, group=1), dev("02:00.0", 1, group=2), dev("03:00.0", 1, group=3)]
    assert ids(preferred_allocation(available, [], 3)) == ["02:00.0", "03:00.0", "01:00.0"]


def test_pinned_nodes_are_ranked_lowest_first():
    """Must-include devices on nodes 1 and 0: the next device comes from node 0."""
    available = [
        dev("01:00.0", 1, group=1),
        dev("02:00.0", 0, group=2),
        dev("03:00.0", 1, group=3),
        dev("04:00.0", 0, group=4),
    ]
    chosen = preferred_allocation(
        available, [PciAddress.parse("0000:01:00.0"), PciAddress.parse("0000:02:00.0")], 3
    )
    assert ids(chosen) == ["01:00.0", "02:00.0", "04:00.0"]


def test_group_mate_of_a_must_include_device_is_taken_though_its_group_does_not_fit():
    """GPU must be included; its group also holds audio and USB, one more is wanted: audio."""
    available = [
        dev("01:00.0", 0, group=1),
        dev("01:00.1", 0, group=1),
        dev("01:00.2", 0, group=1),
        dev("05:00.0", 0, group=5),
    ]
    chosen = preferred_allocation(available, [PciAddress.parse("0000:01:00.0")], 2)
    assert ids(chosen) == ["01:00.0", "01:00.1"]
