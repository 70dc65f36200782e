"""The guest's test results, as host tests: one per file in `tests/e2e/guest/`.

The guest boots once per session (`guest_run` in conftest.py) and runs the whole folder; each host
test here fails with the guest's own report when any test of its file failed in the guest.
"""

import pytest

from e2e import qemu

pytestmark = pytest.mark.e2e

GUEST_FILES = sorted(
    path.relative_to(qemu.REPO_ROOT).as_posix()
    for path in (qemu.E2E_DIR / "guest").glob("test_*.py")
    if qemu.stage2_enabled() or path.relative_to(qemu.REPO_ROOT).as_posix() not in qemu.STAGE2_FILES
)
"""The guest files the first boot runs (stage 2's files unless `PCIDEVICES_E2E_STAGE2=0`)."""
_DETAIL_CHARS = 6000


def _logs(run: qemu.GuestRun) -> str:
    return f"guest logs: {run.out_dir} (console.log, pytest.log, junit.xml, qemu.log)"


def test_guest_booted_and_ran_pytest_to_the_end(guest_run: qemu.GuestRun):
    """The guest started its job, pytest finished inside it and wrote a junit report."""
    if guest_run.boot_seconds is None:
        pytest.fail(
            f"the guest never started its job (QEMU exit {guest_run.qemu_exit}); {_logs(guest_run)}"
            f"\n--- console.log (tail) ---\n{guest_run.tail(guest_run.console_log)}",
            pytrace=False,
        )
    if guest_run.pytest_exit not in {0, 1} or not guest_run.cases:
        pytest.fail(
            f"pytest in the guest ended with exit status {guest_run.pytest_exit} and "
            f"{len(guest_run.cases)} results; {_logs(guest_run)}"
            f"\n--- pytest.log (tail) ---\n{guest_run.tail(guest_run.pytest_log)}"
            f"\n--- console.log (tail) ---\n{guest_run.tail(guest_run.console_log, 30)}",
            pytrace=False,
        )


@pytest.mark.parametrize("guest_file", GUEST_FILES, ids=lambda file: file.rsplit("/", 1)[-1])
def test_guest_file_passes_on_the_real_kernel(guest_run: qemu.GuestRun, guest_file: str):
    """Every test of this guest file passed inside the guest (and at least one ran)."""
    _assert_file_passed(guest_run, guest_file)


def test_second_boot_restores_the_claims_of_the_first(guest_second_boot: qemu.GuestRun):
    """After a "reboot" (a second guest boot with the first's state file), restore rebinds."""
    for guest_file in qemu.SECOND_BOOT_SELECTION:
        _assert_file_passed(guest_second_boot, guest_file)


def _assert_file_passed(guest_run: qemu.GuestRun, guest_file: str) -> None:
    cases = guest_run.cases_in(guest_file)
    if not cases:
        pytest.fail(
            f"the guest reported no test from {guest_file}; {_logs(guest_run)}"
            f"\n--- pytest.log (tail) ---\n{guest_run.tail(guest_run.pytest_log)}",
            pytrace=False,
        )
    bad = [case for case in cases if case.outcome in {"failed", "error"}]
    if bad:
        report = "\n\n".join(
            f"=== {case.outcome.upper()} in the guest: {case.nodeid}\n{case.message}\n"
            f"{case.details[-_DETAIL_CHARS:]}"
            for case in bad
        )
        pytest.fail(
            f"{len(bad)} of {len(cases)} guest tests in {guest_file} did not pass; "
            f"{_logs(guest_run)}\n\n{report}",
            pytrace=False,
        )
    if not any(case.outcome == "passed" for case in cases):
        skipped = "\n".join(f"{case.nodeid}: {case.message}" for case in cases)
        pytest.fail(f"every guest test in {guest_file} was skipped:\n{skipped}", pytrace=False)
