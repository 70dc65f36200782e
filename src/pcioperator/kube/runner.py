"""Runs a reconcile function over the keys of a `WorkQueue`, level-triggered.

The reconcile function gets a key, reads current state, and makes the world match; it returns
how long until it wants to run again (``None``: only when something changes). Temporary
failures come back with per-key backoff; any other failure is logged and retried more slowly, so
one bad object can neither stop the agent nor spin it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, Protocol, TypeVar

from pcioperator.kube.workqueue import WorkQueue

K = TypeVar("K", bound=Hashable)
log = logging.getLogger(__name__)


class ReconcileObserver(Protocol):
    """Told about each reconcile (the agent's metrics implement it)."""

    def reconciled(self, controller: str, seconds: float, error: BaseException | None) -> None:
        """One reconcile of ``controller`` took ``seconds`` and failed with ``error`` (or not)."""


class Controller(Generic[K]):
    """One reconcile loop over one queue."""

    def __init__(
        self,
        name: str,
        queue: WorkQueue[K],
        reconcile: Callable[[K], float | None],
        observer: ReconcileObserver | None = None,
    ) -> None:
        """Reconcile keys from ``queue`` with ``reconcile``."""
        self.name = name
        self._queue = queue
        self._reconcile = reconcile
        self._observer = observer

    def run(self, stop: threading.Event) -> None:
        """Process keys until ``stop`` is set."""
        while not stop.is_set():
            key = self._queue.get(timeout=0.5)
            if key is None:
                continue
            try:
                self.process(key)
            finally:
                self._queue.done(key)

    def process(self, key: K) -> None:
        """Reconcile one key now and schedule what follows from the result."""
        started = time.monotonic()
        error: BaseException | None = None
        try:
            again = self._reconcile(key)
        except Exception as err:  # noqa: BLE001 - every failure is retried; the loop must live
            error = err
            delay = self._queue.add_rate_limited(key)
            log.warning(
                "%s: reconcile of %s failed (retry in %.2fs): %s", self.name, key, delay, err
            )
        else:
            self._queue.forget(key)
            if again is not None:
                self._queue.add_after(key, again)
        if self._observer is not None:
            self._observer.reconciled(self.name, time.monotonic() - started, error)
