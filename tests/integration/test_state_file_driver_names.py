"""The claim state file refuses a recorded driver name that is not one (the file is input too).

Its original-driver names become sysfs paths (``drivers/<name>/bind``) when a device goes back.
The file can be edited by hand or come from an older version; a name like ``../../x`` must be
refused when the file is read, with the fix, before any engine acts on it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pcicore.errors import ClaimStateError
from pcihost.statefile import ClaimStateFile

STATE = Path("/var/lib/pcidevices/claims.json")


def write_state(fs, originals) -> ClaimStateFile:
    document = {"version": 1, "claims": [], "originals": originals}
    fs.create_file(STATE, contents=json.dumps(document))
    return ClaimStateFile(STATE)


class TestRecordedDriverNames:
    """`ClaimStateFile.load` checks every original driver name."""

    @pytest.mark.parametrize(
        "name",
        ["../../../etc/x", "igb/bind", "", "igb\n", 7, ["igb"]],
        ids=["traversal", "slash", "empty", "newline", "number", "list"],
    )
    def test_state_file_with_a_driver_name_that_is_a_path_is_refused(self, fs, name):
        """Load fails with a ClaimStateError naming the file and the bad value."""
        state = write_state(fs, {"0000:03:00.0": name})
        with pytest.raises(ClaimStateError) as caught:
            state.load()
        assert str(STATE) in str(caught.value)
        assert "invalid kernel driver name" in str(caught.value)

    @pytest.mark.parametrize("name", ["igb", "snd_hda_intel", "vfio-pci", "mlx5_core", None])
    def test_state_file_with_real_driver_names_loads(self, fs, name):
        """Real driver names, and ``null`` (the device had no driver), load as recorded."""
        state = write_state(fs, {"0000:03:00.0": name})
        (recorded,) = state.load().originals.values()
        assert recorded == name
