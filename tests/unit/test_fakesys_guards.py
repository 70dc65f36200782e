"""The suite's own pyfakefs guards: stops before pytest reports, fake descriptors apart."""

import os
from collections.abc import Iterator

import pytest

from fakesys.background import stop_before_report
from fakesys.descriptors import FIRST_FAKE_DESCRIPTOR

FAKE_ONLY = "/only-in-the-fake-filesystem"


@pytest.fixture
def stops() -> Iterator[list[bool]]:
    """What each registered stop saw; by teardown every stop must have run."""
    seen: list[bool] = []
    yield seen
    assert seen == [True], "the stop did not run before teardown, with pyfakefs patching"


def test_registered_stop_runs_when_the_test_returns_with_the_fake_filesystem(fs, request, stops):
    fs.create_file(FAKE_ONLY)
    stop_before_report(request, lambda: stops.append(os.path.exists(FAKE_ONLY)))
    assert stops == []  # not yet: only once the test function has returned


def test_fake_descriptors_start_above_real_ones(fs):
    fs.create_file("/f")
    fd = os.open("/f", os.O_RDONLY)
    try:
        assert fd >= FIRST_FAKE_DESCRIPTOR
    finally:
        os.close(fd)
