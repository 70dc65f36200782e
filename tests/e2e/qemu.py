"""Boot the end-to-end guest under QEMU and run a pytest selection inside it.

A fake sysfs only proves that the code agrees with our own idea of the kernel; this harness runs
the project against a real one. `prepare()` runs `prepare.sh` (cached kernel + initramfs),
`run_in_guest()` boots QEMU (software emulation, emulated Intel IOMMU, the devices of
`layout.py`), lets the guest's `/init` chroot into the host's root shared read-only over 9p and
run `python -m pytest <selection>` from this repository with the same interpreter as the caller,
then reads the junit XML, pytest's log and the console log from a writable 9p share.

QEMU exits 0 whatever the guest's tests did, so the result is only what the share holds. The
whole run is bounded by coreutils `timeout` and by the wait here.

Run by hand (prints the outcome and where the logs are):

    .venv/bin/python tests/e2e/qemu.py tests/e2e/guest -- -k layout
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from collections.abc import Sequence

if __package__ in {None, ""}:  # run as a script: make `e2e.layout` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# After the sys.path fix above, which a script run needs.
from e2e.layout import GUEST_DEVICES, GUEST_USB_DEVICES, HOST_ROOT_SHARE, RESULT_SHARE

E2E_DIR = Path(__file__).resolve().parent
REPO_ROOT = E2E_DIR.parent.parent
GUEST_SELECTION = ("tests/e2e/guest",)
STAGE2_FILE = "tests/e2e/guest/test_guest_agent.py"
"""Stage 2 (kube-apiserver + etcd, the agent and its device plugin inside the guest)."""
STAGE2_FILES = (
    "tests/e2e/guest/test_guest_takeover.py",
    "tests/e2e/guest/test_guest_dra_cluster.py",
    STAGE2_FILE,
)
"""Every guest file that needs stage 2's API server (left out with it)."""
DRA_LATENCY_FILE = "dra-prepare-latency.json"
"""Written to the result share by `test_guest_dra_cluster.py`; the host's summary prints it."""
STAGE2_ENV = "PCIDEVICES_E2E_STAGE2"
STAGE2_EXTRA_TIMEOUT = 600.0
"""Added to the guest's timeout when stage 2 runs (the API server needs minutes under TCG)."""
GUEST_TOKEN = "pcidevices_e2e=1"  # noqa: S105 (a kernel command-line word, not a secret)
"""On the guest kernel's command line; `tests/e2e/guest/conftest.py` skips its tests without it."""
RESULT_MOUNT = "/run/pcidevices-e2e"
"""Where the guest sees the writable share (init.sh mounts it there, inside the chroot)."""
CARRY_DIR = "carry"
"""Folder of the result share that `run_second_boot` copies into the next boot's share."""
CARRIED_STATE_FILE = Path(RESULT_MOUNT, CARRY_DIR, "claims.json")
HOTPLUG_DIR = "hotplug"
"""Folder of the result share through which a guest test asks the host to unplug a device.

The guest writes `<qemu id>.request` (`e2e.guest.hotplug`); the host, polling while QEMU runs,
sends QEMU's monitor (QMP) `device_del` for that id and answers with `<qemu id>.response`: QMP's
reply as JSON (`{"return": {}}`, or `{"error": ...}`). Only the layout's USB devices are
accepted."""
"""The claim state file a first-boot test leaves for the second boot (guest path)."""
SECOND_BOOT_SELECTION = ("tests/e2e/guest/second_boot.py",)
"""What the second boot runs: not named `test_*.py`, so the first boot does not collect it."""
# `quiet`: every byte on the emulated UART costs TCG time; init saves the full `dmesg` instead.
# `no_timer_check`: at boot the kernel checks that the timer interrupt arrives through the
# IO-APIC within a few emulated ticks; on a busy host TCG is too slow for it, and with interrupt
# remapping on (the emulated IOMMU) a failed check panics ("timer doesn't work through
# Interrupt-remapped IO-APIC", arch/x86/kernel/apic/io_apic.c). The parameter skips the check.
KERNEL_CMDLINE = f"console=ttyS0 quiet intel_iommu=on no_timer_check panic=-1 {GUEST_TOKEN}"
DEFAULT_TIMEOUT = 480.0
# Headroom for stage 2 (kube-apiserver + etcd in the guest); TCG allocates guest RAM lazily.
GUEST_MEMORY_MIB = 4096
_POLL_SECONDS = 0.2
_GUEST_PYTEST_PLUGINS = (
    "-p",
    "no:cacheprovider",  # the repository is read-only in the guest
    "-p",
    "no:fakefs",  # pyfakefs: guest tests use the real kernel; its import costs ~10 s in TCG
)
_RESULT_FILES = (
    "job-started",
    "pytest-exit",
    "junit.xml",
    "pytest.log",
    "console.log",
    "init-finished",
    "dmesg.log",
)


def host_cache_root() -> Path:
    """The cache `prepare.sh` and `tests/harness/build.sh` use; the guest sees it at this path."""
    configured = os.environ.get("PCIDEVICES_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "pcidevices"


def stage2_enabled() -> bool:
    """Whether the first boot runs stage 2: yes, unless `PCIDEVICES_E2E_STAGE2=0`."""
    return os.environ.get(STAGE2_ENV) != "0"


def default_selection() -> tuple[str, ...]:
    """The first boot's selection: the whole guest folder, stage 2 unless it is left out."""
    if stage2_enabled():
        return GUEST_SELECTION
    return (*GUEST_SELECTION, *(f"--ignore={path}" for path in STAGE2_FILES))


def running_in_guest(cmdline: Path = Path("/proc/cmdline")) -> bool:
    """True inside the e2e guest: its kernel was booted with `GUEST_TOKEN`, which no host has."""
    try:
        return GUEST_TOKEN in cmdline.read_text().split()
    except OSError:
        return False


class GuestError(Exception):
    """The guest could not be prepared or booted, or it left no test results."""


@attrs.frozen
class GuestImage:
    """A prepared kernel and initramfs (from `prepare.sh`).

    Attributes:
        directory: The cache directory that holds them.
        kernel_release: The guest kernel's `uname -r`.
        prepare_seconds: How long `prepare.sh` took this time (a cache hit is well under 1 s).
    """

    directory: Path
    kernel_release: str
    prepare_seconds: float

    @property
    def kernel(self) -> Path:
        """The kernel image."""
        return self.directory / "kernel"

    @property
    def initramfs(self) -> Path:
        """The busybox initramfs whose /init is `tests/e2e/init.sh`."""
        return self.directory / "initramfs.cpio"


@attrs.frozen
class GuestCase:
    """The outcome of one test that ran inside the guest, from its junit XML.

    Attributes:
        nodeid: The pytest node id, relative to the repository, e.g.
            `tests/e2e/guest/test_guest_layout.py::test_shared_pair_is_one_group`.
        file: The test file, relative to the repository.
        outcome: `passed`, `failed`, `error` or `skipped`.
        message: The failure, error or skip message (empty when passed).
        details: The traceback and captured output (empty when passed).
        seconds: The test's duration inside the guest.
    """

    nodeid: str
    file: str
    outcome: str
    message: str
    details: str
    seconds: float


@attrs.frozen
class GuestRun:
    """What one boot of the guest produced.

    Attributes:
        out_dir: The host directory shared writable with the guest; every log is in it.
        pytest_exit: pytest's exit status inside the guest, None if it never finished.
        cases: One entry per test the guest ran.
        boot_seconds: From QEMU's start until the guest started job.sh (None if it never did).
        run_seconds: From job.sh's start until pytest exited in the guest.
        total_seconds: From QEMU's start until QEMU exited.
        qemu_exit: QEMU's exit status (124 when `timeout` stopped it).
    """

    out_dir: Path
    pytest_exit: int | None
    cases: tuple[GuestCase, ...]
    boot_seconds: float | None
    run_seconds: float | None
    total_seconds: float
    qemu_exit: int

    @property
    def console_log(self) -> Path:
        """The guest's serial console: kernel warnings, init's and job.sh's messages."""
        return self.out_dir / "console.log"

    @property
    def pytest_log(self) -> Path:
        """The output of pytest inside the guest (`-v -rA`)."""
        return self.out_dir / "pytest.log"

    @property
    def dmesg_log(self) -> Path:
        """The guest kernel's whole log, saved by init after the job."""
        return self.out_dir / "dmesg.log"

    @property
    def junit_xml(self) -> Path:
        """The guest's junit XML report."""
        return self.out_dir / "junit.xml"

    def cases_in(self, file: str) -> tuple[GuestCase, ...]:
        """The guest's results for one test file (a path relative to the repository)."""
        return tuple(case for case in self.cases if case.file == file)

    def tail(self, log: Path, lines: int = 60) -> str:
        """The last lines of one of the run's logs, or a note that it is missing."""
        try:
            text = log.read_text(errors="replace")
        except FileNotFoundError:
            return f"({log} was not written)"
        return "\n".join(text.splitlines()[-lines:])


def prepare(*, timeout: float = 900.0) -> GuestImage:
    """Run `prepare.sh`: install QEMU and busybox if missing, build or reuse kernel + initramfs."""
    started = time.monotonic()
    try:
        done = subprocess.run(
            ["bash", str(E2E_DIR / "prepare.sh")],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as err:
        raise GuestError(f"prepare.sh did not finish in {timeout:.0f} s") from err
    if done.returncode != 0:
        raise GuestError(
            f"prepare.sh failed with exit status {done.returncode} (it needs root for apt-get "
            f"and the Debian package mirror):\n{done.stderr[-4000:]}"
        )
    directory = Path(done.stdout.strip().splitlines()[-1])
    release = (directory / "kernel-release").read_text().strip()
    return GuestImage(directory, release, time.monotonic() - started)


def qemu_command(image: GuestImage, out_dir: Path, qmp_socket: Path | None = None) -> list[str]:
    """QEMU's argv for the fixed layout: q35, emulated IOMMU, the layout's devices, 9p shares.

    With ``qmp_socket``, QEMU serves its monitor protocol (QMP) there, for `HOTPLUG_DIR`.
    """
    command = [
        "qemu-system-x86_64",
        "-nodefaults",
        # /dev/kvm may open but not work on the project's machines, and then QEMU hangs.
        "-accel",
        "tcg",
        "-machine",
        "q35,kernel-irqchip=split",
        "-smp",
        "2",
        "-m",
        str(GUEST_MEMORY_MIB),
        # The IOMMU must be created before the devices it translates for.
        "-device",
        "intel-iommu,intremap=on,caching-mode=on",
        "-kernel",
        str(image.kernel),
        "-initrd",
        str(image.initramfs),
        "-append",
        KERNEL_CMDLINE,
        "-display",
        "none",
        "-monitor",
        "none",
        "-serial",
        f"file:{out_dir / 'console.log'}",
        "-no-reboot",
    ]
    if qmp_socket is not None:
        command += ["-qmp", f"unix:{qmp_socket},server=on,wait=off"]
    for device in GUEST_DEVICES:
        command += device.qemu_args
    for usb in GUEST_USB_DEVICES:
        command += usb.qemu_args
    command += [
        "-fsdev",
        "local,id=hostroot,path=/,readonly=on,security_model=none,multidevs=remap",
        "-device",
        f"virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot,addr={HOST_ROOT_SHARE[8:]}",
        "-fsdev",
        f"local,id=e2eout,path={out_dir},security_model=none",
        "-device",
        f"virtio-9p-pci,fsdev=e2eout,mount_tag=e2eout,addr={RESULT_SHARE[8:]}",
    ]
    return command


def job_script(selection: Sequence[str], python: str) -> str:
    """The shell script the guest runs chrooted into the host's root (written to the share)."""
    venv_bin = str(Path(python).parent)
    path = f"{venv_bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    pytest_args = [
        python,
        "-m",
        "pytest",
        *_GUEST_PYTEST_PLUGINS,
        "-v",
        "-rA",
        "-o",
        "junit_family=xunit1",  # gives each testcase its file
        "-o",
        "junit_logging=all",
        f"--junitxml={RESULT_MOUNT}/junit.xml",
        *selection,
    ]
    out = RESULT_MOUNT
    return "\n".join(
        [
            "# Written by tests/e2e/qemu.py; run by the guest's /init inside the chroot.",
            f"date +%s.%N > {out}/job-started",
            f"export PATH={shlex.quote(path)}",
            # /run is the guest's own tmpfs; /tmp shows the host's entries read-only.
            "export HOME=/run/home TMPDIR=/run/tmp LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1",
            "export PCIDEVICES_E2E_GUEST=1",
            # HOME differs in the guest: point it at the host's cache (kube harness binary).
            f"export PCIDEVICES_CACHE={shlex.quote(str(host_cache_root()))}",
            'mkdir -p "$HOME" "$TMPDIR"',
            f"cd {shlex.quote(str(REPO_ROOT))} || exit 1",
            # Not on the console: the emulated UART is slow; the host reads pytest.log.
            f"{shlex.join(pytest_args)} > {out}/pytest.log 2>&1",
            f"echo $? > {out}/pytest-exit",
            f"tail -n 3 {out}/pytest.log",
            "",
        ]
    )


def warm_bytecode(selection: Sequence[str], log: Path, python: str = sys.executable) -> None:
    """Write the repository's bytecode on the host, where compiling is ~30x faster than in TCG.

    The guest sees the repository read-only, so without this every guest Python process compiles
    the project's modules again, and pytest re-does its assertion rewriting of every test module
    and conftest (~10 s per boot). `compileall` writes `__pycache__/*.pyc` (git-ignored); a native
    `pytest --collect-only` of the same selection writes pytest's rewritten pycs, which the guest's
    pytest reads (they are checked against the source's hash). Failures here only cost time.
    """
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    steps = (
        [python, "-m", "compileall", "-q", "-j", "0", "src", "tests"],
        [python, "-m", "pytest", "--collect-only", "-q", *_GUEST_PYTEST_PLUGINS, *selection],
    )
    with log.open("w") as output:
        for step in steps:
            output.write(f"$ {shlex.join(step)}\n")
            output.flush()
            try:
                subprocess.run(
                    step,
                    cwd=REPO_ROOT,
                    env=env,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    timeout=300,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                output.write("(timed out)\n")


def run_in_guest(
    selection: Sequence[str] = GUEST_SELECTION,
    *,
    out_dir: Path,
    image: GuestImage | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    python: str = sys.executable,
) -> GuestRun:
    """Boot the guest once, run `python -m pytest <selection>` inside it, collect the results.

    Args:
        selection: pytest arguments, relative to the repository root (paths, `-k`, ...).
        out_dir: An empty host directory; it becomes the guest's writable share and keeps the
            console log, pytest's log and the junit XML.
        image: A prepared kernel + initramfs; `prepare()` when omitted.
        timeout: Seconds before QEMU is killed.
        python: The interpreter the guest runs (its directory is first on the guest's PATH, so
            the virtualenv's `pcidevices` script is found); the caller's by default.

    Raises:
        GuestError: QEMU is missing or could not start.
    """
    image = image or prepare()
    out_dir.mkdir(parents=True, exist_ok=True)
    warm_bytecode(selection, out_dir / "warm-bytecode.log", python)
    for stale in _RESULT_FILES:  # a reused directory must not report an older run
        (out_dir / stale).unlink(missing_ok=True)
    (out_dir / "job.sh").write_text(job_script(selection, python))
    shutil.rmtree(out_dir / HOTPLUG_DIR, ignore_errors=True)
    (out_dir / HOTPLUG_DIR).mkdir()
    # Not on the share: a socket there would be a file the guest sees and cannot use.
    qmp_dir = Path(tempfile.mkdtemp(prefix="pcidevices-qmp-"))
    qmp_socket = qmp_dir / "qmp.sock"
    command = [
        "timeout",
        "--kill-after=10",
        f"{timeout:.0f}",
        *qemu_command(image, out_dir, qmp_socket),
    ]
    (out_dir / "qemu-command.txt").write_text(shlex.join(command) + "\n")
    started = time.monotonic()
    boot_seconds: float | None = None
    run_seconds: float | None = None
    try:
        qemu = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=(out_dir / "qemu.log").open("w"),
            stderr=subprocess.STDOUT,
        )
    except OSError as err:
        shutil.rmtree(qmp_dir, ignore_errors=True)
        raise GuestError(f"cannot start QEMU ({err}); run tests/e2e/prepare.sh as root") from err
    try:
        while (exit_status := qemu.poll()) is None:
            elapsed = time.monotonic() - started
            if boot_seconds is None and (out_dir / "job-started").exists():
                boot_seconds = elapsed
            if (
                run_seconds is None
                and boot_seconds is not None
                and (out_dir / "pytest-exit").exists()
            ):
                run_seconds = elapsed - boot_seconds
            serve_hotplug(out_dir / HOTPLUG_DIR, qmp_socket)
            if elapsed > timeout + 30:  # `timeout` itself failed to stop it
                qemu.kill()
            time.sleep(_POLL_SECONDS)
    finally:
        shutil.rmtree(qmp_dir, ignore_errors=True)
    total = time.monotonic() - started
    return GuestRun(
        out_dir=out_dir,
        pytest_exit=_read_int(out_dir / "pytest-exit"),
        cases=_read_junit(out_dir / "junit.xml"),
        boot_seconds=boot_seconds,
        run_seconds=run_seconds,
        total_seconds=total,
        qemu_exit=exit_status,
    )


def run_second_boot(
    first: GuestRun,
    *,
    out_dir: Path,
    image: GuestImage | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    python: str = sys.executable,
) -> GuestRun:
    """A "reboot": boot a fresh guest whose share holds what the first boot left in `CARRY_DIR`.

    Every driver starts over at its boot default, as after a real reboot; only the files the
    first boot wrote to `<share>/carry/` (the claim state file) survive, copied before QEMU starts.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    carried = first.out_dir / CARRY_DIR
    shutil.rmtree(out_dir / CARRY_DIR, ignore_errors=True)  # a reused folder's older carry
    if carried.is_dir():
        shutil.copytree(carried, out_dir / CARRY_DIR, dirs_exist_ok=True)
    return run_in_guest(
        SECOND_BOOT_SELECTION, out_dir=out_dir, image=image, timeout=timeout, python=python
    )


def serve_hotplug(requests: Path, qmp_socket: Path) -> None:
    """Answer the guest's unplug requests in ``requests`` (see `HOTPLUG_DIR`) through QMP."""
    for request in sorted(requests.glob("*.request")):
        qemu_id = request.name.removesuffix(".request")
        if qemu_id not in _UNPLUGGABLE:
            reply: dict[str, object] = {
                "error": {"desc": f"{qemu_id} is not a USB device of the layout"}
            }
        else:
            try:
                reply = qmp_execute(qmp_socket, "device_del", {"id": qemu_id})
            except (OSError, ValueError) as err:
                reply = {"error": {"desc": f"QMP at {qmp_socket} failed: {err}"}}
        response = requests / f"{qemu_id}.response"
        response.with_suffix(".tmp").write_text(json.dumps(reply))
        response.with_suffix(".tmp").rename(response)
        request.unlink()


_UNPLUGGABLE = frozenset(device.qemu_id for device in GUEST_USB_DEVICES)


def qmp_execute(
    qmp_socket: Path, command: str, arguments: dict[str, object], timeout: float = 30.0
) -> dict[str, object]:
    """Run one QMP command on a fresh connection; return QEMU's reply (`return` or `error`).

    QMP (docs/interop/qmp-spec): the server greets, the client leaves negotiation mode with
    `qmp_capabilities`, then each command gets one reply line; asynchronous `event` lines may
    come in between and are skipped.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(timeout)
        connection.connect(str(qmp_socket))
        stream = connection.makefile("rwb")
        json.loads(stream.readline())  # the greeting
        reply: dict[str, object] = {}
        for execute in (
            {"execute": "qmp_capabilities"},
            {"execute": command, "arguments": arguments},
        ):
            stream.write(json.dumps(execute).encode() + b"\n")
            stream.flush()
            while True:
                line = stream.readline()
                if not line:
                    raise ValueError(f"QEMU closed the QMP connection during {execute}")
                reply = json.loads(line)
                if "return" in reply or "error" in reply:
                    break
            if "error" in reply:
                return reply
        return reply


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _read_junit(path: Path) -> tuple[GuestCase, ...]:
    if not path.exists():
        return ()
    # The XML is our own guest's pytest output, not untrusted input.
    tree = ET.parse(path)  # noqa: S314
    cases = []
    for case in tree.iter("testcase"):
        file = case.get("file", "")
        module = file.removesuffix(".py").replace("/", ".")
        classname = case.get("classname", "")
        test_class = classname[len(module) + 1 :] if classname.startswith(module + ".") else ""
        nodeid = "::".join(part for part in (file, test_class, case.get("name", "")) if part)
        outcome, message, details = "passed", "", ""
        for tag in ("failure", "error", "skipped"):
            element = case.find(tag)
            if element is not None:
                outcome = "failed" if tag == "failure" else tag
                message = element.get("message", "")
                details = element.text or ""
                break
        captured = [
            f"--- {tag} ---\n{element.text.strip()}"
            for tag in ("system-out", "system-err")
            if (element := case.find(tag)) is not None and _has_content(element.text)
        ]
        if outcome != "passed" and captured:
            details = "\n".join([details, *captured])
        cases.append(
            GuestCase(nodeid, file, outcome, message, details, float(case.get("time", "0")))
        )
    return tuple(cases)


def _has_content(captured: str | None) -> bool:
    """Whether junit's captured output holds more than pytest's empty section headers."""
    lines = (captured or "").splitlines()
    return any(line.strip() and not line.startswith("-----") for line in lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Boot the guest by hand: `qemu.py [SELECTION ...] [--out DIR] [-- PYTEST ARGS]`.

    Exits with the guest pytest's status.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("selection", nargs="*")
    parser.add_argument("--out", type=Path, help="keep the logs here (default: a new temp dir)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT)
    argv = list(sys.argv[1:] if argv is None else argv)
    # Everything after `--` goes to the guest's pytest untouched (`-k`, `-x`, more paths).
    passthrough = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    args.selection = [*args.selection, *passthrough] or list(default_selection())
    out_dir = args.out or Path(tempfile.mkdtemp(prefix="pcidevices-e2e-"))
    image = prepare()
    run = run_in_guest(args.selection, out_dir=out_dir, image=image, timeout=args.timeout)
    counts: dict[str, int] = {}
    for case in run.cases:
        counts[case.outcome] = counts.get(case.outcome, 0) + 1
    report = {
        "kernel": image.kernel_release,
        "prepare_s": round(image.prepare_seconds, 1),
        "boot_s": run.boot_seconds and round(run.boot_seconds, 1),
        "run_s": run.run_seconds and round(run.run_seconds, 1),
        "total_s": round(run.total_seconds, 1),
        "qemu_exit": run.qemu_exit,
        "pytest_exit": run.pytest_exit,
        "cases": counts,
        "logs": str(out_dir),
    }
    sys.stdout.write(f"{report}\n")
    return run.pytest_exit if run.pytest_exit is not None else 1


if __name__ == "__main__":
    sys.exit(main())
