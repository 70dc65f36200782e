"""The one converter: camelCase keys, domain values, and round trips of every wire format."""

from __future__ import annotations

import datetime as dt
import json

import attrs
import cattrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pcicore.address import PciAddress
from pcicore.conditions import Condition, ConditionStatus
from pcicore.device import DriverName
from pcicore.ledger import ClaimRecord, Ledger
from pcicore.naming import ResourceName
from pcicore.permitted import PermittedKey
from pcicore.policy import GroupPolicy
from pcihost.converter import CONVERTER, describe_error, make_converter
from pcihost.statefile import StateDocument
from pcihost.wirefields import (
    OMIT_IF_DEFAULT,
    camel_case,
    format_timestamp,
    parse_timestamp,
    wire_name,
)
from pcioperator.wire.claim import ClaimSpec, ClaimStatus, claim_from_object, status_to_wire
from pcioperator.wire.kubevirt import (
    MANAGED_ANNOTATION,
    entry_from_wire,
    entry_to_wire,
    managed_from_wire,
    managed_to_wire,
    vmi_from_object,
)
from pcioperator.wire.pcidevice import reported_status

addresses = st.builds(
    PciAddress,
    domain=st.integers(0, 0xFFFF),
    bus=st.integers(0, 0xFF),
    device=st.integers(0, 0x1F),
    function=st.integers(0, 7),
)
drivers = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,20}", fullmatch=True).map(DriverName)
names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30)


@st.composite
def ledgers(draw) -> Ledger:
    ledger = Ledger()
    for address in draw(st.lists(addresses, max_size=6, unique=True)):
        ledger = ledger.claim(
            ClaimRecord(
                address,
                draw(st.sampled_from(GroupPolicy)),
                draw(st.none() | names),
                draw(st.none() | addresses),
            )
        )
    for address in draw(st.lists(addresses, max_size=6, unique=True)):
        ledger = ledger.remember(address, draw(st.none() | drivers))
    return ledger


class TestCamelCase:
    """camel_case and the hook factory that uses it."""

    def test_renames_each_word_after_the_first(self):
        """kernel_driver_to_unbind becomes kernelDriverToUnbind; one word stays as it is."""
        assert camel_case("kernel_driver_to_unbind") == "kernelDriverToUnbind"
        assert camel_case("address") == "address"

    def test_a_class_never_registered_gets_camel_case_keys(self):
        """Any attrs class converts with camelCase keys, without registering it first."""

        @attrs.frozen
        class Fresh:
            node_name: str
            iommu_group: int = 0

        assert CONVERTER.unstructure(Fresh("n1", 3)) == {"nodeName": "n1", "iommuGroup": 3}
        assert CONVERTER.structure({"nodeName": "n2"}, Fresh) == Fresh("n2")

    def test_nested_classes_convert_in_any_order(self):
        """A claim status with conditions renames the nested condition's fields too."""
        status = ClaimStatus(
            conditions=(Condition("Ready", ConditionStatus.TRUE, "Bound", "ok", "t", 2),)
        )
        body = status_to_wire(status)
        assert body["conditions"][0]["lastTransitionTime"] == "t"
        assert body["conditions"][0]["observedGeneration"] == 2
        assert CONVERTER.structure(body, ClaimStatus) == status


class TestDomainValues:
    """The hooks for PciAddress, DriverName and timestamps."""

    @given(addresses)
    def test_address_round_trips_as_its_canonical_text(self, address):
        """An address is its canonical text on the wire, and parses back to itself."""
        text = CONVERTER.unstructure(address)
        assert text == str(address)
        assert CONVERTER.structure(text, PciAddress) == address

    def test_a_bad_address_names_itself_and_where_it_was(self):
        """Structuring a document with a bad address says which value and which field."""
        doc = {"version": 1, "claims": [{"address": "../../x"}], "originals": {}}
        with pytest.raises(cattrs.BaseValidationError) as caught:
            CONVERTER.structure(doc, StateDocument)
        message = describe_error(caught.value)
        assert "'../../x'" in message
        assert "$.claims[0].address" in message

    def test_a_driver_name_that_is_a_path_is_refused(self):
        """An original driver like ../x never gets into a ledger."""
        doc = {"version": 1, "claims": [], "originals": {"0000:01:00.0": "../x"}}
        with pytest.raises(cattrs.BaseValidationError) as caught:
            CONVERTER.structure(doc, StateDocument)
        assert "invalid kernel driver name '../x'" in describe_error(caught.value)

    def test_a_bad_driver_name_says_to_fix_or_remove_it_where_it_was_written(self):
        """The driver-name error, in full, ends with what to do about a value in a document."""
        doc = {"version": 1, "claims": [], "originals": {"0000:01:00.0": "../x"}}
        with pytest.raises(cattrs.BaseValidationError) as caught:
            CONVERTER.structure(doc, StateDocument)
        assert describe_error(caught.value) == (
            "invalid kernel driver name '../x': expected letters, digits, '_', '.' or '-' (at "
            "most 64, as under /sys/bus/pci/drivers); fix the value or remove it where it was "
            "written @ $.originals['0000:01:00.0']"
        )

    @given(
        # Hypothesis takes naive bounds and draws the zone separately.
        st.datetimes(min_value=dt.datetime(1970, 1, 1), timezones=st.just(dt.UTC)).map(  # noqa: DTZ001
            lambda t: t.replace(microsecond=0)
        )
    )
    def test_timestamps_round_trip_in_whole_seconds(self, moment):
        """One formatter writes RFC 3339 UTC seconds, and its output parses back."""
        text = format_timestamp(moment)
        assert text.endswith("Z")
        assert parse_timestamp(text) == moment
        assert CONVERTER.structure(CONVERTER.unstructure(moment), dt.datetime) == moment

    def test_a_timestamp_without_zone_is_refused(self):
        """A naive timestamp is an error that shows the expected form."""
        with pytest.raises(ValueError, match="no time zone"):
            parse_timestamp("2026-01-01T00:00:00")


class TestDescribeError:
    """`describe_error`: one line a user reads in the state file's or checkpoint's error."""

    def test_each_bad_field_is_named_with_what_was_wrong_one_after_another(self):
        """A missing key says so; a value of the wrong shape names the type expected; ``; ``.

        (The wrong shape fails inside cattrs with an `AttributeError` about ``items``, which
        says nothing to a user: the type expected is shown instead.)
        """
        doc = {"version": 1, "claims": [{}], "originals": []}
        with pytest.raises(cattrs.BaseValidationError) as caught:
            CONVERTER.structure(doc, StateDocument)
        assert describe_error(caught.value) == (
            "required field missing @ $.claims[0].address; "
            "invalid value for type, expected dict @ $.originals"
        )

    def test_an_error_that_is_not_a_validation_error_is_its_own_text(self):
        """A JSON or domain error passed in is shown as it is."""
        assert describe_error(ValueError("expected a version 1 document")) == (
            "expected a version 1 document"
        )


class TestStateDocument:
    """The state file's document."""

    # Added to the loaded profile's list, not instead of it (the mutation profile's entries).
    @settings(
        suppress_health_check=[*settings().suppress_health_check, HealthCheck.too_slow],
        deadline=None,
    )
    @given(ledgers())
    def test_every_ledger_round_trips_through_json(self, ledger):
        """A ledger written as JSON and read back is the same ledger."""
        text = json.dumps(CONVERTER.unstructure(StateDocument.of(ledger)))
        assert CONVERTER.structure(json.loads(text), StateDocument).ledger() == ledger

    def test_the_file_format_keeps_its_keys(self):
        """Version 1 keys: claims with address, policy, resourceName, claimedWith; originals."""
        a, b = PciAddress.parse("0000:01:00.0"), PciAddress.parse("0000:01:00.1")
        ledger = (
            Ledger()
            .claim(ClaimRecord(a, GroupPolicy.GROUP, "nvidia.com/GA104"))
            .claim(ClaimRecord(b, GroupPolicy.GROUP, None, a))
            .remember(a, DriverName("nouveau"))
            .remember(b, None)
        )
        assert CONVERTER.unstructure(StateDocument.of(ledger)) == {
            "version": 1,
            "claims": [
                {
                    "address": "0000:01:00.0",
                    "policy": "group",
                    "resourceName": "nvidia.com/GA104",
                    "claimedWith": None,
                },
                {
                    "address": "0000:01:00.1",
                    "policy": "group",
                    "resourceName": None,
                    "claimedWith": "0000:01:00.0",
                },
            ],
            "originals": {"0000:01:00.0": "nouveau", "0000:01:00.1": None},
        }

    def test_missing_optional_keys_read_as_defaults(self):
        """A claim with only an address is a strict claim without a resourceName."""
        doc = {"version": 1, "claims": [{"address": "01:00.0"}], "originals": {}}
        record = CONVERTER.structure(doc, StateDocument).claims[0]
        assert record == ClaimRecord(PciAddress.parse("0000:01:00.0"))


class TestClaimWire:
    """The claim wire form."""

    @given(
        st.builds(
            ClaimSpec,
            address=names,
            node_name=names,
            user_name=names,
            disable_resource_pooling=st.booleans(),
        )
    )
    def test_spec_round_trips(self, spec):
        """A spec unstructured and structured again is the same spec."""
        assert CONVERTER.structure(CONVERTER.unstructure(spec), ClaimSpec) == spec

    def test_reads_a_claim_object(self):
        """claim_from_object reads metadata and the camelCase spec."""
        claim = claim_from_object(
            {
                "metadata": {"name": "c", "uid": "u", "resourceVersion": 7, "generation": 2},
                "spec": {"address": "0000:01:00.0", "nodeName": "n1", "userName": "me"},
            }
        )
        assert (claim.resource_version, claim.generation) == ("7", 2)
        assert claim.spec == ClaimSpec("0000:01:00.0", "n1", "me")
        assert claim.status == ClaimStatus()

    def test_status_leaves_out_an_unknown_observed_generation(self):
        """A condition without observedGeneration is written without the key."""
        status = ClaimStatus(conditions=(Condition("Ready", ConditionStatus.FALSE, "R", "m", "t"),))
        assert "observedGeneration" not in status_to_wire(status)["conditions"][0]


class TestKubeVirtWire:
    """The KubeVirt CR entries, their annotation and VMIs."""

    @given(
        st.frozensets(
            st.builds(
                PermittedKey,
                st.from_regex(r"[0-9a-f]{4}:[0-9a-f]{4}", fullmatch=True),
                names.map(ResourceName),
            ),
            max_size=5,
        )
    )
    def test_managed_annotation_round_trips(self, keys):
        """The recorded keys read back from the annotation are the keys written."""
        text = managed_to_wire(keys)
        assert (text is None) == (not keys)
        annotations = {} if text is None else {MANAGED_ANNOTATION: text}
        cr = {"metadata": {"annotations": annotations}}
        assert managed_from_wire(cr) == keys

    def test_an_unreadable_annotation_means_nothing_is_managed(self):
        """A broken annotation makes every entry a user's (none is removed)."""
        cr = {"metadata": {"annotations": {MANAGED_ANNOTATION: "["}}}
        assert managed_from_wire(cr) == frozenset()
        cr["metadata"]["annotations"][MANAGED_ANNOTATION] = '[{"pciVendorSelector": 1}]'
        assert managed_from_wire(cr) == frozenset()

    def test_entry_written_reads_back_as_external(self):
        """The controller's item reads back with its selector, resource and external flag."""
        key = PermittedKey("8086:1533", ResourceName("intel.com/I210"))
        item = entry_to_wire(key)
        assert item == {
            "pciVendorSelector": "8086:1533",
            "resourceName": "intel.com/I210",
            "externalResourceProvider": True,
        }
        entry = entry_from_wire(item)
        assert (entry.selector, entry.resource_name, entry.external) == (
            "8086:1533",
            "intel.com/I210",
            True,
        )

    def test_a_malformed_entry_is_an_empty_users_entry(self):
        """A string or a wrongly-typed item reads as an entry with no selector."""
        assert entry_from_wire("nonsense").selector == ""
        assert entry_from_wire({"pciVendorSelector": None}).selector == ""
        assert entry_from_wire({"resourceName": {"a": 1}}).selector == ""

    def test_vmi_host_devices_and_nulls(self):
        """A VMI's host device names are read; null fields read as empty."""
        vmi = vmi_from_object(
            {
                "metadata": {"namespace": "ns", "name": "vm"},
                "spec": {
                    "domain": {
                        "devices": {
                            "hostDevices": [
                                {"name": "gpu", "deviceName": "nvidia.com/GA102"},
                                {"name": "none"},
                            ]
                        }
                    }
                },
                "status": {"nodeName": None, "phase": "Running"},
            }
        )
        assert vmi.host_device_names == ("nvidia.com/GA102",)
        assert (vmi.metadata.namespace, vmi.status.node_name, vmi.status.phase) == (
            "ns",
            "",
            "Running",
        )


class TestReportedStatus:
    """A PCIDevice status as a reader finds it."""

    def test_missing_and_null_fields_read_as_empty(self):
        """Only the reported fields are set; the rest are empty."""
        status = reported_status(
            {"status": {"address": "0000:01:00.0", "nodeName": None, "hostProtected": True}}
        )
        assert status.address == "0000:01:00.0"
        assert status.node_name == ""
        assert status.host_protected is True
        assert reported_status({}).resource_name == ""


@attrs.frozen
class _Wire:
    """One field of each kind the converter's rules cover."""

    node_name: str
    address: PciAddress
    driver: DriverName
    seen_at: dt.datetime
    total_vfs: int | None = attrs.field(
        default=None, metadata=wire_name("totalVFs", omit_if_default=True)
    )
    phys_fn: str | None = attrs.field(default=None, metadata=OMIT_IF_DEFAULT)
    note: str | None = None


class TestMakeConverter:
    """`make_converter` itself, called inside the test.

    Every other test here uses `CONVERTER`, which is built when `pcihost.converter` is first
    imported; a mutation run collects the tests (and so builds it) before it switches a mutant
    on, so only a converter made during a test shows a change to `make_converter`.
    """

    def test_a_fresh_converter_applies_every_rule(self):
        converter = make_converter()
        moment = dt.datetime(2026, 12, 1, 0, 40, 5, tzinfo=dt.UTC)
        value = _Wire("n1", PciAddress.parse("0000:03:00.0"), DriverName("igb"), moment, 7)
        wire = converter.unstructure(value)
        assert wire == {
            "nodeName": "n1",
            "address": "0000:03:00.0",
            "driver": "igb",
            "seenAt": "2026-12-01T00:40:05Z",
            "totalVFs": 7,
            "note": None,
        }
        assert converter.structure({**wire, "extra": "kept out"}, _Wire) == value
        bare = _Wire("n1", PciAddress.parse("0000:03:00.0"), DriverName("igb"), moment)
        assert "totalVFs" not in converter.unstructure(bare)
        assert "physFn" not in converter.unstructure(bare)

    @pytest.mark.parametrize(
        ("field", "bad", "named"),
        [
            ("address", "03:00", "03:00"),
            ("driver", "../igb", "../igb"),
            ("seenAt", "2026-12-01T00:40:05", "2026-12-01T00:40:05"),
        ],
    )
    def test_a_fresh_converter_refuses_bad_domain_values(self, field, bad, named):
        converter = make_converter()
        wire = {
            "nodeName": "n1",
            "address": "0000:03:00.0",
            "driver": "igb",
            "seenAt": "2026-12-01T00:40:05Z",
        }
        with pytest.raises(cattrs.BaseValidationError) as error:
            converter.structure({**wire, field: bad}, _Wire)
        assert named in describe_error(error.value)
