"""Planning KubeVirt's permitted PCI host devices: add, remove, and leave users' entries alone."""

import pytest

from pcicore.address import PciAddress
from pcicore.device import NodeName
from pcicore.naming import ResourceName
from pcicore.permitted import (
    ClaimedAddress,
    ClaimedKind,
    DeviceKind,
    KubeVirtRef,
    PermittedDocument,
    PermittedEntry,
    PermittedKey,
    choose_kubevirt,
    claimed_kinds,
    permitted_change,
    plan_document,
    plan_permitted,
    wanted_keys,
)

NIC = ResourceName("intel.com/I350_GIGABIT_NETWORK_CONNECTION")
GPU = ResourceName("nvidia.com/GA102GL_A10")
NIC_KEY = PermittedKey("8086:1521", NIC)
GPU_KEY = PermittedKey("10de:2236", GPU)


def ours(key):
    """The entry the controller writes for ``key``."""
    return PermittedEntry(key.selector, key.resource_name, external=True)


def users(selector, name, *, external=False):
    """An entry a user wrote."""
    return PermittedEntry(selector, ResourceName(name), external=external)


CASES = [
    pytest.param([], set(), {NIC_KEY}, (NIC_KEY,), set(), {NIC_KEY}, id="adds-missing"),
    pytest.param(
        [ours(NIC_KEY)], {NIC_KEY}, {NIC_KEY}, (), set(), {NIC_KEY}, id="present-no-change"
    ),
    pytest.param([ours(NIC_KEY)], {NIC_KEY}, set(), (), {NIC_KEY}, set(), id="removes-unclaimed"),
    pytest.param(
        [users("8086:1521", NIC, external=True)],
        set(),
        set(),
        (),
        set(),
        set(),
        id="users-identical-entry-not-removed",
    ),
    pytest.param(
        [users("8086:1521", NIC, external=True)],
        set(),
        {NIC_KEY},
        (),
        set(),
        set(),
        id="users-identical-entry-not-duplicated-nor-claimed",
    ),
    pytest.param(
        [users("8086:AAAA", NIC)],
        set(),
        {NIC_KEY},
        (),
        set(),
        set(),
        id="users-entry-with-same-resource-blocks-add",
    ),
    pytest.param(
        [ours(NIC_KEY), users("8086:1521", NIC)],
        {NIC_KEY},
        {NIC_KEY},
        (),
        {NIC_KEY},
        set(),
        id="user-duplicate-of-ours-makes-ours-redundant",
    ),
    pytest.param(
        [users("8086:1521", NIC)],
        {NIC_KEY},
        set(),
        (),
        set(),
        set(),
        id="our-entry-edited-by-user-is-no-longer-ours",
    ),
    pytest.param([], {NIC_KEY}, {NIC_KEY}, (NIC_KEY,), set(), {NIC_KEY}, id="deleted-re-added"),
    pytest.param([], {NIC_KEY}, set(), (), set(), set(), id="deleted-and-unwanted-forgotten"),
    pytest.param(
        [users("1AF4:1000", "devices.kubevirt.io/virtio"), ours(NIC_KEY)],
        {NIC_KEY},
        {GPU_KEY},
        (GPU_KEY,),
        {NIC_KEY},
        {GPU_KEY},
        id="swap-keeps-unrelated-user-entry",
    ),
    pytest.param(
        [PermittedEntry("10DE:2236", GPU, external=True)],
        {GPU_KEY},
        {GPU_KEY},
        (),
        set(),
        {GPU_KEY},
        id="selector-case-insensitive",
    ),
    pytest.param(
        [PermittedEntry("10DE:2236", GPU, external=True)],
        set(),
        {GPU_KEY},
        (),
        set(),
        set(),
        id="users-upper-case-entry-serves-lower-case-key",
    ),
    pytest.param(
        [], set(), {GPU_KEY, NIC_KEY}, (GPU_KEY, NIC_KEY), set(), {GPU_KEY, NIC_KEY}, id="sorted"
    ),
]


class TestPlanPermitted:
    """`plan_permitted` changes only what the controller owns."""

    @pytest.mark.parametrize(("current", "managed", "wanted", "add", "remove", "after"), CASES)
    def test_plan(self, current, managed, wanted, add, remove, after):  # noqa: PLR0917 - the table's columns
        """The plan adds, removes and records ownership as the table says."""
        plan = plan_permitted(current, frozenset(managed), frozenset(wanted))
        assert plan.add == add
        assert plan.remove == remove
        assert plan.managed == after

    def test_unchanged_state_needs_no_write(self):
        """Applying a plan's result and planning again yields no change."""
        first = plan_permitted([users("1AF4:1000", "x.io/v")], frozenset(), frozenset({NIC_KEY}))
        after = [users("1AF4:1000", "x.io/v"), *(ours(key) for key in first.add)]
        second = plan_permitted(after, first.managed, frozenset({NIC_KEY}))
        assert first.changed
        assert not second.changed

    def test_forgetting_a_vanished_entry_is_a_change(self):
        """A recorded key whose entry is gone changes the record, so it is written."""
        plan = plan_permitted([], frozenset({NIC_KEY}), frozenset())
        assert plan.changed
        assert plan.managed == frozenset()

    def test_is_removed_spares_users_entry_with_same_key(self):
        """Only our entries are dropped, even when a user's entry has the removed key."""
        user = users("8086:1521", NIC)
        plan = plan_permitted([ours(NIC_KEY), user], frozenset({NIC_KEY}), frozenset())
        assert plan.is_removed(ours(NIC_KEY))
        assert not plan.is_removed(user)


class TestWantedKeys:
    """Claims map to the entries KubeVirt needs."""

    A = PciAddress.parse("0000:03:00.0")

    @pytest.mark.parametrize(
        ("dedicated", "expected"),
        [
            pytest.param(False, PermittedKey("8086:1521", NIC), id="pooled"),
            pytest.param(
                True,
                PermittedKey("8086:1521", ResourceName("intel.com/titan-000003000")),
                id="dedicated-named-as-harvester-does",
            ),
        ],
    )
    def test_key_of_claimed_kind(self, dedicated, expected):
        """A pooled claim needs the pool's resource; a dedicated one its own resource."""
        kind = ClaimedKind(self.A, 0x8086, 0x1521, NIC, dedicated=dedicated, node=NodeName("titan"))
        assert wanted_keys([kind]) == {expected}

    def test_dedicated_key_of_device_already_named_per_device(self):
        """A PCIDevice that already reports its own resource (Harvester wrote it) keeps it."""
        own = ResourceName("intel.com/titan-000003000")
        kind = ClaimedKind(self.A, 0x8086, 0x1521, own, dedicated=True, node=NodeName("titan"))
        assert wanted_keys([kind]) == {PermittedKey("8086:1521", own)}

    def test_key_selector_is_lower_case_as_harvester_writes(self):
        """The selector we write is lower-case hex, as in Harvester's entries."""
        assert PermittedKey.of(0x10DE, 0x2236, GPU).selector == "10de:2236"

    def test_identical_devices_need_one_entry(self):
        """Two claimed devices of one kind need a single entry."""
        other = PciAddress.parse("0000:03:00.1")
        kinds = [ClaimedKind(self.A, 0x8086, 0x1521, NIC), ClaimedKind(other, 0x8086, 0x1521, NIC)]
        assert wanted_keys(kinds) == {NIC_KEY}


class TestClaimedKinds:
    """Claims are joined to their devices' PCIDevices by object name."""

    A = PciAddress.parse("0000:03:00.0")
    KIND = DeviceKind(0x8086, 0x1521, NIC)

    def test_claim_joined_to_its_nodes_device(self):
        """A claim takes the kind of the PCIDevice of its node and address."""
        claims = [ClaimedAddress(NodeName("titan"), self.A, dedicated=True)]
        kinds = {"titan-000003000": self.KIND, "atlas-000003000": DeviceKind(1, 2, GPU)}
        assert claimed_kinds(claims, kinds) == [
            ClaimedKind(self.A, 0x8086, 0x1521, NIC, dedicated=True, node=NodeName("titan"))
        ]

    def test_short_address_claim_finds_harvesters_short_named_device(self):
        """A claim on ``00:1f.6`` finds a PCIDevice named ``titan-001f6`` (Harvester's name)."""
        short = PciAddress.parse("00:1f.6")
        claims = [ClaimedAddress(NodeName("titan"), short, written_name="titan-001f6")]
        kinds = {"titan-001f6": self.KIND}
        assert claimed_kinds(claims, kinds) == [
            ClaimedKind(short, 0x8086, 0x1521, NIC, node=NodeName("titan"))
        ]

    def test_short_address_claim_finds_our_full_named_device(self):
        """A claim on ``00:1f.6`` also finds a PCIDevice named ``titan-0000001f6`` (ours)."""
        short = PciAddress.parse("00:1f.6")
        claims = [ClaimedAddress(NodeName("titan"), short, written_name="titan-001f6")]
        assert len(claimed_kinds(claims, {"titan-0000001f6": self.KIND})) == 1

    def test_claim_without_device_needs_nothing(self):
        """A claim whose device has no (readable) PCIDevice yet needs no entry."""
        claims = [ClaimedAddress(NodeName("titan"), self.A)]
        assert claimed_kinds(claims, {"atlas-000003000": self.KIND}) == []


class TestPermittedChange:
    """The change to write keeps every entry the plan does not remove, in place."""

    def test_keeps_users_entries_by_position_and_appends(self):
        """Users' entries (even ones with our key) stay where they are; ours go or come last."""
        user_same_key = users("8086:1521", NIC)
        document = PermittedDocument(
            "7",
            (users("1AF4:1000", "x.io/v"), ours(NIC_KEY), user_same_key),
            frozenset({NIC_KEY}),
        )
        gpu = ClaimedKind(PciAddress.parse("0000:65:00.0"), 0x10DE, 0x2236, GPU)
        plan = plan_document(document, [gpu])
        change = permitted_change(document, plan)
        assert change.version == "7"
        assert change.keep == (0, 2)
        assert change.add == (GPU_KEY,)
        assert change.managed == {GPU_KEY}


class TestChooseKubeVirt:
    """The KubeVirt CR to keep, when the controller is not told which."""

    HARVESTER = KubeVirtRef("harvester-system", "kubevirt")
    STANDARD = KubeVirtRef("kubevirt", "kubevirt")

    def test_only_cr_is_chosen(self):
        """The cluster's only KubeVirt CR is kept, wherever it is."""
        assert choose_kubevirt([self.HARVESTER]).chosen == self.HARVESTER

    def test_none_found(self):
        """No CR: nothing is chosen, and nothing is ambiguous."""
        choice = choose_kubevirt([])
        assert (choice.chosen, choice.ambiguous) == (None, False)

    def test_several_without_being_told_keeps_none(self):
        """Two CRs and no namespace or name: none is kept, both are named."""
        choice = choose_kubevirt([self.STANDARD, self.HARVESTER])
        assert choice.chosen is None
        assert choice.ambiguous
        assert choice.candidates == (self.HARVESTER, self.STANDARD)

    @pytest.mark.parametrize(
        ("namespace", "name", "expected"),
        [
            pytest.param("kubevirt", None, STANDARD, id="namespace-given"),
            pytest.param("harvester-system", "kubevirt", HARVESTER, id="both-given"),
            pytest.param("elsewhere", None, None, id="namespace-without-cr"),
        ],
    )
    def test_told_namespace_or_name_narrows(self, namespace, name, expected):
        """A namespace or name given picks among several CRs."""
        assert choose_kubevirt([self.STANDARD, self.HARVESTER], namespace, name).chosen == expected
