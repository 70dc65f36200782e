"""Kubernetes Events about our objects, so `kubectl describe` and `kubectl get events` explain."""

from __future__ import annotations

import datetime as dt
import logging
import uuid

from pcihost.wirefields import format_timestamp
from pcioperator.kube.api import EVENTS, KubeApi, Resource
from pcioperator.kube.errors import ApiError

log = logging.getLogger(__name__)

# Events about cluster-scoped objects live in the "default" namespace (as kubectl looks there).
EVENT_NAMESPACE = "default"
COMPONENT = "pcidevices-agent"


class EventRecorder:
    """Writes core/v1 Events; a failure to write one is logged, never raised."""

    def __init__(self, api: KubeApi, node: str) -> None:
        """Record events from the agent on ``node``."""
        self._api = api
        self._node = node

    def emit(
        self,
        resource: Resource,
        name: str,
        uid: str,
        *,
        warning: bool,
        reason: str,
        message: str,
    ) -> None:
        """Record that ``reason`` happened to the object ``name`` of ``resource``."""
        now = format_timestamp(dt.datetime.now(dt.UTC))
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{name}.{uuid.uuid4().hex[:16]}", "namespace": EVENT_NAMESPACE},
            "involvedObject": {
                "apiVersion": resource.api_version,
                "kind": resource.kind,
                "name": name,
                "uid": uid,
            },
            "type": "Warning" if warning else "Normal",
            "reason": reason,
            "message": message[:1024],
            "source": {"component": COMPONENT, "host": self._node},
            "reportingComponent": COMPONENT,
            "reportingInstance": f"{COMPONENT}-{self._node}",
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self._api.create(EVENTS, body, namespace=EVENT_NAMESPACE)
        except ApiError as err:
            log.warning("could not record event %s on %s: %s", reason, name, err)
