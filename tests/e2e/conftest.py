"""Host side of the real-kernel tests: boot the QEMU guest once per session, share its results.

`guest_run` is requested only by `e2e`-marked host tests, so `-m "not e2e"` never boots QEMU.
Set `PCIDEVICES_E2E_OUT=<dir>` to keep the guest's logs in a fixed place (default: pytest's
temporary directory, printed in the summary and in every failure), and
`PCIDEVICES_E2E_TIMEOUT=<seconds>` to change how long the guest may run (default 480).
"""

import json
import os
from pathlib import Path

import pytest

from e2e import qemu

_RUNS: list[tuple[str, qemu.GuestImage, qemu.GuestRun]] = []


@pytest.fixture(scope="session")
def guest_run(tmp_path_factory: pytest.TempPathFactory) -> qemu.GuestRun:
    """Prepare and boot the guest once; it runs every test in `tests/e2e/guest/`."""
    if qemu.running_in_guest():
        pytest.skip("already inside the e2e guest: a guest does not boot another")
    fixed = os.environ.get("PCIDEVICES_E2E_OUT")
    out_dir = Path(fixed) if fixed else tmp_path_factory.mktemp("e2e-guest")
    try:
        image = qemu.prepare()
        timeout = float(os.environ.get("PCIDEVICES_E2E_TIMEOUT", qemu.DEFAULT_TIMEOUT))
        if qemu.stage2_enabled():
            timeout += qemu.STAGE2_EXTRA_TIMEOUT
        run = qemu.run_in_guest(
            qemu.default_selection(), out_dir=out_dir, image=image, timeout=timeout
        )
    except qemu.GuestError as err:
        pytest.fail(f"the e2e guest could not run: {err}", pytrace=False)
    _RUNS.append(("first boot", image, run))
    return run


@pytest.fixture(scope="session")
def guest_second_boot(
    guest_run: qemu.GuestRun, tmp_path_factory: pytest.TempPathFactory
) -> qemu.GuestRun:
    """Boot a second guest with the first boot's carried claim state ("reboot"), run its tests."""
    fixed = os.environ.get("PCIDEVICES_E2E_OUT")
    out_dir = Path(f"{fixed}-reboot") if fixed else tmp_path_factory.mktemp("e2e-guest-reboot")
    try:
        image = qemu.prepare()
        timeout = float(os.environ.get("PCIDEVICES_E2E_TIMEOUT", qemu.DEFAULT_TIMEOUT))
        run = qemu.run_second_boot(guest_run, out_dir=out_dir, image=image, timeout=timeout)
    except qemu.GuestError as err:
        pytest.fail(f"the second e2e guest boot could not run: {err}", pytrace=False)
    _RUNS.append(("second boot", image, run))
    return run


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the guest's timings and where its logs are."""
    if _RUNS:
        terminalreporter.section("real-kernel e2e guest")
    for label, image, run in _RUNS:
        terminalreporter.write_line(
            f"{label}: kernel {image.kernel_release}; prepare {image.prepare_seconds:.1f} s, "
            f"boot {_seconds(run.boot_seconds)}, guest pytest {_seconds(run.run_seconds)}, "
            f"QEMU total {run.total_seconds:.1f} s; guest pytest exit {run.pytest_exit}"
        )
        terminalreporter.write_line(f"logs: {run.out_dir} (console.log, pytest.log, junit.xml)")
        for line in _dra_latency(run):
            terminalreporter.write_line(line)


def _dra_latency(run: qemu.GuestRun) -> list[str]:
    """The DRA prepare latency the guest measured (`test_guest_dra_cluster.py`), if it ran."""
    try:
        figures = json.loads((run.out_dir / qemu.DRA_LATENCY_FILE).read_text())
    except (OSError, ValueError):
        return []
    labels = {
        "kubelet_client_prepare": "prepare, kubelet's DRA client (harness process)",
        "kubelet_client_unprepare": "unprepare, kubelet's DRA client (harness process)",
        "grpc_prepare": "prepare, NodePrepareResources call alone",
        "grpc_unprepare": "unprepare, NodeUnprepareResources call alone",
    }
    lines = ["DRA on the real kernel (claim allocated by the real kube-scheduler):"]
    for key, label in labels.items():
        if figures.get(key):
            found = figures[key]
            lines.append(
                f"  {label}: p50 {found['p50_ms']:.0f} ms, p95 {found['p95_ms']:.0f} ms "
                f"(n={found['n']}, nearest rank)"
            )
    return lines


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} s"
