"""The KubeVirt controller's reconcile against in-memory claims, devices and KubeVirt CR."""

from __future__ import annotations

import logging

import attrs
import pytest
from cluster_fakes import FakeClaims, FakePermitted, StoredEntry

from pcicore.address import PciAddress
from pcicore.device import NodeName
from pcicore.naming import ResourceName
from pcicore.permitted import ClaimedAddress, DeviceKind, PermittedEntry, PermittedKey
from pcioperator.controllers.kubevirt import KubeVirtTarget, PermittedDevicesSync

NIC = ResourceName("intel.com/I350_GIGABIT_NETWORK_CONNECTION")
NIC_KEY = PermittedKey("8086:1521", NIC)
VIRTIO = StoredEntry(
    PermittedEntry("1AF4:1000", ResourceName("devices.kubevirt.io/virtio")), note="the user's"
)
ADDRESS = PciAddress.parse("0000:03:00.0")


@attrs.define
class Cluster:
    """Claims and devices, the KubeVirt CR, leadership, and the reconcile over them."""

    claims: FakeClaims
    cr: FakePermitted
    leading: list[bool]
    sync: PermittedDevicesSync

    def claim(self, node: str, *, dedicated: bool = False) -> None:
        """A claim of the NIC at `ADDRESS` on ``node``, whose PCIDevice reports its kind."""
        name = f"{node}-000003000"
        self.claims.claims[name] = ClaimedAddress(NodeName(node), ADDRESS, dedicated=dedicated)
        self.claims.devices[name] = DeviceKind(0x8086, 0x1521, NIC)

    def entries(self) -> list[tuple[PermittedEntry, str]]:
        """The CR's list: each entry with the field the domain does not model."""
        return [(stored.entry, stored.note) for stored in self.cr.entries]


@pytest.fixture
def cluster() -> Cluster:
    """A cluster with a KubeVirt CR holding a user's entry, no claims, and this replica leading."""
    claims = FakeClaims()
    cr = FakePermitted([VIRTIO])
    leading = [True]
    sync = PermittedDevicesSync(
        KubeVirtTarget(), claims=claims, permitted=cr, may_write=lambda: leading[0]
    )
    return Cluster(claims, cr, leading, sync)


OURS = (PermittedEntry("8086:1521", NIC, external=True), "")
USERS = (VIRTIO.entry, "the user's")


class TestPermittedDevicesSync:
    """`PermittedDevicesSync.reconcile` keeps the CR's list in step with the claims."""

    def test_claim_adds_entry_after_users(self, cluster):
        """A claim adds our entry after the user's, which is written back untouched."""
        cluster.claim("titan")
        assert cluster.sync.reconcile() is None
        assert cluster.entries() == [USERS, OURS]
        assert cluster.cr.managed == {NIC_KEY}

    def test_deleting_last_claim_removes_entry(self, cluster):
        """The entry goes with the last claim that needs it, and so does the record."""
        cluster.claim("titan")
        cluster.claim("atlas")
        cluster.sync.reconcile()
        del cluster.claims.claims["titan-000003000"]
        cluster.sync.reconcile()
        assert cluster.entries() == [USERS, OURS]
        del cluster.claims.claims["atlas-000003000"]
        cluster.sync.reconcile()
        assert cluster.entries() == [USERS]
        assert cluster.cr.managed == frozenset()

    def test_second_reconcile_writes_nothing(self, cluster):
        """Once in step, reconciling again (the cache caught up) writes nothing."""
        cluster.claim("titan")
        cluster.sync.reconcile()
        writes = cluster.cr.writes
        cluster.sync.reconcile()
        assert cluster.cr.writes == writes
        assert not cluster.sync.last_plan.changed

    def test_waits_for_cache_to_see_own_write(self, cluster):
        """Until the CR read is newer than the one it wrote from, it looks again shortly."""
        cluster.claim("titan")
        cluster.sync.reconcile()
        cluster.cr.version -= 1  # the cache still shows the version it wrote from
        assert cluster.sync.reconcile() == 0.5

    def test_follower_plans_but_never_writes(self, cluster):
        """A replica that does not lead computes the plan and leaves the CR alone."""
        cluster.leading[0] = False
        cluster.claim("titan")
        cluster.sync.reconcile()
        assert cluster.entries() == [USERS]
        assert cluster.sync.last_plan.changed

    def test_unsynced_caches_retry_soon(self, cluster):
        """Before every cache has listed once, nothing is planned; it looks again shortly."""
        cluster.claims.is_synced = False
        cluster.claim("titan")
        assert cluster.sync.reconcile() == 0.5
        assert cluster.sync.last_plan is None

    def test_absent_cr_is_said_once(self, cluster, caplog):
        """Without a KubeVirt CR it waits for a change, saying so once."""
        caplog.set_level(logging.INFO, logger="pcioperator.controllers.kubevirt")
        cluster.cr.exists = False
        assert cluster.sync.reconcile() is None
        assert cluster.sync.reconcile() is None
        assert len([r for r in caplog.records if "does not exist" in r.message]) == 1

    def test_dedicated_claim_gets_its_own_resource(self, cluster):
        """A claim with resource pooling off permits the device's own resource name."""
        cluster.claim("titan", dedicated=True)
        cluster.sync.reconcile()
        dedicated = PermittedEntry(
            "8086:1521", ResourceName("intel.com/titan-000003000"), external=True
        )
        assert cluster.entries() == [USERS, (dedicated, "")]

    def test_removed_entry_comes_back_and_users_edits_stay(self, cluster):
        """Our entry deleted by hand while claimed is re-added after the user's new entry."""
        cluster.claim("titan")
        cluster.sync.reconcile()
        gpu = StoredEntry(PermittedEntry("10DE:2236", ResourceName("nvidia.com/A10")), "gpu")
        cluster.cr.user_edit([VIRTIO, gpu])
        cluster.sync.reconcile()
        assert cluster.entries() == [USERS, (gpu.entry, "gpu"), OURS]

    def test_users_entry_for_resource_is_neither_duplicated_nor_owned(self, cluster):
        """A user's entry for the claimed resource serves; it is not removed with the claim."""
        users_nic = StoredEntry(PermittedEntry("8086:1521", NIC), "user's NIC")
        cluster.cr.user_edit([VIRTIO, users_nic])
        cluster.claim("titan")
        cluster.sync.reconcile()
        assert cluster.sync.last_plan.blocked == {NIC_KEY}
        cluster.claims.claims.clear()
        cluster.sync.reconcile()
        assert cluster.entries() == [USERS, (users_nic.entry, "user's NIC")]
        assert cluster.cr.managed == frozenset()
