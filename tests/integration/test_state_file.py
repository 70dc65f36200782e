"""The claim state file on disk: round trips, its format, and errors that say what to do."""

from __future__ import annotations

import json

import pytest

from pcicore.address import PciAddress
from pcicore.device import DriverName
from pcicore.errors import ClaimStateError
from pcicore.ledger import ClaimRecord, Ledger
from pcicore.policy import GroupPolicy
from pcihost.statefile import ClaimStateFile

A = PciAddress.parse("0000:01:00.0")
B = PciAddress.parse("0000:01:00.1")


def ledger() -> Ledger:
    return (
        Ledger()
        .claim(ClaimRecord(A, GroupPolicy.GROUP, "nvidia.com/GA104"))
        .claim(ClaimRecord(B, GroupPolicy.GROUP, None, A))
        .remember(A, DriverName("nouveau"))
        .remember(B, None)
    )


class TestClaimStateFile:
    """ClaimStateFile."""

    def test_a_saved_ledger_loads_back(self, tmp_path):
        """A saved ledger loads back the same; the folder is created on first save."""
        state = ClaimStateFile(tmp_path / "sub" / "claims.json")
        state.save(ledger())
        assert state.load() == ledger()

    def test_the_file_is_version_1_json(self, tmp_path):
        """The document on disk has the version 1 keys, sorted, ending in a newline."""
        state = ClaimStateFile(tmp_path / "claims.json")
        state.save(ledger())
        text = state.path.read_text()
        assert text.endswith("}\n")
        document = json.loads(text)
        assert list(document) == sorted(document)  # sorted keys: a stable file to diff
        assert list(document["claims"][1]) == sorted(document["claims"][1])
        second = text.splitlines()[1]  # one key a line, two spaces deep: readable by an admin
        assert second.startswith('  "')
        assert not second.startswith("   ")
        assert document["version"] == 1
        assert document["originals"] == {"0000:01:00.0": "nouveau", "0000:01:00.1": None}
        assert document["claims"][1] == {
            "address": "0000:01:00.1",
            "claimedWith": "0000:01:00.0",
            "policy": "group",
            "resourceName": None,
        }

    def test_no_file_is_an_empty_ledger(self, tmp_path):
        """A node that never claimed anything has an empty ledger."""
        assert ClaimStateFile(tmp_path / "none.json").load() == Ledger()

    @pytest.mark.parametrize(
        ("document", "named"),
        [
            pytest.param({"version": 2, "claims": [], "originals": {}}, "version 1", id="version"),
            pytest.param(
                {"version": 1, "claims": [{"address": "0000:zz:00.0"}], "originals": {}},
                "'0000:zz:00.0'",
                id="bad-address",
            ),
            pytest.param(
                {"version": 1, "claims": [], "originals": {"0000:01:00.0": "../../bin"}},
                "'../../bin'",
                id="driver-as-path",
            ),
            pytest.param({"version": 1, "originals": {}}, "$.claims", id="missing-claims"),
        ],
    )
    def test_a_bad_file_names_the_bad_value_and_the_way_out(self, tmp_path, document, named):
        """A file that is not a state file raises with the bad value and what to do."""
        state = ClaimStateFile(tmp_path / "claims.json")
        state.path.write_text(json.dumps(document))
        with pytest.raises(ClaimStateError) as caught:
            state.load()
        message = str(caught.value)
        assert named in message
        assert message.endswith(
            "; move it aside and run `pcidevices restore` after re-binding devices by hand"
        )

    def test_a_file_that_cannot_be_read_names_it_and_the_way_out(self, tmp_path):
        """A directory where the file should be: the error names the path, the cause, the fix."""
        state = ClaimStateFile(tmp_path / "claims.json")
        state.path.mkdir()
        with pytest.raises(ClaimStateError) as caught:
            state.load()
        assert str(caught.value) == (
            f"cannot read the claim state file {state.path}: Is a directory; check its "
            "permissions or pass another one with --state-file"
        )

    def test_not_json_is_a_claim_state_error(self, tmp_path):
        """Garbage in the file is reported as such, not as a crash."""
        state = ClaimStateFile(tmp_path / "claims.json")
        state.path.write_text("{not json")
        with pytest.raises(ClaimStateError, match="not a pcidevices claim state file"):
            state.load()
