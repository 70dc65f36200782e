"""Events read from the API server, waited for: an Event follows the status it reports.

The agent and the controller write an object's status first and record its Event after, in a
second request; a test that has seen the status must still wait for the Event.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pcioperator.kube.api import EVENTS

Event = dict[str, Any]


def wait_for_events(
    api: Any,
    found: Callable[[list[Event]], bool],
    *,
    namespace: str = "default",
    timeout: float = 15.0,
) -> list[Event]:
    """The namespace's Events once ``found(events)`` holds; fail listing them if it never does."""
    deadline = time.monotonic() + timeout
    while True:
        events, _ = api.list_objects(EVENTS, namespace=namespace)
        if found(events):
            return events
        if time.monotonic() >= deadline:
            seen = [(e["involvedObject"]["name"], e["reason"]) for e in events]
            raise AssertionError(f"no such Event within {timeout}s; the Events: {seen}")
        time.sleep(0.05)


def reasons_about(events: list[Event], name: str) -> list[str]:
    """The reasons of the Events about the object ``name``, oldest first."""
    mine = sorted(
        (e for e in events if e["involvedObject"]["name"] == name),
        key=lambda e: e["metadata"]["creationTimestamp"],
    )
    return [e["reason"] for e in mine]
