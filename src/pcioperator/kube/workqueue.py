"""A keyed work queue for level-triggered reconcilers (the shape of client-go's workqueue).

A key is queued at most once however often it is added; a key added while it is being
processed is processed again afterwards, never twice at once; failed keys come back after a
per-key exponential backoff; keys can be scheduled for later (periodic rescans).
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from pcicore.backoff import Backoff

K = TypeVar("K", bound=Hashable)

__all__ = ["Backoff", "WorkQueue"]  # Backoff: for callers that still import it from here


class WorkQueue(Generic[K]):
    """Keys to reconcile, de-duplicated, with delays and per-key backoff."""

    def __init__(
        self, backoff: Backoff | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        """An empty queue; ``clock`` is injectable for tests."""
        self._backoff = backoff or Backoff()
        self._clock = clock
        self._ready: deque[K] = deque()
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        self._later: list[tuple[float, int, K]] = []
        self._sequence = itertools.count()
        self._failures: dict[K, int] = {}
        self._shut_down = False
        self._cond = threading.Condition()

    def add(self, key: K) -> None:
        """Queue ``key`` now (no-op if it is already queued)."""
        with self._cond:
            if self._shut_down or key in self._dirty:
                return
            self._dirty.add(key)
            if key not in self._processing:
                self._ready.append(key)
                self._cond.notify()

    def add_after(self, key: K, delay: float) -> None:
        """Queue ``key`` after ``delay`` seconds."""
        if delay <= 0:
            self.add(key)
            return
        with self._cond:
            if self._shut_down:
                return
            heapq.heappush(self._later, (self._clock() + delay, next(self._sequence), key))
            self._cond.notify()

    def add_rate_limited(self, key: K) -> float:
        """Queue ``key`` after its backoff delay; return that delay."""
        with self._cond:
            failures = self._failures.get(key, 0) + 1
            self._failures[key] = failures
        delay = self._backoff.delay(failures)
        self.add_after(key, delay)
        return delay

    def forget(self, key: K) -> None:
        """Reset ``key``'s backoff (after it succeeded)."""
        with self._cond:
            self._failures.pop(key, None)

    def failures(self, key: K) -> int:
        """How many times in a row ``key`` failed."""
        with self._cond:
            return self._failures.get(key, 0)

    def get(self, timeout: float | None = None) -> K | None:
        """The next key to process, or ``None`` on timeout or shutdown. Call `done` after."""
        deadline = None if timeout is None else self._clock() + timeout
        with self._cond:
            while True:
                self._promote_due()
                if self._ready:
                    key = self._ready.popleft()
                    self._dirty.discard(key)
                    self._processing.add(key)
                    return key
                if self._shut_down:
                    return None
                now = self._clock()
                waits = [self._later[0][0] - now] if self._later else []
                if deadline is not None:
                    if now >= deadline:
                        return None
                    waits.append(deadline - now)
                self._cond.wait(min(waits) if waits else None)

    def done(self, key: K) -> None:
        """Finish processing ``key``; if it was added meanwhile, queue it again."""
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty:
                self._ready.append(key)
                self._cond.notify()

    def shut_down(self) -> None:
        """Wake every waiter; `get` returns ``None`` once the queue is drained."""
        with self._cond:
            self._shut_down = True
            self._cond.notify_all()

    def __len__(self) -> int:
        """Keys ready now."""
        with self._cond:
            return len(self._ready)

    def _promote_due(self) -> None:
        now = self._clock()
        while self._later and self._later[0][0] <= now:
            _, _, key = heapq.heappop(self._later)
            if key not in self._dirty:
                self._dirty.add(key)
                if key not in self._processing:
                    self._ready.append(key)
