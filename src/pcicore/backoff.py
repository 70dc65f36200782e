"""Exponential backoff: how long to wait before the next try after some failures in a row.

One rule for every retry in pcidevices: a work queue's failed keys, an informer's broken watch,
a busy device's next attempt. Pure arithmetic; whoever waits owns the clock.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class Backoff:
    """``base * factor**(failures - 1)`` seconds, at most ``cap``; optionally bounded in tries.

    Attributes:
        base: The delay after the first failure, in seconds.
        cap: The longest delay, in seconds.
        factor: Growth of the delay per further failure.
        max_attempts: Failed attempts allowed before giving up (``None``: retry for ever).
    """

    base: float = 0.05
    cap: float = 30.0
    factor: float = 2.0
    max_attempts: int | None = None

    def delay(self, failures: int) -> float:
        """The delay after ``failures`` consecutive failures (the first failure is 1)."""
        return float(min(self.cap, self.base * self.factor ** max(0, failures - 1)))

    def gives_up(self, failures: int) -> bool:
        """Whether ``failures`` failed attempts exhaust ``max_attempts``."""
        return self.max_attempts is not None and failures >= self.max_attempts
