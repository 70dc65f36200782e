"""The stage-2 API server, started in the background as soon as the guest's pytest has collected.

Under TCG the API server needs minutes of CPU to become ready, while the stage-1 tests spend
most of their time in single-threaded Python processes: started early on the guest's second
vCPU, the cluster is ready (or nearly) by the time the stage-2 test, ordered last, needs it.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from pathlib import Path

from harness.kube import CRD_DIR, LEAN, KubeCluster

SCHEDULER_TIMEOUT = 900.0
"""Seconds the kube-scheduler may take to its `/readyz` under TCG (after the API server)."""


class BackgroundCluster:
    """A lean harness cluster (etcd + kube-apiserver, CRDs installed) started on a thread.

    With ``scheduler=True`` the real kube-scheduler starts too, once the CRDs are in; the
    cluster is ready (`wait`) before the scheduler is (`wait_scheduler`), so tests that need no
    scheduler do not wait for it.
    """

    def __init__(self) -> None:
        """Describe it; nothing runs before `start`."""
        self.timings: dict[str, float] = {}
        self._thread: threading.Thread | None = None
        self._cluster: KubeCluster | None = None
        self._error: BaseException | None = None
        self._ready = threading.Event()
        self._scheduler = False
        self._scheduler_error: BaseException | None = None
        self._scheduler_ready = threading.Event()
        self._stop = threading.Event()

    def start(self, *, scheduler: bool = False) -> None:
        """Begin starting the cluster (and the kube-scheduler after it); returns at once."""
        self._scheduler = scheduler
        self._thread = threading.Thread(target=self._run, name="stage2-cluster", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        # This thread stays alive until `stop`: the harness's processes get SIGTERM when the
        # thread that started them ends (PR_SET_PDEATHSIG follows the thread, not the process).
        started = time.monotonic()
        try:
            workdir = Path(tempfile.mkdtemp(prefix="kube-"))
            cluster = KubeCluster.start(workdir, LEAN)
            self._cluster = cluster
            ready = time.monotonic()
            self.timings["cluster_start"] = round(ready - started, 1)
            cluster.install_crds(sorted(CRD_DIR.glob("*.yaml")), timeout=300)
            self.timings["crds"] = round(time.monotonic() - ready, 1)
        except BaseException as err:  # noqa: BLE001 - handed to the test that waits for it
            self._error = err
        self._ready.set()
        if self._scheduler and self._error is None and self._cluster is not None:
            started = time.monotonic()
            try:
                self._cluster.start_scheduler(timeout=SCHEDULER_TIMEOUT)
                self.timings["scheduler_start"] = round(time.monotonic() - started, 1)
            except BaseException as err:  # noqa: BLE001 - handed to the test that waits for it
                self._scheduler_error = err
        self._scheduler_ready.set()
        self._stop.wait()
        if self._cluster is not None:
            self._cluster.stop()

    def wait(self, timeout: float) -> KubeCluster:
        """The running cluster, once ready.

        Raises:
            RuntimeError: never started, or not ready within ``timeout`` seconds.
            HarnessError: it failed to start (the harness's own error, with the log).
        """
        if self._thread is None:
            raise RuntimeError("the stage-2 cluster was never started (is its test collected?)")
        started = time.monotonic()
        self._ready.wait(timeout)
        self.timings["waited_for_cluster"] = round(time.monotonic() - started, 1)
        if not self._ready.is_set():
            raise RuntimeError(f"the stage-2 cluster was not ready within {timeout:.0f}s more")
        if self._error is not None:
            raise self._error
        assert self._cluster is not None
        return self._cluster

    def wait_scheduler(self, timeout: float) -> KubeCluster:
        """The running cluster once its kube-scheduler is ready too.

        Raises:
            RuntimeError: not started with the scheduler, or not ready within ``timeout``.
            HarnessError: the cluster or the scheduler failed to start (with the log).
        """
        started = time.monotonic()
        cluster = self.wait(timeout)
        if not self._scheduler:
            raise RuntimeError("the stage-2 cluster was started without the kube-scheduler")
        self._scheduler_ready.wait(max(0.0, timeout - (time.monotonic() - started)))
        self.timings["waited_for_scheduler"] = round(time.monotonic() - started, 1)
        if not self._scheduler_ready.is_set():
            raise RuntimeError(f"the kube-scheduler was not ready within {timeout:.0f}s more")
        if self._scheduler_error is not None:
            raise self._scheduler_error
        return cluster

    def stop(self, keep_logs: Path | None = None) -> None:
        """Stop whatever was started (after a start still under way).

        Args:
            keep_logs: a folder to copy the processes' logs to once they have stopped.
        """
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        if self._cluster is not None and keep_logs is not None:
            keep_logs.mkdir(parents=True, exist_ok=True)
            for log in self._cluster.workdir.glob("*.log"):
                shutil.copyfile(log, keep_logs / log.name)
        self._cluster = None


STAGE2_CLUSTER = BackgroundCluster()
"""The one cluster of a guest session; the guest's conftest starts it, stage 2 uses it."""
