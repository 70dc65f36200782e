"""Named loops in background threads that share one stop event (agent and controller).

Each loop is a function that runs until the event it is given is set (an informer's ``run``, a
`pcioperator.kube.runner.Controller.run`, the leader election). `LoopThreads` starts them,
reports which are alive (the health probe), and on `stop` sets the event and waits for each.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

Loop = Callable[[threading.Event], None]
"""A function that runs until the event it is given is set."""


class LoopThreads:
    """Background threads, one per named loop, stopped together."""

    def __init__(self) -> None:
        """No loop running yet; `stopping` is the event every loop is given."""
        self.stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self, loops: Mapping[str, Loop]) -> None:
        """Run each loop in a daemon thread named by its key."""
        for name, loop in loops.items():
            thread = threading.Thread(target=loop, args=(self.stopping,), name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def alive(self) -> list[str]:
        """Names of the loops still running."""
        return [thread.name for thread in self._threads if thread.is_alive()]

    def healthy(self) -> bool:
        """Whether loops were started and every one is still alive."""
        return bool(self._threads) and all(thread.is_alive() for thread in self._threads)

    def request_stop(self) -> None:
        """Set the stop event (loops end at their next look at it)."""
        self.stopping.set()

    def join(self, timeout: float = 10.0) -> None:
        """Wait up to ``timeout`` seconds for each loop; log those that did not end."""
        for thread in self._threads:
            thread.join(timeout)
            if thread.is_alive():
                log.warning("%s did not stop within %.0fs", thread.name, timeout)
