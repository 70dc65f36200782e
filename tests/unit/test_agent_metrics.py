"""The agent's API metrics count what the agent did, not merely that the metric exists.

A fresh Prometheus registry prints every counter at 0, so a test that only looks for the name
``pcidevices_api_writes_total`` passes whether or not writes are counted; these read the values.
"""

from __future__ import annotations

from pcioperator.kube.metrics import AgentMetrics


def _value(metrics: AgentMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def test_uncounted_api_writes_would_pass_an_agent_that_writes_on_every_rescan_as_idle():
    """Patch, create, update, delete count as writes of their resource; reads only as requests."""
    metrics = AgentMetrics()
    for verb in ("get", "list", "watch", "patch", "create", "delete", "update"):
        metrics.request(verb, "pcidevices")
    metrics.request("get", "pcideviceclaims")

    assert _value(metrics, "pcidevices_api_writes_total", resource="pcidevices") == 4.0
    assert _value(metrics, "pcidevices_api_writes_total", resource="pcideviceclaims") == 0.0
    assert (
        _value(metrics, "pcidevices_api_requests_total", verb="get", resource="pcidevices") == 1.0
    )
    assert (
        _value(metrics, "pcidevices_api_requests_total", verb="patch", resource="pcidevices") == 1.0
    )
