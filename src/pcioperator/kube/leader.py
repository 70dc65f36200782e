"""Leader election through a ``coordination.k8s.io/v1`` Lease, the way client-go does it.

Candidates read the Lease; the holder renews ``renewTime`` every ``renew_interval``; a candidate
takes the Lease when it is free (no holder: released) or when the record has not changed for
``lease_duration`` as measured on the candidate's own monotonic clock — so clock skew between
nodes never matters. Every write carries the ``resourceVersion`` that was read: of two
candidates racing for one Lease, the API server accepts one and answers the other 409.
A leader that cannot renew within ``renew_deadline`` stops leading before anyone else may take
over (``renew_deadline`` < ``lease_duration``). On shutdown the leader releases the Lease so a
standby takes over at once.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import attrs

from pcioperator.kube.api import LEASES, JsonObject, KubeApi
from pcioperator.kube.errors import ApiError, ConflictError, NotFoundError

log = logging.getLogger(__name__)


@attrs.frozen
class LeaseSettings:
    """Timing of the election.

    Attributes:
        namespace: Namespace of the Lease.
        name: Name of the Lease.
        identity: This candidate's name (the pod name), written as ``holderIdentity``.
        lease_duration: Seconds a silent holder keeps the Lease.
        renew_deadline: Seconds a leader keeps leading without a successful renewal.
        retry_interval: Seconds between attempts (renewals by the leader, tries by others).
    """

    namespace: str
    name: str
    identity: str
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_interval: float = 5.0


def _micro_time(now: dt.datetime) -> str:
    """A ``metav1.MicroTime`` (RFC 3339 with microseconds, UTC)."""
    return now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """One candidate for one Lease; calls back when it starts and stops leading."""

    def __init__(
        self,
        api: KubeApi,
        settings: LeaseSettings,
        *,
        on_started_leading: Callable[[], None] = lambda: None,
        on_stopped_leading: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        """Compete for ``settings``' Lease through ``api``."""
        self._api = api
        self.settings = settings
        self._on_started = on_started_leading
        self._on_stopped = on_stopped_leading
        self._clock = clock
        self._wall_clock = wall_clock
        self.leading = threading.Event()
        self._observed: tuple[str, str, str] | None = None  # (holder, renewTime, transitions)
        self._observed_at = 0.0
        self._last_renewal = 0.0
        self._resource_version = ""

    # --- the loop ------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Try, lead and renew until ``stop`` is set; then release the Lease if held."""
        try:
            while not stop.is_set():
                self.try_acquire_or_renew()
                if self.leading.is_set():
                    stop.wait(self.settings.retry_interval)
                else:
                    stop.wait(min(self.settings.retry_interval, self.settings.lease_duration / 3))
        finally:
            if self.leading.is_set():
                self.release()

    def try_acquire_or_renew(self) -> bool:
        """One attempt; return whether this candidate leads afterwards."""
        now = self._clock()
        try:
            won = self._attempt(now)
        except ConflictError:
            log.info("lease %s: another candidate wrote first", self.settings.name)
            won = False
        except ApiError as err:
            log.warning("lease %s: %s", self.settings.name, err)
            if self.leading.is_set() and now - self._last_renewal < self.settings.renew_deadline:
                return True  # keep leading until the deadline; the next attempt may renew
            won = False
        if won:
            self._last_renewal = now
        self._set_leading(value=won)
        return won

    def release(self) -> None:
        """Give the Lease up (holder cleared), so a standby takes it without waiting."""
        try:
            lease = self._api.get(LEASES, self.settings.name, self.settings.namespace)
            if _spec(lease).get("holderIdentity") == self.settings.identity:
                self._api.patch(
                    LEASES,
                    self.settings.name,
                    {
                        "metadata": {"resourceVersion": lease["metadata"]["resourceVersion"]},
                        "spec": {"holderIdentity": None, "leaseDurationSeconds": 1},
                    },
                    namespace=self.settings.namespace,
                )
                log.info("lease %s: released", self.settings.name)
        except ApiError as err:
            log.warning("lease %s: release failed (%s); it expires on its own", self.name, err)
        finally:
            self._set_leading(value=False)

    @property
    def name(self) -> str:
        """The Lease's name."""
        return self.settings.name

    # --- one attempt ---------------------------------------------------------------------

    def _attempt(self, now: float) -> bool:
        settings = self.settings
        try:
            lease = self._api.get(LEASES, settings.name, settings.namespace)
        except NotFoundError:
            self._api.create(LEASES, self._lease_body(transitions=0), settings.namespace)
            log.info("lease %s: created and acquired by %s", settings.name, settings.identity)
            return True
        spec = _spec(lease)
        holder = str(spec.get("holderIdentity") or "")
        record = (holder, str(spec.get("renewTime") or ""), str(spec.get("leaseTransitions", 0)))
        if record != self._observed:
            self._observed, self._observed_at = record, now
        self._resource_version = str(lease["metadata"]["resourceVersion"])
        transitions = int(spec.get("leaseTransitions") or 0)
        duration = float(spec.get("leaseDurationSeconds") or settings.lease_duration)
        if holder == settings.identity:
            self._patch(self._renewal(), settings)
            return True
        if holder and now - self._observed_at < duration:
            return False
        self._patch(self._lease_body(transitions=transitions + 1)["spec"], settings)
        log.info(
            "lease %s: acquired by %s (previous holder: %s)",
            settings.name,
            settings.identity,
            holder or "none, released",
        )
        return True

    def _patch(self, spec: JsonObject, settings: LeaseSettings) -> None:
        self._api.patch(
            LEASES,
            settings.name,
            {"metadata": {"resourceVersion": self._resource_version}, "spec": spec},
            namespace=settings.namespace,
        )

    def _renewal(self) -> JsonObject:
        return {
            "renewTime": _micro_time(self._wall_clock()),
            "leaseDurationSeconds": int(self.settings.lease_duration),
        }

    def _lease_body(self, *, transitions: int) -> JsonObject:
        stamp = _micro_time(self._wall_clock())
        spec: dict[str, Any] = {
            "holderIdentity": self.settings.identity,
            "leaseDurationSeconds": int(self.settings.lease_duration),
            "acquireTime": stamp,
            "renewTime": stamp,
            "leaseTransitions": transitions,
        }
        return {
            "apiVersion": LEASES.api_version,
            "kind": LEASES.kind,
            "metadata": {"name": self.settings.name, "namespace": self.settings.namespace},
            "spec": spec,
        }

    def _set_leading(self, *, value: bool) -> None:
        if value and not self.leading.is_set():
            self.leading.set()
            log.info("lease %s: %s started leading", self.settings.name, self.settings.identity)
            self._on_started()
        elif not value and self.leading.is_set():
            self.leading.clear()
            log.info("lease %s: %s stopped leading", self.settings.name, self.settings.identity)
            self._on_stopped()


def _spec(lease: JsonObject) -> dict[str, Any]:
    spec: dict[str, Any] = lease.get("spec") or {}
    return spec


__all__ = ["LeaderElector", "LeaseSettings"]
