"""Tests in this folder run only inside the QEMU guest that `tests/e2e/qemu.py` boots.

Every test collected here gets the `e2e` marker and, outside the guest, a skip: the host runs them
through `tests/e2e/test_real_kernel.py`, which boots the guest and reports each guest test's
outcome. A new guest test is a new `test_guest_*.py` file in this folder and nothing else.

The guest is recognised by the token on its kernel command line, which no host kernel has.
Each test starts from, and is put back to, the layout's boot-time drivers (`pristine_devices`).
Stage 2 (`test_guest_takeover.py`, `test_guest_dra_cluster.py`, then `test_guest_agent.py`) runs
last; its API server (and, for the DRA file, the kube-scheduler) starts in the background as soon
as collection ends (`e2e.guest.cluster`), so it comes up while stage 1 runs.
"""

from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.guest import rawsysfs
from e2e.guest.cluster import STAGE2_CLUSTER
from e2e.layout import FREE_NIC, MGMT_NIC, SHARED_PAIR
from e2e.qemu import running_in_guest

GUEST_DIR = Path(__file__).resolve().parent
STAGE2_PATH = GUEST_DIR / "test_guest_agent.py"
DRA_CLUSTER_PATH = GUEST_DIR / "test_guest_dra_cluster.py"
"""The stage-2 file that needs the kube-scheduler as well."""
STAGE2_PATHS = (GUEST_DIR / "test_guest_takeover.py", DRA_CLUSTER_PATH, STAGE2_PATH)
"""The files that use stage 2's API server, in the order they run (the last one stops it)."""
LAYOUT_DEVICES = (MGMT_NIC, FREE_NIC, *SHARED_PAIR)


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects, so `-m "not e2e"` drops these too
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark this folder's tests `e2e`, and skip them anywhere but in the guest."""
    guest = running_in_guest()
    skip = pytest.mark.skip(
        reason="runs only inside the QEMU guest; the host runs it via tests/e2e/test_real_kernel.py"
    )
    for item in items:
        if GUEST_DIR in item.path.parents:
            item.add_marker(pytest.mark.e2e)
            if not guest:
                item.add_marker(skip)
    # Stable: stage 1 first, then the stage-2 files in their order.
    items.sort(
        key=lambda item: STAGE2_PATHS.index(item.path) + 1 if item.path in STAGE2_PATHS else 0
    )


def pytest_collection_finish(session: pytest.Session) -> None:
    """In the guest, start stage 2's API server now if stage 2 is going to run."""
    if running_in_guest() and any(item.path in STAGE2_PATHS for item in session.items):
        STAGE2_CLUSTER.start(scheduler=any(item.path == DRA_CLUSTER_PATH for item in session.items))


@pytest.fixture(scope="session")
def boot_drivers() -> dict[str, str | None]:
    """The driver of each layout device as the guest booted (before any test moved one)."""
    return {address: rawsysfs.driver(address) for address in LAYOUT_DEVICES}


@pytest.fixture(autouse=True)
def pristine_devices(boot_drivers: dict[str, str | None]) -> Iterator[None]:
    """Put every layout device back on its boot-time driver after each test."""
    yield
    for address, original in boot_drivers.items():
        if rawsysfs.driver(address) != original:
            rawsysfs.release(address)
