"""The original driver of a device Harvester moved before we ran (`pcicore.takeover`)."""

from __future__ import annotations

import pytest

from pcicore.device import DriverName
from pcicore.takeover import HARVESTER_FINALIZER, finalizers_after_release, original_driver

VFIO = DriverName("vfio-pci")
E1000E = DriverName("e1000e")


@pytest.mark.parametrize(
    ("current", "ours", "annotation", "claim", "expected"),
    [
        pytest.param(E1000E, None, None, None, E1000E, id="unmoved-device-its-driver"),
        pytest.param(VFIO, DriverName("igb"), "e1000e", None, "igb", id="our-ledger-first"),
        pytest.param(VFIO, None, "e1000e", "igb", E1000E, id="harvesters-annotation"),
        pytest.param(VFIO, None, None, "e1000e", E1000E, id="harvesters-claim-status"),
        pytest.param(VFIO, None, "vfio-pci", "e1000e", E1000E, id="annotation-vfio-skipped"),
        pytest.param(VFIO, None, "", " ", None, id="nothing-known"),
        pytest.param(None, None, "e1000e", None, E1000E, id="unbound-device-annotation"),
    ],
)
def test_original_driver(current, ours, annotation, claim, expected):
    """Ledger, then the driver now (unless vfio-pci), then Harvester's two records."""
    assert (
        original_driver(
            current, ours=ours, device_annotation=annotation, claim_driver_to_unbind=claim
        )
        == expected
    )


OURS = "devices.harvesterhci.io/return-device"


class TestFinalizersAfterRelease:
    """Which finalizers a released claim keeps."""

    @pytest.mark.parametrize(
        ("finalizers", "expected"),
        [
            pytest.param([HARVESTER_FINALIZER, OURS], (), id="harvesters-and-ours-go"),
            pytest.param([OURS, "x.io/keep"], ("x.io/keep",), id="others-stay"),
            pytest.param([HARVESTER_FINALIZER], (), id="harvesters-alone-goes"),
            pytest.param(["x.io/keep"], None, id="nothing-to-remove-no-patch"),
            pytest.param([], None, id="none-at-all"),
        ],
    )
    def test_after_release(self, finalizers, expected):
        """Ours and Harvester's are removed; absent ones mean no change at all."""
        assert finalizers_after_release(finalizers, OURS) == expected
