"""Leader election through a real coordination.k8s.io/v1 Lease."""

from __future__ import annotations

import threading

import pytest

from pcioperator.kube.api import LEASES, KubeApi
from pcioperator.kube.errors import TemporaryApiError
from pcioperator.kube.leader import LeaderElector, LeaseSettings
from polling import wait_for

pytestmark = pytest.mark.kube

FAST = {"lease_duration": 3.0, "renew_deadline": 2.0, "retry_interval": 0.3}
SLOW = 60.0


class Candidate:
    """One elector running in a thread of its own, as a replica would."""

    def __init__(self, kube, namespace: str, lease: str, identity: str) -> None:
        """Compete for ``lease`` as ``identity``, with a client of its own."""
        self.api = KubeApi(kube.api_client)
        self.elector = LeaderElector(self.api, LeaseSettings(namespace, lease, identity, **FAST))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.elector.run, args=(self.stop,), daemon=True)

    def start(self) -> Candidate:
        """Start competing."""
        self.thread.start()
        return self

    def shut_down(self) -> None:
        """Stop competing (releasing the Lease if held) and wait for it."""
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join(30)

    @property
    def leading(self) -> bool:
        """Whether it leads now."""
        return self.elector.leading.is_set()


@pytest.fixture
def candidates(kube, make_namespace, unique_name):
    """Start candidates for one fresh Lease; stop them after the test."""
    namespace = make_namespace()
    lease = unique_name("lease")
    made: list[Candidate] = []

    def make(identity: str) -> Candidate:
        candidate = Candidate(kube, namespace, lease, identity)
        made.append(candidate)
        return candidate

    make.namespace = namespace
    make.lease = lease
    yield make
    for candidate in made:
        candidate.shut_down()


def holder(api: KubeApi, namespace: str, lease: str) -> str:
    """The Lease's holderIdentity now."""
    return api.get(LEASES, lease, namespace)["spec"].get("holderIdentity") or ""


class TestLeaderElection:
    """Exactly one candidate leads; leadership moves when the leader goes."""

    def test_only_one_leads_and_release_hands_over(self, candidates, api):
        """Of two candidates one leads; when it stops (and releases), the other takes over."""
        a, b = candidates("replica-a").start(), candidates("replica-b").start()
        wait_for(lambda: a.leading or b.leading, timeout=SLOW)
        leader, standby = (a, b) if a.leading else (b, a)
        for _ in range(10):  # several renewal rounds: never two leaders
            assert not (a.leading and b.leading)
            wait_for(lambda: leader.api.requests["patch"] > 0, timeout=SLOW)
        assert (
            holder(api, candidates.namespace, candidates.lease) == leader.elector.settings.identity
        )
        renewals = leader.api.requests["patch"]
        wait_for(lambda: leader.api.requests["patch"] >= renewals + 2, timeout=SLOW)
        assert leader.leading
        assert not standby.leading
        leader.shut_down()
        assert not leader.leading
        wait_for(lambda: standby.leading, timeout=SLOW)
        assert (
            holder(api, candidates.namespace, candidates.lease) == standby.elector.settings.identity
        )

    def test_silent_leader_is_replaced_after_the_lease_expires(self, candidates, api):
        """A leader that stops renewing (crashed, no release) loses the Lease after its duration."""
        crashed = candidates("replica-crashed")
        assert crashed.elector.try_acquire_or_renew()
        standby = candidates("replica-b").start()
        wait_for(lambda: standby.api.requests["get"] >= 2, timeout=SLOW)
        assert not standby.leading
        wait_for(lambda: standby.leading, timeout=SLOW)
        lease = api.get(LEASES, candidates.lease, candidates.namespace)
        assert lease["spec"]["holderIdentity"] == "replica-b"
        assert lease["spec"]["leaseTransitions"] == 1

    def test_candidate_that_read_before_a_rival_wrote_loses_the_race(self, candidates, kube, api):
        """Two candidates race for a released Lease: the one with the stale read gets 409."""
        first = candidates("replica-a")
        assert first.elector.try_acquire_or_renew()
        first.elector.release()
        rival = candidates("replica-b").elector
        racing = RacingApi(kube.api_client, rival)
        late = LeaderElector(
            racing, LeaseSettings(candidates.namespace, candidates.lease, "replica-c", **FAST)
        )
        assert not late.try_acquire_or_renew()
        assert racing.raced
        assert rival.leading.is_set()
        assert holder(api, candidates.namespace, candidates.lease) == "replica-b"


class RacingApi(KubeApi):
    """A real client that lets a rival candidate write between its read and its write."""

    def __init__(self, client, rival: LeaderElector) -> None:
        """Let ``rival`` try once, right after the first read of the Lease."""
        super().__init__(client)
        self._rival = rival
        self.raced = False

    def get(self, resource, name, namespace=None):
        """Read, then let the rival acquire before the caller writes."""
        obj = super().get(resource, name, namespace)
        if not self.raced:
            self.raced = True
            assert self._rival.try_acquire_or_renew()
        return obj


class UnreachableApi(KubeApi):
    """A real client that can be cut off from the API server (every request then fails)."""

    def __init__(self, client) -> None:
        """Reach the server until `cut` is set."""
        super().__init__(client)
        self.cut = False

    def get(self, resource, name, namespace=None):
        """Read, unless cut off."""
        if self.cut:
            raise TemporaryApiError("get leases: no answer from the API server (test cut)")
        return super().get(resource, name, namespace)


class TestRenewDeadline:
    """A leader that cannot reach the API server stops leading before its Lease expires."""

    def test_leader_steps_down_after_renew_deadline(self, kube, make_namespace, unique_name):
        """Failures within the renew deadline keep it leading; past the deadline it steps down."""
        now = [1000.0]
        api = UnreachableApi(kube.api_client)
        settings = LeaseSettings(make_namespace(), unique_name("lease"), "replica-a", **FAST)
        stopped = []
        elector = LeaderElector(
            api, settings, on_stopped_leading=lambda: stopped.append(now[0]), clock=lambda: now[0]
        )
        assert elector.try_acquire_or_renew()
        api.cut = True
        now[0] += settings.renew_deadline / 2
        assert elector.try_acquire_or_renew()
        now[0] += settings.renew_deadline / 2
        assert not elector.try_acquire_or_renew()
        assert stopped == [now[0]]
        assert settings.renew_deadline < settings.lease_duration
