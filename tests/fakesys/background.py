"""Stop background threads that use pyfakefs before pytest reports a test.

pyfakefs's pytest plugin pauses the patcher while pytest reports the outcome of a test's call
phase, so for that moment every ``os`` call in the process reaches the real filesystem. A
thread still running then (an agent's reconcile loop) mixes real and fake descriptors: it reads
the real ``/sys``, and closes real descriptors by fake numbers. Fixture teardown runs after that
report, too late; a fixture that starts such threads registers their stop with
`stop_before_report`, and the hook below calls it when the test function returns (or raises).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from pcioperator.agent import Agent

_STOPS = pytest.StashKey[list[Callable[[], None]]]()


def stop_before_report(request: pytest.FixtureRequest, stop: Callable[[], None]) -> None:
    """Call ``stop`` at the end of the current test's call phase, while pyfakefs still patches."""
    request.node.stash.setdefault(_STOPS, []).append(stop)


@pytest.hookimpl(hookwrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Iterator[None]:
    """Run the test, then the registered stops, newest first."""
    yield
    stops = pyfuncitem.stash.get(_STOPS, [])
    while stops:
        stops.pop()()


def stop_agent(agent: Agent) -> None:
    """Stop an agent on the fake kernel and check that every loop ended; safe to call again.

    Registered with `stop_before_report` when the agent starts, and called once more at
    teardown for a test that never reached its end. On 2 busy cores the loops can take a while.
    """
    agent.stop(timeout=120)
    assert agent.alive_threads() == [], "agent did not stop"
