"""The agent's claim store against a real API server: the faults of a claim's API calls.

What the claim controller relies on when a write fails: a finalizer written against a stale read
is refused (409) without losing another controller's entry, and writes to a claim deleted
meanwhile (404) are no error and create nothing.
"""

from __future__ import annotations

import threading

import pytest

from pcicore.claim_report import FINALIZER
from pcicore.cluster_claim import ClaimStatus
from pcioperator.controllers.claim_store import KubeClaimStore
from pcioperator.kube.api import PCIDEVICECLAIMS, KubeApi
from pcioperator.kube.errors import ConflictError, NotFoundError
from pcioperator.kube.informer import Informer
from polling import wait_for

pytestmark = pytest.mark.kube

OTHER = "example.com/other-controller"


@pytest.fixture
def store_and_claim(kube, unique_name):
    """A claim in the API server, the store writing it, and the claim as the store read it."""
    api = KubeApi(kube.api_client)
    node = unique_name("node")
    body = {
        "apiVersion": "devices.harvesterhci.io/v1beta1",
        "kind": "PCIDeviceClaim",
        "metadata": {"name": f"{node}-000003000"},
        "spec": {"address": "0000:03:00.0", "nodeName": node, "userName": "alice"},
    }
    api.create(PCIDEVICECLAIMS, body)
    informer = Informer(api, PCIDEVICECLAIMS)
    store = KubeClaimStore(node, api, informer)
    read = store._read(api.get(PCIDEVICECLAIMS, body["metadata"]["name"]))
    assert read is not None
    return api, store, read


def test_finalizer_written_against_a_stale_read_is_refused_and_keeps_the_other_entry(
    store_and_claim,
):
    """Another controller added its finalizer after our read: 409, and its entry survives.

    A merge patch replaces the list whole; written without the version read it would drop the
    other controller's finalizer (and let the claim go while that controller still needs it).
    """
    api, store, stale = store_and_claim
    api.patch(PCIDEVICECLAIMS, stale.name, {"metadata": {"finalizers": [OTHER]}})
    with pytest.raises(ConflictError):
        store.set_finalizers(stale, (FINALIZER,))
    assert api.get(PCIDEVICECLAIMS, stale.name)["metadata"]["finalizers"] == [OTHER]


def test_finalizer_written_against_a_fresh_read_is_kept(store_and_claim):
    """The same write at the current version lands: the conflict above is about staleness."""
    api, store, claim = store_and_claim
    store.set_finalizers(claim, (FINALIZER,))
    assert api.get(PCIDEVICECLAIMS, claim.name)["metadata"]["finalizers"] == [FINALIZER]


def test_status_of_a_claim_deleted_meanwhile_is_no_error_and_recreates_nothing(store_and_claim):
    """The claim was deleted between read and write (404): done with, nothing created."""
    api, store, claim = store_and_claim
    api.delete(PCIDEVICECLAIMS, claim.name)
    store.write_status(claim, ClaimStatus(passthrough_enabled=True))
    store.set_finalizers(claim, ())
    with pytest.raises(NotFoundError):
        api.get(PCIDEVICECLAIMS, claim.name)


def test_claims_changed_across_an_api_server_restart_are_seen_once(kube, unique_name):
    """The store's cache after a restart: the deleted claim gone, the new one there, once each.

    The agent decides from this cache which devices to return; a claim missed across a restart
    would leave a device on vfio-pci, a stale one would keep it from its VM's successor.
    """
    if not kube.owned:
        pytest.skip("the cluster was attached, not started here: it cannot be restarted")
    api = KubeApi(kube.api_client)
    node = unique_name("node")

    def body(address):
        return {
            "apiVersion": "devices.harvesterhci.io/v1beta1",
            "kind": "PCIDeviceClaim",
            "metadata": {"name": f"{node}-{address.replace(':', '').replace('.', '')}"},
            "spec": {"address": address, "nodeName": node, "userName": "alice"},
        }

    before, after = body("0000:03:00.0"), body("0000:04:00.0")
    api.create(PCIDEVICECLAIMS, before)
    informer = Informer(api, PCIDEVICECLAIMS)
    store = KubeClaimStore(node, api, informer)
    stop = threading.Event()
    thread = threading.Thread(target=informer.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: [c.name for c in store.claims()] == [before["metadata"]["name"]])
        kube.restart_apiserver()
        api.delete(PCIDEVICECLAIMS, before["metadata"]["name"])
        api.create(PCIDEVICECLAIMS, after)
        wait_for(
            lambda: [c.name for c in store.claims()] == [after["metadata"]["name"]], timeout=60
        )
    finally:
        stop.set()
        informer.interrupt()
        thread.join(timeout=30)
