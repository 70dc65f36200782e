"""GetPreferredAllocation's choice, as a table of cases."""

import random

import pytest

from pcicore.address import PciAddress
from pcicore.preferred import preferred_allocation
from topology_table import dev, ids

R1, R2, R3 = "00:01.0", "00:02.0", "80:01.0"

CASES = [
    pytest.param(
        [dev("01:00.0", 0, R1, 1), dev("02:00.0", 0, R1, 2)],
        [],
        1,
        ["01:00.0"],
        id="one-device-address-order",
    ),
    pytest.param(
        [dev("01:00.0", 0, R1, 1), dev("02:00.0", 0, R1, 2), dev("81:00.0", 1, R3, 3)],
        ["81:00.0"],
        2,
        ["81:00.0", "01:00.0"],
        id="must-include-first-even-across-numa",
    ),
    pytest.param(
        [dev("01:00.0", 0, R1, 1), dev("81:00.0", 1, R3, 3), dev("82:00.0", 1, R3, 4)],
        [],
        2,
        ["81:00.0", "82:00.0"],
        id="one-numa-node-that-can-satisfy",
    ),
    pytest.param(
        [
            dev("01:00.0", 0, R1, 1),
            dev("02:00.0", 0, R1, 2),
            dev("03:00.0", 0, R1, 3),
            dev("81:00.0", 1, R3, 4),
            dev("82:00.0", 1, R3, 5),
        ],
        [],
        2,
        ["81:00.0", "82:00.0"],
        id="best-fit-numa-keeps-the-bigger-node-free",
    ),
    pytest.param(
        [dev("01:00.0", 0, R1, 1), dev("02:00.0", 0, R1, 2), dev("81:00.0", 1, R3, 3)],
        ["02:00.0"],
        2,
        ["02:00.0", "01:00.0"],
        id="stays-on-the-numa-node-of-must-include",
    ),
    pytest.param(
        [dev("01:00.0", 0, R1, 1), dev("02:00.0", 0, R2, 2), dev("03:00.0", 0, R2, 3)],
        [],
        2,
        ["02:00.0", "03:00.0"],
        id="one-root-port-within-the-node",
    ),
    pytest.param(
        [dev("01:00.0", 0, R1, 1), dev("02:00.0", 0, R1, 7), dev("02:00.1", 0, R1, 7)],
        [],
        2,
        ["02:00.0", "02:00.1"],
        id="whole-iommu-group-preferred-over-singles",
    ),
    pytest.param(
        [dev("01:00.0", 0, R1, 1), dev("02:00.0", 0, R1, 7), dev("02:00.1", 0, R1, 7)],
        [],
        1,
        ["01:00.0"],
        id="group-larger-than-the-request-is-not-split",
    ),
    pytest.param(
        [dev("01:00.0", 0, R1, 1), dev("02:00.0", 0, R1, 7), dev("02:00.1", 0, R1, 7)],
        ["02:00.1"],
        2,
        ["02:00.1", "02:00.0"],
        id="must-include-brings-its-group-mates",
    ),
    pytest.param(
        [dev("02:00.0", 0, R1, 7), dev("02:00.1", 0, R1, 7)],
        [],
        1,
        ["02:00.0"],
        id="splits-a-group-only-when-nothing-else-fits",
    ),
    pytest.param(
        [dev("01:00.0"), dev("02:00.0")],
        [],
        3,
        ["01:00.0", "02:00.0"],
        id="fewer-available-than-asked",
    ),
    pytest.param(
        [dev("01:00.0", 0), dev("02:00.0", 0)],
        ["02:00.0", "02:00.0"],
        1,
        ["02:00.0"],
        id="duplicate-must-include-counts-once",
    ),
    pytest.param(
        [dev("01:00.0", None), dev("81:00.0", 1), dev("82:00.0", 1)],
        [],
        2,
        ["81:00.0", "82:00.0"],
        id="devices-without-numa-are-a-node-of-their-own",
    ),
]


class TestPreferredAllocation:
    """preferred_allocation."""

    @pytest.mark.parametrize(("available", "must", "size", "expected"), CASES)
    def test_choice(self, available, must, size, expected):
        """The chosen devices, in order, for each case of the table."""
        chosen = preferred_allocation(available, [PciAddress.parse(text) for text in must], size)
        assert ids(chosen) == expected

    @pytest.mark.parametrize(("available", "must", "size", "expected"), CASES)
    def test_order_of_input_does_not_matter(self, available, must, size, expected):
        """Shuffled input gives the same answer: identical cards are never handed out at random."""
        shuffled = list(available)
        random.Random(7).shuffle(shuffled)  # noqa: S311 - a fixed shuffle, not a secret
        chosen = preferred_allocation(shuffled, [PciAddress.parse(text) for text in must], size)
        assert ids(chosen) == expected
